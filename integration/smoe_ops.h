// C++ entry points of the smoe operators. They call through the PyTorch dispatcher, so the CPU,
// CUDA and Meta implementations registered by this library (and autograd, where an op has it) are
// used exactly as from Python's torch.ops.smoe.*.
#pragma once

#include <ATen/core/Tensor.h>

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

}  // namespace smoe
