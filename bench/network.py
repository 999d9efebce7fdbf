"""One training step of the whole weather network, per way of building it (README "The weather network").

The paper's ResNet (smoe.WeatherResNet: 7x7 convolution, 19 residual blocks of two 3x3
convolutions, 128 filters, 5x5 convolution, periodic in longitude) at WeatherBench size (32x64,
Z500 and T850 in and out), batch 8, Adam, MSE:

  smoe     every 3x3 convolution an SMoE layer (NE = 256, E = 128, one shared gate), RC loss and
           damping (q = 0.7, delta = 0.1) in the compiled backward
  naive    the same network built from the paper's layer: a convolution over all 256 experts, then a
           gather, RC loss and damping the paper's way (torch.quantile per sample, dense labels,
           BCE-with-logits and its own backward for the gate, the damped error for the experts)
  plain128, plain256   3x3 convolutions of 128 and 256 filters

Each runs in a process of its own: a warm-up step, then the median of --steps steps; memory is the
process's peak resident set (ru_maxrss) and how much of it the steps added to the model, optimizer
and inputs it held before them.

  ./smoe python bench/network.py [--steps 5] [--blocks 19] [--batch 8] [--methods smoe,naive,...]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
from torch import nn
from torch.nn import functional as nnf

import smoe
from smoe.nn import wrap_width

METHODS = ("smoe", "naive", "plain128", "plain256")
QUANTILE, DAMPING = 0.7, 0.1


class NaiveSpatialMoE2d(nn.Module):
    """The paper's SMoE layer: every expert everywhere (one convolution), then the selected ones."""

    def __init__(self, in_channels, gate, kernel_size=3, periodic_width=True):
        super().__init__()
        self.gate = gate
        self.periodic_width = periodic_width
        self.weight = nn.Parameter(torch.empty(gate.experts, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)

    def forward(self, x):
        k = self.weight.shape[-1]
        if self.periodic_width:
            every = nnf.conv2d(wrap_width(x, k // 2), self.weight, padding=(k // 2, 0))
        else:
            every = nnf.conv2d(x, self.weight, padding=k // 2)
        routing = self.gate.routing
        indices = routing.detach().topk(self.gate.selected, dim=0).indices
        y = every.gather(1, indices.expand(x.shape[0], -1, -1, -1))
        if y.requires_grad:
            y.register_hook(lambda dy: self.rc_and_damping(dy, indices))
        return y

    def rc_and_damping(self, dy, indices):
        """The RC loss's gradient into the gate (a backward of its own), and the damped error."""
        with torch.enable_grad():  # a backward hook runs without it
            return self._rc_and_damping(dy, indices)

    def _rc_and_damping(self, dy, indices):
        scale = dy.numel() / 2
        error = dy.abs().float() * scale  # float32 also under autocast: torch.quantile takes no halves
        quantile = torch.quantile(error.flatten(1), QUANTILE, dim=1).view(-1, 1, 1, 1)
        correct = (error <= quantile + 1e-5).float()
        batch, selected, height, width = dy.shape
        experts = self.gate.experts
        wrong = selected - correct.sum(1, keepdim=True)
        labels = (wrong / (experts - selected)).expand(batch, experts, height, width).contiguous()
        labels.scatter_(1, indices.expand(batch, -1, -1, -1), correct)
        z = self.gate.routing.detach().requires_grad_()
        loss = nnf.binary_cross_entropy_with_logits(z.expand(batch, -1, -1, -1), labels)
        (grad,) = torch.autograd.grad(loss, z)
        routing = self.gate.routing
        routing.grad = grad if routing.grad is None else routing.grad + grad
        return torch.where(error > quantile + 1e-3, dy * DAMPING, dy)


def build(method, blocks, height=32, width=64, channels=2):
    options = dict(rc_loss=True, quantile=QUANTILE, damping=DAMPING)
    if method in ("plain128", "plain256"):
        return smoe.WeatherResNet(channels, channels, height, width, filters=int(method[5:]), blocks=blocks)
    model = smoe.WeatherResNet(channels, channels, height, width, filters=128, blocks=blocks, smoe="all",
                               smoe_options=options)
    if method == "naive":
        gate = next(iter(model.gates.values()))
        for block in model.blocks:
            for i, layer in enumerate(block):
                if isinstance(layer, smoe.SpatialMoE2d):
                    block[i] = NaiveSpatialMoE2d(128, gate)
    return model


def measure(method, blocks, batch, steps):
    torch.manual_seed(0)
    model = build(method, blocks)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, target = torch.randn(batch, 2, 32, 64), torch.randn(batch, 2, 32, 64)

    def step():
        optimizer.zero_grad()
        nnf.mse_loss(model(x), target).backward()
        optimizer.step()

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": method, "seconds": sorted(times)[len(times) // 2], "min": min(times), "max": max(times),
            "peak_mib": peak / 1024, "step_mib": (peak - before) / 1024,
            "parameters": sum(p.numel() for p in model.parameters())}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--blocks", type=int, default=19)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.blocks, args.batch, args.steps)))
        return
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    print(f"whole-network training step on {cpu}, {torch.get_num_threads()} threads: ResNet of {args.blocks} blocks, "
          f"batch {args.batch}, 32x64, medians of {args.steps} steps after one warm-up, each method in its own process")
    results = []
    for method in args.methods.split(","):
        if method not in METHODS:
            p.error(f"--methods: {method!r} is not one of {', '.join(METHODS)}")
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", method, "--blocks", str(args.blocks),
                              "--batch", str(args.batch), "--steps", str(args.steps)],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    naive = next((r["seconds"] for r in results if r["method"] == "naive"), None)
    print("\n| network | parameters | step s (range) | vs naive | peak RSS MiB | during the steps MiB |\n|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{naive / r['seconds']:.2f}x" if naive else "-"
        print(f"| {r['method']} | {r['parameters']} | {r['seconds']:.2f} ({r['min']:.2f}-{r['max']:.2f}) | {ratio} | "
              f"{r['peak_mib']:.0f} | {r['step_mib']:.0f} |")


if __name__ == "__main__":
    main()
