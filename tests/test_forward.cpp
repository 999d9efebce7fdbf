// smoe::forward equals the dense-conv-and-gather reference over many shapes and every option.
#include <gtest/gtest.h>

#include "layer_config.h"
#include "reference.h"
#include "smoe_ops.h"

namespace smoe {
namespace {

using testing::LayerConfig;

class ForwardMatchesReference : public ::testing::TestWithParam<LayerConfig> {};

TEST_P(ForwardMatchesReference, OnRandomInputs) {
    const LayerConfig &c = GetParam();
    const testing::LayerTensors t = testing::random_layer(c, 7);
    auto [indices, values] = reference::route_topk(t.routing, c.E);
    std::optional<at::Tensor> gate;
    if (c.weighted) gate = values;

    const at::Tensor y = smoe::forward(t.x, t.weight, indices, gate, c.F);
    const at::Tensor expected = reference::forward(t.x, t.weight, indices, gate, c.F);
    const double tolerance = c.dtype == at::kDouble ? 1e-12 : 1e-5;
    const std::string mismatch = reference::compare(y, expected, tolerance);
    EXPECT_TRUE(mismatch.empty()) << c << ": " << mismatch;
}

INSTANTIATE_TEST_SUITE_P(Layers, ForwardMatchesReference, ::testing::ValuesIn(testing::layer_configs(30)),
                         [](const auto &info) {
                             std::ostringstream name;
                             name << info.index << "_" << info.param;
                             return name.str();
                         });

// The paper's configurations at CPU sizes (DESIGN.md §6), where the register-tiled path runs.
TEST(ForwardPaperLayers, WeatherbenchAndCifarMatchReference) {
    for (const LayerConfig &c : {LayerConfig{8, 128, 32, 64, 256, 128, 3, 1, true, false},
                                 LayerConfig{32, 64, 32, 32, 128, 64, 3, 1, true, true},
                                 LayerConfig{32, 1, 64, 64, 3, 1, 3, 1, true, false}}) {
        const testing::LayerTensors t = testing::random_layer(c, 11);
        auto [indices, values] = reference::route_topk(t.routing, c.E);
        std::optional<at::Tensor> gate;
        if (c.weighted) gate = values;
        const std::string mismatch = reference::compare(smoe::forward(t.x, t.weight, indices, gate, c.F),
                                                        reference::forward(t.x, t.weight, indices, gate, c.F), 1e-5);
        EXPECT_TRUE(mismatch.empty()) << c << ": " << mismatch;
    }
}

// Only the selected experts may influence the output: poisoning every unselected expert's
// weights with NaN must leave y unchanged.
TEST(ForwardSparsity, UnselectedExpertsAreNeverRead) {
    const LayerConfig c{3, 4, 6, 7, 10, 3, 3, 2, true, false};
    const testing::LayerTensors t = testing::random_layer(c, 3);
    at::Tensor routing = t.routing.clone();
    routing.narrow(0, 5, 5).fill_(-1e9);  // experts 5..9 are never among the top 3
    auto [indices, values] = reference::route_topk(routing, c.E);
    at::Tensor poisoned = t.weight.clone();
    poisoned.narrow(0, 5 * c.F, 5 * c.F).fill_(NAN);
    const at::Tensor y = smoe::forward(t.x, poisoned, indices, std::nullopt, c.F);
    EXPECT_FALSE(y.isnan().any().item<bool>());
    const std::string mismatch =
        reference::compare(y, reference::forward(t.x, t.weight, indices, std::nullopt, c.F), 1e-5);
    EXPECT_TRUE(mismatch.empty()) << mismatch;
}

// Calls from several threads at once each get their own result (no shared mutable state).
TEST(ForwardThreads, ConcurrentCallsAreIndependent) {
    const LayerConfig c{4, 6, 9, 8, 8, 3, 3, 1, true, true};
    std::vector<testing::LayerTensors> inputs;
    std::vector<at::Tensor> expected;
    for (int i = 0; i < 4; ++i) {
        inputs.push_back(testing::random_layer(c, 100 + i));
        auto [indices, values] = reference::route_topk(inputs.back().routing, c.E);
        expected.push_back(reference::forward(inputs.back().x, inputs.back().weight, indices, values, c.F));
    }
    std::vector<at::Tensor> results(inputs.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < inputs.size(); ++i) {
        threads.emplace_back([&, i] {
            for (int repeat = 0; repeat < 5; ++repeat) {
                auto [indices, values] = smoe::route_topk(inputs[i].routing, c.E);
                results[i] = smoe::forward(inputs[i].x, inputs[i].weight, indices, values, c.F);
            }
        });
    }
    for (auto &thread : threads) thread.join();
    for (size_t i = 0; i < inputs.size(); ++i) {
        const std::string mismatch = reference::compare(results[i], expected[i], 1e-5);
        EXPECT_TRUE(mismatch.empty()) << "thread " << i << ": " << mismatch;
    }
}

}  // namespace
}  // namespace smoe
