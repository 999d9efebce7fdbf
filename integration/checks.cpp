#include "checks.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <tuple>
#include <utility>

namespace smoe::checks {

std::string shape_string(at::IntArrayRef sizes) {
    std::ostringstream out;
    out << '[';
    for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
    out << ']';
    return out.str();
}

void check_tensor(const char *op, const char *name, const at::Tensor &t, std::initializer_list<int64_t> ranks,
                  const char *layout, bool batch_may_be_empty) {
    TORCH_CHECK(t.defined(), op, ": argument '", name, "' is an undefined tensor; expected ", layout);
    bool rank_ok = false;
    int64_t batched_rank = 0;
    for (int64_t r : ranks) {
        rank_ok = rank_ok || t.dim() == r;
        batched_rank = std::max(batched_rank, r);
    }
    TORCH_CHECK(rank_ok, op, ": argument '", name, "' must have shape ", layout, ", got a ", t.dim(),
                "-d tensor of shape ", shape_string(t.sizes()));
    const int64_t first_nonempty = batch_may_be_empty && t.dim() == batched_rank ? 1 : 0;
    for (int64_t d = first_nonempty; d < t.dim(); ++d) {
        TORCH_CHECK(t.size(d) > 0, op, ": argument '", name, "' is empty (shape ", shape_string(t.sizes()), "); ",
                    "every dimension of ", layout,
                    batch_may_be_empty ? " but the batch must be at least 1" : " must be at least 1");
    }
    check_int32_indexable(op, name, t);
}

void check_floating(const char *op, const char *name, const at::Tensor &t) {
    const at::ScalarType type = t.scalar_type();
    TORCH_CHECK(type == at::kFloat || type == at::kDouble || type == at::kHalf || type == at::kBFloat16, op,
                ": argument '", name, "' must be float32, float64, float16 or bfloat16, got ", type);
}

void check_kernel_built(const char *op, bool built, const at::Tensor &t) {
    TORCH_CHECK(built, op, ": this build has no kernels for ", t.scalar_type(), " tensors on ", t.device(),
                " (CPU kernels are built for the dtypes of the CMake option SMOE_CPU_DTYPES, CUDA kernels with "
                "SMOE_CUDA=ON)");
}

at::ScalarType compute_dtype(at::ScalarType storage) {
    return storage == at::kHalf || storage == at::kBFloat16 ? at::kFloat : storage;
}

at::TensorOptions compute_options(const at::Tensor &t) {
    return t.options().dtype(compute_dtype(t.scalar_type()));
}

void check_compute_dtype_device(const char *op, const char *name, const at::Tensor &t, const char *ref_name,
                                const at::Tensor &ref) {
    const at::ScalarType expected = compute_dtype(ref.scalar_type());
    TORCH_CHECK(t.scalar_type() == expected, op, ": argument '", name, "' must be ", expected, ", the type '",
                ref_name, "' (", ref.scalar_type(), ") computes in, got ", t.scalar_type());
    TORCH_CHECK(t.device() == ref.device(), op, ": argument '", name, "' must be on the device of '", ref_name,
                "' (", ref.device(), "), got ", t.device());
}

void check_dtype(const char *op, const char *name, const at::Tensor &t, at::ScalarType expected) {
    TORCH_CHECK(t.scalar_type() == expected, op, ": argument '", name, "' must be ", expected, ", got ",
                t.scalar_type());
}

void check_same_dtype_device(const char *op, const char *name, const at::Tensor &t, const char *ref_name,
                             const at::Tensor &ref) {
    TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": argument '", name, "' must have the dtype of '",
                ref_name, "' (", ref.scalar_type(), "), got ", t.scalar_type());
    TORCH_CHECK(t.device() == ref.device(), op, ": argument '", name, "' must be on the device of '", ref_name,
                "' (", ref.device(), "), got ", t.device());
}

void check_size(const char *op, const char *name, const at::Tensor &t, int64_t dim, int64_t expected,
                const char *what) {
    TORCH_CHECK(t.size(dim) == expected, op, ": argument '", name, "' has size ", t.size(dim), " in dimension ",
                dim, " but must match ", what, " = ", expected, " (shape ", shape_string(t.sizes()), ")");
}

void check_int32_indexable(const char *op, const char *name, const at::Tensor &t) {
    check_int32_indexable(op, name, t.sizes());
}

void check_int32_indexable(const char *op, const char *name, at::IntArrayRef sizes) {
    constexpr int64_t limit = std::numeric_limits<int32_t>::max();
    int64_t elements = 1;
    for (int64_t size : sizes) {
        // Stops before the product can overflow int64.
        elements = size > 0 && elements > limit / size ? limit + 1 : elements * size;
    }
    TORCH_CHECK(elements <= limit, op, ": argument '", name, "' of shape ", shape_string(sizes),
                " has more than 2^31 - 1 = ", limit,
                " elements; the kernels index with 32-bit integers (split the batch)");
}

void check_selected_experts(const char *op, int64_t E, int64_t NE) {
    TORCH_CHECK(E >= 1 && E <= NE, op, ": the number of selected experts E must satisfy 1 <= E <= NE; got E = ",
                E, " with NE = ", NE, " experts");
}

void check_unit_interval(const char *op, const char *name, double value) {
    TORCH_CHECK(value >= 0.0 && value <= 1.0, op, ": argument '", name, "' must lie in [0, 1], got ", value);
}

void check_rc_experts(const char *op, int64_t E, int64_t NE) {
    TORCH_CHECK(NE > E, op, ": the RC loss needs more experts than are selected (NE > E), got NE = ", NE, " and E = ",
                E, "; with NE = E every expert is selected everywhere and there is nothing to route (turn rc_loss off)");
}

void check_backward_options(const char *op, const BackwardOptions &options, int64_t E, int64_t NE) {
    check_unit_interval(op, "quantile", options.quantile);
    if (options.damping.has_value()) check_unit_interval(op, "damping", *options.damping);
    TORCH_CHECK(std::isfinite(options.rc_weight), op, ": argument 'rc_weight' must be finite, got ", options.rc_weight);
    if (options.error_scale.has_value()) {
        TORCH_CHECK(std::isfinite(*options.error_scale) && *options.error_scale > 0, op,
                    ": argument 'error_scale' must be a finite number > 0, got ", *options.error_scale);
    }
    TORCH_CHECK(std::isfinite(options.loss_scale) && options.loss_scale > 0, op,
                ": argument 'loss_scale' must be a finite number > 0, got ", options.loss_scale);
    if (options.rc_loss) check_rc_experts(op, E, NE);
}

LayerShape check_layer(const char *op, const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                       const std::optional<at::Tensor> &values, int64_t F) {
    check_tensor(op, "x", x, {4}, "[B, C, H, W]", /*batch_may_be_empty=*/true);
    check_floating(op, "x", x);
    check_tensor(op, "weight", weight, {4}, "[NE*F, C, K, K]");
    check_same_dtype_device(op, "weight", weight, "x", x);
    TORCH_CHECK(F >= 1, op, ": F (output channels per expert) must be >= 1, got ", F);
    check_size(op, "weight", weight, 1, x.size(1), "x.size(1) (C)");
    const int64_t K = weight.size(2);
    TORCH_CHECK(weight.size(3) == K && K % 2 == 1, op, ": argument 'weight' must hold square kernels of odd size K ",
                "(zero 'same' padding needs K = 1, 3, 5, 7, ...); got kernel size ", weight.size(2), "x",
                weight.size(3));
    TORCH_CHECK(weight.size(0) % F == 0, op, ": argument 'weight' has ", weight.size(0),
                " output channels, which is not a multiple of F = ", F, " (expected NE*F rows)");

    check_tensor(op, "indices", indices, {3, 4}, "[E, H, W] (shared) or [B, E, H, W] (per-sample)",
                 /*batch_may_be_empty=*/true);
    check_dtype(op, "indices", indices, at::kInt);
    TORCH_CHECK(indices.device() == x.device(), op, ": argument 'indices' must be on the device of 'x' (",
                x.device(), "), got ", indices.device());
    LayerShape s{};
    s.shared_routing = indices.dim() == 3;
    const int64_t off = s.shared_routing ? 0 : 1;
    s.batch = x.size(0);
    s.height = x.size(2);
    s.width = x.size(3);
    s.out_per_expert = F;
    s.experts = weight.size(0) / F;
    s.selected = indices.size(off);
    if (!s.shared_routing) check_size(op, "indices", indices, 0, s.batch, "x.size(0) (B)");
    check_size(op, "indices", indices, off + 1, s.height, "x.size(2) (H)");
    check_size(op, "indices", indices, off + 2, s.width, "x.size(3) (W)");
    check_selected_experts(op, s.selected, s.experts);
    if (values.has_value()) {
        check_tensor(op, "values", *values, {indices.dim()}, "the shape of 'indices'", indices.dim() == 4);
        check_same_dtype_device(op, "values", *values, "x", x);
        TORCH_CHECK(values->sizes() == indices.sizes(), op, ": argument 'values' must have the shape of 'indices' ",
                    shape_string(indices.sizes()), ", got ", shape_string(values->sizes()));
    }
    check_int32_indexable(op, "the output y", {s.batch, s.selected * F, s.height, s.width});
    return s;
}

namespace {

// The lowest and highest index, or (0, 0) for none.
std::pair<int64_t, int64_t> index_extremes(const int32_t *index, int64_t count) {
    int32_t low = 0, high = 0;
    if (count > 0) low = high = index[0];
    for (int64_t i = 0; i < count; ++i) {
        low = std::min(low, index[i]);
        high = std::max(high, index[i]);
    }
    return {low, high};
}

}  // namespace

void check_index_range(const char *op, const at::Tensor &indices, int64_t experts) {
    int64_t lo = 0, hi = 0;
    if (indices.device().is_cpu() && indices.scalar_type() == at::kInt && indices.is_contiguous()) {
        // A plain loop, not at::aminmax: ATen's parallel reduction leaves its OpenMP workers
        // spinning, and they would take the cores from the Halide kernel that runs next. One
        // unsigned compare per index (a negative one wraps above NE), which baseline x86-64
        // vectorises; the extremes only for the message. A running min and max do not vectorise
        // without SSE4.1 and took a millisecond at ens10-like's 1.2M indices.
        const int32_t *index = indices.data_ptr<int32_t>();
        const int64_t count = indices.numel();
        const uint32_t limit = static_cast<uint32_t>(experts);
        uint32_t outside = 0;
        for (int64_t i = 0; i < count; ++i) outside |= static_cast<uint32_t>(index[i]) >= limit ? 1u : 0u;
        if (outside == 0) return;
        std::tie(lo, hi) = index_extremes(index, count);
    } else {
        const auto [lowest, highest] = at::aminmax(indices);
        lo = lowest.item<int32_t>();
        hi = highest.item<int32_t>();
    }
    TORCH_CHECK(lo >= 0 && hi < experts, op, ": argument 'indices' holds expert ", lo < 0 ? lo : hi,
                ", outside the bank of NE = ", experts, " experts (valid: 0 .. ", experts - 1, ")");
}

bool has_concrete_shape(const at::Tensor &t) {
    return !t.is_meta() && !t.unsafeGetTensorImpl()->has_symbolic_sizes_strides();
}

void check_routing_matches_layer(const char *op, const at::Tensor &x, const at::Tensor &weight, const at::Tensor &routing,
                                 int64_t F) {
    check_tensor(op, "x", x, {4}, "[B, C, H, W]", /*batch_may_be_empty=*/true);
    check_tensor(op, "weight", weight, {4}, "[NE*F, C, K, K]");
    check_tensor(op, "routing", routing, {3, 4}, "[NE, H, W] or [B, NE, H, W]", /*batch_may_be_empty=*/true);
    TORCH_CHECK(F >= 1 && weight.size(0) % F == 0, op, ": F (output channels per expert) must be >= 1 and ",
                "divide weight.size(0) = ", weight.size(0), "; got F = ", F);
    const int64_t off = routing.dim() - 3;
    if (off == 1) check_size(op, "routing", routing, 0, x.size(0), "x.size(0) (B)");
    check_size(op, "routing", routing, off, weight.size(0) / F, "weight.size(0) / F (NE)");
    check_size(op, "routing", routing, off + 1, x.size(2), "x.size(2) (H)");
    check_size(op, "routing", routing, off + 2, x.size(3), "x.size(3) (W)");
}

}  // namespace smoe::checks
