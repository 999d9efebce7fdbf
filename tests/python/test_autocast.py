"""Half precision from Python: float16/bfloat16 layers through autograd, and torch.autocast. Inside
an autocast region the layer ops run in the region's dtype, as conv2d does (float32 arguments are
cast down; the kernels compute in float32 and store half precision); the other ops run in the widest
type of their arguments. AMP training works, gradients reaching every leaf in its own dtype."""
import unittest

import torch

import smoe

HALF_TYPES = (torch.bfloat16, torch.float16)


def relative_error(actual, expected):
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item()


class SmallLayer(unittest.TestCase):
    """A layer of 5 experts, 2 selected, F = 2, on a 6×7 grid; 3 samples of 4 channels."""

    def setUp(self):
        torch.manual_seed(0)
        self.x = torch.randn(3, 4, 6, 7)
        self.weight = torch.randn(5 * 2, 4, 3, 3)
        self.routing = torch.randn(5, 6, 7)


class HalfPrecisionLayers(SmallLayer):
    def test_autograd_gives_each_leaf_its_dtype(self):
        for dtype in HALF_TYPES:
            with self.subTest(dtype=dtype):
                leaves = [t.to(dtype).requires_grad_() for t in (self.x, self.weight, self.routing)]
                y, _, rc_loss = torch.ops.smoe.spatial_moe(*leaves, 2, 2, False, True, damping=0.1)
                self.assertEqual(y.dtype, dtype)
                y.square().sum().backward()
                self.assertEqual(rc_loss.dtype, torch.float32)
                self.assertGreater(rc_loss.item(), 0)
                # The same layer in float32 on the widened leaves: the gradients within half precision.
                widened = [t.detach().float().requires_grad_() for t in leaves]
                y32, _, rc_loss32 = torch.ops.smoe.spatial_moe(*widened, 2, 2, False, True, damping=0.1)
                torch.autograd.backward(y32, 2 * y.detach().float())
                for leaf, reference in zip(leaves, widened):
                    self.assertEqual(leaf.grad.dtype, dtype)
                    self.assertLess(relative_error(leaf.grad, reference.grad), 1e-2)
                self.assertAlmostEqual(rc_loss.item(), rc_loss32.item(), places=6)


class Autocast(SmallLayer):
    def test_layer_ops_run_in_the_region_dtype(self):
        for dtype in HALF_TYPES:
            with self.subTest(dtype=dtype):
                indices, values = smoe.route_topk(self.routing, 2)
                with torch.autocast("cpu", dtype=dtype):
                    y = smoe.forward(self.x, self.weight, indices, values, 2)
                    layer_y, _, _ = torch.ops.smoe.spatial_moe(self.x, self.weight, self.routing, 2, 2, True)
                self.assertEqual(y.dtype, dtype)
                expected = smoe.forward(self.x.to(dtype), self.weight.to(dtype), indices, values.to(dtype), 2)
                self.assertTrue(torch.equal(y, expected))
                routed = smoe.route_topk(self.routing.to(dtype), 2)
                self.assertTrue(torch.equal(layer_y, smoe.forward(self.x.to(dtype), self.weight.to(dtype), routed[0],
                                                                  routed[1], 2)))

    def test_other_ops_promote(self):
        grad_y = torch.randn(3, 2, 6, 7)
        indices, _ = smoe.route_topk(self.routing, 2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            routed = smoe.route_topk(self.routing.bfloat16(), 2)
            routed_indices = smoe.route_topk_indices(self.routing.bfloat16(), 2)
            quantile = smoe.error_quantile(grad_y.bfloat16(), None, 0.7, 1.0)
            # Mixed: a bfloat16 signal with a float32 response meets in float32.
            mixed = smoe.error_quantile(grad_y.bfloat16(), grad_y, 0.7, 1.0)
            # A half-precision signal keeps its float32 quantile; float32 scores promote it.
            gradient, loss = smoe.rc_loss(grad_y.bfloat16(), None, indices, self.routing, quantile, 1.0, 1)
        self.assertEqual(routed[1].dtype, torch.bfloat16)
        self.assertTrue(torch.equal(routed_indices, routed[0]))
        self.assertEqual(quantile.dtype, torch.float32)
        self.assertTrue(torch.equal(quantile, smoe.error_quantile(grad_y.bfloat16().float(), None, 0.7, 1.0)))
        self.assertTrue(torch.equal(mixed, smoe.error_quantile(grad_y.bfloat16().float(), grad_y, 0.7, 1.0)))
        self.assertEqual(gradient.dtype, torch.float32)
        expected = smoe.rc_loss(grad_y.bfloat16().float(), None, indices, self.routing, quantile, 1.0, 1)
        self.assertTrue(torch.equal(gradient, expected[0]))
        self.assertTrue(torch.equal(loss, expected[1]))

    def test_half_inputs_need_one_dtype_outside_autocast(self):
        indices, _ = smoe.route_topk(self.routing, 2)
        with self.assertRaisesRegex(RuntimeError, "'weight' must have the dtype of 'x'"):
            smoe.forward(self.x.bfloat16(), self.weight, indices, None, 2)

    def test_amp_training_step(self):
        def make_model():
            gate = smoe.TensorRoutingGate(experts=5, selected=2, height=6, width=7)
            return torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1),
                                       smoe.SpatialMoE2d(4, gate, kernel_size=3, damping=0.1))

        model, reference = make_model(), make_model()
        reference.load_state_dict(model.state_dict())
        target = torch.randn(3, 2, 6, 7)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(self.x)
            self.assertEqual(y.dtype, torch.bfloat16)
            loss = (y.float() - target).square().mean()
        loss.backward()
        (reference(self.x) - target).square().mean().backward()
        self.assertEqual(model[1].last_rc_loss.dtype, torch.float32)
        self.assertGreater(model[1].last_rc_loss.item(), 0)
        # bfloat16 activations and weights: the float32 step's gradients to about 2^-8 of their size.
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            self.assertEqual(p.grad.dtype, torch.float32, name)
            self.assertTrue(torch.isfinite(p.grad).all(), name)
            self.assertLess(relative_error(p.grad, q.grad), 3e-2, name)


if __name__ == "__main__":
    unittest.main()
