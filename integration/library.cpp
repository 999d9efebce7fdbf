// The smoe operator library: schemas of every operator and the C++ entry points. Each op's
// implementations (CPU, CUDA, Meta) live in the file named after it.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "smoe_ops.h"

TORCH_LIBRARY(smoe, m) {
    m.def("route_topk(Tensor routing, int E) -> (Tensor indices, Tensor values)");
    m.def("forward(Tensor x, Tensor weight, Tensor indices, Tensor? values=None, int F=1) -> Tensor");
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

}  // namespace smoe
