#include "baselines.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>

namespace smoe::bench {

double LayerConfig::flops() const {
    return 2.0 * batch * selected * outputs_per_expert * channels * kernel * kernel * height * width;
}

const std::vector<LayerConfig> &layer_configs() {
    static const std::vector<LayerConfig> configs = {
        // name           B    C    H   W   NE   E    K
        {"heat",         32,   1,  64, 64,   3,   1,  3},
        {"weatherbench",  8, 128,  32, 64, 256, 128,  3},
        {"cifar",        32,  64,  32, 32, 128,  64,  3},
    };
    return configs;
}

LayerInputs make_inputs(const LayerConfig &config, uint64_t seed) {
    at::manual_seed(seed);
    const int64_t K = config.kernel, F = config.outputs_per_expert;
    LayerInputs in;
    in.x = at::randn({config.batch, config.channels, config.height, config.width});
    // Scaled like a conv's default init so outputs stay O(1) whatever C is.
    const double fan_in = static_cast<double>(config.channels * K * K);
    in.weight = at::randn({config.experts * F, config.channels, K, K}) / std::sqrt(fan_in);
    in.routing = at::randn({config.experts, config.height, config.width});
    in.dense_weight = in.weight.narrow(0, 0, config.selected * F).contiguous();
    return in;
}

std::tuple<at::Tensor, at::Tensor> naive_route_topk(const at::Tensor &routing, int64_t selected) {
    auto [values, indices] = at::topk(routing, selected, /*dim=*/-3, /*largest=*/true, /*sorted=*/true);
    return {indices, values};
}

at::Tensor naive_forward(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                         int64_t outputs_per_expert) {
    const int64_t K = weight.size(2), F = outputs_per_expert;
    const at::Tensor all_experts = at::conv2d(x, weight, /*bias=*/{}, /*stride=*/1, /*padding=*/K / 2);
    at::Tensor expert = indices.to(at::kLong);
    if (expert.dim() == 3) expert = expert.unsqueeze(0);  // shared routing: one map for every sample
    const at::Tensor output_offset = at::arange(F, expert.options()).view({1, 1, F, 1, 1});
    const at::Tensor channel = (expert.unsqueeze(2) * F + output_offset).flatten(1, 2);  // [1|B, E·F, H, W]
    return at::gather(all_experts, 1, channel.expand({x.size(0), -1, -1, -1}));
}

at::Tensor dense_e_forward(const at::Tensor &x, const at::Tensor &dense_weight) {
    const int64_t K = dense_weight.size(2);
    return at::conv2d(x, dense_weight, /*bias=*/{}, /*stride=*/1, /*padding=*/K / 2);
}

double median_seconds(const std::function<void()> &fn, int warmup, int runs) {
    for (int i = 0; i < warmup; ++i) fn();
    std::vector<double> seconds(runs);
    for (double &s : seconds) {
        const auto start = std::chrono::steady_clock::now();
        fn();
        s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    std::nth_element(seconds.begin(), seconds.begin() + runs / 2, seconds.end());
    return seconds[runs / 2];
}

double gemm_flops(int64_t n) { return 2.0 * n * n * n; }

double measure_gemm_gflops(int64_t n) {
    at::manual_seed(0);
    const at::Tensor a = at::randn({n, n}), b = at::randn({n, n});
    at::Tensor c = at::empty({n, n});
    const double seconds = median_seconds([&] { at::mm_out(c, a, b); }, /*warmup=*/3, /*runs=*/11);
    return gemm_flops(n) / seconds * 1e-9;
}

}  // namespace smoe::bench
