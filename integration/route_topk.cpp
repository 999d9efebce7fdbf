// smoe::route_topk: argument checks and the CPU, CUDA and Meta implementations.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "checks.h"
#include "halide_call.h"
#include "kernel_registry.h"
#include "tensor_buffer.h"

namespace smoe {
namespace {

constexpr const char *kOp = "smoe::route_topk";

// Shape of the outputs; checks what can be checked without reading data.
std::vector<int64_t> checked_output_shape(const at::Tensor &routing, int64_t E) {
    checks::check_tensor(kOp, "routing", routing, {3, 4}, "[NE, H, W] or [B, NE, H, W]",
                         /*batch_may_be_empty=*/true);
    checks::check_floating(kOp, "routing", routing);
    const int64_t expert_dim = routing.dim() - 3;
    checks::check_selected_experts(kOp, E, routing.size(expert_dim));
    std::vector<int64_t> shape = routing.sizes().vec();
    shape[expert_dim] = E;
    return shape;
}

std::tuple<at::Tensor, at::Tensor> route_topk_compiled(const at::Tensor &routing_arg, int64_t E) {
    const std::vector<int64_t> shape = checked_output_shape(routing_arg, E);
    if (routing_arg.numel() == 0) {  // an empty batch: nothing to route (and no Halide bounds query)
        return {at::empty(shape, routing_arg.options().dtype(at::kInt)), at::empty(shape, routing_arg.options())};
    }
    const at::Tensor routing = routing_arg.contiguous();
    auto kernel = runtime::find_route_topk(routing.scalar_type(), routing.device().type());
    checks::check_kernel_built(kOp, kernel != nullptr, routing);
    at::Tensor indices = at::empty(shape, routing.options().dtype(at::kInt));
    at::Tensor values = at::empty(shape, routing.options());
    runtime::TensorBuffer routing_buf(routing, 4), indices_buf(indices, 4), values_buf(values, 4);
    runtime::run_kernel(kOp, kernel, runtime::RouteTopKArgs{routing_buf.get(), indices_buf.get(), values_buf.get()},
                        routing.device());
    return {indices, values};
}

// Shape-only (fake/meta tensors, torch.compile): works on symbolic sizes, so it checks only what
// needs no concrete size.
std::tuple<at::Tensor, at::Tensor> route_topk_meta(const at::Tensor &routing, int64_t E) {
    TORCH_CHECK(routing.dim() == 3 || routing.dim() == 4, kOp,
                ": argument 'routing' must have shape [NE, H, W] or [B, NE, H, W], got a ", routing.dim(), "-d tensor");
    checks::check_floating(kOp, "routing", routing);
    TORCH_CHECK(E >= 1, kOp, ": the number of selected experts E must satisfy 1 <= E <= NE; got E = ", E);
    std::vector<c10::SymInt> shape = routing.sym_sizes().vec();
    shape[routing.dim() - 3] = E;
    return {at::empty_symint(shape, routing.options().dtype(at::kInt)), at::empty_symint(shape, routing.options())};
}

}  // namespace

TORCH_LIBRARY_IMPL(smoe, CPU, m) { m.impl("route_topk", route_topk_compiled); }
TORCH_LIBRARY_IMPL(smoe, Meta, m) { m.impl("route_topk", route_topk_meta); }
#ifdef SMOE_WITH_TORCH_CUDA
TORCH_LIBRARY_IMPL(smoe, CUDA, m) { m.impl("route_topk", route_topk_compiled); }
#endif

}  // namespace smoe
