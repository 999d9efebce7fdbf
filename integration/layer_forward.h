// The layer's forward below autograd, shared by smoe::spatial_moe's composite and autograd
// implementations: route the top E experts, then run the forward kernel.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

#include "smoe_ops.h"

namespace smoe {

struct LayerForward {
    at::Tensor y, indices;
    std::optional<at::Tensor> values;  // the selected scores, weighted layers only
};

// An unweighted layer never reads the selected scores, so it routes with route_topk_indices.
inline LayerForward route_and_forward(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &routing,
                                      int64_t E, int64_t F, bool weighted) {
    LayerForward out;
    if (weighted) {
        std::tie(out.indices, out.values) = smoe::route_topk(routing, E);
    } else {
        out.indices = smoe::route_topk_indices(routing, E);
    }
    out.y = smoe::forward(x, weight, out.indices, out.values, F);
    return out;
}

}  // namespace smoe
