// The error quantile against torch.quantile (and a sort above 2^24 values), and the one-pass
// backward with damping and the RC loss against the paper's two-pass procedure
// (reference::two_pass_backward).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "layer_config.h"
#include "modules.h"
#include "reference.h"
#include "smoe_ops.h"

namespace smoe {
namespace {

using testing::LayerConfig;

// Error signals with what makes quantiles hard: many exact ties and exact zeros.
enum class Pattern { normal, ties, zeros };

at::Tensor error_signal(at::IntArrayRef shape, Pattern pattern, at::ScalarType dtype, uint64_t seed) {
    at::manual_seed(seed);
    at::Tensor v = at::randn(shape, at::TensorOptions().dtype(dtype));
    if (pattern == Pattern::ties) v = at::round(v * 4) / 4;             // few distinct values
    if (pattern == Pattern::zeros) v = v * (at::rand(shape, v.options()) < 0.4);  // 60% exact zeros
    return v;
}

struct QuantileCase {
    int64_t B, N;
    double q;
    Pattern pattern;
    at::ScalarType dtype;
    bool product;
};

TEST(ErrorQuantile, MatchesTorchQuantile) {
    std::vector<QuantileCase> cases;
    for (double q : {0.0, 0.3, 0.5, 0.7, 1.0, 0.123456}) {
        for (Pattern p : {Pattern::normal, Pattern::ties, Pattern::zeros}) {
            cases.push_back({3, 1000, q, p, at::kFloat, false});
            cases.push_back({2, 4097, q, p, at::kFloat, true});
            cases.push_back({2, 777, q, p, at::kDouble, false});
        }
    }
    cases.push_back({1, 1, 0.7, Pattern::normal, at::kFloat, false});
    cases.push_back({5, 2, 0.5, Pattern::normal, at::kFloat, false});
    cases.push_back({20, 100, 0.7, Pattern::ties, at::kFloat, false});
    cases.push_back({4, 1 << 18, 0.7, Pattern::normal, at::kFloat, false});
    uint64_t seed = 100;
    for (const QuantileCase &c : cases) {
        const at::Tensor dy = error_signal({c.B, c.N}, c.pattern, c.dtype, ++seed);
        const at::Tensor u = error_signal({c.B, c.N}, Pattern::normal, c.dtype, ++seed);
        const double scale = 0.5 * static_cast<double>(dy.numel());
        const at::Tensor signal = c.product ? dy * u : dy;
        const at::Tensor expected = at::quantile(signal.abs() * scale, c.q, 1, false, "linear");
        const at::Tensor actual =
            smoe::error_quantile(dy, c.product ? std::optional<at::Tensor>(u) : std::nullopt, c.q, scale);
        // torch's own lerp may or may not fuse its multiply-add depending on the batch size: 1 ulp.
        const double tolerance = c.dtype == at::kDouble ? 1e-15 : 2e-7;
        EXPECT_TRUE(at::allclose(actual, expected, tolerance, 0))
            << "B=" << c.B << " N=" << c.N << " q=" << c.q << " pattern=" << static_cast<int>(c.pattern)
            << " product=" << c.product << "\nactual " << actual << "\nexpected " << expected;
    }
}

TEST(ErrorQuantile, OnAFourDimensionalErrorSignalLikeDy) {
    const at::Tensor dy = error_signal({4, 6, 9, 11}, Pattern::ties, at::kFloat, 7);
    const double scale = 0.5 * static_cast<double>(dy.numel());
    EXPECT_TRUE(at::equal(smoe::error_quantile(dy, std::nullopt, 0.7, scale),
                          at::quantile((dy.abs() * scale).reshape({4, -1}), 0.7, 1)));
}

TEST(ErrorQuantile, AnyNaNInASampleGivesNaNLikeTorch) {
    for (uint64_t seed = 0; seed < 20; ++seed) {
        at::manual_seed(seed);
        at::Tensor dy = at::randn({3, 50});
        dy[1][17] = std::numeric_limits<float>::quiet_NaN();
        const at::Tensor q = smoe::error_quantile(dy, std::nullopt, 0.3, 1.0);
        const at::Tensor expected = at::quantile(dy.abs(), 0.3, 1);
        EXPECT_FALSE(std::isnan(q[0].item<float>()));
        EXPECT_TRUE(std::isnan(q[1].item<float>()));
        EXPECT_FALSE(std::isnan(q[2].item<float>()));
        // torch's lerp may or may not fuse its multiply-add: within 1 ulp.
        EXPECT_NEAR(q[0].item<float>(), expected[0].item<float>(), 2e-7 * std::abs(expected[0].item<float>()));
        EXPECT_NEAR(q[2].item<float>(), expected[2].item<float>(), 2e-7 * std::abs(expected[2].item<float>()));
    }
}

// torch.quantile refuses more than 2^24 values per sample; the selection does not. Checked against
// a sort, with torch.quantile's arithmetic: q rounded to float32, the rank q·(N−1) in float64.
TEST(ErrorQuantile, BeyondTwoToTheTwentyFourValuesMatchesASort) {
    const int64_t N = (int64_t{1} << 24) + 12345;
    const at::Tensor dy = error_signal({1, N}, Pattern::ties, at::kFloat, 11);
    const at::Tensor sorted = std::get<0>(at::sort(dy.abs().flatten()));
    for (double q : {0.0, 0.3, 0.7, 0.999999, 1.0}) {
        const double pos = static_cast<double>(static_cast<float>(q)) * static_cast<double>(N - 1);
        const int64_t lo = static_cast<int64_t>(std::floor(pos)), hi = static_cast<int64_t>(std::ceil(pos));
        const float low = sorted[lo].item<float>(), high = sorted[hi].item<float>();
        const float fraction = static_cast<float>(pos - std::floor(pos));
        const float expected = fraction < 0.5f ? low + fraction * (high - low) : high - (high - low) * (1 - fraction);
        EXPECT_EQ(smoe::error_quantile(dy, std::nullopt, q, 1.0)[0].item<float>(), expected) << "q=" << q;
    }
}

// ---- The one-pass backward against the two-pass reference -------------------------------------

struct RCCase {
    LayerConfig layer;
    reference::TwoPassOptions options;
    Pattern pattern;
};

std::ostream &operator<<(std::ostream &out, const RCCase &c) {
    out << c.layer << (c.options.rc_loss ? "_rc" : "_straight");
    if (c.options.damping) out << "_damp" << *c.options.damping;
    return out << "_q" << c.options.quantile << "_w" << c.options.rc_weight << "_ls" << c.options.loss_scale
               << "_pattern" << static_cast<int>(c.pattern);
}

std::vector<RCCase> rc_cases() {
    using O = reference::TwoPassOptions;
    std::vector<RCCase> cases = {
        // The heat layer and the paper's defaults.
        {{4, 1, 16, 16, 3, 1, 3, 1, true, false}, O{true, 1.0, 0.7, 0.1}, Pattern::normal},
        {{4, 1, 16, 16, 3, 1, 3, 1, true, false}, O{true, 1.0, 0.3, 0.0}, Pattern::normal},
        {{2, 3, 9, 7, 5, 2, 3, 1, true, false}, O{true, 1.0, 0.0, 0.1}, Pattern::normal},
        {{2, 3, 9, 7, 5, 2, 3, 1, true, false}, O{true, 1.0, 1.0, 0.1}, Pattern::normal},
        // Ties and exact zeros in dy.
        {{3, 2, 8, 8, 4, 2, 3, 1, true, false}, O{true, 1.0, 0.7, 0.1}, Pattern::ties},
        {{3, 2, 8, 8, 4, 2, 3, 1, true, false}, O{true, 1.0, 0.3, 0.1}, Pattern::zeros},
        {{3, 2, 8, 8, 4, 2, 3, 1, false, false}, O{true, 1.0, 0.7, 0.5}, Pattern::zeros},
        {{2, 4, 6, 10, 6, 3, 3, 1, true, true}, O{true, 1.0, 0.7, 0.1}, Pattern::ties},
        // F = 2: a slot is correct only when both its channels are.
        {{2, 3, 7, 9, 4, 2, 3, 2, true, false}, O{true, 1.0, 0.7, 0.1}, Pattern::normal},
        {{2, 3, 7, 9, 4, 2, 3, 2, false, true}, O{true, 1.0, 0.3, 0.1}, Pattern::ties},
        // Weighted: ε = dy·u for the gate; damping still on dy.
        {{3, 2, 8, 6, 5, 2, 3, 1, true, true}, O{true, 1.0, 0.7, 0.1}, Pattern::normal},
        {{3, 2, 8, 6, 5, 2, 5, 1, true, true}, O{true, 2.5, 0.3, std::nullopt}, Pattern::normal},
        // Per-sample routing.
        {{3, 2, 8, 6, 5, 2, 3, 1, false, false}, O{true, 1.0, 0.7, 0.1}, Pattern::normal},
        {{3, 2, 8, 6, 5, 2, 3, 1, false, true}, O{true, 1.0, 0.7, 0.1}, Pattern::normal},
        {{2, 1, 5, 5, 3, 2, 1, 1, false, false}, O{true, 1.0, 1.0, 0.1}, Pattern::zeros},
        // RC weight, error scale and an AMP loss scale.
        {{2, 3, 9, 7, 5, 2, 3, 1, true, false}, O{true, 0.25, 0.7, 0.1, 100.0}, Pattern::normal},
        {{2, 3, 9, 7, 5, 2, 3, 1, true, false}, O{true, 1.0, 0.7, 0.1, std::nullopt, 1024.0}, Pattern::normal},
        // Damping alone, RC alone.
        {{2, 3, 9, 7, 5, 2, 3, 1, true, false}, O{false, 1.0, 0.7, 0.1}, Pattern::normal},
        {{2, 3, 9, 7, 5, 2, 3, 1, false, true}, O{false, 1.0, 0.3, 0.2}, Pattern::ties},
        {{2, 3, 9, 7, 5, 2, 3, 1, true, false}, O{true, 1.0, 0.7, std::nullopt}, Pattern::normal},
        // K = 1 and 7, E = NE - 1, larger banks.
        {{2, 4, 10, 10, 8, 7, 1, 1, true, false}, O{true, 1.0, 0.7, 0.1}, Pattern::normal},
        {{2, 2, 12, 9, 6, 3, 7, 1, true, false}, O{true, 1.0, 0.7, 0.1}, Pattern::normal},
        {{4, 16, 8, 16, 32, 8, 3, 1, true, false}, O{true, 1.0, 0.7, 0.1}, Pattern::normal},
        // float64.
        {{2, 3, 6, 6, 4, 2, 3, 1, true, false, at::kDouble}, O{true, 1.0, 0.7, 0.1}, Pattern::ties},
        {{2, 3, 6, 6, 4, 2, 3, 2, false, true, at::kDouble}, O{true, 1.0, 0.3, 0.1}, Pattern::normal},
    };
    return cases;
}

class OneBackwardMatchesTwoPasses : public ::testing::TestWithParam<RCCase> {};

TEST_P(OneBackwardMatchesTwoPasses, GradientsAndLoss) {
    const RCCase &c = GetParam();
    const LayerConfig &l = c.layer;
    const testing::LayerTensors t = testing::random_layer(l, 31);
    const at::Tensor grad_y = error_signal({l.B, l.E * l.F, l.H, l.W}, c.pattern, l.dtype, 32);
    const reference::TwoPassGradients expected =
        reference::two_pass_backward(t.x, t.weight, t.routing, l.E, l.F, l.weighted, grad_y, c.options);

    at::Tensor x = t.x.clone().requires_grad_(), weight = t.weight.clone().requires_grad_(),
               routing = t.routing.clone().requires_grad_();
    const BackwardOptions options{c.options.rc_loss,     c.options.rc_weight,   c.options.quantile,
                                  c.options.damping,     c.options.error_scale, c.options.loss_scale};
    auto [y, indices, rc_loss] = smoe::spatial_moe(x, weight, routing, l.E, l.F, l.weighted, options);
    EXPECT_EQ(rc_loss.item<double>(), 0.0) << "the RC loss is known only after the backward";
    y.backward(grad_y);

    const double tolerance = l.dtype == at::kDouble ? 1e-11 : 2e-5;
    for (auto [name, actual, wanted] : {std::tuple{"grad_x", x.grad(), expected.grad_x},
                                        std::tuple{"grad_weight", weight.grad(), expected.grad_weight},
                                        std::tuple{"grad_routing", routing.grad(), expected.grad_routing}}) {
        const std::string mismatch = reference::compare(actual, wanted, tolerance);
        EXPECT_TRUE(mismatch.empty()) << name << ": " << mismatch;
    }
    if (c.options.rc_loss) {
        EXPECT_NEAR(rc_loss.item<double>(), expected.rc_loss.item<double>(),
                    tolerance * std::max(1.0, expected.rc_loss.item<double>()));
    } else {
        EXPECT_EQ(rc_loss.item<double>(), 0.0);
    }
}

INSTANTIATE_TEST_SUITE_P(Layers, OneBackwardMatchesTwoPasses, ::testing::ValuesIn(rc_cases()),
                         [](const auto &info) {
                             std::ostringstream name;
                             name << info.index << "_" << info.param;
                             std::string s = name.str();
                             for (char &ch : s) {
                                 if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                             }
                             return s;
                         });

// Damping reaches only the experts: with δ = 0 and q = 0 only the errors within the tolerance of
// the smallest |dy| survive, so the expert gradients are the plain ones of that masked error, while
// the straight-through gate gradient is untouched.
TEST(Damping, FullDampingKeepsOnlyTheSmallestErrors) {
    const LayerConfig l{2, 3, 6, 6, 4, 2, 3, 1, true, false};
    const testing::LayerTensors t = testing::random_layer(l, 41);
    const at::Tensor grad_y = at::round(at::randn({l.B, l.E, l.H, l.W}) * 2) / 2 + 10;  // ties at the minimum
    BackwardOptions options;
    options.quantile = 0.0;
    options.damping = 0.0;
    auto [indices, values] = smoe::route_topk(t.routing, l.E);
    auto [grad_x, grad_weight, grad_routing, rc_loss] = smoe::spatial_moe_backward(
        grad_y, t.x, t.weight, indices, std::nullopt, std::nullopt, l.F, options, {true, true, true});
    EXPECT_FALSE(rc_loss.defined());

    const double s = static_cast<double>(grad_y.numel()) / 2;
    const at::Tensor magnitude = grad_y.abs() * s;
    const at::Tensor kept = grad_y * (magnitude <= magnitude.reshape({l.B, -1}).amin(1).view({l.B, 1, 1, 1}) + 1e-3);
    ASSERT_GT(kept.count_nonzero().item<int64_t>(), 0);
    auto [expected_x, expected_weight, plain_routing, unused] = smoe::spatial_moe_backward(
        kept, t.x, t.weight, indices, std::nullopt, std::nullopt, l.F, BackwardOptions{}, {true, true, true});
    EXPECT_TRUE(at::allclose(grad_x, expected_x, 1e-5, 1e-6));
    EXPECT_TRUE(at::allclose(grad_weight, expected_weight, 1e-5, 1e-6));
    auto straight = smoe::spatial_moe_backward(grad_y, t.x, t.weight, indices, std::nullopt, std::nullopt, l.F,
                                               BackwardOptions{}, {false, false, true});
    EXPECT_TRUE(at::equal(grad_routing, std::get<2>(straight)));
}

TEST(Damping, FactorOneIsBitwiseTheUndampedBackward) {
    const LayerConfig l{3, 4, 7, 9, 5, 2, 3, 1, true, true};
    const testing::LayerTensors t = testing::random_layer(l, 42);
    const at::Tensor grad_y = at::randn({l.B, l.E, l.H, l.W});
    auto [indices, values] = smoe::route_topk(t.routing, l.E);
    BackwardOptions damped;
    damped.damping = 1.0;
    auto a = smoe::spatial_moe_backward(grad_y, t.x, t.weight, indices, values, std::nullopt, l.F, damped,
                                        {true, true, true});
    auto b = smoe::spatial_moe_backward(grad_y, t.x, t.weight, indices, values, std::nullopt, l.F, BackwardOptions{},
                                        {true, true, true});
    EXPECT_TRUE(at::equal(std::get<0>(a), std::get<0>(b)));
    EXPECT_TRUE(at::equal(std::get<1>(a), std::get<1>(b)));
}

TEST(RCLoss, RunsOnlyWhereAskedAndIsDeterministic) {
    const LayerConfig l{4, 2, 9, 8, 6, 2, 3, 1, true, false};
    const testing::LayerTensors t = testing::random_layer(l, 43);
    const at::Tensor grad_y = at::randn({l.B, l.E, l.H, l.W});
    auto [indices, values] = smoe::route_topk(t.routing, l.E);
    BackwardOptions options;
    options.rc_loss = true;
    options.damping = 0.1;
    auto first = smoe::spatial_moe_backward(grad_y, t.x, t.weight, indices, std::nullopt, t.routing, l.F, options,
                                            {false, false, true});
    auto second = smoe::spatial_moe_backward(grad_y, t.x, t.weight, indices, std::nullopt, t.routing, l.F, options,
                                             {false, false, true});
    EXPECT_FALSE(std::get<0>(first).defined());
    EXPECT_FALSE(std::get<1>(first).defined());
    EXPECT_TRUE(at::equal(std::get<2>(first), std::get<2>(second)));
    EXPECT_TRUE(at::equal(std::get<3>(first), std::get<3>(second)));
}

// The module trains the paper's way by default and reports the RC loss after each backward.
TEST(RCLoss, ModuleReportsTheLossAfterBackward) {
    TensorRoutingGate gate(3, 1, 8, 8);
    SpatialMoE2d layer(SpatialMoE2dOptions(1, 3), gate);
    EXPECT_TRUE(layer->options.rc_loss());
    ASSERT_TRUE(layer->options.damping().has_value());
    EXPECT_DOUBLE_EQ(*layer->options.damping(), 0.1);
    EXPECT_DOUBLE_EQ(layer->options.quantile(), 0.7);
    const at::Tensor x = at::randn({4, 1, 8, 8});
    const at::Tensor y = layer->forward(x);
    EXPECT_EQ(layer->last_rc_loss().item<float>(), 0.0f);
    at::mse_loss(y, at::zeros_like(y)).backward();
    const float loss = layer->last_rc_loss().item<float>();
    EXPECT_TRUE(std::isfinite(loss));
    EXPECT_GT(loss, 0.0f);
    EXPECT_TRUE(gate->routing.grad().defined());
}

void expect_error(const std::function<void()> &call, const std::string &needle) {
    try {
        call();
        ADD_FAILURE() << "expected an error mentioning \"" << needle << "\"";
    } catch (const c10::Error &e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

TEST(RCLossErrors, OptionsOutOfRangeAreNamed) {
    const at::Tensor x = at::randn({2, 3, 6, 6}), weight = at::randn({4, 3, 3, 3}), routing = at::randn({4, 6, 6});
    auto call = [&](BackwardOptions o, int64_t E = 2) { smoe::spatial_moe(x, weight, routing, E, 1, false, o); };
    BackwardOptions o;
    o.quantile = 1.5;
    expect_error([&] { call(o); }, "'quantile' must lie in [0, 1]");
    o = {};
    o.damping = -0.1;
    expect_error([&] { call(o); }, "'damping' must lie in [0, 1]");
    o = {};
    o.error_scale = 0.0;
    expect_error([&] { call(o); }, "'error_scale' must be a finite number > 0");
    o = {};
    o.loss_scale = std::numeric_limits<double>::infinity();
    expect_error([&] { call(o); }, "'loss_scale' must be a finite number > 0");
    o = {};
    o.rc_loss = true;
    expect_error([&] { call(o, 4); }, "the RC loss needs more experts than are selected (NE > E)");
    expect_error([] { smoe::error_quantile(at::randn({3}), std::nullopt, 0.5, 1.0); },
                 "'grad_y' must have shape [B, ...]");
    expect_error([] { smoe::error_quantile(at::randn({3, 4}), std::nullopt, 0.5, -1.0); },
                 "'scale' must be a finite number > 0");
    expect_error([] { smoe::error_quantile(at::randn({3, 4}), at::randn({3, 5}), 0.5, 1.0); },
                 "'response' must have the shape of 'grad_y'");
}

}  // namespace
}  // namespace smoe
