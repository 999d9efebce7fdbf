// Gradients of smoe::spatial_moe (x, weight, routing) equal LibTorch autograd through the
// reference layer; the backward is deterministic; a shared gate sums its layers' gradients.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/optim/adam.h>

#include "layer_config.h"
#include "modules.h"
#include "reference.h"
#include "smoe_ops.h"

namespace smoe {
namespace {

using testing::LayerConfig;

struct Gradients {
    at::Tensor y, x, weight, routing;
};

template <typename Layer>
Gradients gradients_of(Layer layer, const testing::LayerTensors &t, const LayerConfig &c, const at::Tensor &grad_y_seed) {
    at::Tensor x = t.x.clone().requires_grad_(), weight = t.weight.clone().requires_grad_(),
               routing = t.routing.clone().requires_grad_();
    at::Tensor y = std::get<0>(layer(x, weight, routing, c.E, c.F, c.weighted));
    y.backward(grad_y_seed);
    return {y.detach(), x.grad(), weight.grad(), routing.grad()};
}

void expect_same_gradients(const Gradients &actual, const Gradients &expected, double tolerance,
                           const std::string &label) {
    for (auto [name, a, e] : {std::tuple{"y", actual.y, expected.y}, std::tuple{"grad_x", actual.x, expected.x},
                              std::tuple{"grad_weight", actual.weight, expected.weight},
                              std::tuple{"grad_routing", actual.routing, expected.routing}}) {
        const std::string mismatch = reference::compare(a, e, tolerance);
        EXPECT_TRUE(mismatch.empty()) << label << " " << name << ": " << mismatch;
    }
}

// The compiled layer with the plain gradient (BackwardOptions' defaults).
std::tuple<at::Tensor, at::Tensor, at::Tensor> compiled_layer(const at::Tensor &x, const at::Tensor &weight,
                                                              const at::Tensor &routing, int64_t E, int64_t F,
                                                              bool weighted) {
    return smoe::spatial_moe(x, weight, routing, E, F, weighted);
}

class BackwardMatchesReference : public ::testing::TestWithParam<LayerConfig> {};

TEST_P(BackwardMatchesReference, AllThreeGradients) {
    const LayerConfig &c = GetParam();
    const testing::LayerTensors t = testing::random_layer(c, 21);
    at::manual_seed(22);
    const at::Tensor grad_y = at::randn({c.B, c.E * c.F, c.H, c.W}, t.x.options());
    std::ostringstream label;
    label << c;
    expect_same_gradients(gradients_of(compiled_layer, t, c, grad_y), gradients_of(reference::spatial_moe, t, c, grad_y),
                          c.dtype == at::kDouble ? 1e-11 : 2e-5, label.str());
}

INSTANTIATE_TEST_SUITE_P(Layers, BackwardMatchesReference, ::testing::ValuesIn(testing::layer_configs(20)),
                         [](const auto &info) {
                             std::ostringstream name;
                             name << info.index << "_" << info.param;
                             return name.str();
                         });

TEST(BackwardPaperLayers, WeatherbenchAndHeatMatchReference) {
    for (const LayerConfig &c : {LayerConfig{8, 32, 16, 32, 64, 32, 3, 1, true, false},
                                 LayerConfig{32, 1, 64, 64, 3, 1, 3, 1, true, false}}) {
        const testing::LayerTensors t = testing::random_layer(c, 23);
        const at::Tensor grad_y = at::randn({c.B, c.E * c.F, c.H, c.W});
        std::ostringstream label;
        label << c;
        expect_same_gradients(gradients_of(compiled_layer, t, c, grad_y),
                              gradients_of(reference::spatial_moe, t, c, grad_y), 2e-5, label.str());
    }
}

// The weight gradient sums many pixels into each expert; the sum's order is fixed, so results are
// bitwise identical from call to call and whatever the number of threads.
TEST(BackwardDeterminism, BitwiseIdenticalAcrossCallsAndThreadCounts) {
    const LayerConfig c{8, 16, 23, 17, 12, 5, 3, 1, true, true};
    const testing::LayerTensors t = testing::random_layer(c, 24);
    const at::Tensor grad_y = at::randn({c.B, c.E, c.H, c.W});
    const int threads = at::get_num_threads();
    const Gradients first = gradients_of(compiled_layer, t, c, grad_y);
    const Gradients again = gradients_of(compiled_layer, t, c, grad_y);
    at::set_num_threads(1);
    const Gradients single = gradients_of(compiled_layer, t, c, grad_y);
    at::set_num_threads(threads);
    for (const Gradients *other : {&again, &single}) {
        EXPECT_TRUE(at::equal(first.x, other->x));
        EXPECT_TRUE(at::equal(first.weight, other->weight));
        EXPECT_TRUE(at::equal(first.routing, other->routing));
    }
}

// The CPU serves unweighted layers with the weighted kernels and unit gates, a stride-0 buffer of
// ones (runtime/kernel_registry.cpp): the forward and the expert-side gradients must equal, bit
// for bit, a call with an explicit tensor of ones as the scores, in every dtype and routing.
TEST(UnitGates, UnweightedEqualsWeightedWithScoresOfOne) {
    for (const at::ScalarType dtype : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
        for (const bool shared : {true, false}) {
            const LayerConfig c{3, 9, 11, 13, 6, 3, 3, 2, shared, false, dtype};
            const testing::LayerTensors t = testing::random_layer(c, 31);
            const at::Tensor indices = smoe::route_topk_indices(t.routing, c.E);
            const at::Tensor ones = at::ones(indices.sizes(), t.x.options());
            const at::Tensor grad_y = at::randn({c.B, c.E * c.F, c.H, c.W}, t.x.options());
            const std::string label = std::string(c10::toString(dtype)) + (shared ? " shared" : " per_sample");
            EXPECT_TRUE(at::equal(smoe::forward(t.x, t.weight, indices, std::nullopt, c.F),
                                  smoe::forward(t.x, t.weight, indices, ones, c.F)))
                << label;
            BackwardOptions damped;
            damped.damping = 0.1;
            for (const BackwardOptions &options : {BackwardOptions{}, damped}) {
                const auto unit = smoe::spatial_moe_backward(grad_y, t.x, t.weight, indices, std::nullopt, std::nullopt,
                                                             c.F, options, {true, true, false});
                const auto scored = smoe::spatial_moe_backward(grad_y, t.x, t.weight, indices, ones, std::nullopt,
                                                               c.F, options, {true, true, false});
                EXPECT_TRUE(at::equal(std::get<0>(unit), std::get<0>(scored))) << label << " grad_x";
                EXPECT_TRUE(at::equal(std::get<1>(unit), std::get<1>(scored))) << label << " grad_weight";
            }
        }
    }
}

TEST(BackwardOutputMask, ComputesOnlyWhatIsAsked) {
    const LayerConfig c{2, 3, 5, 6, 4, 2, 3, 1, true, false};
    const testing::LayerTensors t = testing::random_layer(c, 25);
    auto [indices, values] = smoe::route_topk(t.routing, c.E);
    const at::Tensor grad_y = at::randn({c.B, c.E, c.H, c.W});
    auto [gx, gw, gr, rc] = smoe::spatial_moe_backward(grad_y, t.x, t.weight, indices, std::nullopt, std::nullopt, c.F,
                                                       BackwardOptions{}, {false, true, false});
    EXPECT_FALSE(gx.defined());
    EXPECT_TRUE(gw.defined());
    EXPECT_FALSE(gr.defined());
    // Only the weight needs a gradient: x and routing are constants of the graph.
    at::Tensor weight = t.weight.clone().requires_grad_();
    std::get<0>(smoe::spatial_moe(t.x, weight, t.routing, c.E, c.F, false)).backward(grad_y);
    EXPECT_TRUE(at::equal(weight.grad(), gw));
}

TEST(BackwardBadInput, GradientShapeMustMatchTheOutput) {
    const LayerConfig c{2, 3, 5, 6, 4, 2, 3, 1, true, false};
    const testing::LayerTensors t = testing::random_layer(c, 26);
    auto [indices, values] = smoe::route_topk(t.routing, c.E);
    try {
        smoe::spatial_moe_backward(at::randn({2, 3, 5, 6}), t.x, t.weight, indices, std::nullopt, std::nullopt, 1,
                                   BackwardOptions{}, {true, true, true});
        FAIL() << "no error";
    } catch (const c10::Error &e) {
        EXPECT_NE(std::string(e.what_without_backtrace()).find("'grad_y' must have the forward's output shape"),
                  std::string::npos)
            << e.what_without_backtrace();
    }
    try {
        smoe::spatial_moe(t.x, t.weight, at::randn({5, 5, 6}), 2, 1, false);
        FAIL() << "no error";
    } catch (const c10::Error &e) {
        EXPECT_NE(std::string(e.what_without_backtrace()).find("weight.size(0) / F (NE)"), std::string::npos)
            << e.what_without_backtrace();
    }
}

// One gate feeding two layers receives the sum of both layers' routing gradients.
TEST(Modules, SharedGateAccumulatesBothLayers) {
    at::manual_seed(27);
    TensorRoutingGate gate(6, 2, 7, 5);
    // The plain gradient (straight-through gate), which the reference layer gives.
    SpatialMoE2d first(SpatialMoE2dOptions(3, 3).rc_loss(false).damping(std::nullopt), gate),
        second(SpatialMoE2dOptions(3, 5).weighted(true).rc_loss(false).damping(std::nullopt), gate);
    const at::Tensor x = at::randn({4, 3, 7, 5});
    const at::Tensor loss = first->forward(x).square().sum() + second->forward(x).sin().sum();
    loss.backward();
    const at::Tensor shared_grad = gate->routing.grad().clone();

    auto routing_grad_through = [&](SpatialMoE2d &layer, bool square) {
        at::Tensor routing = gate->routing.detach().clone().requires_grad_();
        at::Tensor y = std::get<0>(reference::spatial_moe(x, layer->weight.detach(), routing, 2, 1,
                                                          layer->options.weighted()));
        (square ? y.square().sum() : y.sin().sum()).backward();
        return routing.grad();
    };
    const at::Tensor expected = routing_grad_through(first, true) + routing_grad_through(second, false);
    const std::string mismatch = reference::compare(shared_grad, expected, 1e-5);
    EXPECT_TRUE(mismatch.empty()) << mismatch;
    EXPECT_EQ(first->last_indices().sizes(), at::IntArrayRef({2, 7, 5}));
}

TEST(Modules, ClassMapRoutesEachClassToItsBlock) {
    TensorRoutingGate gate(8, 4, 3, 4);
    const at::Tensor land_sea = (at::arange(12).view({3, 4}) % 3 == 0).to(at::kLong);
    gate->init_from_class_map(land_sea, 2);
    auto [indices, values] = smoe::route_topk(gate->routing.detach(), 4);
    // Class 0 uses experts 0..3, class 1 experts 4..7.
    const at::Tensor expected_block = land_sea.unsqueeze(0).expand({4, 3, 4});
    EXPECT_TRUE(at::equal(at::floor_divide(indices, 4).to(at::kLong), expected_block));
}

// The target is a different 3x3 filter on each half of the grid; with the halves as a class-map
// prior, each expert learns its half's filter through the compiled forward and backward.
TEST(Modules, TrainingLoopLearnsPerRegionFilters) {
    at::manual_seed(28);
    TensorRoutingGate gate(2, 1, 8, 8);
    const at::Tensor halves = (at::arange(8).view({1, 8}) >= 4).to(at::kLong).expand({8, 8});
    gate->init_from_class_map(halves, 2);
    SpatialMoE2d layer(SpatialMoE2dOptions(1, 3).rc_loss(false).damping(std::nullopt), gate);
    const at::Tensor x = at::randn({16, 1, 8, 8});
    const at::Tensor left = at::conv2d(x, at::randn({1, 1, 3, 3}), {}, 1, 1);
    const at::Tensor right = at::conv2d(x, at::randn({1, 1, 3, 3}), {}, 1, 1);
    const at::Tensor target = at::where(halves.view({1, 1, 8, 8}) == 0, left, right);
    std::vector<at::Tensor> parameters = layer->parameters();
    parameters.push_back(gate->routing);
    torch::optim::Adam optimizer(parameters, torch::optim::AdamOptions(0.05));
    double first_loss = 0, last_loss = 0;
    for (int step = 0; step < 150; ++step) {
        optimizer.zero_grad();
        at::Tensor loss = (layer->forward(x) - target).square().mean();
        loss.backward();
        optimizer.step();
        (step == 0 ? first_loss : last_loss) = loss.item<double>();
    }
    EXPECT_LT(last_loss, 1e-3 * first_loss) << "first " << first_loss << ", last " << last_loss;
}

}  // namespace
}  // namespace smoe
