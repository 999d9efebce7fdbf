// LibTorch modules over the smoe operators: a tensor routing gate (shareable between layers) and
// the SMoE convolution layer.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <optional>

#include "smoe_ops.h"

namespace smoe {

// The paper's tensor routing: a learned score per (expert, grid point), [NE, H, W], the same for
// every sample. One gate may feed several SpatialMoE2d layers on the same grid; their gradients
// add up in `routing`. The gate's parameter belongs to the gate: register the gate once in the
// model that owns it (the layers using it do not register it again).
class TensorRoutingGateImpl : public torch::nn::Module {
public:
    // Scores uniform in ±sqrt(3·NE/E) (Kaiming-uniform with fan E/NE).
    TensorRoutingGateImpl(int64_t experts, int64_t selected, int64_t height, int64_t width);

    void reset_parameters();

    // A prior from a class map ([H, W] integers in 0 .. classes-1, e.g. land/sea): class k is
    // routed to its own block of NE/classes experts, k·NE/classes onwards, by scoring the block
    // +sqrt(3·NE/E) and every other expert -sqrt(3·NE/E) at the points of class k.
    void init_from_class_map(const torch::Tensor &class_map, int64_t classes);

    int64_t experts() const { return experts_; }
    int64_t selected() const { return selected_; }

    torch::Tensor routing;  // [NE, H, W]

private:
    int64_t experts_, selected_;
};
TORCH_MODULE(TensorRoutingGate);

struct SpatialMoE2dOptions {
    SpatialMoE2dOptions(int64_t in_channels, int64_t kernel_size) : in_channels_(in_channels), kernel_size_(kernel_size) {}
    TORCH_ARG(int64_t, in_channels);
    TORCH_ARG(int64_t, kernel_size);               // odd; zero "same" padding
    TORCH_ARG(int64_t, out_per_expert) = 1;        // F
    TORCH_ARG(bool, weighted) = false;             // gate each expert's output by its score
    // Training (smoe::BackwardOptions); the defaults are the paper's: RC loss on, q = 0.7, δ = 0.1.
    TORCH_ARG(bool, rc_loss) = true;
    TORCH_ARG(double, rc_weight) = 1.0;
    TORCH_ARG(double, quantile) = 0.7;
    TORCH_ARG(std::optional<double>, damping) = 0.1;      // nullopt: no damping
    TORCH_ARG(std::optional<double>, error_scale) = std::nullopt;  // nullopt: numel(dy)/2
    TORCH_ARG(double, loss_scale) = 1.0;                 // set to the AMP loss scale when using one

public:
    BackwardOptions backward_options() const {
        return BackwardOptions{rc_loss_, rc_weight_, quantile_, damping_, error_scale_, loss_scale_};
    }
};

// The SMoE convolution: a bank of NE experts (a Conv2d(C, NE·F, K) weight) of which the gate
// selects E per grid point; y = [B, E·F, H, W].
class SpatialMoE2dImpl : public torch::nn::Module {
public:
    SpatialMoE2dImpl(const SpatialMoE2dOptions &options, TensorRoutingGate gate);

    // Conv2d's default initialisation of the bank.
    void reset_parameters();

    torch::Tensor forward(const torch::Tensor &x);

    // The experts selected by the last forward, [E, H, W] int32.
    const torch::Tensor &last_indices() const { return last_indices_; }
    // The RC loss of the last forward's backward (0-d; 0 before that backward and with RC off).
    const torch::Tensor &last_rc_loss() const { return last_rc_loss_; }

    SpatialMoE2dOptions options;
    TensorRoutingGate gate;
    torch::Tensor weight;  // [NE·F, C, K, K]

private:
    torch::Tensor last_indices_, last_rc_loss_;
};
TORCH_MODULE(SpatialMoE2d);

}  // namespace smoe
