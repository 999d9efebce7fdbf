#include "checks.h"

#include <c10/util/Exception.h>

#include <limits>
#include <sstream>

namespace smoe::checks {

std::string shape_string(at::IntArrayRef sizes) {
    std::ostringstream out;
    out << '[';
    for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
    out << ']';
    return out.str();
}

void check_tensor(const char *op, const char *name, const at::Tensor &t, std::initializer_list<int64_t> ranks,
                  const char *layout) {
    TORCH_CHECK(t.defined(), op, ": argument '", name, "' is an undefined tensor; expected ", layout);
    bool rank_ok = false;
    for (int64_t r : ranks) rank_ok = rank_ok || t.dim() == r;
    TORCH_CHECK(rank_ok, op, ": argument '", name, "' must have shape ", layout, ", got a ", t.dim(),
                "-d tensor of shape ", shape_string(t.sizes()));
    TORCH_CHECK(t.numel() > 0, op, ": argument '", name, "' is empty (shape ", shape_string(t.sizes()),
                "); every dimension of ", layout, " must be at least 1");
    TORCH_CHECK(t.is_contiguous(), op, ": argument '", name,
                "' must be contiguous (call .contiguous() first); got strides ", shape_string(t.strides()));
}

void check_floating(const char *op, const char *name, const at::Tensor &t) {
    TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": argument '", name,
                "' must be float32 or float64, got ", t.scalar_type());
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
    constexpr int64_t limit = std::numeric_limits<int32_t>::max();
    TORCH_CHECK(t.numel() <= limit, op, ": argument '", name, "' has ", t.numel(),
                " elements; the kernels index with 32-bit integers (at most ", limit, ")");
}

void check_selected_experts(const char *op, int64_t E, int64_t NE) {
    TORCH_CHECK(E >= 1 && E <= NE, op, ": the number of selected experts E must satisfy 1 <= E <= NE; got E = ",
                E, " with NE = ", NE, " experts");
}

}  // namespace smoe::checks
