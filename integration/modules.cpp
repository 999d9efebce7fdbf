#include "modules.h"

#include <torch/nn/init.h>

#include <cmath>

#include "checks.h"
#include "smoe_ops.h"

namespace smoe {

TensorRoutingGateImpl::TensorRoutingGateImpl(int64_t experts, int64_t selected, int64_t height, int64_t width)
    : experts_(experts), selected_(selected) {
    checks::check_selected_experts("smoe::TensorRoutingGate", selected, experts);
    TORCH_CHECK(height >= 1 && width >= 1, "smoe::TensorRoutingGate: the grid must be at least 1x1, got ", height,
                "x", width);
    routing = register_parameter("routing", torch::empty({experts, height, width}));
    reset_parameters();
}

void TensorRoutingGateImpl::reset_parameters() {
    const double bound = std::sqrt(3.0 * static_cast<double>(experts_) / static_cast<double>(selected_));
    torch::NoGradGuard no_grad;
    routing.uniform_(-bound, bound);
}

void TensorRoutingGateImpl::init_from_class_map(const torch::Tensor &class_map, int64_t classes) {
    const char *op = "smoe::TensorRoutingGate::init_from_class_map";
    TORCH_CHECK(classes >= 1 && classes <= experts_, op, ": classes must be in 1 .. NE = ", experts_, ", got ",
                classes);
    TORCH_CHECK(class_map.dim() == 2 && class_map.size(0) == routing.size(1) && class_map.size(1) == routing.size(2),
                op, ": argument 'class_map' must have the grid's shape [H, W] = [", routing.size(1), ", ",
                routing.size(2), "], got ", checks::shape_string(class_map.sizes()));
    TORCH_CHECK(!at::isFloatingType(class_map.scalar_type()) && class_map.scalar_type() != at::kBool, op,
                ": argument 'class_map' must hold integer class labels, got ", class_map.scalar_type());
    const at::Tensor labels = class_map.to(routing.device(), at::kLong);
    TORCH_CHECK(labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() < classes, op,
                ": argument 'class_map' holds labels outside 0 .. ", classes - 1);
    const double bound = std::sqrt(3.0 * static_cast<double>(experts_) / static_cast<double>(selected_));
    // block[e] = the class expert e serves.
    const at::Tensor block = torch::div(torch::arange(experts_, labels.options()) * classes, experts_, "floor");
    const at::Tensor in_block = block.view({experts_, 1, 1}) == labels.unsqueeze(0);
    torch::NoGradGuard no_grad;
    routing.copy_(torch::where(in_block, bound, -bound).to(routing.scalar_type()));
}

SpatialMoE2dImpl::SpatialMoE2dImpl(const SpatialMoE2dOptions &options_, TensorRoutingGate gate_)
    : options(options_), gate(std::move(gate_)) {
    const char *op = "smoe::SpatialMoE2d";
    TORCH_CHECK(gate, op, ": needs a TensorRoutingGate");
    TORCH_CHECK(options.in_channels() >= 1, op, ": in_channels must be >= 1, got ", options.in_channels());
    TORCH_CHECK(options.kernel_size() >= 1 && options.kernel_size() % 2 == 1, op,
                ": kernel_size must be odd (zero 'same' padding), got ", options.kernel_size());
    TORCH_CHECK(options.out_per_expert() >= 1, op, ": out_per_expert must be >= 1, got ", options.out_per_expert());
    checks::check_backward_options(op, options.backward_options(), gate->selected(), gate->experts());
    weight = register_parameter("weight", torch::empty({gate->experts() * options.out_per_expert(),
                                                        options.in_channels(), options.kernel_size(),
                                                        options.kernel_size()}));
    reset_parameters();
}

void SpatialMoE2dImpl::reset_parameters() {
    torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
}

torch::Tensor SpatialMoE2dImpl::forward(const torch::Tensor &x) {
    auto [y, indices, rc_loss] = smoe::spatial_moe(x, weight, gate->routing, gate->selected(),
                                                   options.out_per_expert(), options.weighted(),
                                                   options.backward_options());
    last_indices_ = indices;
    last_rc_loss_ = rc_loss;
    return y;
}

}  // namespace smoe
