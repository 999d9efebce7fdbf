"""torch.ops.smoe from Python: results against a plain PyTorch reference, errors, fake tensors."""
import unittest

import torch
import torch.nn.functional as functional

import smoe


def reference_route_topk(routing, E):
    expert_dim = routing.dim() - 3
    values, order = torch.sort(routing, dim=expert_dim, descending=True, stable=True)
    return order.narrow(expert_dim, 0, E).int(), values.narrow(expert_dim, 0, E)


def reference_forward(x, weight, indices, values, F):
    B, _, H, W = x.shape
    dense = functional.conv2d(x, weight, padding=weight.shape[-1] // 2)
    idx = indices.expand(B, -1, -1, -1) if indices.dim() == 3 else indices
    E = idx.shape[1]
    rows = (idx.long().unsqueeze(2) * F + torch.arange(F).view(1, 1, F, 1, 1)).reshape(B, E * F, H, W)
    y = torch.gather(dense, 1, rows)
    if values is not None:
        gate = values.expand(B, -1, -1, -1) if values.dim() == 3 else values
        y = y * gate.repeat_interleave(F, dim=1)
    return y


CONFIGS = [
    # B, C, H, W, NE, E, K, F, shared, weighted, dtype
    (2, 3, 5, 6, 4, 2, 3, 1, True, False, torch.float32),
    (1, 1, 2, 2, 3, 3, 7, 1, False, True, torch.float32),
    (3, 4, 6, 5, 5, 4, 5, 2, True, True, torch.float32),
    (8, 16, 9, 10, 8, 3, 1, 1, False, False, torch.float32),
    (2, 3, 4, 5, 6, 2, 3, 2, True, True, torch.float64),
]


def make_layer(config, seed=0):
    B, C, H, W, NE, E, K, F, shared, weighted, dtype = config
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, dtype=dtype, generator=generator)
    weight = torch.randn(NE * F, C, K, K, dtype=dtype, generator=generator)
    shape = (NE, H, W) if shared else (B, NE, H, W)
    routing = torch.randn(*shape, dtype=dtype, generator=generator)
    return x, weight, routing


class OpsMatchReference(unittest.TestCase):
    def test_route_topk_and_forward(self):
        for config in CONFIGS:
            with self.subTest(config=config):
                _, _, _, _, _, E, _, F, _, weighted, dtype = config
                x, weight, routing = make_layer(config)
                indices, values = torch.ops.smoe.route_topk(routing, E)
                expected_indices, expected_values = reference_route_topk(routing, E)
                self.assertEqual(indices.dtype, torch.int32)
                self.assertTrue(torch.equal(indices, expected_indices))
                self.assertTrue(torch.equal(values, expected_values))
                gate = values if weighted else None
                y = torch.ops.smoe.forward(x, weight, indices, gate, F)
                tolerance = 1e-12 if dtype == torch.float64 else 1e-5
                torch.testing.assert_close(y, reference_forward(x, weight, indices, gate, F),
                                           rtol=tolerance, atol=tolerance)

    def test_package_aliases_the_ops(self):
        x, weight, routing = make_layer(CONFIGS[0])
        indices, _ = smoe.route_topk(routing, 2)
        self.assertTrue(torch.equal(smoe.forward(x, weight, indices), torch.ops.smoe.forward(x, weight, indices)))


class Errors(unittest.TestCase):
    def test_bad_arguments_raise_runtime_error_naming_the_argument(self):
        x, weight, routing = make_layer(CONFIGS[0])
        indices, _ = torch.ops.smoe.route_topk(routing, 2)
        with self.assertRaisesRegex(RuntimeError, r"smoe::route_topk.*1 <= E <= NE.*E = 5"):
            torch.ops.smoe.route_topk(routing, 5)
        with self.assertRaisesRegex(RuntimeError, r"smoe::forward: argument 'weight'.*odd size K"):
            torch.ops.smoe.forward(x, torch.randn(4, 3, 2, 2), indices)
        # Any layout is accepted (made contiguous): the same answer.
        strided_x = x.transpose(2, 3).contiguous().transpose(2, 3)
        self.assertTrue(torch.equal(torch.ops.smoe.forward(strided_x, weight, indices),
                                    torch.ops.smoe.forward(x, weight, indices)))
        with self.assertRaisesRegex(RuntimeError, r"argument 'indices' must be Int"):
            torch.ops.smoe.forward(x, weight, indices.long())


class FakeTensorsAndOpcheck(unittest.TestCase):
    def test_meta_shapes(self):
        x = torch.empty(4, 3, 8, 9, device="meta")
        weight = torch.empty(10, 3, 5, 5, device="meta")
        indices, values = torch.ops.smoe.route_topk(torch.empty(5, 8, 9, device="meta"), 3)
        self.assertEqual(indices.shape, (3, 8, 9))
        self.assertEqual(indices.dtype, torch.int32)
        y = torch.ops.smoe.forward(x, weight, indices, values, 2)
        self.assertEqual(y.shape, (4, 6, 8, 9))
        self.assertEqual(y.device.type, "meta")

    def test_opcheck(self):
        for config in CONFIGS:
            with self.subTest(config=config):
                _, _, _, _, _, E, _, F, _, weighted, _ = config
                x, weight, routing = make_layer(config)
                torch.library.opcheck(torch.ops.smoe.route_topk.default, (routing, E))
                indices, values = torch.ops.smoe.route_topk(routing, E)
                torch.library.opcheck(torch.ops.smoe.forward.default,
                                      (x, weight, indices, values if weighted else None, F))


if __name__ == "__main__":
    unittest.main()
