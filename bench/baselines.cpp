#include "baselines.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "cpu_memory.h"
#include "smoe_ops.h"

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

const std::vector<LayerConfig> &compare_configs() {
    static const std::vector<LayerConfig> configs = {
        // name            B    C    H    W    NE   E    K  F  regions
        {"wb-b1",          1, 128,  32,  64, 256, 128,  3},
        {"wb-b2",          2, 128,  32,  64, 256, 128,  3},
        {"wb-b4",          4, 128,  32,  64, 256, 128,  3},
        {"ne/e=2",         8, 128,  32,  64, 128,  64,  3},
        {"ne/e=4",         8, 128,  32,  64, 256,  64,  3},
        {"ne/e=8",         8, 128,  32,  64, 512,  64,  3},
        {"ens10-like",     1,  64,  96, 192, 256,  64,  3},
        {"wb-regions",     8, 128,  32,  64, 256, 128,  3, 1, 8},
    };
    return configs;
}

LayerInputs make_inputs(const LayerConfig &config, uint64_t seed, at::ScalarType type) {
    at::manual_seed(seed);
    const int64_t K = config.kernel, F = config.outputs_per_expert;
    LayerInputs in;
    in.x = at::randn({config.batch, config.channels, config.height, config.width});
    // Scaled like a conv's default init so outputs stay O(1) whatever C is.
    const double fan_in = static_cast<double>(config.channels * K * K);
    in.weight = at::randn({config.experts * F, config.channels, K, K}) / std::sqrt(fan_in);
    if (config.routing_regions > 0) {
        // One random score per (expert, region), repeated over the region's pixels.
        const int64_t n = config.routing_regions;
        const at::Tensor coarse = at::randn({config.experts, (config.height + n - 1) / n, (config.width + n - 1) / n});
        in.routing = coarse.repeat_interleave(n, 1).repeat_interleave(n, 2)
                         .narrow(1, 0, config.height).narrow(2, 0, config.width).contiguous();
    } else {
        in.routing = at::randn({config.experts, config.height, config.width});
    }
    in.dense_weight = in.weight.narrow(0, 0, config.selected * F).contiguous();
    in.grad_y = at::randn({config.batch, config.selected * F, config.height, config.width});
    for (at::Tensor *t : {&in.x, &in.weight, &in.routing, &in.dense_weight, &in.grad_y}) *t = t->to(type);
    return in;
}

LayerInputs as_leaves(const LayerInputs &inputs) {
    LayerInputs leaves = inputs;
    for (at::Tensor *t : {&leaves.x, &leaves.weight, &leaves.routing, &leaves.dense_weight}) {
        *t = t->detach().requires_grad_();
    }
    return leaves;
}

const char *method_name(Method method) {
    switch (method) {
        case Method::smoe: return "smoe";
        case Method::naive: return "naive";
        case Method::dense_e: return "dense_e";
    }
    return "?";
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

std::tuple<at::Tensor, at::Tensor> stable_route_topk(const at::Tensor &routing, int64_t selected) {
    auto [values, indices] = at::sort(routing, /*stable=*/true, /*dim=*/-3, /*descending=*/true);
    return {indices.narrow(-3, 0, selected), values.narrow(-3, 0, selected)};
}

at::Tensor naive_spatial_moe(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &routing,
                             const at::Tensor &indices, int64_t outputs_per_expert) {
    const at::Tensor values = at::gather(routing, /*dim=*/-3, indices);  // differentiable wrt routing
    const at::Tensor u = naive_forward(x, weight, indices, outputs_per_expert);
    // [E·F, H, W], broadcast over the batch: its gradient is dy summed over the batch.
    const at::Tensor gate = values.repeat_interleave(outputs_per_expert, /*dim=*/-3);
    return u + (gate - gate.detach());
}

at::Tensor dense_e_forward(const at::Tensor &x, const at::Tensor &dense_weight) {
    const int64_t K = dense_weight.size(2);
    return at::conv2d(x, dense_weight, /*bias=*/{}, /*stride=*/1, /*padding=*/K / 2);
}

at::Tensor layer_output(Method method, const LayerConfig &config, const LayerInputs &leaves) {
    const int64_t E = config.selected, F = config.outputs_per_expert;
    switch (method) {
        case Method::smoe: return std::get<0>(smoe::spatial_moe(leaves.x, leaves.weight, leaves.routing, E, F));
        case Method::naive: {
            const at::Tensor indices = std::get<0>(naive_route_topk(leaves.routing.detach(), E));
            return naive_spatial_moe(leaves.x, leaves.weight, leaves.routing, indices, F);
        }
        case Method::dense_e: return dense_e_forward(leaves.x, leaves.dense_weight);
    }
    return {};
}

LayerGradients layer_gradients(Method method, const at::Tensor &y, const LayerInputs &leaves, bool retain_graph) {
    if (method == Method::dense_e) {
        const auto grads = torch::autograd::grad({y}, {leaves.x, leaves.dense_weight}, {leaves.grad_y}, retain_graph);
        return {grads[0], grads[1], at::Tensor()};
    }
    const auto grads =
        torch::autograd::grad({y}, {leaves.x, leaves.weight, leaves.routing}, {leaves.grad_y}, retain_graph);
    return {grads[0], grads[1], grads[2]};
}

at::Tensor naive_error_quantile(const at::Tensor &grad_y, double q, double scale) {
    return at::quantile((grad_y.abs() * scale).reshape({grad_y.size(0), -1}), q, /*dim=*/1);
}

std::tuple<at::Tensor, at::Tensor> naive_rc_loss(const at::Tensor &grad_y, const at::Tensor &indices,
                                                 const at::Tensor &routing, const at::Tensor &quantile, double scale) {
    const int64_t B = grad_y.size(0), E = grad_y.size(1), H = grad_y.size(2), W = grad_y.size(3);
    const int64_t NE = routing.size(-3);
    const at::Tensor correct = (grad_y.abs() * scale <= quantile.view({B, 1, 1, 1}) + 1e-5).to(grad_y.scalar_type());
    const at::Tensor wrong = E - correct.sum(1, /*keepdim=*/true);
    at::Tensor labels = (wrong / static_cast<double>(NE - E)).expand({B, NE, H, W}).contiguous();
    labels.scatter_(1, indices.expand({B, E, H, W}), correct);
    const at::Tensor z = routing.detach().requires_grad_();
    const at::Tensor loss = at::binary_cross_entropy_with_logits(z.expand({B, NE, H, W}), labels);
    return {torch::autograd::grad({loss}, {z})[0], loss.detach()};
}

LayerGradients naive_rc_backward(const at::Tensor &y, const LayerConfig &config, const LayerInputs &leaves,
                                 bool retain_graph, const at::Tensor &routed) {
    const at::Tensor &dy = leaves.grad_y;
    const double scale = static_cast<double>(dy.numel()) / 2.0;
    const at::Tensor quantile = naive_error_quantile(dy, kRCQuantile, scale);
    const at::Tensor misrouted = dy.abs() * scale > quantile.view({-1, 1, 1, 1}) + 1e-3;
    const at::Tensor damped = at::where(misrouted, dy * kRCDamping, dy);
    const auto grads = torch::autograd::grad({y}, {leaves.x, leaves.weight}, {damped}, retain_graph);
    const at::Tensor indices =
        routed.defined() ? routed : std::get<0>(naive_route_topk(leaves.routing.detach(), config.selected));
    return {grads[0], grads[1], std::get<0>(naive_rc_loss(dy, indices, leaves.routing, quantile, scale))};
}

LayerGradients train_step(Method method, const LayerConfig &config, const LayerInputs &leaves) {
    return layer_gradients(method, layer_output(method, config, leaves), leaves);
}

LayerGradients rc_train_step(Method method, const LayerConfig &config, const LayerInputs &leaves) {
    switch (method) {
        case Method::smoe: {
            smoe::BackwardOptions options;
            options.rc_loss = true;
            options.quantile = kRCQuantile;
            options.damping = kRCDamping;
            const at::Tensor y = std::get<0>(smoe::spatial_moe(leaves.x, leaves.weight, leaves.routing, config.selected,
                                                               config.outputs_per_expert, false, options));
            return layer_gradients(method, y, leaves);
        }
        case Method::naive: return naive_rc_backward(layer_output(method, config, leaves), config, leaves);
        case Method::dense_e: return train_step(method, config, leaves);
    }
    return {};
}

int64_t rc_train_step_peak_bytes(Method method, const LayerConfig &config, const LayerInputs &leaves) {
    rc_train_step(method, config, leaves);
    return peak_cpu_bytes_during([&] { rc_train_step(method, config, leaves); });
}

int64_t train_step_peak_bytes(Method method, const LayerConfig &config, const LayerInputs &leaves) {
    train_step(method, config, leaves);
    return peak_cpu_bytes_during([&] { train_step(method, config, leaves); });
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

std::vector<std::vector<double>> interleaved_seconds(const std::vector<std::function<void()>> &methods, int rounds,
                                                     int runs) {
    const size_t n = methods.size();
    for (const auto &method : methods) method();
    std::vector<std::vector<double>> seconds(n);
    for (int round = 0; round < rounds; ++round) {
        for (size_t k = 0; k < n; ++k) {
            const size_t i = (k + static_cast<size_t>(round)) % n;
            seconds[i].push_back(median_seconds(methods[i], /*warmup=*/0, runs));
        }
    }
    return seconds;
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
