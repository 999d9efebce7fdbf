"""One CPU op per kernel (README "The CPU formulations"), each forced in turn, against the paper's
naive layer (a convolution over all NE experts, then a gather) in one process: the forward, or the
weight or data gradient alone (naive: autograd's backward of the convolution for that input).

Weatherbench's layer (C = 128, 32x64, NE = 256, E = 128) at batches 1, 2, 4 and 8, with random
routing and with region routing (8x8 regions sharing their scores, as under trained gates), the
ens10-like layer (B = 1, C = 64, 96x192, NE = 256, E = 64), cifar's (B = 32, C = 64, 32x32,
NE = 128, E = 64) and ./smoe compare's NE/E = 4 layer (B = 8, C = 128, 32x64, NE = 256, E = 64). The routing is given (route_topk is not timed). Per layer: a warm-up call each,
then --rounds rounds, each timing every method (the median of 3 calls), starting one method later
each round; printed are the medians of the rounds and naive's time over each method's with its
range over the rounds. --dtype bfloat16 or float16 runs those kernels against naive in that dtype;
naive's float16 gradients are not timed (PyTorch's float16 convolution backward on the CPU takes
seconds per call), only checked against: their ratios are to the regular kernel. --layers keeps
the layers whose names start with one of its comma-separated prefixes.

  ./smoe python bench/kernel_variants.py [--op forward|backward_weight|backward_data]
                                         [--dtype float32|bfloat16|float16] [--rounds 7] [--threads 2]
                                         [--layers "weatherbench B8,cifar"]
"""
import argparse
import statistics
import time

import torch
from torch.nn import functional as nnf

import smoe

LAYERS = [  # name, B, C, H, W, NE, E, regions
    ("weatherbench B1", 1, 128, 32, 64, 256, 128, 0),
    ("weatherbench B2", 2, 128, 32, 64, 256, 128, 0),
    ("weatherbench B4", 4, 128, 32, 64, 256, 128, 0),
    ("weatherbench B8", 8, 128, 32, 64, 256, 128, 0),
    ("weatherbench B1, regions", 1, 128, 32, 64, 256, 128, 8),
    ("weatherbench B8, regions", 8, 128, 32, 64, 256, 128, 8),
    ("ens10-like B1", 1, 64, 96, 192, 256, 64, 0),
    ("cifar B32", 32, 64, 32, 32, 128, 64, 0),
    ("ne/e=4 B8", 8, 128, 32, 64, 256, 64, 0),
]
# Which of the op's outputs spatial_moe_backward computes: (grad_x, grad_weight, grad_routing).
OUTPUT_MASKS = {"backward_data": [True, False, False], "backward_weight": [False, True, False]}


def cpu_model():
    fields = {}
    with open("/proc/cpuinfo") as info:
        for line in info:
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return "{} ({} family {} model {})".format(fields.get("model name"), fields.get("vendor_id"),
                                              fields.get("cpu family"), fields.get("model"))


def dtype_name(dtype):
    return str(dtype).split(".")[1]


def kernel_variants(op, dtype):
    names = ["regular"]
    for line in smoe.kernel_variants():
        kernel_op, routing, gating, name, params = line.split()[:5]
        typed = params.startswith(f"dtype={dtype_name(dtype)}@") if dtype != torch.float32 else "dtype=" not in params
        if kernel_op == op and routing == "shared" and gating == "unweighted" and typed:
            names.append(name)
    return names


def layer(B, C, H, W, NE, E, regions, dtype):
    torch.manual_seed(0)
    x = torch.randn(B, C, H, W)
    weight = torch.randn(NE, C, 3, 3) / (C * 9) ** 0.5
    if regions:
        coarse = torch.randn(NE, -(-H // regions), -(-W // regions))
        routing = coarse.repeat_interleave(regions, 1).repeat_interleave(regions, 2)[:, :H, :W].contiguous()
    else:
        routing = torch.randn(NE, H, W)
    indices = torch.topk(routing, E, dim=0).indices.to(torch.int32)
    grad_y = torch.randn(B, E, H, W)
    return x.to(dtype), weight.to(dtype), indices, grad_y.to(dtype)


def methods_of(op, variants, x, weight, indices, grad_y):
    """naive and each forced kernel, as functions returning the op's result."""
    gather_index = indices.long().unsqueeze(0).expand(x.shape[0], -1, -1, -1)
    if op == "forward":
        def naive():
            return nnf.conv2d(x, weight, padding=1).gather(1, gather_index)

        def smoe_op():
            return torch.ops.smoe.forward(x, weight, indices, None, 1)
    else:
        leaf = (x if op == "backward_data" else weight).detach().requires_grad_()
        inputs = (leaf, weight) if op == "backward_data" else (x, leaf)
        naive_output = nnf.conv2d(*inputs, padding=1).gather(1, gather_index)

        def naive():
            return torch.autograd.grad(naive_output, leaf, grad_y, retain_graph=True)[0]

        def smoe_op():
            gradients = torch.ops.smoe.spatial_moe_backward(grad_y, x, weight, indices, None, None, 1, False, 1.0,
                                                            0.7, None, None, 1.0, OUTPUT_MASKS[op])
            return gradients[0] if op == "backward_data" else gradients[1]

    def forced(variant):
        def run():
            smoe.set_kernel_variant(variant)
            try:
                return smoe_op()
            finally:
                smoe.set_kernel_variant("auto")
        return run

    methods = {"naive": naive}
    methods.update({v: forced(v) for v in variants})
    return methods


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--op", choices=["forward", "backward_weight", "backward_data"], default="forward")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--layers", default="", help="comma-separated prefixes of the layer names to run")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    # Half-precision results against naive in that dtype: a few units of the last place.
    tolerance = {torch.bfloat16: 3e-2, torch.float16: 4e-3}.get(dtype, 1e-4)
    variants = kernel_variants(args.op, dtype)
    # The baseline of the ratios: naive, or the regular kernel where naive is not timed.
    baseline = "regular" if dtype == torch.float16 and args.op != "forward" else "naive"
    print(f"{args.dtype} {args.op} per kernel on {cpu_model()}, {args.threads} threads; medians of {args.rounds} "
          f"interleaved rounds (each the median of 3 calls), ms; {baseline}/kernel with its range")
    prefixes = [p for p in args.layers.split(",") if p]
    for name, B, C, H, W, NE, E, regions in LAYERS:
        if prefixes and not any(name.startswith(p) for p in prefixes):
            continue
        methods = methods_of(args.op, variants, *layer(B, C, H, W, NE, E, regions, dtype))
        reference = methods["naive"]().float()
        if baseline != "naive":
            del methods["naive"]
        for method, run in methods.items():
            difference = (run().float() - reference).abs().max() / reference.abs().max()
            if difference > tolerance:
                raise SystemExit(f"{name}: {method} differs from naive by {difference:.1e}")
        times = {method: [] for method in methods}
        order = list(methods)
        for round_index in range(args.rounds):
            for i in range(len(order)):
                method = order[(i + round_index) % len(order)]
                calls = []
                for _ in range(3):
                    start = time.perf_counter()
                    methods[method]()
                    calls.append(time.perf_counter() - start)
                times[method].append(sorted(calls)[1] * 1e3)
        cells = [f"{baseline} {statistics.median(times[baseline]):.2f}"]
        for method in variants:
            if method == baseline:
                continue
            ratios = sorted(n / t for n, t in zip(times[baseline], times[method]))
            cells.append(f"{method} {statistics.median(times[method]):.2f} "
                         f"({statistics.median(ratios):.2f}x, {ratios[0]:.2f}-{ratios[-1]:.2f})")
        print(f"{name:26s} " + "   ".join(cells))


if __name__ == "__main__":
    main()
