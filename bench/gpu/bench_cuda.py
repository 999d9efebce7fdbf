"""The SMoE layer on a GPU against the paper's naive layer and a dense convolution with E filters.

Layers of DESIGN.md §6 at their GPU batch sizes: weatherbench (B = 64, C = 128, 32x64, NE = 256,
E = 128) and cifar (B = 512, C = 64, 32x32, NE = 128, E = 64), K = 3, a tensor routing gate of
random scores. Per precision (fp32 with TF32 off, fp32 with TF32 on for cuDNN and matmuls, bf16
under torch.autocast) and per measure:

  forward    inference (no autograd)
  fwd+bwd    forward and backward, the gate learning straight through (no RC loss)
  step       forward and backward with the RC loss and damping (q = 0.7, delta = 0.1): the paper's
             training; naive the paper's procedure (torch.quantile, dense labels, BCE)
  methods    smoe (torch.ops.smoe through smoe.SpatialMoE2d), naive (cuDNN convolution over all NE
             experts, then a gather: bench/network.py's NaiveSpatialMoE2d), dense-E (cuDNN
             convolution with E filters, the same FLOPs as smoe; no gate)

Timed with CUDA events: per round each method runs n calls back to back (n chosen so that a round
takes about 50 ms), the methods interleaved and the first one rotating; printed are the medians of
the rounds, naive's time over smoe's with its range over the rounds, smoe's over dense-E's, and
smoe's achieved TFLOP/s (2*B*E*C*K*K*H*W per forward, twice that per backward).

--profile adds, per layer, the GPU kernels of one fp32 smoe step and one naive step by their time
(torch.profiler), to see where a step goes.

  python3 bench/gpu/bench_cuda.py [--rounds 5] [--layers weatherbench,cifar] [--profile] [--out DIR]
"""
import argparse
import json
import os
import statistics
import sys

import torch
from torch import nn

import smoe
from smoe.nn import SpatialMoE2d, TensorRoutingGate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from network import DAMPING, QUANTILE, NaiveSpatialMoE2d  # noqa: E402

LAYERS = {  # B, C, H, W, NE, E, K
    "weatherbench": (64, 128, 32, 64, 256, 128, 3),
    "cifar": (512, 64, 32, 32, 128, 64, 3),
}
PRECISIONS = ("fp32", "tf32", "bf16-autocast")
MEASURES = ("forward", "fwd+bwd", "step")
METHODS = ("smoe", "naive", "dense-E")


def set_precision(precision):
    tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32


def build(method, measure, layer):
    B, C, H, W, NE, E, K = layer
    torch.manual_seed(0)
    gate = TensorRoutingGate(NE, E, H, W)
    if method == "smoe":
        rc = measure == "step"
        module = SpatialMoE2d(C, gate, kernel_size=K, rc_loss=rc, quantile=QUANTILE, damping=DAMPING if rc else None)
    elif method == "naive":
        module = NaiveSpatialMoE2d(C, gate, kernel_size=K, periodic_width=False)
        if measure != "step":  # no RC loss: the hook that adds it is left out
            module.rc_and_damping = lambda dy, indices: dy
    else:
        module = nn.Conv2d(C, E, K, padding=K // 2, bias=False)
    return nn.ModuleList([module, gate]).cuda()


def runner(method, measure, precision, layer):
    modules = build(method, measure, layer)
    module = modules[0]
    B, C, H, W = layer[:4]
    x = torch.randn(B, C, H, W, device="cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16-autocast")

    def call():
        if measure == "forward":
            with torch.no_grad(), autocast:
                module(x)
            return
        modules.zero_grad(set_to_none=False)
        with autocast:
            y = module(x)
        y.float().square().mean().backward()

    return call


def time_calls(call, n):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / n


def measure_group(layer, precision, measure, rounds):
    set_precision(precision)
    calls, counts, times = {}, {}, {m: [] for m in METHODS}
    for method in METHODS:
        calls[method] = runner(method, measure, precision, layer)
        time_calls(calls[method], 2)  # warm-up: kernels loaded, allocator filled
        single = time_calls(calls[method], 1)
        counts[method] = max(1, min(20, int(50.0 / max(single, 1e-3))))
    for r in range(rounds):
        for i in range(len(METHODS)):
            method = METHODS[(i + r) % len(METHODS)]
            times[method].append(time_calls(calls[method], counts[method]))
    return times


def profile_steps(name, layer):
    """The GPU kernels of one fp32 step (RC loss + damping) of smoe and of naive, by CUDA time."""
    set_precision("fp32")
    tables = []
    for method in ("smoe", "naive"):
        call = runner(method, "step", "fp32", layer)
        time_calls(call, 2)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            call()
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=70)
        tables.append(f"{name} {method} step, fp32:\n{table}")
    return "\n".join(tables)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--layers", default="weatherbench,cifar")
    parser.add_argument("--profile", action="store_true", help="also the GPU kernels of one step per layer")
    parser.add_argument("--out", default=None, help="folder for bench_cuda.json, bench_cuda.md (and profile.txt)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_cuda.py: no CUDA device")
    device = torch.cuda.get_device_name()
    header = (f"{device}, torch {torch.__version__}, smoe library {smoe.library_path()}; medians of {args.rounds} "
              f"interleaved rounds (ms), range of naive/smoe over the rounds")
    print(header, flush=True)
    records, lines = [], [header, "",
                          "| layer | precision | measure | smoe | naive | dense-E | naive/smoe (range) | smoe/dense-E | smoe TFLOP/s |",
                          "|---|---|---|---|---|---|---|---|---|"]
    for name in args.layers.split(","):
        layer = LAYERS[name]
        B, C, H, W, NE, E, K = layer
        flops = 2.0 * B * E * C * K * K * H * W
        for precision in PRECISIONS:
            for measure in MEASURES:
                try:
                    times = measure_group(layer, precision, measure, args.rounds)
                except RuntimeError as error:  # e.g. out of memory: reported, the rest still runs
                    print(f"{name} {precision} {measure}: failed: {error}", flush=True)
                    records.append({"layer": name, "precision": precision, "measure": measure, "error": str(error)})
                    continue
                medians = {m: statistics.median(t) for m, t in times.items()}
                ratios = [n / s for n, s in zip(times["naive"], times["smoe"])]
                work = flops * (1 if measure == "forward" else 3)
                tflops = work / (medians["smoe"] * 1e-3) / 1e12
                records.append({"layer": name, "precision": precision, "measure": measure, "times_ms": times,
                                "median_ms": medians, "smoe_tflops": tflops})
                line = (f"| {name} B{B} | {precision} | {measure} | {medians['smoe']:.2f} | {medians['naive']:.2f} | "
                        f"{medians['dense-E']:.2f} | {medians['naive'] / medians['smoe']:.2f}x "
                        f"({min(ratios):.2f}-{max(ratios):.2f}) | {medians['smoe'] / medians['dense-E']:.2f} | "
                        f"{tflops:.1f} |")
                lines.append(line)
                print(line, flush=True)
    profiles = ""
    if args.profile:
        profiles = "\n".join(profile_steps(name, LAYERS[name]) for name in args.layers.split(","))
        print(profiles, flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        if profiles:
            with open(os.path.join(args.out, "profile.txt"), "w") as f:
                f.write(profiles)
        with open(os.path.join(args.out, "bench_cuda.json"), "w") as f:
            json.dump({"device": device, "torch": torch.__version__, "records": records}, f, indent=1)
        with open(os.path.join(args.out, "bench_cuda.md"), "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
