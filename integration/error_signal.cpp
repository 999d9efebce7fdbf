// smoe::error_quantile and smoe::rc_loss (DESIGN.md §4 "Per-sample quantile" and "Backward, gate
// side"): argument checks and the CPU, CUDA and Meta implementations. spatial_moe_backward uses
// them for damping and the RC loss; they are also ops of their own, for tests and inspection.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <limits>

#include "checks.h"
#include "halide_call.h"
#include "kernel_registry.h"
#include "smoe_ops.h"
#include "tensor_buffer.h"

namespace smoe {
namespace {

constexpr const char *kQuantileOp = "smoe::error_quantile";
constexpr const char *kRCLossOp = "smoe::rc_loss";

void check_scale(const char *op, const char *name, double value) {
    TORCH_CHECK(std::isfinite(value) && value > 0, op, ": argument '", name,
                "' must be a finite number > 0, got ", value);
}

void check_signal(const char *op, const at::Tensor &grad_y, const std::optional<at::Tensor> &response) {
    checks::check_floating(op, "grad_y", grad_y);
    checks::check_int32_indexable(op, "grad_y", grad_y);
    if (response.has_value()) {
        checks::check_same_dtype_device(op, "response", *response, "grad_y", grad_y);
        TORCH_CHECK(response->sizes() == grad_y.sizes(), op, ": argument 'response' must have the shape of 'grad_y' ",
                    checks::shape_string(grad_y.sizes()), ", got ", checks::shape_string(response->sizes()));
    }
}

at::Tensor error_quantile_compiled(const at::Tensor &grad_y, const std::optional<at::Tensor> &response, double q,
                                   double scale) {
    TORCH_CHECK(grad_y.defined() && grad_y.dim() >= 2, kQuantileOp,
                ": argument 'grad_y' must have shape [B, ...] with at least 2 dimensions, got ",
                grad_y.defined() ? checks::shape_string(grad_y.sizes()) : std::string("an undefined tensor"));
    check_signal(kQuantileOp, grad_y, response);
    checks::check_unit_interval(kQuantileOp, "q", q);
    check_scale(kQuantileOp, "scale", scale);
    const int64_t batch = grad_y.size(0);
    at::Tensor quantile = at::empty({batch}, checks::compute_options(grad_y));
    if (batch == 0) return quantile;
    // torch.quantile of an empty sample is NaN.
    if (grad_y.numel() == 0) return quantile.fill_(std::numeric_limits<double>::quiet_NaN());
    auto kernel =
        runtime::find_error_quantile(grad_y.scalar_type(), grad_y.device().type(), response.has_value());
    checks::check_kernel_built(kQuantileOp, kernel != nullptr, grad_y);
    // reshape: a view of contiguous tensors, a contiguous copy of any other.
    const at::Tensor signal = grad_y.reshape({batch, -1}).contiguous();
    std::optional<at::Tensor> response_rows;
    if (response.has_value()) response_rows = response->reshape({batch, -1}).contiguous();
    runtime::TensorBuffer signal_buf(signal), out_buf(quantile);
    std::optional<runtime::TensorBuffer> response_buf;
    if (response_rows.has_value()) response_buf.emplace(*response_rows);
    runtime::run_kernel(kQuantileOp, kernel,
                        runtime::ErrorQuantileArgs{signal_buf.get(), response_buf ? response_buf->get() : nullptr, q,
                                                   scale, out_buf.get()},
                        grad_y.device());
    return quantile;
}

at::Tensor error_quantile_meta(const at::Tensor &grad_y, const std::optional<at::Tensor> &response, double q,
                               double scale) {
    TORCH_CHECK(grad_y.dim() >= 2, kQuantileOp, ": argument 'grad_y' must have at least 2 dimensions");
    checks::check_floating(kQuantileOp, "grad_y", grad_y);
    checks::check_unit_interval(kQuantileOp, "q", q);
    check_scale(kQuantileOp, "scale", scale);
    return at::empty_symint({grad_y.sym_size(0)}, checks::compute_options(grad_y));
}

// The kernel call, on contiguous tensors whose shapes rc_loss_compiled has checked.
std::tuple<at::Tensor, at::Tensor> rc_loss_contiguous(const at::Tensor &grad_y, const std::optional<at::Tensor> &response,
                                                      const at::Tensor &indices, const at::Tensor &routing,
                                                      const at::Tensor &quantile, double scale, int64_t F,
                                                      double rc_weight) {
    const bool shared = indices.dim() == 3;
    const int64_t NE = routing.size(-3);
    checks::check_index_range(kRCLossOp, indices, NE);

    auto kernel = runtime::find_kernel<runtime::RCLossArgs>(grad_y.scalar_type(), grad_y.device().type(),
                                                            runtime::RoutingVariant{shared, response.has_value()});
    checks::check_kernel_built(kRCLossOp, kernel != nullptr, grad_y);
    at::Tensor grad_routing = at::empty(routing.sizes(), routing.options());
    at::Tensor loss = at::empty({}, checks::compute_options(grad_y));
    runtime::TensorBuffer grad_y_buf(grad_y), indices_buf(indices), routing_buf(routing), quantile_buf(quantile),
        grad_buf(grad_routing), loss_buf(loss);
    std::optional<runtime::TensorBuffer> response_buf;
    if (response.has_value()) response_buf.emplace(*response);
    runtime::run_kernel(kRCLossOp, kernel,
                        runtime::RCLossArgs{grad_y_buf.get(), response_buf ? response_buf->get() : nullptr,
                                            indices_buf.get(), routing_buf.get(), quantile_buf.get(),
                                            static_cast<int>(F), scale, rc_weight, grad_buf.get(), loss_buf.get()},
                        grad_y.device());
    return {grad_routing, loss};
}

std::tuple<at::Tensor, at::Tensor> rc_loss_compiled(const at::Tensor &grad_y, const std::optional<at::Tensor> &response,
                                                    const at::Tensor &indices, const at::Tensor &routing,
                                                    const at::Tensor &quantile, double scale, int64_t F,
                                                    double rc_weight) {
    checks::check_tensor(kRCLossOp, "grad_y", grad_y, {4}, "[B, E*F, H, W]", /*batch_may_be_empty=*/true);
    check_signal(kRCLossOp, grad_y, response);
    checks::check_tensor(kRCLossOp, "indices", indices, {3, 4}, "[E, H, W] or [B, E, H, W]",
                         /*batch_may_be_empty=*/true);
    checks::check_dtype(kRCLossOp, "indices", indices, at::kInt);
    checks::check_tensor(kRCLossOp, "routing", routing, {indices.dim()},
                         indices.dim() == 3 ? "[NE, H, W] (like indices)" : "[B, NE, H, W] (like indices)",
                         /*batch_may_be_empty=*/indices.dim() == 4);
    checks::check_same_dtype_device(kRCLossOp, "routing", routing, "grad_y", grad_y);
    TORCH_CHECK(indices.device() == grad_y.device(), kRCLossOp, ": argument 'indices' must be on ", grad_y.device());
    checks::check_tensor(kRCLossOp, "quantile", quantile, {1}, "[B]", /*batch_may_be_empty=*/true);
    checks::check_compute_dtype_device(kRCLossOp, "quantile", quantile, "grad_y", grad_y);
    TORCH_CHECK(F >= 1, kRCLossOp, ": F (output channels per expert) must be >= 1, got ", F);
    check_scale(kRCLossOp, "scale", scale);
    TORCH_CHECK(std::isfinite(rc_weight), kRCLossOp, ": argument 'rc_weight' must be finite, got ", rc_weight);
    const bool shared = indices.dim() == 3;
    const int64_t batch = grad_y.size(0), E = indices.size(-3), NE = routing.size(-3);
    checks::check_size(kRCLossOp, "grad_y", grad_y, 1, E * F, "E*F");
    for (int64_t d : {-2, -1}) {
        checks::check_size(kRCLossOp, "indices", indices, indices.dim() + d, grad_y.size(4 + d), "grad_y's grid");
        checks::check_size(kRCLossOp, "routing", routing, routing.dim() + d, grad_y.size(4 + d), "grad_y's grid");
    }
    if (!shared) {
        checks::check_size(kRCLossOp, "indices", indices, 0, batch, "grad_y.size(0) (B)");
        checks::check_size(kRCLossOp, "routing", routing, 0, batch, "grad_y.size(0) (B)");
    }
    checks::check_size(kRCLossOp, "quantile", quantile, 0, batch, "grad_y.size(0) (B)");
    checks::check_rc_experts(kRCLossOp, E, NE);
    if (batch == 0) {
        // No labels: the gradient is 0 and the BCE mean over no elements is NaN, as in torch.
        return {at::zeros(routing.sizes(), routing.options()),
                at::full({}, std::numeric_limits<double>::quiet_NaN(), checks::compute_options(grad_y))};
    }
    return rc_loss_contiguous(grad_y.contiguous(), response ? std::optional(response->contiguous()) : std::nullopt,
                              indices.contiguous(), routing.contiguous(), quantile.contiguous(), scale, F, rc_weight);
}

std::tuple<at::Tensor, at::Tensor> rc_loss_meta(const at::Tensor &grad_y, const std::optional<at::Tensor> &response,
                                                const at::Tensor &indices, const at::Tensor &routing,
                                                const at::Tensor &quantile, double scale, int64_t F,
                                                double rc_weight) {
    TORCH_CHECK(grad_y.dim() == 4 && (indices.dim() == 3 || indices.dim() == 4) && routing.dim() == indices.dim(),
                kRCLossOp, ": expected grad_y of rank 4 and indices, routing of rank 3 or 4");
    checks::check_floating(kRCLossOp, "grad_y", grad_y);
    checks::check_same_dtype_device(kRCLossOp, "routing", routing, "grad_y", grad_y);
    TORCH_CHECK(F >= 1, kRCLossOp, ": F (output channels per expert) must be >= 1, got ", F);
    check_scale(kRCLossOp, "scale", scale);
    return {at::empty_symint(routing.sym_sizes(), routing.options()), at::empty({}, checks::compute_options(grad_y))};
}

}  // namespace

at::Tensor error_quantile(const at::Tensor &grad_y, const std::optional<at::Tensor> &response, double q,
                          double scale) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("smoe::error_quantile", "")
                               .typed<at::Tensor(const at::Tensor &, const std::optional<at::Tensor> &, double, double)>();
    return op.call(grad_y, response, q, scale);
}

std::tuple<at::Tensor, at::Tensor> rc_loss(const at::Tensor &grad_y, const std::optional<at::Tensor> &response,
                                           const at::Tensor &indices, const at::Tensor &routing,
                                           const at::Tensor &quantile, double scale, int64_t F, double rc_weight) {
    static const auto op =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("smoe::rc_loss", "")
            .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor &, const std::optional<at::Tensor> &,
                                                      const at::Tensor &, const at::Tensor &, const at::Tensor &,
                                                      double, int64_t, double)>();
    return op.call(grad_y, response, indices, routing, quantile, scale, F, rc_weight);
}

TORCH_LIBRARY_IMPL(smoe, CPU, m) {
    m.impl("error_quantile", error_quantile_compiled);
    m.impl("rc_loss", rc_loss_compiled);
}
TORCH_LIBRARY_IMPL(smoe, Meta, m) {
    m.impl("error_quantile", error_quantile_meta);
    m.impl("rc_loss", rc_loss_meta);
}
#ifdef SMOE_WITH_TORCH_CUDA
TORCH_LIBRARY_IMPL(smoe, CUDA, m) {
    m.impl("error_quantile", error_quantile_compiled);
    m.impl("rc_loss", rc_loss_compiled);
}
#endif

}  // namespace smoe
