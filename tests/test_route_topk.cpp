// smoe::route_topk returns the top-E experts per pixel, best first, ties to the lower index;
// smoe::route_topk_indices the same indices alone.
#include <gtest/gtest.h>

#include <limits>

#include "layer_config.h"
#include "reference.h"
#include "smoe_ops.h"

namespace smoe {
namespace {

using testing::LayerConfig;

void expect_routing_matches(const at::Tensor &routing, int64_t E, const std::string &label) {
    auto [indices, values] = smoe::route_topk(routing, E);
    auto [expected_indices, expected_values] = reference::route_topk(routing, E);
    ASSERT_EQ(indices.scalar_type(), at::kInt) << label;
    ASSERT_EQ(values.scalar_type(), routing.scalar_type()) << label;
    const std::string index_mismatch = reference::compare(indices, expected_indices, 0.0);
    EXPECT_TRUE(index_mismatch.empty()) << label << " indices: " << index_mismatch;
    const at::Tensor indices_alone = smoe::route_topk_indices(routing, E);
    EXPECT_EQ(indices_alone.sizes(), expected_indices.sizes()) << label;
    EXPECT_TRUE(at::equal(indices_alone, indices)) << label << " route_topk_indices";
    EXPECT_TRUE(at::equal(values.isnan(), expected_values.isnan())) << label;
    const at::Tensor finite = expected_values.isfinite();
    EXPECT_TRUE(at::equal(values.masked_select(finite), expected_values.masked_select(finite))) << label << " values";
}

class RouteTopKMatchesReference : public ::testing::TestWithParam<LayerConfig> {};

TEST_P(RouteTopKMatchesReference, OnRandomScores) {
    const LayerConfig &c = GetParam();
    const testing::LayerTensors t = testing::random_layer(c, 5);
    std::ostringstream label;
    label << c;
    expect_routing_matches(t.routing, c.E, label.str());
}

INSTANTIATE_TEST_SUITE_P(Layers, RouteTopKMatchesReference, ::testing::ValuesIn(testing::layer_configs(20)),
                         [](const auto &info) {
                             std::ostringstream name;
                             name << info.index << "_" << info.param;
                             return name.str();
                         });

TEST(RouteTopKTies, EqualScoresRankTheLowerExpertFirst) {
    at::manual_seed(1);
    // Scores from a handful of values: most pixels have many ties.
    const at::Tensor routing = at::randint(0, 3, {9, 5, 6}).to(at::kFloat);
    for (int64_t E : {1, 4, 9}) expect_routing_matches(routing, E, "E=" + std::to_string(E));
    const at::Tensor constant = at::zeros({6, 2, 3});
    auto [indices, values] = smoe::route_topk(constant, 4);
    EXPECT_TRUE(at::equal(indices, at::arange(4, at::kInt).view({4, 1, 1}).expand({4, 2, 3})));
}

TEST(RouteTopKTies, NegativeZeroEqualsZero) {
    at::Tensor routing = at::zeros({4, 1, 2});
    routing[0].fill_(-0.0);
    routing[2].fill_(-1.0);
    auto [indices, values] = smoe::route_topk(routing, 3);
    EXPECT_TRUE(at::equal(indices.select(1, 0).select(1, 0), at::tensor({0, 1, 3}, at::kInt)));
}

TEST(RouteTopKSpecialValues, InfinitiesAndNaNRankLikeTorch) {
    at::Tensor routing = at::randn({7, 3, 4}, at::kDouble);
    routing[1].fill_(INFINITY);
    routing[4].fill_(-INFINITY);
    routing.select(1, 2).select(1, 3)[5] = NAN;  // NaN ranks above everything, as in torch.sort
    for (int64_t E : {1, 3, 7}) expect_routing_matches(routing, E, "E=" + std::to_string(E));
}

TEST(RouteTopKLayouts, SharedAndPerSampleAgree) {
    at::manual_seed(2);
    const at::Tensor shared = at::randn({12, 5, 7});
    auto [shared_indices, shared_values] = smoe::route_topk(shared, 5);
    auto [batch_indices, batch_values] = smoe::route_topk(shared.unsqueeze(0).repeat({3, 1, 1, 1}), 5);
    for (int64_t b = 0; b < 3; ++b) {
        EXPECT_TRUE(at::equal(batch_indices[b], shared_indices));
        EXPECT_TRUE(at::equal(batch_values[b], shared_values));
    }
}

// Many experts against few selected: the CPU selects the E best first (runtime/kernel_registry.cpp),
// then ranks them. Ties across the threshold, special values, both routings and every CPU dtype.
TEST(RouteTopKSelection, TiesAtTheThresholdKeepTheLowerExperts) {
    at::manual_seed(11);
    const at::Tensor routing = at::randint(0, 4, {256, 3, 21}).to(at::kFloat);  // 64 of each score
    for (int64_t E : {1, 8, 63, 64, 65, 100, 200, 256}) expect_routing_matches(routing, E, "E=" + std::to_string(E));
    expect_routing_matches(at::zeros({300, 2, 5}), 17, "all equal");
}

// The threshold passes split the experts among independent counts (schedules/cpu/
// route_selection_cpu.cpp): expert counts that leave a remainder, with ties at the threshold.
TEST(RouteTopKSelection, ExpertCountsThatDoNotSplitEvenly) {
    at::manual_seed(14);
    for (int64_t experts : {129, 130, 131, 133}) {
        const std::string label = "NE=" + std::to_string(experts);
        expect_routing_matches(at::randn({experts, 3, 11}), 9, label);
        expect_routing_matches(at::randint(0, 3, {experts, 2, 9}).to(at::kFloat), 20, label + " ties");
    }
}

TEST(RouteTopKSelection, SpecialValuesAndDtypes) {
    at::manual_seed(12);
    for (const at::ScalarType dtype : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
        at::Tensor routing = at::randn({160, 4, 9}).to(dtype);
        routing.select(0, 3).fill_(std::numeric_limits<double>::infinity());
        routing.select(0, 7).fill_(-std::numeric_limits<double>::infinity());
        routing.select(0, 90).select(0, 1).fill_(std::numeric_limits<double>::quiet_NaN());
        routing.select(0, 11).fill_(0.0);
        routing.select(0, 12).fill_(-0.0);
        for (int64_t E : {1, 5, 20}) {
            try {
                expect_routing_matches(routing, E, std::string(c10::toString(dtype)) + " E=" + std::to_string(E));
            } catch (const c10::Error &e) {
                // A build without this dtype's kernels (SMOE_CPU_DTYPES) refuses it by name.
                EXPECT_NE(std::string(e.what()).find("SMOE_CPU_DTYPES"), std::string::npos) << e.what();
            }
        }
    }
}

TEST(RouteTopKSelection, PerSampleRouting) {
    at::manual_seed(13);
    expect_routing_matches(at::randn({3, 512, 5, 17}), 64, "per-sample NE=512");
}

TEST(RouteTopKPaperLayers, WeatherbenchSized) {
    at::manual_seed(3);
    expect_routing_matches(at::randn({256, 32, 64}), 128, "weatherbench");
    expect_routing_matches(at::randn({8, 128, 32, 32}), 64, "per-sample cifar");
}

}  // namespace
}  // namespace smoe
