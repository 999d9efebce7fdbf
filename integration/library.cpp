// The smoe operator library: schemas of every operator and the C++ entry points. Each op's
// implementations (CPU, CUDA, Meta) live in the file named after it.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "smoe_ops.h"

TORCH_LIBRARY(smoe, m) {
    m.def("route_topk(Tensor routing, int E) -> (Tensor indices, Tensor values)");
    m.def("forward(Tensor x, Tensor weight, Tensor indices, Tensor? values=None, int F=1) -> Tensor");
    // The layer with autograd: routing + forward; its backward is spatial_moe_backward.
    m.def("spatial_moe(Tensor x, Tensor weight, Tensor routing, int E, int F=1, bool weighted=False) "
          "-> (Tensor y, Tensor indices)");
    // grad_x, grad_weight and the straight-through gradient of the routing scores, each only where
    // output_mask asks for it (an undefined tensor otherwise).
    m.def("spatial_moe_backward(Tensor grad_y, Tensor x, Tensor weight, Tensor indices, Tensor? values, int F, "
          "bool[3] output_mask) -> (Tensor grad_x, Tensor grad_weight, Tensor grad_routing)");
}

namespace smoe {

std::tuple<at::Tensor, at::Tensor> route_topk(const at::Tensor &routing, int64_t E) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("smoe::route_topk", "")
                               .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor &, int64_t)>();
    return op.call(routing, E);
}

at::Tensor forward(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                   const std::optional<at::Tensor> &values, int64_t F) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("smoe::forward", "")
                               .typed<at::Tensor(const at::Tensor &, const at::Tensor &, const at::Tensor &,
                                                 const std::optional<at::Tensor> &, int64_t)>();
    return op.call(x, weight, indices, values, F);
}

std::tuple<at::Tensor, at::Tensor> spatial_moe(const at::Tensor &x, const at::Tensor &weight,
                                               const at::Tensor &routing, int64_t E, int64_t F, bool weighted) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("smoe::spatial_moe", "")
                               .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor &, const at::Tensor &,
                                                                         const at::Tensor &, int64_t, int64_t, bool)>();
    return op.call(x, weight, routing, E, F, weighted);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> spatial_moe_backward(const at::Tensor &grad_y, const at::Tensor &x,
                                                                    const at::Tensor &weight, const at::Tensor &indices,
                                                                    const std::optional<at::Tensor> &values, int64_t F,
                                                                    std::array<bool, 3> output_mask) {
    static const auto op =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("smoe::spatial_moe_backward", "")
            .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                const at::Tensor &, const at::Tensor &, const at::Tensor &, const at::Tensor &,
                const std::optional<at::Tensor> &, int64_t, std::array<bool, 3>)>();
    return op.call(grad_y, x, weight, indices, values, F, output_mask);
}

}  // namespace smoe
