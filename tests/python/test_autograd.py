"""Training through torch.ops.smoe.spatial_moe from Python: gradcheck, the straight-through
routing gradient, opcheck, and the nn modules."""
import itertools
import unittest

import torch

import smoe
from test_ops import reference_forward

# B, C, H, W, NE, E, K, F, shared, weighted
GRADCHECK_CONFIGS = [
    (2, 2, 4, 5, 4, 2, 3, 1, True, False),
    (2, 2, 4, 5, 4, 2, 3, 1, True, True),
    (2, 2, 4, 5, 4, 2, 3, 1, False, True),
    (1, 1, 3, 3, 3, 3, 3, 1, True, True),      # NE = E, B = C = 1
    (2, 3, 2, 4, 4, 3, 5, 1, False, False),    # H < K
    (2, 2, 3, 3, 5, 2, 1, 2, True, True),      # K = 1, F = 2
    (1, 2, 4, 3, 4, 2, 7, 1, True, True),      # K = 7
    (3, 1, 3, 4, 3, 2, 3, 2, False, True),     # F = 2, per-sample
    (2, 2, 5, 2, 6, 5, 3, 1, True, False),     # NE = E + 1
    (2, 2, 3, 4, 5, 1, 3, 1, False, False),
    (4, 1, 3, 3, 2, 1, 3, 1, True, True),
    (2, 3, 4, 4, 6, 3, 3, 3, True, False),
]


def well_separated_routing(shape, generator):
    """Scores at least 0.01 apart, so finite differences never change which experts are chosen."""
    order = torch.randperm(torch.Size(shape).numel(), generator=generator)
    return (order.to(torch.float64) * 0.01 - 1.0).reshape(shape)


def make_inputs(config, dtype=torch.float64, seed=0):
    B, C, H, W, NE, E, K, F, shared, _ = config
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, dtype=dtype, generator=generator)
    weight = torch.randn(NE * F, C, K, K, dtype=dtype, generator=generator)
    routing = well_separated_routing((NE, H, W) if shared else (B, NE, H, W), generator).to(dtype)
    return x, weight, routing


def reference_layer(x, weight, routing, E, F, weighted):
    """Autograd through the dense reference; straight-through routing gradient when unweighted."""
    expert_dim = routing.dim() - 3
    _, order = torch.sort(routing.detach(), dim=expert_dim, descending=True, stable=True)
    indices = order.narrow(expert_dim, 0, E)
    values = torch.gather(routing, expert_dim, indices)
    u = reference_forward(x, weight, indices.int(), None, F)
    gate = values.expand(x.shape[0], -1, -1, -1) if values.dim() == 3 else values
    gate = gate.repeat_interleave(F, dim=1)
    return u * gate if weighted else u + (gate - gate.detach())


class GradCheck(unittest.TestCase):
    def test_gradcheck_float64(self):
        for config in GRADCHECK_CONFIGS:
            with self.subTest(config=config):
                E, F, weighted = config[5], config[7], config[9]
                x, weight, routing = make_inputs(config)
                x.requires_grad_()
                weight.requires_grad_()
                # The routing enters the output only when weighted; unweighted its gradient is the
                # straight-through estimate, which finite differences cannot see (checked below).
                routing.requires_grad_(weighted)

                def layer(x, weight, routing):
                    return torch.ops.smoe.spatial_moe(x, weight, routing, E, F, weighted)[0]

                self.assertTrue(torch.autograd.gradcheck(layer, (x, weight, routing)))

    def test_straight_through_routing_gradient(self):
        for config in GRADCHECK_CONFIGS:
            if config[9]:
                continue
            with self.subTest(config=config):
                E, F = config[5], config[7]
                x, weight, routing = make_inputs(config, torch.float32, seed=1)
                routing.requires_grad_()
                y = torch.ops.smoe.spatial_moe(x, weight, routing, E, F, False)[0]
                grad_y = torch.randn_like(y)
                (actual,) = torch.autograd.grad(y, routing, grad_y)
                reference_routing = routing.detach().clone().requires_grad_()
                (expected,) = torch.autograd.grad(reference_layer(x, weight, reference_routing, E, F, False),
                                                  reference_routing, grad_y)
                torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


class OpCheck(unittest.TestCase):
    def test_opcheck_spatial_moe_and_backward(self):
        for config in GRADCHECK_CONFIGS[:6]:
            with self.subTest(config=config):
                E, F, weighted = config[5], config[7], config[9]
                x, weight, routing = make_inputs(config, torch.float32)
                for requires_grad in (False, True):
                    args = [t.clone().requires_grad_(requires_grad) for t in (x, weight, routing)]
                    torch.library.opcheck(torch.ops.smoe.spatial_moe.default, (*args, E, F, weighted))
                indices, values = torch.ops.smoe.route_topk(routing, E)
                grad_y = torch.randn(x.shape[0], E * F, *x.shape[2:])
                NE = weight.shape[0] // F
                # Plain, damped, and (where NE > E) with the RC loss.
                option_sets = [(False, None), (False, 0.1)] + ([(True, 0.1)] if NE > E else [])
                for (rc, damping), mask in itertools.product(option_sets, itertools.product((False, True), repeat=3)):
                    torch.library.opcheck(torch.ops.smoe.spatial_moe_backward.default,
                                          (grad_y, x, weight, indices, values if weighted else None,
                                           routing if rc else None, F, rc, 1.0, 0.7, damping, None, 1.0, list(mask)))


class Modules(unittest.TestCase):
    def test_shared_gate_accumulates_both_layers(self):
        torch.manual_seed(0)
        gate = smoe.TensorRoutingGate(6, 2, 7, 5)
        # The plain gradient (straight-through gate), which the reference layer gives.
        first = smoe.SpatialMoE2d(3, gate, kernel_size=3, rc_loss=False, damping=None)
        second = smoe.SpatialMoE2d(3, gate, kernel_size=5, weighted=True, rc_loss=False, damping=None)
        x = torch.randn(4, 3, 7, 5)
        (first(x).square().sum() + second(x).sin().sum()).backward()

        expected = torch.zeros_like(gate.routing)
        for layer, loss in ((first, torch.square), (second, torch.sin)):
            routing = gate.routing.detach().clone().requires_grad_()
            y = reference_layer(x, layer.weight.detach(), routing, 2, 1, layer.weighted)
            (grad,) = torch.autograd.grad(loss(y).sum(), routing)
            expected += grad
        torch.testing.assert_close(gate.routing.grad, expected, rtol=1e-5, atol=1e-5)
        # The gate's parameter is counted once in a model holding both layers.
        model = torch.nn.ModuleList([first, second])
        self.assertEqual(sum(p is gate.routing for p in model.parameters()), 1)

    def test_initialisation(self):
        gate = smoe.TensorRoutingGate(8, 2, 4, 4)
        bound = (3 * 8 / 2) ** 0.5
        self.assertLessEqual(gate.routing.abs().max().item(), bound)
        land_sea = (torch.arange(16).view(4, 4) % 3 == 0).long()
        gate.init_from_class_map(land_sea, 2)
        indices, _ = smoe.route_topk(gate.routing.detach(), 2)
        self.assertTrue(torch.equal((indices // 4).long(), land_sea.expand(2, 4, 4)))
        layer = smoe.SpatialMoE2d(3, gate, kernel_size=5, out_per_expert=2)
        self.assertEqual(layer.weight.shape, (16, 3, 5, 5))
        self.assertEqual(layer(torch.randn(2, 3, 4, 4)).shape, (2, 4, 4, 4))
        with self.assertRaises(ValueError):
            smoe.SpatialMoE2d(3, gate, kernel_size=4)

    def test_training_loop_learns_per_region_filters(self):
        torch.manual_seed(1)
        halves = (torch.arange(8) >= 4).long().expand(8, 8)
        gate = smoe.TensorRoutingGate(2, 1, 8, 8)
        gate.init_from_class_map(halves, 2)
        layer = smoe.SpatialMoE2d(1, gate, kernel_size=3, rc_loss=False, damping=None)
        x = torch.randn(16, 1, 8, 8)
        left = torch.nn.functional.conv2d(x, torch.randn(1, 1, 3, 3), padding=1)
        right = torch.nn.functional.conv2d(x, torch.randn(1, 1, 3, 3), padding=1)
        target = torch.where(halves == 0, left, right)
        optimizer = torch.optim.Adam(layer.parameters(), lr=0.05)
        losses = []
        for _ in range(150):
            optimizer.zero_grad()
            loss = (layer(x) - target).square().mean()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        self.assertLess(losses[-1], 1e-3 * losses[0])


if __name__ == "__main__":
    unittest.main()
