// float16 and bfloat16 layers (storage types; the kernels compute in float32): every op equals the
// float32 op on the widened inputs, and the plain LibTorch reference on them (DESIGN.md §4, damping
// and the RC loss by the two-pass procedure), with its results rounded to the storage type. A
// rounded result may land one unit in the last place away from the rounded float32 one (the two
// sum in different orders), so tensors compare within one such unit of the largest value.
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>

#include "kernel_registry.h"
#include "layer_config.h"
#include "reference.h"
#include "smoe_ops.h"

namespace smoe {
namespace {

using testing::LayerConfig;

// One unit in the last place at 1 for each storage type.
double unit_of(at::ScalarType storage) {
    return storage == at::kBFloat16 ? 1.0 / 128 : 1.0 / 1024;
}

at::Tensor widened(const at::Tensor &t) {
    return t.to(at::kFloat);
}

struct HalfCase {
    LayerConfig layer;
    at::ScalarType storage;
    at::DeviceType device;
};

std::string case_name(const HalfCase &p) {
    std::ostringstream name;
    name << p.layer << (p.storage == at::kHalf ? "_as_f16" : "_as_bf16") << (p.device == at::kCUDA ? "_cuda" : "_cpu");
    return name.str();
}

// gtest prints parameters with this (else as raw bytes).
void PrintTo(const HalfCase &p, std::ostream *out) {
    *out << case_name(p);
}

std::vector<HalfCase> half_cases() {
    std::vector<HalfCase> cases;
    for (at::DeviceType device : {at::kCPU, at::kCUDA}) {
        for (const LayerConfig &c : testing::layer_configs(4)) {
            if (c.dtype != at::kFloat) continue;
            for (at::ScalarType storage : {at::kHalf, at::kBFloat16}) cases.push_back({c, storage, device});
        }
    }
    return cases;
}

// One layer in one storage type on one device, every op, against the float32 CPU kernels.
class HalfPrecisionMatchesFloat32 : public ::testing::TestWithParam<HalfCase> {
protected:
    void SetUp() override {
        const HalfCase &p = GetParam();
        if (p.device == at::kCUDA && !at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
        c = p.layer;
        storage = p.storage;
        device = at::Device(p.device, 0);
        tolerance = unit_of(storage);
        const testing::LayerTensors t = testing::random_layer(c, 5);
        x = t.x.to(storage);
        weight = t.weight.to(storage);
        routing = t.routing.to(storage);
        grad_y = at::randn({c.B, c.E * c.F, c.H, c.W}).to(storage);
    }

    at::Tensor on_device(const at::Tensor &t) const { return t.to(device); }

    void expect_close(const at::Tensor &actual, const at::Tensor &float32_result, const char *what,
                      double units = 1) const {
        ASSERT_EQ(actual.scalar_type(), storage) << what;
        const std::string mismatch =
            reference::compare(widened(actual.cpu()), widened(float32_result.to(storage)), units * tolerance);
        EXPECT_TRUE(mismatch.empty()) << what << ": " << mismatch;
    }

    LayerConfig c;
    at::ScalarType storage = at::kFloat;
    at::Device device = at::kCPU;
    double tolerance = 0;
    at::Tensor x, weight, routing, grad_y;
};

TEST_P(HalfPrecisionMatchesFloat32, EveryOp) {
    // Routing: that of the widened scores; the values are the stored scores.
    auto [indices, values] = smoe::route_topk(on_device(routing), c.E);
    auto [indices32, values32] = smoe::route_topk(widened(routing), c.E);
    EXPECT_TRUE(at::equal(indices.cpu(), indices32));
    ASSERT_EQ(values.scalar_type(), storage);
    EXPECT_TRUE(at::equal(widened(values.cpu()), values32));

    std::optional<at::Tensor> gate, gate32;
    if (c.weighted) {
        gate = values;
        gate32 = values32;
    }
    expect_close(smoe::forward(on_device(x), on_device(weight), indices, gate, c.F),
                 smoe::forward(widened(x), widened(weight), indices32, gate32, c.F), "y");

    // The quantile: that of the widened values, in float32.
    const at::Tensor quantile = smoe::error_quantile(on_device(grad_y), std::nullopt, 0.7, 3.0);
    ASSERT_EQ(quantile.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(quantile.cpu(), smoe::error_quantile(widened(grad_y), std::nullopt, 0.7, 3.0)));

    // The backward with damping, and with the RC loss where the layer allows it (NE > E) and the
    // signal is dy alone. With a weighted gate the signal dy·u uses the response u stored in the
    // storage type, so the gate's gradient is compared within a few units.
    BackwardOptions options;
    options.damping = 0.1;
    options.rc_loss = !c.weighted && c.NE > c.E;
    std::optional<at::Tensor> rc_routing, rc_routing32;
    if (options.rc_loss) {
        rc_routing = on_device(routing);
        rc_routing32 = widened(routing);
    }
    auto [grad_x, grad_weight, grad_routing, loss] =
        smoe::spatial_moe_backward(on_device(grad_y), on_device(x), on_device(weight), indices, gate, rc_routing,
                                   c.F, options, {true, true, true});
    auto [grad_x32, grad_weight32, grad_routing32, loss32] =
        smoe::spatial_moe_backward(widened(grad_y), widened(x), widened(weight), indices32, gate32, rc_routing32,
                                   c.F, options, {true, true, true});
    expect_close(grad_x, grad_x32, "grad_x");
    expect_close(grad_weight, grad_weight32, "grad_weight");
    expect_close(grad_routing, grad_routing32, "grad_routing", c.weighted ? 8 : 1);
    if (options.rc_loss) {
        ASSERT_EQ(loss.scalar_type(), at::kFloat);
        const std::string mismatch = reference::compare(loss.cpu(), loss32, 1e-6);
        EXPECT_TRUE(mismatch.empty()) << "rc loss: " << mismatch;
    }

    // And against the plain LibTorch reference (DESIGN.md §4) on the widened inputs, directly.
    auto [reference_indices, reference_values] = reference::route_topk(widened(routing), c.E);
    EXPECT_TRUE(reference::compare(indices.cpu(), reference_indices, 0.0).empty());
    std::optional<at::Tensor> reference_gate;
    if (c.weighted) reference_gate = reference_values;
    expect_close(smoe::forward(on_device(x), on_device(weight), indices, gate, c.F),
                 reference::forward(widened(x), widened(weight), reference_indices, reference_gate, c.F),
                 "y against the reference");
    reference::TwoPassOptions two_pass;
    two_pass.rc_loss = options.rc_loss;
    two_pass.damping = options.damping;
    const reference::TwoPassGradients expected = reference::two_pass_backward(
        widened(x), widened(weight), widened(routing), c.E, c.F, c.weighted, widened(grad_y), two_pass);
    expect_close(grad_x, expected.grad_x, "grad_x against the reference");
    expect_close(grad_weight, expected.grad_weight, "grad_weight against the reference");
    expect_close(grad_routing, expected.grad_routing, "grad_routing against the reference", c.weighted ? 8 : 1);
}

INSTANTIATE_TEST_SUITE_P(Layers, HalfPrecisionMatchesFloat32, ::testing::ValuesIn(half_cases()),
                         [](const auto &info) { return std::to_string(info.index) + "_" + case_name(info.param); });

// Results round to bfloat16 to nearest with ties to even, as torch rounds (infinities and overflow
// included): a 1×1 layer with one input and one output channel computes x·w exactly in float32 (two
// 8-bit significands), and its rounding must equal torch's. Random values hit about one tie in 256.
// NaN stays NaN (torch's own payloads differ between its scalar and vector paths), and the sum
// starts at +0, so -0·w gives +0 as in the float32 kernel.
TEST(HalfPrecisionRounding, BFloat16RoundsLikeTorch) {
    at::manual_seed(3);
    const at::Tensor x = at::cat({at::randn({8192}) * 1e3, at::tensor({NAN, INFINITY, -INFINITY, 0.f, -0.f, 1e-40f,
                                                                        3e38f, -3e38f})})
                             .to(at::kBFloat16)
                             .view({1, 1, 1, -1});
    const at::Tensor indices = at::zeros({1, 1, x.size(3)}, at::kInt);
    for (float w : {1.0078125f, 1.5f, -2.9921875f, 0.33203125f}) {
        const at::Tensor weight = at::full({1, 1, 1, 1}, w).to(at::kBFloat16);
        const at::Tensor y = smoe::forward(x, weight, indices);
        const at::Tensor expected = (x.to(at::kFloat) * weight.to(at::kFloat).item<float>()).to(at::kBFloat16);
        const at::Tensor nan = at::isnan(expected);
        EXPECT_TRUE(at::equal(at::isnan(y), nan)) << "w = " << w;
        EXPECT_TRUE(at::equal(widened(y).masked_fill(nan, 0), widened(expected).masked_fill(nan, 0))) << "w = " << w;
    }
}

// The bfloat16 forward's variants (channel dots on widened operands; pair dots with the bf16
// dot-product instruction) against the regular bfloat16 kernels, the float32 ones and the LibTorch
// reference on the widened inputs: all round float32 sums of exact products, in different orders, so they agree within one
// unit in the last place of the largest value. Shapes: whole blocks of 32 channels, a padded block,
// fewer channels than a block, odd K, F = 2, rows narrower and wider than a vector, both gatings;
// the variants serve shared routing, and the per-sample shapes check that such calls keep the
// regular kernels.
// float16's variants (the same float32 formulations on float16 storage) are checked the same way,
// to one float16 unit.
void expect_forward_variants_match(at::ScalarType dtype, const std::vector<runtime::HalfVariantInfo> &listed) {
    std::vector<std::string> variants;
    for (const runtime::HalfVariantInfo &v : listed) {
        if (std::string(v.op) == "forward" && v.shared_routing && !v.weighted) variants.push_back(v.name);
    }
    if (variants.empty()) GTEST_SKIP() << "this build or CPU has no " << c10::toString(dtype) << " forward variants";
    const LayerConfig configs[] = {
        {2, 32, 5, 19, 6, 3, 3, 1, true, false},  {3, 40, 4, 17, 5, 2, 3, 1, false, true},
        {1, 64, 6, 7, 8, 4, 1, 2, true, true},    {9, 96, 3, 33, 7, 3, 5, 1, false, false},
        {8, 128, 4, 16, 12, 6, 3, 1, true, true}, {4, 12, 5, 18, 6, 3, 3, 1, true, false},
        // 19 rows: the AMX kernels' windows of 16 grid rows and a last one of 3, with K = 5's reach.
        {2, 24, 19, 9, 6, 3, 5, 1, true, true},
    };
    for (const std::string &variant : variants) {
        for (const LayerConfig &c : configs) {
            const testing::LayerTensors t = testing::random_layer(c, 11);
            const at::Tensor x = t.x.to(dtype), weight = t.weight.to(dtype);
            auto [indices, values] = smoe::route_topk(t.routing.to(dtype), c.E);
            std::optional<at::Tensor> gate, gate32;
            if (c.weighted) {
                gate = values;
                gate32 = widened(values);
            }
            smoe::set_kernel_variant(variant);
            const at::Tensor y = smoe::forward(x, weight, indices, gate, c.F);
            smoe::set_kernel_variant("regular");
            const at::Tensor regular = smoe::forward(x, weight, indices, gate, c.F);
            smoe::set_kernel_variant("auto");
            const at::Tensor float32 = smoe::forward(widened(x), widened(weight), indices, gate32, c.F);
            std::ostringstream name;
            name << variant << " " << c;
            ASSERT_EQ(y.scalar_type(), dtype) << name.str();
            const double tolerance = unit_of(dtype);
            std::string mismatch = reference::compare(widened(y), widened(regular), tolerance);
            EXPECT_TRUE(mismatch.empty()) << name.str() << " against the regular kernel: " << mismatch;
            mismatch = reference::compare(widened(y), widened(float32.to(dtype)), tolerance);
            EXPECT_TRUE(mismatch.empty()) << name.str() << " against float32: " << mismatch;
            const at::Tensor expected = reference::forward(widened(x), widened(weight), indices, gate32, c.F);
            mismatch = reference::compare(widened(y), widened(expected.to(dtype)), tolerance);
            EXPECT_TRUE(mismatch.empty()) << name.str() << " against the reference: " << mismatch;
        }
    }
}

// The expert-side gradients' bfloat16 variants (channel axpys, slot and pair sweeps, amx_tiles) against the regular
// bfloat16 kernels, float32 and the LibTorch reference's two passes, within one unit as above,
// with damping.
void expect_gradient_variants_match(at::ScalarType dtype, const std::vector<runtime::HalfVariantInfo> &listed) {
    std::vector<std::string> variants;
    for (const runtime::HalfVariantInfo &v : listed) {
        if (std::string(v.op) != "forward" &&
            std::find(variants.begin(), variants.end(), v.name) == variants.end()) {
            variants.push_back(v.name);
        }
    }
    if (variants.empty()) GTEST_SKIP() << "this build or CPU has no " << c10::toString(dtype) << " gradient variants";
    const LayerConfig configs[] = {
        {2, 32, 5, 19, 6, 3, 3, 1, true, false}, {3, 40, 4, 17, 5, 2, 3, 1, false, true},
        {9, 24, 3, 33, 7, 3, 5, 2, true, true},  {8, 64, 4, 16, 12, 6, 3, 1, true, false},
        // 19 rows: the AMX kernels' windows of 16 grid rows and a last one of 3, with K = 5's reach.
        {2, 24, 19, 9, 6, 3, 5, 1, true, true},
    };
    BackwardOptions options;
    options.damping = 0.1;
    for (const std::string &variant : variants) {
        for (const LayerConfig &c : configs) {
            const testing::LayerTensors t = testing::random_layer(c, 13);
            const at::Tensor x = t.x.to(dtype), weight = t.weight.to(dtype);
            auto [indices, values] = smoe::route_topk(t.routing.to(dtype), c.E);
            const at::Tensor grad_y = at::randn({c.B, c.E * c.F, c.H, c.W}).to(dtype);
            std::optional<at::Tensor> gate, gate32;
            if (c.weighted) {
                gate = values;
                gate32 = widened(values);
            }
            auto gradients = [&](const std::string &choice) {
                smoe::set_kernel_variant(choice);
                auto [gx, gw, gr, loss] = smoe::spatial_moe_backward(grad_y, x, weight, indices, gate, std::nullopt,
                                                                     c.F, options, {true, true, false});
                smoe::set_kernel_variant("auto");
                return std::pair{gx, gw};
            };
            const auto [grad_x, grad_weight] = gradients(variant);
            const auto [regular_x, regular_weight] = gradients("regular");
            auto [grad_x32, grad_weight32, unused_routing, unused_loss] =
                smoe::spatial_moe_backward(widened(grad_y), widened(x), widened(weight), indices, gate32,
                                           std::nullopt, c.F, options, {true, true, false});
            reference::TwoPassOptions two_pass;
            two_pass.damping = options.damping;
            const reference::TwoPassGradients expected =
                reference::two_pass_backward(widened(x), widened(weight), widened(t.routing.to(dtype)), c.E,
                                             c.F, c.weighted, widened(grad_y), two_pass);
            std::ostringstream name;
            name << variant << " " << c;
            const double tolerance = unit_of(dtype);
            const std::pair<const char *, std::array<at::Tensor, 4>> checks[] = {
                {"grad_x", {grad_x, regular_x, grad_x32, expected.grad_x}},
                {"grad_weight", {grad_weight, regular_weight, grad_weight32, expected.grad_weight}},
            };
            for (const auto &[what, results] : checks) {
                std::string mismatch = reference::compare(widened(results[0]), widened(results[1]), tolerance);
                EXPECT_TRUE(mismatch.empty()) << name.str() << " " << what << " against the regular kernel: "
                                              << mismatch;
                mismatch = reference::compare(widened(results[0]), widened(results[2].to(dtype)), tolerance);
                EXPECT_TRUE(mismatch.empty()) << name.str() << " " << what << " against float32: " << mismatch;
                mismatch = reference::compare(widened(results[0]), widened(results[3].to(dtype)), tolerance);
                EXPECT_TRUE(mismatch.empty()) << name.str() << " " << what << " against the reference: " << mismatch;
            }
        }
    }
}

TEST(BFloat16ForwardVariants, MatchRegularKernels) {
    expect_forward_variants_match(at::kBFloat16, runtime::bf16_variants());
}
TEST(BFloat16GradientVariants, MatchRegularKernels) {
    expect_gradient_variants_match(at::kBFloat16, runtime::bf16_variants());
}
TEST(Float16ForwardVariants, MatchRegularKernels) {
    expect_forward_variants_match(at::kHalf, runtime::f16_variants());
}
TEST(Float16GradientVariants, MatchRegularKernels) {
    expect_gradient_variants_match(at::kHalf, runtime::f16_variants());
}

// The bf16 dot-product instruction and the AMX tiles read denormal bfloat16 inputs as zero (and
// flush denormal sums): a layer whose inputs are all denormal gives zeros under pair_dots and
// amx_tiles, where the regular kernels give the tiny exact products' sums.
TEST(BFloat16ForwardVariants, DotProductsReadDenormalsAsZero) {
    std::vector<std::string> variants;
    for (const runtime::HalfVariantInfo &v : runtime::bf16_variants()) {
        const std::string name = v.name;
        if (std::string(v.op) == "forward" && v.shared_routing && !v.weighted &&
            (name == "pair_dots" || name == "amx_tiles")) {
            variants.push_back(name);
        }
    }
    if (variants.empty()) GTEST_SKIP() << "this build or CPU has no bf16 dot-product or AMX kernels";
    EXPECT_EQ(smoe::bf16_dot_products(), std::find(variants.begin(), variants.end(), "pair_dots") != variants.end());
    const at::Tensor x = at::full({1, 32, 2, 3}, 1e-39f).to(at::kBFloat16);
    const at::Tensor weight = at::full({2, 32, 1, 1}, 1.0f).to(at::kBFloat16);
    const at::Tensor indices = at::zeros({1, 2, 3}, at::kInt);
    ASSERT_GT(widened(x).abs().min().item<float>(), 0.f);
    smoe::set_kernel_variant("regular");
    const at::Tensor regular = widened(smoe::forward(x, weight, indices));
    EXPECT_GT(regular.min().item<float>(), 0.f);
    for (const std::string &variant : variants) {
        smoe::set_kernel_variant(variant);
        const at::Tensor y = widened(smoe::forward(x, weight, indices));
        EXPECT_TRUE(at::equal(y, at::zeros({1, 1, 2, 3}))) << variant << ": " << y;
    }
    smoe::set_kernel_variant("auto");
}

// The same for the gradients: an input of denormal bfloat16 values gives a zero weight gradient
// under the pair sweeps and the weight gradient's amx_tiles, and a bank of denormal values a zero
// data gradient under the data gradient's amx_tiles; the regular kernels give the tiny exact sums.
TEST(BFloat16GradientVariants, DotProductsReadDenormalsAsZero) {
    std::vector<std::pair<std::string, std::string>> variants;  // (op, name)
    for (const runtime::HalfVariantInfo &v : runtime::bf16_variants()) {
        const std::string op = v.op, name = v.name;
        if (v.shared_routing && !v.weighted &&
            ((op == "backward_weight" && (name.rfind("pair_sweeps", 0) == 0 || name == "amx_tiles")) ||
             (op == "backward_data" && name == "amx_tiles"))) {
            variants.emplace_back(op, name);
        }
    }
    if (variants.empty()) GTEST_SKIP() << "this build or CPU has no bf16 dot-product or AMX gradients";
    const at::Tensor denormal_x = at::full({2, 32, 2, 3}, 1e-39f).to(at::kBFloat16);
    const at::Tensor denormal_weight = at::full({2, 32, 1, 1}, 1e-39f).to(at::kBFloat16);
    const at::Tensor x = at::full({2, 32, 2, 3}, 1.0f).to(at::kBFloat16);
    const at::Tensor weight = at::full({2, 32, 1, 1}, 1.0f).to(at::kBFloat16);
    const at::Tensor indices = at::zeros({1, 2, 3}, at::kInt);
    const at::Tensor grad_y = at::ones({2, 1, 2, 3}).to(at::kBFloat16);
    auto gradient = [&](const std::string &op, const std::string &choice) {
        const bool weight_side = op == "backward_weight";
        smoe::set_kernel_variant(choice);
        auto [gx, gw, gr, loss] = smoe::spatial_moe_backward(
            grad_y, weight_side ? denormal_x : x, weight_side ? weight : denormal_weight, indices, std::nullopt,
            std::nullopt, 1, BackwardOptions{}, {!weight_side, weight_side, false});
        smoe::set_kernel_variant("auto");
        return weight_side ? widened(gw)[0] : widened(gx);  // the weight's row 0: the expert selected
    };
    for (const auto &[op, name] : variants) {
        if (name.rfind("pair_sweeps", 0) == 0) EXPECT_TRUE(smoe::bf16_dot_products());
        EXPECT_GT(gradient(op, "regular").abs().min().item<float>(), 0.f) << op;
        const at::Tensor g = gradient(op, name);
        EXPECT_TRUE(at::equal(g, at::zeros_like(g))) << op << " " << name << ": " << g;
    }
}

}  // namespace
}  // namespace smoe
