// smoe::spatial_moe (the layer: routing + forward) and smoe::spatial_moe_backward: argument
// checks and the CPU, CUDA and Meta implementations. Autograd: autograd/spatial_moe_autograd.cpp.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <limits>

#include "checks.h"
#include "halide_call.h"
#include "kernel_registry.h"
#include "layer_forward.h"
#include "smoe_ops.h"
#include "tensor_buffer.h"

namespace smoe {
namespace {

constexpr const char *kLayerOp = "smoe::spatial_moe";
constexpr const char *kBackwardOp = "smoe::spatial_moe_backward";

BackwardOptions backward_options(bool rc_loss, double rc_weight, double quantile, std::optional<double> damping,
                                 std::optional<double> error_scale, double loss_scale) {
    return BackwardOptions{rc_loss, rc_weight, quantile, damping, error_scale, loss_scale};
}

// Without autograd: route, then forward. Runs for every backend through the dispatcher. There is
// no backward here, so the RC loss stays 0.
std::tuple<at::Tensor, at::Tensor, at::Tensor> spatial_moe_composite(
    const at::Tensor &x, const at::Tensor &weight, const at::Tensor &routing, int64_t E, int64_t F, bool weighted,
    bool rc_loss, double rc_weight, double quantile, std::optional<double> damping, std::optional<double> error_scale,
    double loss_scale) {
    if (checks::has_concrete_shape(x)) {
        checks::check_routing_matches_layer(kLayerOp, x, weight, routing, F);
        checks::check_backward_options(kLayerOp, backward_options(rc_loss, rc_weight, quantile, damping, error_scale,
                                                                  loss_scale),
                                       E, weight.size(0) / F);
    }
    const LayerForward layer = route_and_forward(x, weight, routing, E, F, weighted);
    return {layer.y, layer.indices, at::zeros({}, checks::compute_options(x))};
}

template <typename Args>
runtime::Kernel<Args> kernel_for(const at::Tensor &t, const checks::LayerShape &s, bool weighted) {
    auto kernel = runtime::find_kernel<Args>(t.scalar_type(), t.device().type(),
                                             runtime::RoutingVariant{s.shared_routing, weighted});
    checks::check_kernel_built(kBackwardOp, kernel != nullptr, t);
    return kernel;
}

std::vector<int64_t> routing_shape(const checks::LayerShape &s) {
    if (s.shared_routing) return {s.experts, s.height, s.width};
    return {s.batch, s.experts, s.height, s.width};
}

// The kernels, on contiguous tensors whose shapes spatial_moe_backward_compiled has checked.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_contiguous(
    const checks::LayerShape &s, const at::Tensor &grad_y, const at::Tensor &x, const at::Tensor &weight,
    const at::Tensor &indices, const std::optional<at::Tensor> &values, const std::optional<at::Tensor> &routing,
    int64_t F, const BackwardOptions &options, std::array<bool, 3> output_mask) {
    const auto &[rc_loss, rc_weight, quantile, damping, error_scale, loss_scale] = options;
    const bool weighted = values.has_value();
    const int out_per_expert = static_cast<int>(F);
    // s: undoes a mean-squared error's 2/N and the AMP loss scale dy carries.
    const double scale = error_scale.value_or(static_cast<double>(grad_y.numel()) / 2.0) / loss_scale;
    const bool damp = damping.has_value() && (output_mask[0] || output_mask[1]);

    // Q_b(dy): for damping, and for the RC loss when ε = dy.
    at::Tensor dy_quantile;
    if (damp || (rc_loss && !weighted)) dy_quantile = smoe::error_quantile(grad_y, std::nullopt, quantile, scale);
    // Without damping δ = 1, which leaves dy unchanged; the quantile is then never used.
    at::Tensor damping_quantile = damp ? dy_quantile : at::zeros({s.batch}, checks::compute_options(x));

    runtime::TensorBuffer grad_y_buf(grad_y), x_buf(x), weight_buf(weight), indices_buf(indices),
        damping_quantile_buf(damping_quantile);
    const runtime::DampingArgs damping_args{damping_quantile_buf.get(), scale, damp ? *damping : 1.0};
    std::optional<runtime::TensorBuffer> values_buf;
    if (weighted) values_buf.emplace(*values);
    halide_buffer_t *values_ptr = weighted ? values_buf->get() : nullptr;

    at::Tensor grad_x, grad_weight, grad_routing, rc_loss_value;
    if (output_mask[0]) {
        grad_x = at::empty_like(x);
        runtime::TensorBuffer out(grad_x);
        runtime::run_kernel(kBackwardOp, kernel_for<runtime::BackwardDataArgs>(x, s, weighted),
                            runtime::BackwardDataArgs{grad_y_buf.get(), weight_buf.get(), indices_buf.get(),
                                                      values_ptr, out_per_expert, damping_args, out.get()},
                            x.device());
    }
    if (output_mask[1]) {
        grad_weight = at::empty_like(weight);
        runtime::TensorBuffer out(grad_weight);
        runtime::run_kernel(kBackwardOp, kernel_for<runtime::BackwardWeightArgs>(x, s, weighted),
                            runtime::BackwardWeightArgs{grad_y_buf.get(), x_buf.get(), indices_buf.get(), values_ptr,
                                                        out_per_expert, damping_args, out.get()},
                            x.device());
    }
    if (output_mask[2] || rc_loss) {
        // Weighted: the gate's signal needs each expert's ungated response u, recomputed here (an
        // unweighted forward) rather than kept from the forward pass or divided out of y.
        std::optional<at::Tensor> response;
        if (weighted) response = smoe::forward(x, weight, indices, std::nullopt, F);
        if (rc_loss) {
            at::Tensor signal_quantile =
                weighted ? smoe::error_quantile(grad_y, response, quantile, scale) : dy_quantile;
            auto [rc_gradient, loss] = smoe::rc_loss(grad_y, response, indices, *routing, signal_quantile, scale, F,
                                                     rc_weight * loss_scale);
            if (output_mask[2]) grad_routing = rc_gradient;
            rc_loss_value = loss;
        } else {
            grad_routing = at::empty(routing_shape(s), x.options());
            runtime::TensorBuffer out(grad_routing);
            std::optional<runtime::TensorBuffer> response_buf;
            if (weighted) response_buf.emplace(*response);
            runtime::run_kernel(kBackwardOp, kernel_for<runtime::GateGradientArgs>(x, s, weighted),
                                runtime::GateGradientArgs{grad_y_buf.get(), weighted ? response_buf->get() : nullptr,
                                                          indices_buf.get(), out_per_expert, out.get()},
                                x.device());
        }
    }
    return {grad_x, grad_weight, grad_routing, rc_loss_value};
}

// An empty batch: grad_x is empty, the batch sums (grad_weight, a shared routing's gradient) are 0,
// and the RC loss, a mean over no elements, is NaN as in torch. No kernel runs.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> empty_batch_gradients(
    const checks::LayerShape &s, const at::Tensor &x, const at::Tensor &weight, bool rc_loss,
    std::array<bool, 3> output_mask) {
    at::Tensor grad_x, grad_weight, grad_routing, rc_loss_value;
    if (output_mask[0]) grad_x = at::empty(x.sizes(), x.options());
    if (output_mask[1]) grad_weight = at::zeros(weight.sizes(), weight.options());
    if (output_mask[2]) grad_routing = at::zeros(routing_shape(s), x.options());
    if (rc_loss) rc_loss_value = at::full({}, std::numeric_limits<double>::quiet_NaN(), checks::compute_options(x));
    return {grad_x, grad_weight, grad_routing, rc_loss_value};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> spatial_moe_backward_compiled(
    const at::Tensor &grad_y, const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
    const std::optional<at::Tensor> &values, const std::optional<at::Tensor> &routing, int64_t F, bool rc_loss,
    double rc_weight, double quantile, std::optional<double> damping, std::optional<double> error_scale,
    double loss_scale, std::array<bool, 3> output_mask) {
    const checks::LayerShape s = checks::check_layer(kBackwardOp, x, weight, indices, values, F);
    checks::check_tensor(kBackwardOp, "grad_y", grad_y, {4}, "[B, E*F, H, W]", /*batch_may_be_empty=*/true);
    checks::check_same_dtype_device(kBackwardOp, "grad_y", grad_y, "x", x);
    TORCH_CHECK(grad_y.sizes() == at::IntArrayRef({s.batch, s.selected * F, s.height, s.width}), kBackwardOp,
                ": argument 'grad_y' must have the forward's output shape [B, E*F, H, W] = ",
                checks::shape_string({s.batch, s.selected * F, s.height, s.width}), ", got ",
                checks::shape_string(grad_y.sizes()));
    checks::check_index_range(kBackwardOp, indices, s.experts);
    const BackwardOptions options = backward_options(rc_loss, rc_weight, quantile, damping, error_scale, loss_scale);
    checks::check_backward_options(kBackwardOp, options, s.selected, s.experts);
    if (rc_loss) {
        TORCH_CHECK(routing.has_value(), kBackwardOp, ": argument 'routing' is required with the RC loss");
        checks::check_routing_matches_layer(kBackwardOp, x, weight, *routing, F);
        TORCH_CHECK(routing->dim() == indices.dim(), kBackwardOp, ": argument 'routing' must be ",
                    s.shared_routing ? "shared [NE, H, W]" : "per-sample [B, NE, H, W]", " like 'indices'");
        checks::check_same_dtype_device(kBackwardOp, "routing", *routing, "x", x);
    }
    if (s.batch == 0) return empty_batch_gradients(s, x, weight, rc_loss, output_mask);
    std::optional<at::Tensor> values_contiguous, routing_contiguous;
    if (values.has_value()) values_contiguous = values->contiguous();
    if (routing.has_value()) routing_contiguous = routing->contiguous();
    return backward_contiguous(s, grad_y.contiguous(), x.contiguous(), weight.contiguous(), indices.contiguous(),
                               values_contiguous, routing_contiguous, F, options, output_mask);
}

// Shape-only (fake/meta tensors, torch.compile): works on symbolic sizes.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> spatial_moe_backward_meta(
    const at::Tensor &grad_y, const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
    const std::optional<at::Tensor> &values, const std::optional<at::Tensor> &routing, int64_t F, bool rc_loss,
    double rc_weight, double quantile, std::optional<double> damping, std::optional<double> error_scale,
    double loss_scale, std::array<bool, 3> output_mask) {
    TORCH_CHECK(x.dim() == 4 && weight.dim() == 4 && grad_y.dim() == 4 && (indices.dim() == 3 || indices.dim() == 4),
                kBackwardOp, ": expected grad_y, x, weight of rank 4 and indices of rank 3 or 4");
    checks::check_floating(kBackwardOp, "x", x);
    checks::check_same_dtype_device(kBackwardOp, "grad_y", grad_y, "x", x);
    checks::check_same_dtype_device(kBackwardOp, "weight", weight, "x", x);
    checks::check_dtype(kBackwardOp, "indices", indices, at::kInt);
    if (values.has_value()) checks::check_same_dtype_device(kBackwardOp, "values", *values, "x", x);
    TORCH_CHECK(F >= 1, kBackwardOp, ": F (output channels per expert) must be >= 1, got ", F);
    TORCH_CHECK(!rc_loss || routing.has_value(), kBackwardOp, ": argument 'routing' is required with the RC loss");
    at::Tensor grad_x, grad_weight, grad_routing, rc_loss_value;
    if (rc_loss) rc_loss_value = at::empty({}, checks::compute_options(x));
    if (output_mask[0]) grad_x = at::empty_symint(x.sym_sizes(), x.options());
    if (output_mask[1]) grad_weight = at::empty_symint(weight.sym_sizes(), weight.options());
    if (output_mask[2]) {
        std::vector<c10::SymInt> shape = indices.sym_sizes().vec();
        shape[indices.dim() - 3] = weight.sym_size(0) / F;
        grad_routing = at::empty_symint(shape, x.options());
    }
    return {grad_x, grad_weight, grad_routing, rc_loss_value};
}

}  // namespace

TORCH_LIBRARY_IMPL(smoe, CompositeExplicitAutograd, m) { m.impl("spatial_moe", spatial_moe_composite); }
TORCH_LIBRARY_IMPL(smoe, CPU, m) { m.impl("spatial_moe_backward", spatial_moe_backward_compiled); }
TORCH_LIBRARY_IMPL(smoe, Meta, m) { m.impl("spatial_moe_backward", spatial_moe_backward_meta); }
#ifdef SMOE_WITH_TORCH_CUDA
TORCH_LIBRARY_IMPL(smoe, CUDA, m) { m.impl("spatial_moe_backward", spatial_moe_backward_compiled); }
#endif

}  // namespace smoe
