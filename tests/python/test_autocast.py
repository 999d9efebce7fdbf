"""torch.autocast: inside a region the ops take float16/bfloat16 arguments and run in float32 (the
casts are autograd-visible, so training with AMP works); outside one, half precision is refused."""
import unittest

import torch

import smoe
from test_ops import reference_forward


class Autocast(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.x = torch.randn(3, 4, 6, 7)
        self.weight = torch.randn(5 * 2, 4, 3, 3)
        self.routing = torch.randn(5, 6, 7)

    def test_ops_cast_half_arguments_up(self):
        for dtype in (torch.bfloat16, torch.float16):
            with self.subTest(dtype=dtype):
                x, weight = self.x.to(dtype), self.weight.to(dtype)
                indices, values = smoe.route_topk(self.routing, 2)
                with torch.autocast("cpu", dtype=dtype):
                    y = smoe.forward(x, weight, indices, values, 2)
                    routed = smoe.route_topk(self.routing.to(dtype), 2)
                    quantile = smoe.error_quantile(x, None, 0.7, 1.0)
                self.assertEqual(y.dtype, torch.float32)
                torch.testing.assert_close(y, reference_forward(x.float(), weight.float(), indices, values, 2))
                self.assertEqual(routed[1].dtype, torch.float32)
                torch.testing.assert_close(quantile, smoe.error_quantile(x.float(), None, 0.7, 1.0))

    def test_outside_autocast_half_is_refused(self):
        indices, _ = smoe.route_topk(self.routing, 2)
        with self.assertRaisesRegex(RuntimeError, "x"):
            smoe.forward(self.x.bfloat16(), self.weight.bfloat16(), indices, None, 2)

    def test_amp_training_step(self):
        def make_model():
            gate = smoe.TensorRoutingGate(experts=5, selected=2, height=6, width=7)
            return torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), smoe.SpatialMoE2d(4, gate, kernel_size=3))

        model, reference = make_model(), make_model()
        reference.load_state_dict(model.state_dict())
        target = torch.randn(3, 2, 6, 7)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = model[0](self.x)
            self.assertEqual(features.dtype, torch.bfloat16)
            y = model[1](features)
        self.assertEqual(y.dtype, torch.float32)
        (y - target).square().mean().backward()
        # The layer's step in float32 on the same (bfloat16) conv output: the same layer gradients.
        (reference[1](features.detach().float()) - target).square().mean().backward()
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            self.assertIsNotNone(p.grad, name)
            self.assertTrue(torch.isfinite(p.grad).all(), name)
            if name.startswith("1."):
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


if __name__ == "__main__":
    unittest.main()
