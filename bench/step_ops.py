"""Where one layer's training step goes: each kernel of the smoe step timed alone, beside the dense
convolution with E filters (dense-E) that does the same FLOPs.

  route_topk    the routing (top E of NE per pixel, shared)
  route_topk_indices   its indices alone, as an unweighted layer routes
  forward       the forward kernel, routing given
  grad_x, grad_weight, grad_routing
                spatial_moe_backward asked for one gradient (output mask), with the RC loss and
                damping (q = 0.7, delta = 0.1): each includes the error quantile it needs
  backward      all three gradients in one call, as a step runs them
  dense-E forward, dense-E step   conv2d with E filters, and its forward + backward

The kernels run as the library serves them (measured kernel choice on). Per round every method
runs 3 calls; printed are the medians over --rounds interleaved rounds with their ranges, and each
kernel's GFLOP/s (2*B*E*C*K*K*H*W per forward-sized product).

  ./smoe python bench/step_ops.py --layer ens10 [--rounds 5] [--threads 2]
"""
import argparse
import statistics
import time

import torch
from torch.nn import functional as nnf

import smoe  # noqa: F401  (loads the operator library)

LAYERS = {  # B, C, H, W, NE, E (K = 3)
    "weatherbench": (8, 128, 32, 64, 256, 128),
    "weatherbench-b1": (1, 128, 32, 64, 256, 128),
    "cifar": (32, 64, 32, 32, 128, 64),
    "ens10": (1, 64, 96, 192, 256, 64),
    "ne/e=4": (8, 128, 32, 64, 256, 64),
    "heat": (32, 1, 64, 64, 3, 1),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", choices=sorted(LAYERS), default="ens10")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    B, C, H, W, NE, E = LAYERS[args.layer]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(B, C, H, W, generator=generator)
    weight = torch.randn(NE, C, 3, 3, generator=generator) / (C * 9) ** 0.5
    routing = torch.randn(NE, H, W, generator=generator)
    indices, _ = torch.ops.smoe.route_topk(routing, E)
    grad_y = torch.randn(B, E, H, W, generator=generator)
    dense_weight = weight[:E].clone()
    x_leaf, dense_leaf = x.clone().requires_grad_(), dense_weight.clone().requires_grad_()

    def backward(mask):
        return lambda: torch.ops.smoe.spatial_moe_backward(grad_y, x, weight, indices, None, routing, 1, True, 1.0,
                                                           0.7, 0.1, None, 1.0, mask)

    def dense_step():
        nnf.conv2d(x_leaf, dense_leaf, padding=1).backward(grad_y)

    flops = 2.0 * B * E * C * 9 * H * W
    methods = {  # name: (call, products of forward size)
        "route_topk": (lambda: torch.ops.smoe.route_topk(routing, E), 0),
        "route_topk_indices": (lambda: torch.ops.smoe.route_topk_indices(routing, E), 0),
        "forward": (lambda: torch.ops.smoe.forward(x, weight, indices, None, 1), 1),
        "grad_x": (backward([True, False, False]), 1),
        "grad_weight": (backward([False, True, False]), 1),
        "grad_routing": (backward([False, False, True]), 0),
        "backward": (backward([True, True, True]), 2),
        "dense-E forward": (lambda: nnf.conv2d(x, dense_weight, padding=1), 1),
        "dense-E step": (dense_step, 3),
    }
    times = {name: [] for name in methods}
    for call, _ in methods.values():
        call()
    names = list(methods)
    for r in range(args.rounds):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            start = time.perf_counter()
            for _ in range(3):
                methods[name][0]()
            times[name].append((time.perf_counter() - start) / 3 * 1e3)
    print(f"{args.layer}: B={B} C={C} {H}x{W} NE={NE} E={E} K=3, {args.threads} threads; medians of {args.rounds} "
          f"interleaved rounds (ms), range")
    for name, (_, products) in methods.items():
        median = statistics.median(times[name])
        rate = f"{products * flops / median / 1e6:7.1f} GFLOP/s" if products else ""
        print(f"  {name:18s} {median:8.2f}  ({min(times[name]):.2f}-{max(times[name]):.2f})  {rate}")


if __name__ == "__main__":
    main()
