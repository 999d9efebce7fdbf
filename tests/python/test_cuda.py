"""The CUDA kernels from Python: every op against the CPU kernels (which the suite checks against the
LibTorch reference), half precision, and the runtime's claims: PyTorch's current stream, no host
synchronisation inside a training step, bitwise repeatable results, device memory reused.
Skipped without a GPU (bench/gpu/ runs it on one)."""
import time
import unittest

import torch

import smoe
from smoe.nn import SpatialMoE2d, TensorRoutingGate
from test_ops import CONFIGS as OPS_CONFIGS, make_layer

# A layer of several threads per block (B, C, H, W, NE, E, K, F, shared, weighted, dtype): the
# runtime checks' and training_model()'s shape.
MEDIUM = (4, 32, 16, 24, 16, 8, 3, 1, True, False, torch.float32)
MEDIUM_Y = MEDIUM[:1] + MEDIUM[5:6] + MEDIUM[2:4]  # its output's shape, B x E*F x H x W (F = 1)
# test_ops' float32 layers, MEDIUM and another larger one.
CONFIGS = [c for c in OPS_CONFIGS if c[-1] == torch.float32] + [
    MEDIUM,
    (2, 24, 12, 20, 12, 6, 3, 2, False, True, torch.float32),
]
GPU = torch.device("cuda")


def relative_error(actual, expected):
    expected = expected.double()
    return ((actual.double().cpu() - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def layer_outputs(x, weight, routing, E, F, weighted, rc_loss, grad_y):
    """y, indices, the RC loss and the three gradients of the layer with RC loss and damping (when
    rc_loss) or the straight-through gate gradient."""
    x, weight, routing = (t.detach().clone().requires_grad_() for t in (x, weight, routing))
    y, indices, loss = torch.ops.smoe.spatial_moe(x, weight, routing, E, F, weighted, rc_loss, 1.0, 0.7,
                                                  0.1 if rc_loss else None, None, 1.0)
    y.backward(grad_y)
    return [y, indices, loss, x.grad, weight.grad, routing.grad]


def training_model():
    """An SMoE layer of MEDIUM's shape with RC loss and damping, on the GPU, and an input for it."""
    B, C, H, W, NE, E = MEDIUM[:6]
    torch.manual_seed(0)
    model = SpatialMoE2d(C, TensorRoutingGate(NE, E, H, W), kernel_size=3, rc_loss=True, damping=0.1).to(GPU)
    return model, torch.randn(B, C, H, W, device=GPU)


@unittest.skipUnless(torch.cuda.is_available(), "no CUDA device")
class CudaMatchesCpu(unittest.TestCase):
    def test_route_topk_and_forward(self):
        for config in CONFIGS:
            with self.subTest(config=config):
                _, _, _, _, _, E, _, F, _, weighted, _ = config
                x, weight, routing = make_layer(config, seed=1)
                indices, values = torch.ops.smoe.route_topk(routing.to(GPU), E)
                cpu_indices, cpu_values = torch.ops.smoe.route_topk(routing, E)
                self.assertTrue(torch.equal(indices.cpu(), cpu_indices))
                self.assertTrue(torch.equal(values.cpu(), cpu_values))
                self.assertTrue(torch.equal(torch.ops.smoe.route_topk_indices(routing.to(GPU), E).cpu(), cpu_indices))
                gate = values if weighted else None
                cpu_gate = cpu_values if weighted else None
                y = torch.ops.smoe.forward(x.to(GPU), weight.to(GPU), indices, gate, F)
                expected = torch.ops.smoe.forward(x, weight, cpu_indices, cpu_gate, F)
                self.assertLess(relative_error(y, expected), 1e-5)

    def test_layer_gradients_with_and_without_rc_loss(self):
        for config in CONFIGS:
            for rc_loss in (False, True):
                _, _, _, _, NE, E, _, F, _, weighted, _ = config
                if rc_loss and NE == E:
                    continue
                with self.subTest(config=config, rc_loss=rc_loss):
                    x, weight, routing = make_layer(config, seed=2)
                    y_shape = (x.shape[0], E * F) + tuple(x.shape[2:])
                    grad_y = torch.randn(y_shape, generator=torch.Generator().manual_seed(3))
                    actual = layer_outputs(x.to(GPU), weight.to(GPU), routing.to(GPU), E, F, weighted, rc_loss,
                                           grad_y.to(GPU))
                    expected = layer_outputs(x, weight, routing, E, F, weighted, rc_loss, grad_y)
                    names = ["y", "indices", "rc_loss", "grad_x", "grad_weight", "grad_routing"]
                    for name, a, e in zip(names, actual, expected):
                        self.assertEqual(a.device.type, "cuda", name)
                        if name == "indices":
                            self.assertTrue(torch.equal(a.cpu(), e), name)
                        else:
                            self.assertLess(relative_error(a, e), 2e-5, name)

    def test_half_precision_against_float32(self):
        # float16/bfloat16 storage, float32 arithmetic: the error is that of rounding the output.
        # Unweighted: the RC loss's labels then depend on grad_y alone, the same in both.
        for dtype, bound in ((torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)):
            with self.subTest(dtype=dtype):
                x, weight, routing = (t.to(dtype) for t in make_layer(MEDIUM, seed=4))
                grad_y = torch.randn(MEDIUM_Y, generator=torch.Generator().manual_seed(5)).to(dtype)
                actual = layer_outputs(x.to(GPU), weight.to(GPU), routing.to(GPU), 8, 1, False, True, grad_y.to(GPU))
                expected = layer_outputs(x.float(), weight.float(), routing.float(), 8, 1, False, True,
                                         grad_y.float())
                self.assertTrue(torch.equal(actual[1].cpu(), expected[1]))
                for name, i in (("y", 0), ("grad_x", 3), ("grad_weight", 4), ("grad_routing", 5)):
                    self.assertEqual(actual[i].dtype, dtype, name)
                    self.assertLess(relative_error(actual[i], expected[i]), bound, name)

    def test_autocast_runs_the_half_kernels(self):
        model, x = training_model()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = model(x)
        self.assertEqual(y.dtype, torch.bfloat16)
        y.float().square().mean().backward()
        self.assertEqual(model.weight.grad.dtype, torch.float32)
        self.assertTrue(torch.isfinite(model.weight.grad).all())


@unittest.skipUnless(torch.cuda.is_available(), "no CUDA device")
class CudaRuntime(unittest.TestCase):
    def step(self, model, x):
        model.zero_grad(set_to_none=True)
        y = model(x)
        y.square().mean().backward()
        return [y.detach(), model.weight.grad, model.gate.routing.grad]

    def test_bitwise_repeatable(self):
        model, x = training_model()
        first = [t.clone() for t in self.step(model, x)]
        for _ in range(3):
            for a, b in zip(first, self.step(model, x)):
                self.assertTrue(torch.equal(a, b))

    def test_runs_on_the_current_stream(self):
        # The input is written on a side stream after a long sleep; an op that ran on any other
        # stream would read it before the write.
        x, weight, routing = make_layer(MEDIUM, seed=6)
        indices, _ = torch.ops.smoe.route_topk(routing, 8)
        expected = torch.ops.smoe.forward(x, weight, indices, None, 1)
        x_gpu, weight_gpu, indices_gpu = x.to(GPU), weight.to(GPU), indices.to(GPU)
        torch.cuda.synchronize()
        side = torch.cuda.Stream()
        with torch.cuda.stream(side):
            source = torch.zeros_like(x_gpu)
            torch.cuda._sleep(200_000_000)
            source.copy_(x_gpu)
            y = torch.ops.smoe.forward(source, weight_gpu, indices_gpu, None, 1)
        side.synchronize()
        self.assertLess(relative_error(y, expected), 1e-5)

    def test_no_host_synchronisation_in_a_training_step(self):
        # Behind a GPU sleep of ~0.5 s, a whole step (forward, RC loss, damping, backward) must be
        # queued without waiting for the GPU; PyTorch's sync check catches its own synchronising calls.
        model, x = training_model()
        self.step(model, x)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            torch.cuda._sleep(1_000_000_000)
            start = time.perf_counter()
            self.step(model, x)
            queued = time.perf_counter() - start
        finally:
            torch.cuda.set_sync_debug_mode("default")
        start = time.perf_counter()
        torch.cuda.synchronize()
        waited = time.perf_counter() - start
        self.assertGreater(waited, 0.05, "the sleep was over before the step was queued: the step synchronised")
        self.assertLess(queued, waited)

    def test_device_memory_reused(self):
        model, x = training_model()
        for _ in range(3):
            self.step(model, x)
        torch.cuda.synchronize()
        allocated, (free, _) = torch.cuda.memory_allocated(), torch.cuda.mem_get_info()
        for _ in range(50):
            self.step(model, x)
        torch.cuda.synchronize()
        self.assertEqual(torch.cuda.memory_allocated(), allocated)
        self.assertGreaterEqual(torch.cuda.mem_get_info()[0], free - (2 << 20))

    @unittest.skipUnless(torch.cuda.device_count() > 1, "one GPU")
    def test_second_device(self):
        device = torch.device("cuda", 1)
        x, weight, routing = make_layer(MEDIUM, seed=7)
        grad_y = torch.randn(MEDIUM_Y)
        actual = layer_outputs(x.to(device), weight.to(device), routing.to(device), 8, 1, False, True, grad_y.to(device))
        expected = layer_outputs(x, weight, routing, 8, 1, False, True, grad_y)
        for a, e in zip(actual, expected):
            self.assertEqual(a.device, device)
            self.assertLess(relative_error(a, e), 2e-5)


if __name__ == "__main__":
    unittest.main()
