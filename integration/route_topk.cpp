// smoe::route_topk and smoe::route_topk_indices: argument checks and the CPU, CUDA and Meta
// implementations.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "checks.h"
#include "halide_call.h"
#include "kernel_registry.h"
#include "tensor_buffer.h"

namespace smoe {
namespace {

constexpr const char *kOp = "smoe::route_topk";
constexpr const char *kIndicesOp = "smoe::route_topk_indices";

// Shape of the outputs; checks what can be checked without reading data.
std::vector<int64_t> checked_output_shape(const char *op, const at::Tensor &routing, int64_t E) {
    checks::check_tensor(op, "routing", routing, {3, 4}, "[NE, H, W] or [B, NE, H, W]",
                         /*batch_may_be_empty=*/true);
    checks::check_floating(op, "routing", routing);
    const int64_t expert_dim = routing.dim() - 3;
    checks::check_selected_experts(op, E, routing.size(expert_dim));
    std::vector<int64_t> shape = routing.sizes().vec();
    shape[expert_dim] = E;
    return shape;
}

// Runs the kernel. Without `with_values` (unweighted layers never read the selected scores) a CPU
// call gives the kernel a one-element values buffer, so the scores' gather computes one element (a
// pipeline with an empty output returns without computing any); a CUDA call writes them to a
// scratch tensor.
std::tuple<at::Tensor, at::Tensor> run_route_topk(const char *op, const at::Tensor &routing_arg, int64_t E,
                                                  bool with_values) {
    const std::vector<int64_t> shape = checked_output_shape(op, routing_arg, E);
    const std::vector<int64_t> values_shape =
        with_values || routing_arg.is_cuda() ? shape : std::vector<int64_t>(shape.size(), 1);
    if (routing_arg.numel() == 0) {  // an empty batch: nothing to route (and no Halide bounds query)
        return {at::empty(shape, routing_arg.options().dtype(at::kInt)),
                at::empty(values_shape, routing_arg.options())};
    }
    const at::Tensor routing = routing_arg.contiguous();
    auto kernel = runtime::find_route_topk(routing.scalar_type(), routing.device().type());
    checks::check_kernel_built(op, kernel != nullptr, routing);
    at::Tensor indices = at::empty(shape, routing.options().dtype(at::kInt));
    at::Tensor values = at::empty(values_shape, routing.options());
    runtime::TensorBuffer routing_buf(routing, 4), indices_buf(indices, 4), values_buf(values, 4);
    runtime::run_kernel(op, kernel, runtime::RouteTopKArgs{routing_buf.get(), indices_buf.get(), values_buf.get()},
                        routing.device());
    return {indices, values};
}

std::tuple<at::Tensor, at::Tensor> route_topk_compiled(const at::Tensor &routing, int64_t E) {
    return run_route_topk(kOp, routing, E, /*with_values=*/true);
}

at::Tensor route_topk_indices_compiled(const at::Tensor &routing, int64_t E) {
    return std::get<0>(run_route_topk(kIndicesOp, routing, E, /*with_values=*/false));
}

// Shape-only (fake/meta tensors, torch.compile): works on symbolic sizes, so it checks only what
// needs no concrete size.
std::vector<c10::SymInt> meta_output_shape(const char *op, const at::Tensor &routing, int64_t E) {
    TORCH_CHECK(routing.dim() == 3 || routing.dim() == 4, op,
                ": argument 'routing' must have shape [NE, H, W] or [B, NE, H, W], got a ", routing.dim(), "-d tensor");
    checks::check_floating(op, "routing", routing);
    TORCH_CHECK(E >= 1, op, ": the number of selected experts E must satisfy 1 <= E <= NE; got E = ", E);
    std::vector<c10::SymInt> shape = routing.sym_sizes().vec();
    shape[routing.dim() - 3] = E;
    return shape;
}

std::tuple<at::Tensor, at::Tensor> route_topk_meta(const at::Tensor &routing, int64_t E) {
    const std::vector<c10::SymInt> shape = meta_output_shape(kOp, routing, E);
    return {at::empty_symint(shape, routing.options().dtype(at::kInt)), at::empty_symint(shape, routing.options())};
}

at::Tensor route_topk_indices_meta(const at::Tensor &routing, int64_t E) {
    return at::empty_symint(meta_output_shape(kIndicesOp, routing, E), routing.options().dtype(at::kInt));
}

}  // namespace

TORCH_LIBRARY_IMPL(smoe, CPU, m) {
    m.impl("route_topk", route_topk_compiled);
    m.impl("route_topk_indices", route_topk_indices_compiled);
}
TORCH_LIBRARY_IMPL(smoe, Meta, m) {
    m.impl("route_topk", route_topk_meta);
    m.impl("route_topk_indices", route_topk_indices_meta);
}
#ifdef SMOE_WITH_TORCH_CUDA
TORCH_LIBRARY_IMPL(smoe, CUDA, m) {
    m.impl("route_topk", route_topk_compiled);
    m.impl("route_topk_indices", route_topk_indices_compiled);
}
#endif

}  // namespace smoe
