// The plain LibTorch reference of DESIGN.md §4 that every kernel is checked against, and the
// comparison helpers the suites share.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <tuple>

namespace smoe::reference {

// Top-E along the expert axis by a stable descending sort: equal scores keep the lower index first.
std::tuple<at::Tensor, at::Tensor> route_topk(const at::Tensor &routing, int64_t E);

// Dense convolution over all NE·F filters, then a gather of the selected channels (the paper's
// method), optionally gated by the routing values.
at::Tensor forward(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                   const std::optional<at::Tensor> &values, int64_t F);

// The layer, differentiable by LibTorch's autograd: top-E routing, the dense forward, gated by
// the routing scores when weighted; unweighted, the routing gets the straight-through gradient
// (Σ_f dy at each selected expert) through a term that is zero in value. Returns (y, indices).
std::tuple<at::Tensor, at::Tensor> spatial_moe(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &routing,
                                               int64_t E, int64_t F, bool weighted);

// The paper's two-pass procedure for damping and the RC loss (DESIGN.md §4), written with plain
// LibTorch: torch.quantile per sample, a dense misrouted mask, a first backward of the damped
// error through the dense reference layer for grad_x and grad_weight, then dense labels,
// BCE-with-logits and a second backward for the routing scores (straight-through when the RC
// loss is off).
struct TwoPassGradients {
    at::Tensor grad_x, grad_weight, grad_routing, rc_loss;
};
struct TwoPassOptions {
    bool rc_loss = false;
    double rc_weight = 1.0, quantile = 0.7;
    std::optional<double> damping, error_scale;
    double loss_scale = 1.0;
};
TwoPassGradients two_pass_backward(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &routing, int64_t E,
                                   int64_t F, bool weighted, const at::Tensor &grad_y, const TwoPassOptions &options);

// Empty when |actual - expected| <= tolerance · max(1, max|expected|) everywhere; otherwise a
// message with the worst coordinate and values.
std::string compare(const at::Tensor &actual, const at::Tensor &expected, double tolerance);

}  // namespace smoe::reference
