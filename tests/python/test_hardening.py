"""Inputs users produce that are not the plain case: any strides and channels_last, an empty batch,
NaN and Inf, and determinism across processes."""
import hashlib
import os
import subprocess
import sys
import unittest

import torch

import smoe
from test_ops import reference_forward


def layer_inputs(shared=True, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 4, 6, 7, generator=g)
    weight = torch.randn(10, 4, 3, 3, generator=g)  # NE = 5, F = 2
    routing = torch.randn((5, 6, 7) if shared else (B, 5, 6, 7), generator=g)
    return x, weight, routing


def layer_gradients(x, weight, routing, grad_y, **options):
    leaves = [t.detach().requires_grad_() for t in (x, weight, routing)]
    y, indices, rc_loss = smoe.spatial_moe(*leaves, 2, 2, True, **options)
    y.backward(grad_y)
    return [y.detach(), indices] + [t.grad for t in leaves] + [rc_loss]


class Layouts(unittest.TestCase):
    """Non-contiguous and channels_last tensors give exactly the contiguous answer."""

    def test_every_op_accepts_any_layout(self):
        x, weight, routing = layer_inputs(shared=False)
        indices, values = smoe.route_topk(routing, 2)
        grad_y = torch.randn(3, 4, 6, 7)
        strided = {
            "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t,
            "transposed": lambda t: t.transpose(-1, -2).contiguous().transpose(-1, -2),
            "sliced": lambda t: torch.cat([t, t], dim=-1)[..., : t.shape[-1]],
        }
        for name, change in strided.items():
            with self.subTest(name):
                self.assertFalse(change(x).is_contiguous())
                self.assertTrue(torch.equal(smoe.route_topk(change(routing), 2)[0], indices))
                self.assertTrue(torch.equal(smoe.forward(change(x), change(weight), change(indices), change(values), 2),
                                            smoe.forward(x, weight, indices, values, 2)))
                q = smoe.error_quantile(grad_y, None, 0.7, 84.0)
                self.assertTrue(torch.equal(smoe.error_quantile(change(grad_y), change(grad_y), 0.7, 84.0),
                                            smoe.error_quantile(grad_y, grad_y, 0.7, 84.0)))
                expected = smoe.rc_loss(grad_y, None, indices, routing, q, 84.0, 2)
                actual = smoe.rc_loss(change(grad_y), None, change(indices), change(routing), q, 84.0, 2)
                for a, b in zip(actual, expected):
                    self.assertTrue(torch.equal(a, b))
                options = dict(rc_loss=True, damping=0.1)
                for a, b in zip(layer_gradients(change(x), change(weight), change(routing), change(grad_y), **options),
                                layer_gradients(x, weight, routing, grad_y, **options)):
                    self.assertTrue(torch.equal(a, b))

    def test_channels_last_model(self):
        torch.manual_seed(0)
        gate = smoe.TensorRoutingGate(4, 2, 8, 8)
        layer = smoe.SpatialMoE2d(3, gate)
        x = torch.randn(2, 3, 8, 8)
        expected = layer(x)
        actual = layer(x.contiguous(memory_format=torch.channels_last))
        self.assertTrue(torch.equal(actual, expected))


class EmptyBatch(unittest.TestCase):
    """B = 0: empty outputs, zero batch sums, no kernel call (an empty Halide buffer would be taken
    for a bounds query and silently do nothing)."""

    def test_ops(self):
        x, weight, routing = layer_inputs(B=0, shared=False)
        indices, values = smoe.route_topk(routing, 2)
        self.assertEqual((indices.shape, values.shape), ((0, 2, 6, 7), (0, 2, 6, 7)))
        self.assertEqual(smoe.forward(x, weight, indices, values, 2).shape, (0, 4, 6, 7))
        grad_y = torch.empty(0, 4, 6, 7)
        self.assertEqual(smoe.error_quantile(grad_y, None, 0.7, 1.0).shape, (0,))
        grad_routing, loss = smoe.rc_loss(grad_y, None, indices, routing, torch.empty(0), 1.0, 2)
        self.assertEqual(grad_routing.shape, routing.shape)
        self.assertTrue(loss.isnan())  # a mean over no elements, as torch's BCE gives

    def test_layer_with_autograd(self):
        for shared in (True, False):
            with self.subTest(shared=shared):
                x, weight, routing = layer_inputs(B=0, shared=shared)
                y, indices, grad_x, grad_weight, grad_routing, rc_loss = layer_gradients(
                    x, weight, routing, torch.empty(0, 4, 6, 7), rc_loss=True, damping=0.1)
                self.assertEqual(y.shape, (0, 4, 6, 7))
                self.assertEqual(grad_x.shape, x.shape)
                self.assertTrue(torch.equal(grad_weight, torch.zeros_like(weight)))
                self.assertTrue(torch.equal(grad_routing, torch.zeros_like(routing)))
                self.assertTrue(rc_loss.isnan())

    def test_module(self):
        layer = smoe.SpatialMoE2d(4, smoe.TensorRoutingGate(5, 2, 6, 7))
        y = layer(torch.empty(0, 4, 6, 7))
        self.assertEqual(y.shape, (0, 2, 6, 7))
        y.sum().backward()
        self.assertTrue(torch.equal(layer.weight.grad, torch.zeros_like(layer.weight)))


class NonFinite(unittest.TestCase):
    """NaN and Inf propagate as IEEE arithmetic does, exactly where the reference puts them."""

    def test_forward_propagates_like_the_dense_reference(self):
        x, weight, routing = layer_inputs()
        x[0, 1, 2, 3] = float("nan")
        x[1, 2, 4, 4] = float("inf")
        x[2, 0, 0, 0] = -float("inf")
        weight[3, 0, 1, 1] = float("inf")
        indices, values = smoe.route_topk(routing, 2)
        y = smoe.forward(x, weight, indices, values, 2)
        expected = reference_forward(x, weight, indices, values, 2)
        self.assertTrue(torch.equal(y.isnan(), expected.isnan()))
        self.assertTrue(torch.equal(y.isinf(), expected.isinf()))
        torch.testing.assert_close(y, expected, equal_nan=True)

    def test_routing_ranks_nan_highest_like_torch_sort(self):
        routing = torch.randn(5, 3, 3)
        routing[2, 1, 1] = float("nan")
        routing[4, 0, 0] = float("inf")
        indices, _ = smoe.route_topk(routing, 2)
        order = torch.sort(routing, dim=0, descending=True, stable=True).indices[:2].int()
        self.assertTrue(torch.equal(indices, order))
        self.assertEqual(int(indices[0, 1, 1]), 2)

    def test_error_signal_with_nan_gives_nan_like_torch_quantile(self):
        grad_y = torch.randn(3, 4, 5, 5)
        grad_y[1, 0, 0, 0] = float("nan")
        grad_y[2, 0, 0, 0] = float("inf")
        actual = smoe.error_quantile(grad_y, None, 0.7, 1.0)
        expected = torch.quantile(grad_y.abs().reshape(3, -1), 0.7, dim=1)
        torch.testing.assert_close(actual, expected, equal_nan=True)


DETERMINISM_RUN = r"""
import hashlib, torch, smoe
torch.manual_seed(0)
torch.set_num_threads(2)
gate = smoe.TensorRoutingGate(16, 4, 24, 24)
layer = smoe.SpatialMoE2d(8, gate, out_per_expert=2, weighted=True)
x = torch.randn(6, 8, 24, 24)
y = layer(x)
(y.square().mean()).backward()
digest = hashlib.sha256()
for t in (y, layer.weight.grad, gate.routing.grad, layer.last_rc_loss):
    digest.update(t.detach().contiguous().numpy().tobytes())
print(digest.hexdigest())
"""


class Determinism(unittest.TestCase):
    def test_bitwise_identical_across_processes(self):
        runs = [subprocess.run([sys.executable, "-c", DETERMINISM_RUN], env=os.environ, capture_output=True, text=True,
                               timeout=300, check=True).stdout.strip() for _ in range(3)]
        self.assertEqual(len(set(runs)), 1, runs)


if __name__ == "__main__":
    unittest.main()
