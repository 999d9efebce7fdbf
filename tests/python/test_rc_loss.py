"""The RC loss and damping from Python: the error quantile against torch.quantile, and one backward
of torch.ops.smoe.spatial_moe against the paper's two-pass procedure written with torch ops."""
import itertools
import math
import unittest

import torch
import torch.nn.functional as nnf

import smoe
from test_ops import reference_forward


def two_pass(x, weight, routing, E, F, weighted, grad_y, rc_weight=1.0, q=0.7, damping=0.1, error_scale=None,
             loss_scale=1.0):
    """torch.quantile, a dense misrouted mask and dense labels, BCE-with-logits, two backwards."""
    B, _, H, W = x.shape
    shared = routing.dim() == 3
    NE = weight.shape[0] // F
    s = (error_scale if error_scale is not None else grad_y.numel() / 2) / loss_scale

    def quantile(signal):
        return torch.quantile((signal.abs() * s).reshape(B, -1), q, dim=1).view(B, 1, 1, 1)

    order = torch.sort(routing, dim=-3, descending=True, stable=True).indices
    indices = order.narrow(-3, 0, E)
    values = torch.gather(routing, -3, indices)
    xr, wr = x.detach().requires_grad_(), weight.detach().requires_grad_()
    y = reference_forward(xr, wr, indices, values.detach() if weighted else None, F)
    damped = grad_y
    if damping is not None:
        damped = torch.where(grad_y.abs() * s > quantile(grad_y) + 1e-3, grad_y * damping, grad_y)
    grad_x, grad_weight = torch.autograd.grad(y, (xr, wr), damped)

    signal = grad_y * reference_forward(x, weight, indices, None, F) if weighted else grad_y
    correct = (signal.abs() * s <= quantile(signal) + 1e-5).view(B, E, F, H, W).all(2).to(x.dtype)
    wrong = E - correct.sum(1, keepdim=True)
    labels = (wrong / (NE - E)).expand(B, NE, H, W).contiguous()
    labels.scatter_(1, (indices.expand(B, E, H, W) if shared else indices), correct)
    z = routing.detach().requires_grad_()
    loss = nnf.binary_cross_entropy_with_logits(z.expand(B, NE, H, W) if shared else z, labels)
    (grad_routing,) = torch.autograd.grad(loss * rc_weight * loss_scale, z)
    return grad_x, grad_weight, grad_routing, loss.detach()


# B, C, H, W, NE, E, K, F, shared, weighted
CONFIGS = [
    (4, 1, 16, 16, 3, 1, 3, 1, True, False),   # the heat layer
    (3, 2, 8, 6, 5, 2, 3, 1, True, True),
    (3, 2, 8, 6, 5, 2, 3, 1, False, False),
    (2, 3, 7, 9, 4, 2, 3, 2, False, True),
    (2, 4, 10, 10, 8, 7, 1, 1, True, False),
]


class ErrorQuantile(unittest.TestCase):
    def test_matches_torch_quantile(self):
        torch.manual_seed(0)
        for q, ties, product in itertools.product((0.0, 0.3, 0.7, 1.0), (False, True), (False, True)):
            dy = torch.randn(6, 3, 7, 5)
            if ties:
                dy = torch.round(dy * 2) / 2
            u = torch.randn_like(dy)
            scale = dy.numel() / 2
            expected = torch.quantile(((dy * u if product else dy).abs() * scale).reshape(6, -1), q, dim=1)
            actual = smoe.error_quantile(dy, u if product else None, q, scale)
            torch.testing.assert_close(actual, expected, rtol=2e-7, atol=0)

    def test_opcheck(self):
        dy = torch.randn(3, 2, 4, 5)
        torch.library.opcheck(torch.ops.smoe.error_quantile.default, (dy, None, 0.7, 20.0))
        torch.library.opcheck(torch.ops.smoe.error_quantile.default, (dy, torch.randn_like(dy), 0.3, 20.0))


class OneBackward(unittest.TestCase):
    def test_equals_two_passes(self):
        for config, (q, damping) in itertools.product(CONFIGS, ((0.7, 0.1), (0.3, None), (1.0, 0.5))):
            with self.subTest(config=config, q=q, damping=damping):
                B, C, H, W, NE, E, K, F, shared, weighted = config
                generator = torch.Generator().manual_seed(1)
                x = torch.randn(B, C, H, W, generator=generator)
                weight = torch.randn(NE * F, C, K, K, generator=generator)
                routing = torch.randn((NE, H, W) if shared else (B, NE, H, W), generator=generator)
                grad_y = torch.round(torch.randn(B, E * F, H, W, generator=generator) * 4) / 4  # ties, zeros
                expected = two_pass(x, weight, routing, E, F, weighted, grad_y, q=q, damping=damping)

                leaves = [t.clone().requires_grad_() for t in (x, weight, routing)]
                y, _, rc_loss = smoe.spatial_moe(*leaves, E, F, weighted, True, 1.0, q, damping, None, 1.0)
                self.assertEqual(rc_loss.item(), 0.0)  # filled in by the backward
                y.backward(grad_y)
                for actual, wanted in zip([t.grad for t in leaves] + [rc_loss], expected):
                    torch.testing.assert_close(actual, wanted, rtol=2e-5, atol=2e-5 * max(1.0, wanted.abs().max()))

    def test_opcheck_rc_loss(self):
        grad_y = torch.randn(2, 4, 5, 6)
        routing = torch.randn(5, 5, 6)
        indices, _ = smoe.route_topk(routing, 2)
        quantile = smoe.error_quantile(grad_y, None, 0.7, 120.0)
        torch.library.opcheck(torch.ops.smoe.rc_loss.default, (grad_y, None, indices, routing, quantile, 120.0, 2, 1.0))

    def test_module_trains_the_paper_way_and_reports_the_loss(self):
        torch.manual_seed(2)
        gate = smoe.TensorRoutingGate(3, 1, 8, 8)
        layer = smoe.SpatialMoE2d(1, gate)
        self.assertEqual((layer.rc_loss, layer.damping, layer.quantile), (True, 0.1, 0.7))
        y = layer(torch.randn(4, 1, 8, 8))
        y.square().mean().backward()
        self.assertTrue(math.isfinite(layer.last_rc_loss.item()))
        self.assertIsNotNone(gate.routing.grad)

    def test_bad_options_are_named(self):
        x, weight, routing = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3), torch.randn(4, 6, 6)
        with self.assertRaisesRegex(RuntimeError, "'quantile' must lie in"):
            smoe.spatial_moe(x, weight, routing, 2, quantile=1.5)
        with self.assertRaisesRegex(RuntimeError, "'damping' must lie in"):
            smoe.spatial_moe(x, weight, routing, 2, damping=2.0)
        with self.assertRaisesRegex(RuntimeError, r"NE > E"):
            smoe.spatial_moe(x, weight, routing, 4, rc_loss=True)


if __name__ == "__main__":
    unittest.main()
