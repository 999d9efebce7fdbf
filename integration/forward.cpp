// smoe::forward: argument checks and the CPU, CUDA and Meta implementations.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "checks.h"
#include "halide_call.h"
#include "kernel_registry.h"
#include "tensor_buffer.h"

namespace smoe {
namespace {

constexpr const char *kOp = "smoe::forward";

at::Tensor forward_compiled(const at::Tensor &x_arg, const at::Tensor &weight_arg, const at::Tensor &indices_arg,
                            const std::optional<at::Tensor> &values_arg, int64_t F) {
    const checks::LayerShape s = checks::check_layer(kOp, x_arg, weight_arg, indices_arg, values_arg, F);
    if (s.batch == 0) return at::empty({0, s.selected * F, s.height, s.width}, x_arg.options());
    const at::Tensor x = x_arg.contiguous(), weight = weight_arg.contiguous(), indices = indices_arg.contiguous();
    std::optional<at::Tensor> values;
    if (values_arg.has_value()) values = values_arg->contiguous();
    checks::check_index_range(kOp, indices, s.experts);

    auto kernel = runtime::find_kernel<runtime::ForwardArgs>(x.scalar_type(), x.device().type(),
                                                            runtime::RoutingVariant{s.shared_routing, values.has_value()});
    checks::check_kernel_built(kOp, kernel != nullptr, x);
    at::Tensor y = at::empty({s.batch, s.selected * F, s.height, s.width}, x.options());
    runtime::TensorBuffer x_buf(x), weight_buf(weight), indices_buf(indices), y_buf(y);
    std::optional<runtime::TensorBuffer> values_buf;
    if (values.has_value()) values_buf.emplace(*values);
    runtime::ForwardArgs args{x_buf.get(), weight_buf.get(), indices_buf.get(),
                              values_buf ? values_buf->get() : nullptr, static_cast<int>(F), y_buf.get()};
    runtime::run_kernel(kOp, kernel, args, x.device());
    return y;
}

// Shape-only (fake/meta tensors, torch.compile): works on symbolic sizes, so it checks only what
// needs no concrete size.
at::Tensor forward_meta(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                        const std::optional<at::Tensor> &values, int64_t F) {
    TORCH_CHECK(x.dim() == 4, kOp, ": argument 'x' must have shape [B, C, H, W], got a ", x.dim(), "-d tensor");
    TORCH_CHECK(weight.dim() == 4, kOp, ": argument 'weight' must have shape [NE*F, C, K, K], got a ", weight.dim(),
                "-d tensor");
    TORCH_CHECK(indices.dim() == 3 || indices.dim() == 4, kOp,
                ": argument 'indices' must have shape [E, H, W] (shared) or [B, E, H, W] (per-sample), got a ",
                indices.dim(), "-d tensor");
    checks::check_floating(kOp, "x", x);
    checks::check_same_dtype_device(kOp, "weight", weight, "x", x);
    checks::check_dtype(kOp, "indices", indices, at::kInt);
    if (values.has_value()) checks::check_same_dtype_device(kOp, "values", *values, "x", x);
    TORCH_CHECK(F >= 1, kOp, ": F (output channels per expert) must be >= 1, got ", F);
    const c10::SymInt slots = indices.sym_size(indices.dim() - 3) * F;
    return at::empty_symint({x.sym_size(0), slots, x.sym_size(2), x.sym_size(3)}, x.options());
}

}  // namespace

TORCH_LIBRARY_IMPL(smoe, CPU, m) { m.impl("forward", forward_compiled); }
TORCH_LIBRARY_IMPL(smoe, Meta, m) { m.impl("forward", forward_meta); }
#ifdef SMOE_WITH_TORCH_CUDA
TORCH_LIBRARY_IMPL(smoe, CUDA, m) { m.impl("forward", forward_compiled); }
#endif

}  // namespace smoe
