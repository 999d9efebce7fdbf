// The CUDA kernels (routing, forward, all three gradients) against the CPU reference. Skipped where no GPU (or no CUDA build) is present.
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include "layer_config.h"
#include "reference.h"
#include "smoe_ops.h"

namespace smoe {
namespace {

using testing::LayerConfig;


class CudaMatchesReference : public ::testing::TestWithParam<LayerConfig> {};

TEST_P(CudaMatchesReference, RoutingAndForward) {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
    const LayerConfig &c = GetParam();
    const testing::LayerTensors t = testing::random_layer(c, 9);
    const at::Device gpu(at::kCUDA, 0);
    auto [indices, values] = smoe::route_topk(t.routing.to(gpu), c.E);
    auto [expected_indices, expected_values] = reference::route_topk(t.routing, c.E);
    EXPECT_TRUE(reference::compare(indices.cpu(), expected_indices, 0.0).empty()) << c;
    std::optional<at::Tensor> gate, expected_gate;
    if (c.weighted) {
        gate = values;
        expected_gate = expected_values;
    }
    const at::Tensor y = smoe::forward(t.x.to(gpu), t.weight.to(gpu), indices, gate, c.F);
    const std::string mismatch =
        reference::compare(y.cpu(), reference::forward(t.x, t.weight, expected_indices, expected_gate, c.F), 1e-5);
    EXPECT_TRUE(mismatch.empty()) << c << ": " << mismatch;
}

TEST_P(CudaMatchesReference, Gradients) {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
    const LayerConfig &c = GetParam();
    const testing::LayerTensors t = testing::random_layer(c, 10);
    const at::Tensor grad_y = at::randn({c.B, c.E * c.F, c.H, c.W});
    auto gradients = [&](auto layer, const at::Device &device) {
        at::Tensor x = t.x.to(device).requires_grad_(), weight = t.weight.to(device).requires_grad_(),
                   routing = t.routing.to(device).requires_grad_();
        std::get<0>(layer(x, weight, routing, c.E, c.F, c.weighted)).backward(grad_y.to(device));
        return std::vector<at::Tensor>{x.grad().cpu(), weight.grad().cpu(), routing.grad().cpu()};
    };
    const auto actual = gradients([](const at::Tensor &x, const at::Tensor &w, const at::Tensor &r, int64_t E,
                                     int64_t F, bool weighted) { return smoe::spatial_moe(x, w, r, E, F, weighted); },
                                  at::Device(at::kCUDA, 0));
    const auto expected = gradients(reference::spatial_moe, at::Device(at::kCPU));
    for (size_t i = 0; i < actual.size(); ++i) {
        const std::string mismatch = reference::compare(actual[i], expected[i], 2e-5);
        EXPECT_TRUE(mismatch.empty()) << c << " gradient " << i << ": " << mismatch;
    }
}

std::vector<LayerConfig> float32_configs() {
    std::vector<LayerConfig> configs;
    for (const LayerConfig &c : testing::layer_configs(10)) {
        if (c.dtype == at::kFloat) configs.push_back(c);
    }
    return configs;
}

INSTANTIATE_TEST_SUITE_P(Layers, CudaMatchesReference, ::testing::ValuesIn(float32_configs()),
                         [](const auto &info) {
                             std::ostringstream name;
                             name << info.index << "_" << info.param;
                             return name.str();
                         });

}  // namespace
}  // namespace smoe
