"""torch.compile over the SMoE layer: traced in one graph (fullgraph=True fails on any graph break)
through the ops' Meta kernels, and the same outputs and gradients as eager mode."""
import copy
import unittest

import torch
from torch import nn

import smoe


class SmallModel(nn.Module):
    """A convolution, the SMoE layer (RC loss and damping on, F = 2, weighted unless told), a ReLU and a
    1x1 head."""

    def __init__(self, shared_gate, weighted=True):
        super().__init__()
        self.encode = nn.Conv2d(2, 4, 3, padding=1)
        self.gate = shared_gate
        self.moe = smoe.SpatialMoE2d(4, shared_gate, kernel_size=3, out_per_expert=2, weighted=weighted)
        self.head = nn.Conv2d(2 * shared_gate.selected, 1, 1)

    def forward(self, x):
        return self.head(torch.relu(self.moe(self.encode(x))))


def train_steps(model, batches):
    """Losses and gradients of a few SGD steps."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses, grads = [], []
    for x, target in batches:
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        losses.append(loss.detach())
        grads.append({name.removeprefix("_orig_mod."): p.grad.clone() for name, p in model.named_parameters()})
        optimizer.step()
    return losses, grads


class TorchCompile(unittest.TestCase):
    def setUp(self):
        torch._dynamo.reset()
        torch.manual_seed(0)
        self.eager = SmallModel(smoe.TensorRoutingGate(experts=6, selected=2, height=12, width=10))
        self.compiled_model = copy.deepcopy(self.eager)
        self.batches = [(torch.randn(3, 2, 12, 10), torch.randn(3, 1, 12, 10)) for _ in range(3)]

    def check_training_matches(self, backend):
        compiled = torch.compile(self.compiled_model, backend=backend, fullgraph=True)
        self.check_compiled_training_matches(compiled)

    def check_compiled_training_matches(self, compiled):
        eager_losses, eager_grads = train_steps(self.eager, self.batches)
        compiled_losses, compiled_grads = train_steps(compiled, self.batches)
        for step, (a, b) in enumerate(zip(eager_losses, compiled_losses)):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=f"loss of step {step}")
        for step, (a, b) in enumerate(zip(eager_grads, compiled_grads)):
            for name in a:
                torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5,
                                           msg=f"gradient of {name} at step {step}")
        # The RC loss was on: the gate's gradient above is the RC gradient.
        self.assertGreater(float(self.eager.moe.last_rc_loss), 0.0)

    def test_aot_eager_backend_matches_eager(self):
        self.check_training_matches("aot_eager")

    def test_inductor_matches_eager(self):
        self.check_training_matches("inductor")

    def test_unweighted_layer_matches_eager(self):
        # An unweighted layer routes with route_topk_indices (its Meta kernel traces the shapes).
        self.eager = SmallModel(smoe.TensorRoutingGate(experts=6, selected=2, height=12, width=10), weighted=False)
        compiled = torch.compile(copy.deepcopy(self.eager), backend="aot_eager", fullgraph=True)
        self.check_compiled_training_matches(compiled)

    def test_inference_graph_has_one_smoe_call(self):
        graphs = []

        def capture(graph_module, example_inputs):
            graphs.append(graph_module)
            return graph_module.forward

        model = self.compiled_model.eval()
        x = self.batches[0][0]
        with torch.no_grad():
            y = torch.compile(model, backend=capture, fullgraph=True)(x)
            torch.testing.assert_close(y, self.eager.eval()(x))
        self.assertEqual(len(graphs), 1)
        calls = [node for node in graphs[0].graph.nodes if "smoe" in str(node.target)]
        self.assertEqual(len(calls), 1, f"expected one torch.ops.smoe call, got {calls}")


if __name__ == "__main__":
    unittest.main()
