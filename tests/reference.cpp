#include "reference.h"

#include <sstream>

#include <torch/csrc/autograd/autograd.h>

namespace smoe::reference {

std::tuple<at::Tensor, at::Tensor> route_topk(const at::Tensor &routing, int64_t E) {
    const int64_t expert_dim = routing.dim() - 3;
    auto [sorted, order] = at::sort(routing, /*stable=*/true, expert_dim, /*descending=*/true);
    return {order.narrow(expert_dim, 0, E).to(at::kInt).contiguous(), sorted.narrow(expert_dim, 0, E).contiguous()};
}

at::Tensor forward(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &indices,
                   const std::optional<at::Tensor> &values, int64_t F) {
    const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
    const int64_t K = weight.size(2);
    at::Tensor dense = at::conv2d(x, weight, {}, 1, K / 2);  // [B, NE·F, H, W]
    at::Tensor idx = indices.dim() == 3 ? indices.unsqueeze(0).expand({B, -1, -1, -1}) : indices;
    const int64_t E = idx.size(1);
    at::Tensor rows = (idx.to(at::kLong).unsqueeze(2) * F + at::arange(F, idx.options().dtype(at::kLong)).view({1, 1, F, 1, 1}))
                          .reshape({B, E * F, H, W});
    at::Tensor y = at::gather(dense, 1, rows);
    if (values.has_value()) {
        at::Tensor v = values->dim() == 3 ? values->unsqueeze(0).expand({B, -1, -1, -1}) : *values;
        y = y * v.repeat_interleave(F, 1);
    }
    return y;
}

std::tuple<at::Tensor, at::Tensor> spatial_moe(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &routing,
                                               int64_t E, int64_t F, bool weighted) {
    const int64_t expert_dim = routing.dim() - 3;
    auto [indices, unused] = route_topk(routing.detach(), E);
    const at::Tensor values = at::gather(routing, expert_dim, indices.to(at::kLong));  // differentiable
    const at::Tensor u = forward(x, weight, indices, std::nullopt, F);
    const int64_t B = x.size(0);
    at::Tensor gate = (values.dim() == 3 ? values.unsqueeze(0).expand({B, -1, -1, -1}) : values).repeat_interleave(F, 1);
    at::Tensor y = weighted ? u * gate : u + (gate - gate.detach());
    return {y, indices};
}

TwoPassGradients two_pass_backward(const at::Tensor &x, const at::Tensor &weight, const at::Tensor &routing, int64_t E,
                                   int64_t F, bool weighted, const at::Tensor &grad_y, const TwoPassOptions &o) {
    const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
    const bool shared = routing.dim() == 3;
    const int64_t NE = routing.size(shared ? 0 : 1);
    const double s = o.error_scale.value_or(static_cast<double>(grad_y.numel()) / 2.0) / o.loss_scale;
    auto per_sample_quantile = [&](const at::Tensor &signal) {
        return at::quantile((signal.abs() * s).reshape({B, -1}), o.quantile, /*dim=*/1, /*keepdim=*/false, "linear")
            .view({B, 1, 1, 1});
    };
    TwoPassGradients result;

    // First pass: the experts, with the damped error.
    at::Tensor damped = grad_y;
    if (o.damping.has_value()) {
        const at::Tensor misrouted = grad_y.abs() * s > per_sample_quantile(grad_y) + 1e-3;
        damped = at::where(misrouted, grad_y * *o.damping, grad_y);
    }
    {
        at::Tensor xr = x.detach().requires_grad_(), wr = weight.detach().requires_grad_();
        at::Tensor z = routing.detach().requires_grad_();
        auto [y, indices] = spatial_moe(xr, wr, z, E, F, weighted);
        const auto grads = torch::autograd::grad({y}, {xr, wr, z}, {damped}, /*retain_graph=*/true);
        result.grad_x = grads[0];
        result.grad_weight = grads[1];
        if (!o.rc_loss) {
            // Straight-through: the gate sees the undamped error.
            result.grad_routing = torch::autograd::grad({y}, {z}, {grad_y})[0];
            return result;
        }
    }

    // Second pass: dense labels, BCE-with-logits, its own backward.
    auto [indices, values] = route_topk(routing, E);
    at::Tensor signal = grad_y;
    if (weighted) signal = grad_y * forward(x, weight, indices, std::nullopt, F);
    const at::Tensor within = (signal.abs() * s <= per_sample_quantile(signal) + 1e-5).view({B, E, F, H, W});
    const at::Tensor correct = within.all(2).to(x.scalar_type());  // [B, E, H, W]
    const at::Tensor wrong = E - correct.sum(1, /*keepdim=*/true);   // [B, 1, H, W]
    at::Tensor labels = (wrong / static_cast<double>(NE - E)).expand({B, NE, H, W}).contiguous();
    const at::Tensor idx = (shared ? indices.unsqueeze(0).expand({B, E, H, W}) : indices).to(at::kLong);
    labels.scatter_(1, idx, correct);
    at::Tensor z = routing.detach().requires_grad_();
    const at::Tensor logits = shared ? z.unsqueeze(0).expand({B, NE, H, W}) : z;
    const at::Tensor loss = at::binary_cross_entropy_with_logits(logits, labels);
    result.grad_routing = torch::autograd::grad({loss * (o.rc_weight * o.loss_scale)}, {z})[0];
    result.rc_loss = loss.detach();
    return result;
}

std::string compare(const at::Tensor &actual, const at::Tensor &expected, double tolerance) {
    std::ostringstream out;
    if (actual.sizes() != expected.sizes()) {
        out << "shape " << actual.sizes() << " != expected " << expected.sizes();
        return out.str();
    }
    at::Tensor a = actual.to(at::kCPU, at::kDouble), e = expected.to(at::kCPU, at::kDouble);
    const double scale = std::max(1.0, e.abs().max().item<double>());
    at::Tensor diff = (a - e).abs();
    const double worst = diff.max().item<double>();
    if (worst <= tolerance * scale) return "";
    const int64_t flat = diff.flatten().argmax().item<int64_t>();
    std::vector<int64_t> coord(actual.dim());
    int64_t rest = flat;
    for (int64_t d = actual.dim() - 1; d >= 0; --d) {
        coord[d] = rest % actual.size(d);
        rest /= actual.size(d);
    }
    out << "max |actual - expected| = " << worst << " > " << tolerance << " * " << scale << " at " << at::IntArrayRef(coord)
        << ": actual " << a.flatten()[flat].item<double>() << ", expected " << e.flatten()[flat].item<double>() << "; "
        << (diff > tolerance * scale).sum().item<int64_t>() << " of " << diff.numel() << " elements differ";
    return out.str();
}

}  // namespace smoe::reference
