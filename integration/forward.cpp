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

struct ForwardShape {
    int64_t batch, experts, selected, out_per_expert, height, width;
    bool shared_routing;
};

// Checks every argument's rank, shape, dtype, device and layout (not the index values).
ForwardShape checked_shape(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                           const std::optional<at::Tensor> &values, int64_t F) {
    checks::check_tensor(kOp, "x", x, {4}, "[B, C, H, W]");
    checks::check_floating(kOp, "x", x);
    checks::check_tensor(kOp, "weight", weight, {4}, "[NE*F, C, K, K]");
    checks::check_same_dtype_device(kOp, "weight", weight, "x", x);
    TORCH_CHECK(F >= 1, kOp, ": F (output channels per expert) must be >= 1, got ", F);
    checks::check_size(kOp, "weight", weight, 1, x.size(1), "x.size(1) (C)");
    const int64_t K = weight.size(2);
    TORCH_CHECK(weight.size(3) == K && K % 2 == 1, kOp, ": argument 'weight' must hold square kernels of odd size K ",
                "(zero 'same' padding needs K = 1, 3, 5, 7, ...); got kernel size ", weight.size(2), "x",
                weight.size(3));
    TORCH_CHECK(weight.size(0) % F == 0, kOp, ": argument 'weight' has ", weight.size(0),
                " output channels, which is not a multiple of F = ", F, " (expected NE*F rows)");

    checks::check_tensor(kOp, "indices", indices, {3, 4}, "[E, H, W] (shared) or [B, E, H, W] (per-sample)");
    checks::check_dtype(kOp, "indices", indices, at::kInt);
    TORCH_CHECK(indices.device() == x.device(), kOp, ": argument 'indices' must be on the device of 'x' (",
                x.device(), "), got ", indices.device());
    ForwardShape s{};
    s.shared_routing = indices.dim() == 3;
    const int64_t off = s.shared_routing ? 0 : 1;
    s.batch = x.size(0);
    s.height = x.size(2);
    s.width = x.size(3);
    s.out_per_expert = F;
    s.experts = weight.size(0) / F;
    s.selected = indices.size(off);
    if (!s.shared_routing) checks::check_size(kOp, "indices", indices, 0, s.batch, "x.size(0) (B)");
    checks::check_size(kOp, "indices", indices, off + 1, s.height, "x.size(2) (H)");
    checks::check_size(kOp, "indices", indices, off + 2, s.width, "x.size(3) (W)");
    checks::check_selected_experts(kOp, s.selected, s.experts);
    if (values.has_value()) {
        checks::check_tensor(kOp, "values", *values, {indices.dim()}, "the shape of 'indices'");
        checks::check_same_dtype_device(kOp, "values", *values, "x", x);
        TORCH_CHECK(values->sizes() == indices.sizes(), kOp, ": argument 'values' must have the shape of 'indices' ",
                    checks::shape_string(indices.sizes()), ", got ", checks::shape_string(values->sizes()));
    }
    checks::check_int32_indexable(kOp, "x", x);
    checks::check_int32_indexable(kOp, "weight", weight);
    TORCH_CHECK(s.batch * s.selected * F * s.height * s.width <= std::numeric_limits<int32_t>::max(), kOp,
                ": the output would have more than 2^31-1 elements");
    return s;
}

at::Tensor forward_compiled(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                            const std::optional<at::Tensor> &values, int64_t F) {
    const ForwardShape s = checked_shape(x, weight, indices, values, F);
    const auto [lowest, highest] = at::aminmax(indices);
    const int64_t lo = lowest.item<int32_t>(), hi = highest.item<int32_t>();
    TORCH_CHECK(lo >= 0 && hi < s.experts, kOp, ": argument 'indices' holds expert ", lo < 0 ? lo : hi,
                ", outside the bank of NE = ", s.experts, " experts (valid: 0 .. ", s.experts - 1, ")");

    auto kernel = runtime::find_forward(x.scalar_type(), x.device().type(),
                                        runtime::ForwardVariant{s.shared_routing, values.has_value()});
    TORCH_CHECK(kernel != nullptr, kOp, ": no kernel for ", x.scalar_type(), " on ", x.device(), " in this build");
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
