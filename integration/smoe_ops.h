// C++ entry points of the smoe operators. They call through the PyTorch dispatcher, so the CPU,
// CUDA and Meta implementations registered by this library (and autograd, where an op has it) are
// used exactly as from Python's torch.ops.smoe.*.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace smoe {

// Top-E experts per pixel of `routing` ([NE,H,W] shared or [B,NE,H,W] per-sample scores), best
// first, ties to the lower expert index. Returns (indices int32, values), shape [E,H,W] or
// [B,E,H,W].
std::tuple<at::Tensor, at::Tensor> route_topk(const at::Tensor &routing, int64_t E);

// route_topk's indices alone (the same tensor), for unweighted layers: the CPU kernel skips the
// gather of the selected scores.
at::Tensor route_topk_indices(const at::Tensor &routing, int64_t E);

// Spatial MoE forward: y [B, E·F, H, W], channel j·F+f at a pixel is output f of the j-th selected
// expert there, times values[j] when `values` is given. x [B,C,H,W]; weight [NE·F, C, K, K] (a
// Conv2d weight, K odd, zero "same" padding); indices from route_topk.
at::Tensor forward(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                   const std::optional<at::Tensor> &values = std::nullopt, int64_t F = 1);

// How the layer's backward treats the error signal dy (DESIGN.md §4). The defaults give the plain
// gradient of the layer (straight-through for the routing); the paper's training is
// rc_loss = true with damping = 0.1.
struct BackwardOptions {
    bool rc_loss = false;               // train the gate with the RC loss instead of straight-through
    double rc_weight = 1.0;             // factor on the RC loss's gradient
    double quantile = 0.7;              // q of the per-sample error quantile, in [0, 1]
    std::optional<double> damping;      // δ in [0, 1] for misrouted elements; nullopt: no damping
    std::optional<double> error_scale;  // s; nullopt: numel(dy)/2 (undoes a mean-squared error's 2/N)
    double loss_scale = 1.0;            // AMP loss scale dy carries: s is divided by it and the RC
                                        // gradient multiplied by it, like every other gradient
};

// The SMoE layer with autograd: (y, indices, rc_loss) = route the top-E experts of `routing`
// ([NE,H,W] shared or [B,NE,H,W] per-sample), then forward (weighted: gated by the routing
// scores). Gradients flow to x, weight and routing as `options` says. rc_loss is a 0-d tensor
// that the backward fills with the RC loss value (for logging); 0 until then, and when the RC loss
// is off.
std::tuple<at::Tensor, at::Tensor, at::Tensor> spatial_moe(const at::Tensor &x, const at::Tensor &weight,
                                                           const at::Tensor &routing, int64_t E, int64_t F = 1,
                                                           bool weighted = false, const BackwardOptions &options = {});

// The layer's backward in one call: (grad_x, grad_weight, grad_routing, rc_loss), each gradient
// computed only where output_mask is true. values are the routing scores of the selected experts
// (weighted only); routing is needed with the RC loss. rc_loss is the RC loss value (a 0-d
// tensor) when it is on, undefined otherwise.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> spatial_moe_backward(
    const at::Tensor &grad_y, const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
    const std::optional<at::Tensor> &values, const std::optional<at::Tensor> &routing, int64_t F,
    const BackwardOptions &options, std::array<bool, 3> output_mask);

// Per sample b, the exact q-quantile of |ε[b]|·scale with torch.quantile's linear interpolation,
// where ε = grad_y, or grad_y·response when response is given. grad_y [B, ...]; returns [B].
at::Tensor error_quantile(const at::Tensor &grad_y, const std::optional<at::Tensor> &response, double q,
                          double scale);

// The RC loss of DESIGN.md §4: (rc_weight × its gradient with respect to `routing`, the loss value
// as a 0-d tensor), for the error signal ε = grad_y (or grad_y·response) whose per-sample
// quantiles are `quantile` (from error_quantile with the same scale). Labels are never stored.
std::tuple<at::Tensor, at::Tensor> rc_loss(const at::Tensor &grad_y, const std::optional<at::Tensor> &response,
                                           const at::Tensor &indices, const at::Tensor &routing,
                                           const at::Tensor &quantile, double scale, int64_t F = 1,
                                           double rc_weight = 1.0);

// The tuned CPU kernels this build compiled from its tuned stores (README "Tuning"), one line each:
// "op routing gating shape_class knobs target active|inactive (...)". Active ones serve the calls
// of their shape class on this CPU.
std::vector<std::string> tuned_kernels();
// Off: the regular kernels serve every call (to compare with the tuned ones); on by default.
void set_tuned_kernels(bool enabled);

// The formulation variants of the CPU float32 kernels and of the bfloat16 forward (README
// "Choosing the kernels"), one line each: "op routing gating name generator-params shape-classes".
std::vector<std::string> kernel_variants();
// Which kernel serves the CPU float32 calls of forward, backward_data and backward_weight, and the
// bfloat16 forward: "auto" (default: measured per shape and cached, or by shape class when
// SMOE_KERNEL_CACHE=off), "regular", "tuned", or a variant's name (channel_dots, channel_axpys,
// slot_sweeps, dense_rows, expert_groups; pair_dots for bfloat16).
void set_kernel_variant(const std::string &choice);
std::string kernel_variant();
// True when this build and CPU have the bfloat16 forward with bf16 dot-product instructions
// (pair_dots, CPUs with AVX512_BF16; README "Half precision").
bool bf16_dot_products();
// The file measured kernel choices are cached in, or "off".
std::string kernel_choice_cache();

}  // namespace smoe
