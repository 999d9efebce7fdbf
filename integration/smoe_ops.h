// C++ entry points of the smoe operators. They call through the PyTorch dispatcher, so the CPU,
// CUDA and Meta implementations registered by this library (and autograd, where an op has it) are
// used exactly as from Python's torch.ops.smoe.*.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>
#include <tuple>

namespace smoe {

// Top-E experts per pixel of `routing` ([NE,H,W] shared or [B,NE,H,W] per-sample scores), best
// first, ties to the lower expert index. Returns (indices int32, values), shape [E,H,W] or
// [B,E,H,W].
std::tuple<at::Tensor, at::Tensor> route_topk(const at::Tensor &routing, int64_t E);

// Spatial MoE forward: y [B, E·F, H, W], channel j·F+f at a pixel is output f of the j-th selected
// expert there, times values[j] when `values` is given. x [B,C,H,W]; weight [NE·F, C, K, K] (a
// Conv2d weight, K odd, zero "same" padding); indices from route_topk.
at::Tensor forward(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                   const std::optional<at::Tensor> &values = std::nullopt, int64_t F = 1);

// The SMoE layer with autograd: (y, indices) = route the top-E experts of `routing` ([NE,H,W]
// shared or [B,NE,H,W] per-sample), then forward (weighted: gated by the routing scores).
// Gradients flow to x, weight and routing (straight-through for the routing: DESIGN.md §4).
std::tuple<at::Tensor, at::Tensor> spatial_moe(const at::Tensor &x, const at::Tensor &weight,
                                               const at::Tensor &routing, int64_t E, int64_t F = 1,
                                               bool weighted = false);

// The layer's backward in one call: (grad_x, grad_weight, grad_routing), each computed only where
// output_mask is true. values are the routing scores of the selected experts (weighted only).
std::tuple<at::Tensor, at::Tensor, at::Tensor> spatial_moe_backward(const at::Tensor &grad_y, const at::Tensor &x,
                                                                    const at::Tensor &weight, const at::Tensor &indices,
                                                                    const std::optional<at::Tensor> &values, int64_t F,
                                                                    std::array<bool, 3> output_mask);

}  // namespace smoe
