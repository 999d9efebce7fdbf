// Every kernel choice of the CPU float32 ops (the regular kernels, each formulation variant, the
// measured choice) equals the reference over the suite's shapes, is deterministic, and the choice
// API refuses names it does not know.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "cpu_features.h"
#include "kernel_registry.h"
#include "layer_config.h"
#include "reference.h"
#include "smoe_ops.h"
#include "variant_cache.h"

namespace smoe {
namespace {

using testing::LayerConfig;

// Restores the "auto" choice when a test ends.
struct Choice {
    explicit Choice(const std::string &name) { smoe::set_kernel_variant(name); }
    ~Choice() { smoe::set_kernel_variant("auto"); }
};

std::vector<std::string> choices() {
    std::vector<std::string> names = {"regular", "auto"};
    for (const runtime::FormulationVariantInfo &v : runtime::formulation_variants()) {
        if (std::find(names.begin(), names.end(), v.name) == names.end()) names.push_back(v.name);
    }
    return names;
}

// The suite's float32 shapes plus wide layers where the formulations' full tiles and pixel
// vectors run (with tails in every dimension), whole blocks of 64 channels (the slot sweeps'
// own code, with a batch that is not a whole number of sample blocks, and F = 2), and rows of
// several expert groups at small and large batches, and the masked rows' tiles.
std::vector<LayerConfig> float_configs() {
    std::vector<LayerConfig> configs;
    for (const LayerConfig &c : testing::layer_configs(12)) {
        if (c.dtype == at::kFloat) configs.push_back(c);
    }
    for (const LayerConfig &c : {LayerConfig{8, 32, 6, 37, 12, 7, 3, 1, true, false},
                                 LayerConfig{5, 24, 5, 19, 9, 5, 3, 1, true, true},
                                 LayerConfig{3, 40, 4, 17, 8, 4, 5, 1, false, false},
                                 LayerConfig{1, 17, 7, 16, 6, 3, 3, 2, true, false},
                                 LayerConfig{9, 16, 3, 33, 4, 2, 1, 1, false, true},
                                 LayerConfig{12, 64, 4, 19, 10, 5, 3, 1, true, false},
                                 LayerConfig{3, 128, 3, 18, 6, 3, 3, 2, true, true},
                                 // Tiles whose union is a few of many experts (blocks left unfilled).
                                 LayerConfig{2, 16, 3, 35, 90, 2, 3, 1, true, true},
                                 LayerConfig{1, 24, 5, 33, 70, 3, 3, 2, true, false},
                                 // Rows wider than the weight gradient's expert groups (192 pixels):
                                 // two whole groups and a partial one.
                                 LayerConfig{2, 9, 3, 401, 12, 4, 3, 2, true, true},
                                 // Batches of 8 or more take groups of 32 pixels, samples innermost:
                                 // two whole groups and a partial one, K = 5.
                                 LayerConfig{8, 16, 3, 70, 8, 4, 5, 2, true, true},
                                 // The masked rows' register tiles: two tiles of 3 expert rows, whole
                                 // vectors along the grid's rows, a whole block of 4 samples and a
                                 // partial one.
                                 LayerConfig{6, 2, 5, 24, 6, 2, 3, 1, true, true}}) {
        configs.push_back(c);
    }
    return configs;
}

class KernelChoice : public ::testing::TestWithParam<std::string> {};

TEST_P(KernelChoice, ForwardAndGradientsMatchReference) {
    const Choice choice(GetParam());
    for (const LayerConfig &c : float_configs()) {
        const testing::LayerTensors t = testing::random_layer(c, 31);
        auto [indices, values] = reference::route_topk(t.routing, c.E);
        std::optional<at::Tensor> gate;
        if (c.weighted) gate = values;
        std::ostringstream label;
        label << GetParam() << " " << c;
        EXPECT_TRUE(reference::compare(smoe::forward(t.x, t.weight, indices, gate, c.F),
                                       reference::forward(t.x, t.weight, indices, gate, c.F), 1e-5)
                        .empty())
            << label.str() << " forward";

        at::manual_seed(32);
        const at::Tensor grad_y = at::randn({c.B, c.E * c.F, c.H, c.W});
        at::Tensor x = t.x.clone().requires_grad_(), weight = t.weight.clone().requires_grad_();
        at::Tensor rx = t.x.clone().requires_grad_(), rweight = t.weight.clone().requires_grad_();
        std::get<0>(smoe::spatial_moe(x, weight, t.routing, c.E, c.F, c.weighted)).backward(grad_y);
        std::get<0>(reference::spatial_moe(rx, rweight, t.routing, c.E, c.F, c.weighted)).backward(grad_y);
        EXPECT_TRUE(reference::compare(x.grad(), rx.grad(), 2e-5).empty()) << label.str() << " grad_x";
        EXPECT_TRUE(reference::compare(weight.grad(), rweight.grad(), 2e-5).empty()) << label.str() << " grad_weight";
    }
}

// Under and from 8 samples (the expert groups' two orders), and on one thread as on all.
TEST_P(KernelChoice, BitwiseDeterministic) {
    const Choice choice(GetParam());
    for (const LayerConfig &c : {LayerConfig{6, 32, 5, 21, 10, 5, 3, 1, true, false},
                                 LayerConfig{8, 32, 4, 37, 10, 5, 3, 1, true, false}}) {
        const testing::LayerTensors t = testing::random_layer(c, 33);
        auto [indices, values] = reference::route_topk(t.routing, c.E);
        const at::Tensor grad_y = at::randn({c.B, c.E, c.H, c.W});
        const std::array<bool, 3> mask = {true, true, false};
        auto run = [&] {
            at::Tensor y = smoe::forward(t.x, t.weight, indices, std::nullopt, 1);
            auto [gx, gw, gr, loss] = smoe::spatial_moe_backward(grad_y, t.x, t.weight, indices, std::nullopt,
                                                                 std::nullopt, 1, {}, mask);
            return std::tuple{y, gx, gw};
        };
        const auto [y0, gx0, gw0] = run();
        for (int repeat = 0; repeat < 3; ++repeat) {
            const auto [y, gx, gw] = run();
            EXPECT_TRUE(at::equal(y, y0) && at::equal(gx, gx0) && at::equal(gw, gw0)) << GetParam() << " " << c;
        }
        // One thread sums in the same order.
        const int threads = at::get_num_threads();
        at::set_num_threads(1);
        const auto [y1, gx1, gw1] = run();
        at::set_num_threads(threads);
        EXPECT_TRUE(at::equal(y1, y0) && at::equal(gx1, gx0) && at::equal(gw1, gw0)) << GetParam() << " " << c
                                                                                      << ", one thread";
    }
}

// The dense rows spread dŷ to every expert row before the product: an expert that a pixel selects
// in two slots gets both, as in the regular kernel.
TEST(KernelChoiceApi, DenseRowsCountAnExpertSelectedTwice) {
    const LayerConfig c{3, 24, 4, 9, 6, 3, 3, 2, true, false};
    const testing::LayerTensors t = testing::random_layer(c, 35);
    at::Tensor indices = std::get<0>(reference::route_topk(t.routing, c.E)).clone();
    indices.select(0, 2).copy_(indices.select(0, 0));  // slot 2 repeats slot 0's expert everywhere
    const at::Tensor grad_y = at::randn({c.B, c.E * c.F, c.H, c.W});
    const std::array<bool, 3> mask = {false, true, false};
    auto grad_weight = [&](const std::string &choice) {
        const Choice chosen(choice);
        return std::get<1>(smoe::spatial_moe_backward(grad_y, t.x, t.weight, indices, std::nullopt, std::nullopt,
                                                      c.F, {}, mask));
    };
    const at::Tensor regular = grad_weight("regular");
    ASSERT_GT(regular.abs().max().item<double>(), 0.0);
    EXPECT_TRUE(reference::compare(grad_weight("dense_rows"), regular, 2e-5).empty());
}

INSTANTIATE_TEST_SUITE_P(Choices, KernelChoice, ::testing::ValuesIn(choices()),
                         [](const auto &info) { return info.param; });

TEST(KernelChoiceApi, EveryOpWithVariantsHasAFormulation) {
    std::set<std::string> ops;
    for (const runtime::FormulationVariantInfo &v : runtime::formulation_variants()) ops.insert(v.op);
    EXPECT_EQ(ops, (std::set<std::string>{"backward_data", "backward_weight", "forward"}));
    EXPECT_FALSE(smoe::kernel_variants().empty());
}

TEST(KernelChoiceApi, UnknownNamesAreRefused) {
    try {
        smoe::set_kernel_variant("fastest");
        FAIL() << "no error";
    } catch (const c10::Error &e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("'fastest' is not a kernel choice"), std::string::npos) << message;
        EXPECT_NE(message.find("channel_dots"), std::string::npos) << message;
    }
    EXPECT_EQ(runtime::kernel_variant(), "auto");
}

// With measurement on (the suite points SMOE_KERNEL_CACHE at a file of its own), a new shape is
// measured once and filed under this CPU, the kernels' target and fingerprint and the candidates:
// the file gains one line for it (none when an earlier run of the suite filed it already), and
// every later call reuses the choice.
int lines_with(const std::string &path, const std::string &text) {
    std::ifstream in(path);
    std::string line;
    int count = 0;
    while (std::getline(in, line)) count += line.find(text) != std::string::npos;
    return count;
}

TEST(KernelChoiceApi, MeasuredChoicesAreFiledOnce) {
    const std::string path = smoe::kernel_choice_cache();
    ASSERT_NE(path, "off") << "the suite runs with measurement on";
    const LayerConfig c{2, 19, 3, 23, 7, 3, 3, 1, true, false};
    const testing::LayerTensors t = testing::random_layer(c, 35);
    auto [indices, values] = reference::route_topk(t.routing, c.E);
    const std::string filed =
        runtime::kernel_filing_prefix() + " forward shared gated 23x3x19x2 3x3x19x7 23x3x3x2 F1 among regular,";
    // Lines of builds with other candidates match too: at most one line is added, and only once.
    const int before = lines_with(path, filed);
    for (int repeat = 0; repeat < 3; ++repeat) smoe::forward(t.x, t.weight, indices, std::nullopt, 1);
    const int filed_lines = lines_with(path, filed);
    EXPECT_GE(filed_lines, 1) << path;
    EXPECT_LE(filed_lines - before, 1) << path;
    for (int repeat = 0; repeat < 3; ++repeat) smoe::forward(t.x, t.weight, indices, std::nullopt, 1);
    EXPECT_EQ(lines_with(path, filed), filed_lines) << path;
    // A layer that differs only in E (4 of the 7 experts selected, not 3) is measured apart.
    auto [indices_e4, values_e4] = reference::route_topk(t.routing, 4);
    smoe::forward(t.x, t.weight, indices_e4, std::nullopt, 1);
    EXPECT_GE(lines_with(path, runtime::kernel_filing_prefix() +
                                   " forward shared gated 23x3x19x2 3x3x19x7 23x3x4x2 F1 among regular,"),
              1)
        << path;
    // The target is one of the build's, and this CPU runs it (the suite's CPUs run baseline x86-64).
    EXPECT_TRUE(runtime::cpu_runs_target(runtime::kernel_cpu_target().c_str())) << runtime::kernel_cpu_target();
}

// The measurement times further only the candidates whose warm-up call was within 4x of the
// fastest one's, or short anyway; the fastest is always among them.
TEST(KernelChoiceApi, HopelessCandidatesAreNotTimedFurther) {
    using runtime::candidates_worth_timing;
    // The heat demo's forward at 2,000 samples and one channel: regular, union tiles, channel dots.
    EXPECT_EQ(candidates_worth_timing({0.058, 0.034, 0.386, 0.379}), (std::vector<bool>{true, true, false, false}));
    EXPECT_EQ(candidates_worth_timing({0.4, 0.1, 0.41}), (std::vector<bool>{true, true, false}));
    // Calls of 10 ms or less are timed however slow against the others.
    EXPECT_EQ(candidates_worth_timing({0.0001, 0.009, 0.011}), (std::vector<bool>{true, true, false}));
    EXPECT_EQ(candidates_worth_timing({0.5}), std::vector<bool>{true});
    EXPECT_TRUE(candidates_worth_timing({}).empty());
}

}  // namespace
}  // namespace smoe
