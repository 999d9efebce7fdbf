"""Every public op and module refuses bad input with an error naming the argument and the
expectation (RuntimeError from the ops, ValueError from the Python modules). One case per line."""
import unittest

import torch

import smoe

x = torch.randn(2, 3, 5, 6)
weight = torch.randn(4, 3, 3, 3)
routing = torch.randn(4, 5, 6)
indices, values = smoe.route_topk(routing, 2)
grad_y = torch.randn(2, 2, 5, 6)
quantile = smoe.error_quantile(grad_y, None, 0.7, 30.0)
huge = torch.zeros(1).expand(2**31)  # 2^31 elements, none allocated

OPS = torch.ops.smoe


def with_index(value):
    """The indices with one entry replaced."""
    changed = indices.clone()
    changed[1, 4, 5] = value
    return changed


CASES = [
    # route_topk
    ("route_topk rank", lambda: OPS.route_topk(routing[0], 1), "'routing' must have shape [NE, H, W] or"),
    ("route_topk dtype", lambda: OPS.route_topk(routing.int(), 1),
     "'routing' must be float32, float64, float16 or bfloat16"),
    ("route_topk complex", lambda: OPS.route_topk(routing.to(torch.complex64), 1), "'routing' must be float32"),
    ("route_topk E > NE", lambda: OPS.route_topk(routing, 5), "1 <= E <= NE; got E = 5 with NE = 4"),
    ("route_topk E = 0", lambda: OPS.route_topk(routing, 0), "1 <= E <= NE; got E = 0"),
    ("route_topk empty grid", lambda: OPS.route_topk(torch.randn(4, 0, 6), 1), "'routing' is empty"),
    ("route_topk beyond int32", lambda: OPS.route_topk(huge.view(2**20, 2**10, 2), 1), "more than 2^31 - 1"),
    ("route_topk_indices rank", lambda: OPS.route_topk_indices(routing[0], 1),
     "smoe::route_topk_indices: argument 'routing' must have shape [NE, H, W] or"),
    ("route_topk_indices E > NE", lambda: OPS.route_topk_indices(routing, 5),
     "smoe::route_topk_indices: the number of selected experts E must satisfy 1 <= E <= NE; got E = 5"),
    # forward
    ("forward x rank", lambda: OPS.forward(x[0], weight, indices), "'x' must have shape [B, C, H, W]"),
    ("forward weight rank", lambda: OPS.forward(x, weight[0], indices), "'weight' must have shape [NE*F, C, K, K]"),
    ("forward indices rank", lambda: OPS.forward(x, weight, indices[0]), "'indices' must have shape [E, H, W]"),
    ("forward channels", lambda: OPS.forward(x, torch.randn(4, 2, 3, 3), indices), "'weight' has size 2"),
    ("forward even K", lambda: OPS.forward(x, torch.randn(4, 3, 2, 2), indices), "square kernels of odd size K"),
    ("forward F", lambda: OPS.forward(x, weight, indices, None, 3), "not a multiple of F = 3"),
    ("forward grid", lambda: OPS.forward(x, weight, indices[:, :4]), "'indices' has size 4"),
    ("forward indices dtype", lambda: OPS.forward(x, weight, indices.long()), "'indices' must be Int"),
    ("forward x dtype", lambda: OPS.forward(x.int(), weight, indices), "'x' must be float32, float64, float16 or"),
    ("forward half and bfloat16", lambda: OPS.forward(x.half(), weight.bfloat16(), indices),
     "'weight' must have the dtype of 'x' (Half), got BFloat16"),
    ("forward mixed dtypes", lambda: OPS.forward(x, weight.double(), indices), "'weight' must have the dtype of 'x'"),
    ("forward device", lambda: OPS.forward(x, weight.to("meta"), indices), "'weight' must be on the device of 'x'"),
    ("forward values shape", lambda: OPS.forward(x, weight, indices, values[:1]), "'values' must have the shape"),
    ("forward index range", lambda: OPS.forward(x, weight, indices + 3), "outside the bank of NE = 4 experts"),
    ("forward negative index", lambda: OPS.forward(x, weight, with_index(-1)), "holds expert -1, outside the bank"),
    ("forward index NE", lambda: OPS.forward(x, weight, with_index(4)), "holds expert 4, outside the bank of NE = 4"),
    ("forward E > NE", lambda: OPS.forward(x, weight, torch.zeros(5, 5, 6, dtype=torch.int32)), "1 <= E <= NE"),
    ("forward x beyond int32", lambda: OPS.forward(huge.view(2**21, 1, 2**5, 2**5), torch.randn(4, 1, 3, 3),
                                                   torch.zeros(2, 2**5, 2**5, dtype=torch.int32)),
     "'x' of shape [2097152, 1, 32, 32] has more than 2^31 - 1"),
    ("forward y beyond int32", lambda: OPS.forward(torch.zeros(1).expand(2**15, 1, 2**7, 2**7), torch.randn(16, 1, 1, 1),
                                                   torch.zeros(4, 2**7, 2**7, dtype=torch.int32), None, 4),
     "'the output y' of shape [32768, 16, 128, 128] has more than 2^31 - 1"),
    # spatial_moe (options)
    ("spatial_moe q > 1", lambda: OPS.spatial_moe(x, weight, routing, 2, quantile=1.5), "'quantile' must lie in [0, 1]"),
    ("spatial_moe q < 0", lambda: OPS.spatial_moe(x, weight, routing, 2, quantile=-0.1), "'quantile' must lie in"),
    ("spatial_moe damping > 1", lambda: OPS.spatial_moe(x, weight, routing, 2, damping=1.5), "'damping' must lie in"),
    ("spatial_moe damping < 0", lambda: OPS.spatial_moe(x, weight, routing, 2, damping=-1.0), "'damping' must lie"),
    ("spatial_moe E > NE", lambda: OPS.spatial_moe(x, weight, routing, 5), "1 <= E <= NE; got E = 5 with NE = 4"),
    ("spatial_moe even K", lambda: OPS.spatial_moe(x, torch.randn(4, 3, 4, 4), routing, 2), "odd size K"),
    ("spatial_moe routing NE", lambda: OPS.spatial_moe(x, weight, routing[:3], 2), "'routing' has size 3"),
    ("spatial_moe routing B", lambda: OPS.spatial_moe(x, weight, torch.randn(3, 4, 5, 6), 2), "'routing' has size 3"),
    ("spatial_moe RC with NE = E", lambda: OPS.spatial_moe(x, weight, routing, 4, rc_loss=True), "(NE > E)"),
    ("spatial_moe error_scale", lambda: OPS.spatial_moe(x, weight, routing, 2, error_scale=0.0), "'error_scale'"),
    ("spatial_moe loss_scale", lambda: OPS.spatial_moe(x, weight, routing, 2, loss_scale=-1.0), "'loss_scale'"),
    ("spatial_moe rc_weight", lambda: OPS.spatial_moe(x, weight, routing, 2, rc_weight=float("inf")), "'rc_weight'"),
    # spatial_moe_backward
    ("backward grad_y shape", lambda: OPS.spatial_moe_backward(grad_y[:, :1], x, weight, indices, None, None, 1, False,
                                                               1.0, 0.7, None, None, 1.0, [True, True, True]),
     "'grad_y' must have the forward's output shape"),
    ("backward RC without routing", lambda: OPS.spatial_moe_backward(grad_y, x, weight, indices, None, None, 1, True,
                                                                     1.0, 0.7, None, None, 1.0, [True, True, True]),
     "'routing' is required with the RC loss"),
    ("backward q", lambda: OPS.spatial_moe_backward(grad_y, x, weight, indices, None, routing, 1, True, 1.0, 2.0, None,
                                                    None, 1.0, [True, True, True]), "'quantile' must lie in [0, 1]"),
    # error_quantile
    ("error_quantile rank", lambda: OPS.error_quantile(grad_y[0, 0, 0], None, 0.5, 1.0), "'grad_y' must have shape [B"),
    ("error_quantile q", lambda: OPS.error_quantile(grad_y, None, 1.5, 1.0), "'q' must lie in [0, 1]"),
    ("error_quantile scale", lambda: OPS.error_quantile(grad_y, None, 0.5, 0.0), "'scale' must be a finite number"),
    ("error_quantile response", lambda: OPS.error_quantile(grad_y, grad_y[:1], 0.5, 1.0), "'response' must have"),
    ("error_quantile dtype", lambda: OPS.error_quantile(grad_y.int(), None, 0.5, 1.0), "'grad_y' must be float32"),
    ("error_quantile beyond int32", lambda: OPS.error_quantile(huge.view(2, 2**30), None, 0.5, 1.0),
     "'grad_y' of shape [2, 1073741824] has more than 2^31 - 1"),
    # rc_loss
    ("rc_loss NE = E", lambda: OPS.rc_loss(grad_y, None, indices, routing[:2], quantile, 30.0), "(NE > E)"),
    ("rc_loss quantile shape", lambda: OPS.rc_loss(grad_y, None, indices, routing, quantile[:1], 30.0),
     "'quantile' has size 1"),
    ("rc_loss grad_y channels", lambda: OPS.rc_loss(grad_y, None, indices, routing, quantile, 30.0, 2), "E*F"),
    ("rc_loss routing rank", lambda: OPS.rc_loss(grad_y, None, indices, routing[None].expand(2, -1, -1, -1), quantile,
                                                 30.0), "'routing' must have shape [NE, H, W] (like indices)"),
    ("rc_loss scale", lambda: OPS.rc_loss(grad_y, None, indices, routing, quantile, -1.0), "'scale' must be a finite"),
    ("rc_loss half quantile", lambda: OPS.rc_loss(grad_y.bfloat16(), None, indices, routing.bfloat16(),
                                                  quantile.bfloat16(), 30.0),
     "'quantile' must be Float, the type 'grad_y' (BFloat16) computes in, got BFloat16"),
    ("rc_loss index range", lambda: OPS.rc_loss(grad_y, None, indices + 3, routing, quantile, 30.0), "outside the bank"),
]

MODULE_CASES = [
    ("gate E > NE", lambda: smoe.TensorRoutingGate(3, 4, 5, 6), "need 1 <= selected <= experts"),
    ("gate E = 0", lambda: smoe.TensorRoutingGate(3, 0, 5, 6), "need 1 <= selected <= experts"),
    ("layer even kernel", lambda: smoe.SpatialMoE2d(3, smoe.TensorRoutingGate(4, 2, 5, 6), kernel_size=4),
     "kernel_size must be odd"),
    ("layer q", lambda: smoe.SpatialMoE2d(3, smoe.TensorRoutingGate(4, 2, 5, 6), quantile=1.2), "quantile must lie"),
    ("layer damping", lambda: smoe.SpatialMoE2d(3, smoe.TensorRoutingGate(4, 2, 5, 6), damping=-0.5), "damping must"),
    ("layer RC with NE = E", lambda: smoe.SpatialMoE2d(3, smoe.TensorRoutingGate(4, 4, 5, 6)), "(NE > E)"),
    ("layer channels", lambda: smoe.SpatialMoE2d(0, smoe.TensorRoutingGate(4, 2, 5, 6)), "in_channels"),
    ("class map shape", lambda: smoe.TensorRoutingGate(4, 2, 5, 6).init_from_class_map(torch.zeros(5, 5, dtype=int), 2),
     "class_map must have the grid's shape"),
    ("class map labels", lambda: smoe.TensorRoutingGate(4, 2, 5, 6).init_from_class_map(
        torch.full((5, 6), 3), 2), "labels outside 0 .. 1"),
]


class BadInput(unittest.TestCase):
    def check_cases(self, cases, error):
        for name, call, message in cases:
            with self.subTest(name):
                with self.assertRaises(error) as raised:
                    call()
                self.assertIn(message, str(raised.exception))

    def test_ops_name_the_argument(self):
        self.check_cases(CASES, RuntimeError)

    def test_modules_name_the_argument(self):
        self.check_cases(MODULE_CASES, ValueError)

    def test_layer_input_of_the_wrong_shape(self):
        layer = smoe.SpatialMoE2d(3, smoe.TensorRoutingGate(4, 2, 5, 6))
        with self.assertRaisesRegex(RuntimeError, r"argument 'weight' has size 3 in dimension 1 but must match "
                                                  r"x.size\(1\) \(C\) = 2"):
            layer(torch.randn(2, 2, 5, 6))
        with self.assertRaisesRegex(RuntimeError, r"argument 'routing' has size 5 .* x.size\(2\) \(H\) = 7"):
            layer(torch.randn(2, 3, 7, 6))


if __name__ == "__main__":
    unittest.main()
