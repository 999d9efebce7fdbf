"""Times the built kernels against what the tuner measured (./smoe tune --verify).

usage: ./smoe python autotune/verify.py STORE_DIR [--rounds N]

For every forward, backward_data and backward_weight entry of the tuned store serving this CPU and
the target its kernels run, the layer of the entry's "config" is run through the built library
(torch.ops.smoe) with the tuned kernel and with the regular one, interleaved for N rounds, and the
medians are printed beside the store's JIT figures. A built kernel more than 1.3x slower than the
tuner measured it is reported, and the exit status is 1: the tuner's figure did not predict the
built kernel (other target features, specialisations, thread pool or inputs).
"""
import argparse
import glob
import json
import os
import re
import sys
import time

import torch

import smoe


def host_cpu():
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return {"vendor": fields["vendor_id"], "family": int(fields["cpu family"]), "model": int(fields["model"])}


def active_targets():
    return {line.split()[5] for line in smoe.tuned_kernels() if line.endswith(" active")}


def stores_for(store_dir, cpu, targets):
    for path in sorted(glob.glob(os.path.join(store_dir, "*.json"))):
        with open(path) as f:
            store = json.load(f)
        c = store.get("cpu", {})
        if (store.get("target") in targets and c.get("vendor") == cpu["vendor"] and c.get("family") == cpu["family"]
                and c.get("model", cpu["model"]) == cpu["model"]):
            yield path, store


def layer(config):
    v = {k: int(n) for k, n in re.findall(r"(\w+)=(\d+)", config)}
    g = torch.Generator().manual_seed(0)
    B, C, H, W, NE, E, K, F = (v[k] for k in ("B", "C", "H", "W", "NE", "E", "K", "F"))
    x = torch.randn(B, C, H, W, generator=g)
    weight = torch.randn(NE * F, C, K, K, generator=g) / (C * K * K) ** 0.5
    indices, _ = smoe.route_topk(torch.randn(NE, H, W, generator=g), E)
    grad_y = torch.randn(B, E * F, H, W, generator=g)
    return x, weight, indices, grad_y, F


def call(op, x, weight, indices, grad_y, F):
    if op == "forward":
        return lambda: smoe.forward(x, weight, indices, None, F)
    mask = [op == "backward_data", op == "backward_weight", False]
    # Without damping: with it the op first computes the error quantile itself, which the tuner hands
    # its kernel ready-made (on the heat layer that quantile is 0.2 of the gradients' 0.3 ms).
    return lambda: torch.ops.smoe.spatial_moe_backward(grad_y, x, weight, indices, None, None, F, False, 1.0, 0.7,
                                                       None, None, 1.0, mask)


def interleaved(fns, rounds):
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for r in range(rounds):
        names = list(fns)
        for name in names[r % len(names):] + names[:r % len(names)]:
            samples = []
            for _ in range(3):
                start = time.perf_counter()
                fns[name]()
                samples.append(time.perf_counter() - start)
            times[name].append(sorted(samples)[1] * 1e3)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store_dir")
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    cpu, targets = host_cpu(), active_targets()
    found = list(stores_for(args.store_dir, cpu, targets))
    if not found:
        print(f"verify: no tuned kernel of this build runs on this CPU ({cpu}); nothing to verify")
        return 0
    worst = 0.0
    print(f"{'op':16} {'class':10} {'JIT tuned':>10} {'built tuned':>12} {'built regular':>14} {'built/JIT':>10}  config")
    for path, store in found:
        for entry in store["entries"]:
            if entry["op"] not in ("forward", "backward_data", "backward_weight") or not entry["knobs"]:
                continue
            tensors = layer(entry["config"])
            fns = {}
            for choice in ("tuned", "regular"):
                def run(choice=choice, fn=call(entry["op"], *tensors)):
                    smoe.set_kernel_variant(choice)
                    try:
                        fn()
                    finally:
                        smoe.set_kernel_variant("auto")
                fns[choice] = run
            built = interleaved(fns, args.rounds)
            jit = entry["milliseconds"]["tuned"]
            ratio = built["tuned"] / jit
            worst = max(worst, ratio)
            print(f"{entry['op']:16} {entry['shape_class']:10} {jit:10.3f} {built['tuned']:12.3f} "
                  f"{built['regular']:14.3f} {ratio:9.2f}x  {entry['config']}  ({os.path.basename(path)})")
    if worst > 1.3:
        print(f"verify: a built kernel ran {worst:.2f}x the tuner's time", file=sys.stderr)
        return 1
    print(f"verify: every built tuned kernel within {worst:.2f}x of the tuner's time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
