// Argument checks shared by the operators. Every failure is a c10::Error (RuntimeError in Python)
// whose message names the operator, the argument and what was expected.
#pragma once

#include <ATen/core/Tensor.h>

#include <initializer_list>
#include <optional>
#include <string>

#include "smoe_ops.h"

namespace smoe::checks {

// "[2, 3, 4]"
std::string shape_string(at::IntArrayRef sizes);

// Defined, one of `ranks` dimensions, no dimension of size 0 (except the batch, dimension 0 at
// the highest of `ranks`, when `batch_may_be_empty`), and int32-indexable. Any strides and memory
// format: the ops make their inputs contiguous after the checks. `layout` describes the expected
// shape in the message, e.g. "[B, C, H, W]".
void check_tensor(const char *op, const char *name, const at::Tensor &t, std::initializer_list<int64_t> ranks,
                  const char *layout, bool batch_may_be_empty = false);

// Floating point types that have kernels (float32, float64, float16, bfloat16).
void check_floating(const char *op, const char *name, const at::Tensor &t);

// The kernel lookup for `t`'s dtype and device found one; a build has CPU kernels for the dtypes of
// its CMake option SMOE_CPU_DTYPES and CUDA kernels with SMOE_CUDA.
void check_kernel_built(const char *op, bool built, const at::Tensor &t);

// The type the kernels compute in: float32 for the half-precision storage types, else the type.
// A layer's per-sample quantile and RC loss are kept in it.
at::ScalarType compute_dtype(at::ScalarType storage);
// `t`'s options with its compute dtype.
at::TensorOptions compute_options(const at::Tensor &t);
// `t` has the compute dtype of the reference argument and its device.
void check_compute_dtype_device(const char *op, const char *name, const at::Tensor &t, const char *ref_name,
                                const at::Tensor &ref);

void check_dtype(const char *op, const char *name, const at::Tensor &t, at::ScalarType expected);

// Same dtype and device as the reference argument.
void check_same_dtype_device(const char *op, const char *name, const at::Tensor &t, const char *ref_name,
                             const at::Tensor &ref);

// Size `dim` of `t` equals `expected` (described by `what`, e.g. "x.size(2) (H)").
void check_size(const char *op, const char *name, const at::Tensor &t, int64_t dim, int64_t expected,
                const char *what);

// Halide buffers index with int32: the element count must fit (so every extent fits too).
void check_int32_indexable(const char *op, const char *name, const at::Tensor &t);
// The same for a shape: at most 2^31 - 1 elements.
void check_int32_indexable(const char *op, const char *name, at::IntArrayRef sizes);

// 1 <= E <= NE.
void check_selected_experts(const char *op, int64_t E, int64_t NE);

// 0 <= value <= 1.
void check_unit_interval(const char *op, const char *name, double value);

// The RC loss shares the wrong count among the NE - E unselected experts: needs NE > E.
void check_rc_experts(const char *op, int64_t E, int64_t NE);

// Every option of the layer's backward in range (q, δ in [0, 1]; scales finite and > 0); the RC
// loss needs NE > E.
void check_backward_options(const char *op, const BackwardOptions &options, int64_t E, int64_t NE);

// The shape of one SMoE layer call, from its arguments.
struct LayerShape {
    int64_t batch, experts, selected, out_per_expert, height, width;
    bool shared_routing;
};

// Checks the rank, shape, dtype and device of a layer's arguments (x [B,C,H,W] with B >= 0,
// weight [NE*F,C,K,K], indices [E,H,W] or [B,E,H,W], values like indices) and that the output
// fits int32 indexing, but not the index values.
LayerShape check_layer(const char *op, const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                       const std::optional<at::Tensor> &values, int64_t F);

// Every index lies in 0 .. experts-1 (reads the tensor).
void check_index_range(const char *op, const at::Tensor &indices, int64_t experts);

// False for fake tensors with symbolic shapes (torch.compile), whose sizes cannot be read.
bool has_concrete_shape(const at::Tensor &t);

// routing ([NE,H,W] or [B,NE,H,W]) scores the bank's NE = weight.size(0)/F experts on x's grid.
void check_routing_matches_layer(const char *op, const at::Tensor &x, const at::Tensor &weight,
                                 const at::Tensor &routing, int64_t F);

}  // namespace smoe::checks
