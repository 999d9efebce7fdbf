// Autograd for smoe::spatial_moe: the forward runs the layer below autograd and keeps what the
// backward needs; the backward is the separate op smoe::spatial_moe_backward, one call for all
// three gradients.
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "checks.h"
#include "smoe_ops.h"

namespace smoe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class SpatialMoEFunction : public torch::autograd::Function<SpatialMoEFunction> {
public:
    static variable_list forward(AutogradContext *ctx, const at::Tensor &x, const at::Tensor &weight,
                                 const at::Tensor &routing, int64_t E, int64_t F, bool weighted) {
        at::AutoDispatchBelowADInplaceOrView below_autograd;
        if (checks::has_concrete_shape(x)) checks::check_routing_matches_layer("smoe::spatial_moe", x, weight, routing, F);
        auto [indices, values] = smoe::route_topk(routing, E);
        std::optional<at::Tensor> gate;
        if (weighted) gate = values;
        at::Tensor y = smoe::forward(x, weight, indices, gate, F);
        ctx->save_for_backward({x, weight, indices, weighted ? values : at::Tensor()});
        ctx->saved_data["F"] = F;
        ctx->saved_data["weighted"] = weighted;
        ctx->mark_non_differentiable({indices});
        return {y, indices};
    }

    static variable_list backward(AutogradContext *ctx, variable_list grads) {
        const variable_list saved = ctx->get_saved_variables();
        const int64_t F = ctx->saved_data["F"].toInt();
        const bool weighted = ctx->saved_data["weighted"].toBool();
        const std::array<bool, 3> mask = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)};
        at::Tensor grad_y = grads[0];
        if (!grad_y.defined() || !(mask[0] || mask[1] || mask[2])) {
            return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
        }
        std::optional<at::Tensor> values;
        if (weighted) values = saved[3];
        auto [grad_x, grad_weight, grad_routing] =
            smoe::spatial_moe_backward(grad_y.contiguous(), saved[0], saved[1], saved[2], values, F, mask);
        return {grad_x, grad_weight, grad_routing, at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

std::tuple<at::Tensor, at::Tensor> spatial_moe_autograd(const at::Tensor &x, const at::Tensor &weight,
                                                        const at::Tensor &routing, int64_t E, int64_t F,
                                                        bool weighted) {
    const variable_list outputs = SpatialMoEFunction::apply(x, weight, routing, E, F, weighted);
    return {outputs[0], outputs[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(smoe, Autograd, m) { m.impl("spatial_moe", spatial_moe_autograd); }

}  // namespace smoe
