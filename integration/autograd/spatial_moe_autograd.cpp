// Autograd for smoe::spatial_moe: the forward runs the layer below autograd and keeps what the
// backward needs; the backward is the separate op smoe::spatial_moe_backward, one call for all
// three gradients (and the RC loss, which it writes into the forward's rc_loss output).
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "checks.h"
#include "layer_forward.h"
#include "smoe_ops.h"

namespace smoe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// torch.compile traces the backward with fake, functional tensors (Python and Functionalize
// dispatch keys). The RC loss output is a forward output written by the backward: a mutation a
// traced graph cannot express, so tracing leaves it out (the output stays 0 under torch.compile).
bool is_being_traced(const at::Tensor &t) {
    return t.key_set().has_any(c10::DispatchKeySet({c10::DispatchKey::Python, c10::DispatchKey::Functionalize})) ||
           t.is_meta();
}

class SpatialMoEFunction : public torch::autograd::Function<SpatialMoEFunction> {
public:
    static variable_list forward(AutogradContext *ctx, const at::Tensor &x, const at::Tensor &weight,
                                 const at::Tensor &routing, int64_t E, int64_t F, bool weighted,
                                 const BackwardOptions &options) {
        at::AutoDispatchBelowADInplaceOrView below_autograd;
        if (checks::has_concrete_shape(x)) {
            checks::check_routing_matches_layer("smoe::spatial_moe", x, weight, routing, F);
            checks::check_backward_options("smoe::spatial_moe", options, E, weight.size(0) / F);
        }
        const LayerForward layer = route_and_forward(x, weight, routing, E, F, weighted);
        const at::Tensor &y = layer.y, &indices = layer.indices;
        // Filled in by the backward when the RC loss is on.
        at::Tensor rc_loss = at::zeros({}, checks::compute_options(x));
        ctx->save_for_backward(
            {x, weight, indices, layer.values.value_or(at::Tensor()), options.rc_loss ? routing : at::Tensor()});
        ctx->saved_data["F"] = F;
        ctx->saved_data["weighted"] = weighted;
        ctx->saved_data["rc_loss"] = options.rc_loss;
        ctx->saved_data["rc_weight"] = options.rc_weight;
        ctx->saved_data["quantile"] = options.quantile;
        ctx->saved_data["damping"] = options.damping;
        ctx->saved_data["error_scale"] = options.error_scale;
        ctx->saved_data["loss_scale"] = options.loss_scale;
        ctx->saved_data["rc_loss_value"] = rc_loss;
        ctx->mark_non_differentiable({indices, rc_loss});
        return {y, indices, rc_loss};
    }

    static variable_list backward(AutogradContext *ctx, variable_list grads) {
        const variable_list saved = ctx->get_saved_variables();
        const int64_t F = ctx->saved_data["F"].toInt();
        const bool weighted = ctx->saved_data["weighted"].toBool();
        BackwardOptions options;
        options.rc_loss = ctx->saved_data["rc_loss"].toBool();
        options.rc_weight = ctx->saved_data["rc_weight"].toDouble();
        options.quantile = ctx->saved_data["quantile"].toDouble();
        options.damping = ctx->saved_data["damping"].toOptional<double>();
        options.error_scale = ctx->saved_data["error_scale"].toOptional<double>();
        options.loss_scale = ctx->saved_data["loss_scale"].toDouble();
        const std::array<bool, 3> mask = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)};
        variable_list none(7);  // one per argument of forward
        at::Tensor grad_y = grads[0];
        if (!grad_y.defined() || !(mask[0] || mask[1] || mask[2])) return none;
        std::optional<at::Tensor> values, routing;
        if (weighted) values = saved[3];
        if (options.rc_loss) routing = saved[4];
        auto [grad_x, grad_weight, grad_routing, rc_loss] = smoe::spatial_moe_backward(
            grad_y.contiguous(), saved[0], saved[1], saved[2], values, routing, F, options, mask);
        at::Tensor rc_loss_output = ctx->saved_data["rc_loss_value"].toTensor();
        if (rc_loss.defined() && !is_being_traced(rc_loss_output)) {
            at::NoGradGuard no_grad;
            rc_loss_output.copy_(rc_loss);
        }
        variable_list result = none;
        result[0] = grad_x;
        result[1] = grad_weight;
        result[2] = grad_routing;
        return result;
    }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> spatial_moe_autograd(
    const at::Tensor &x, const at::Tensor &weight, const at::Tensor &routing, int64_t E, int64_t F, bool weighted,
    bool rc_loss, double rc_weight, double quantile, std::optional<double> damping, std::optional<double> error_scale,
    double loss_scale) {
    const BackwardOptions options{rc_loss, rc_weight, quantile, damping, error_scale, loss_scale};
    const variable_list outputs = SpatialMoEFunction::apply(x, weight, routing, E, F, weighted, options);
    return {outputs[0], outputs[1], outputs[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(smoe, Autograd, m) { m.impl("spatial_moe", spatial_moe_autograd); }

}  // namespace smoe
