"""The heat-diffusion training example from Python: the same task, model and recipe as smoe-train
(DESIGN.md §5), through the smoe package's modules and ops, on one process or under
torch.distributed DDP with --processes N (gloo, CPU; the global batch is split across processes).

Run it with ./smoe python examples/heat/train.py [flags]; --help lists the flags.
"""
import argparse
import json
import os
import pathlib
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as nnf
from torch.nn.parallel import DistributedDataParallel

import smoe
from smoe.nn import SpatialMoE2d, TensorRoutingGate

TYPES = 3


def load_heat_library():
    """torch.ops.smoe_heat: the dataset generator and pictures shared with smoe-train."""
    path = os.environ.get("SMOE_HEAT_LIBRARY") or str(pathlib.Path(smoe.library_path()).parent / "libsmoe_heat.so")
    torch.ops.load_library(path)
    return torch.ops.smoe_heat


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--no-rc", dest="rc_loss", action="store_false", help="train the gate straight-through instead")
    p.add_argument("--no-damping", dest="damping_on", action="store_false", help="no damping of the expert error")
    p.add_argument("--damping", type=float, default=0.1, help="damping factor at misrouted points (0.1)")
    p.add_argument("--quantile", type=float, default=0.3, help="error quantile q of the RC labels and damping (0.3)")
    p.add_argument("--epochs", type=int, default=30, help="epochs (30)")
    p.add_argument("--samples", type=int, default=20000, help="training samples, 100 per run (20000)")
    p.add_argument("--batch", type=int, default=32, help="global batch (32)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate of the experts (3e-3)")
    p.add_argument("--gate-lr", type=float, default=1e-2, help="Adam learning rate of the routing scores (1e-2)")
    p.add_argument("--anneal", type=int, default=5,
                   help="halve the learning rates in each of the last N epochs (5); before, they are constant")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads per process (0: torch's default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the region map, the data and the model (0)")
    p.add_argument("--out", default="heat_output_py", help="folder for the PNGs (heat_output_py)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--processes", type=int, default=1, help="DDP processes, gloo backend on CPU (1: no DDP)")
    p.add_argument("--report", help="write the final figures and parameters as JSON to this file")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.samples < 100 or args.batch < 1 or args.anneal < 0 or args.processes < 1:
        p.error("need --epochs >= 1, --samples >= 100 (one run), --batch >= 1, --anneal >= 0 and --processes >= 1")
    if args.batch % args.processes:
        p.error(f"--batch ({args.batch}) must be a multiple of --processes ({args.processes})")
    if args.processes > 1 and args.device != "cpu":
        p.error("--processes > 1 runs DDP over gloo on CPU; use --device cpu")
    return args


def progress(epoch, epochs, done, total):
    if not sys.stderr.isatty():  # logs hold the epoch lines alone
        return
    filled = 30 * done // max(total, 1)
    print(f"\repoch {epoch:3d}/{epochs} [{'#' * filled}{'.' * (30 - filled)}] {100 * done // max(total, 1):3d}%",
          end="", file=sys.stderr, flush=True)


def train(rank, world, args, port):
    distributed = world > 1
    if distributed:
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    heat = load_heat_library()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("train.py: --device cuda, but no CUDA device is available")
    torch.manual_seed(args.seed)

    # Data: one region map; training runs and 10% more runs held out for the metric.
    regions = heat.region_map(args.seed)
    runs = args.samples // 100
    train_x, train_y = heat.simulate(regions, runs, args.seed)
    test_x, test_y = heat.simulate(regions, max(1, runs // 10), args.seed + 1000003)
    train_x, train_y, test_x, test_y = (t.to(device) for t in (train_x, train_y, test_x, test_y))
    n, size = train_x.shape[0], regions.shape[0]

    gate = TensorRoutingGate(TYPES, 1, size, size)
    layer = SpatialMoE2d(1, gate, 3, rc_loss=args.rc_loss, quantile=args.quantile,
                         damping=args.damping if args.damping_on else None).to(device)
    optimizer = torch.optim.Adam([{"params": [layer.weight], "lr": args.lr},
                                  {"params": [gate.routing], "lr": args.gate_lr}])
    # DDP averages the expert and routing gradients over the processes, so each step equals one
    # single-process step on the global batch (losses and RC losses are means over the batch).
    model = DistributedDataParallel(layer) if distributed else layer
    local = args.batch // world
    lead = rank == 0
    if lead:
        print(f"heat diffusion: {n} training samples ({runs} runs), {test_x.shape[0]} held out; SMoE NE=3 E=1 3x3, "
              f"RC loss {'on' if args.rc_loss else 'off'}, damping {args.damping if args.damping_on else 'off'}, "
              f"q={args.quantile}, Adam lr {args.lr} (routing {args.gate_lr})"
              f"{f', halved in each of the last {args.anneal} epochs' if args.anneal else ''}, batch {args.batch}"
              f"{f' over {world} DDP processes' if distributed else ''}, {torch.get_num_threads()} threads, "
              f"{args.device}", flush=True)

    seconds, within, epochs_to_99 = 0.0, 0.0, None
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        # Constant learning rates, then halved in each of the last `anneal` epochs (never the first).
        lr_factor = 0.5 ** max(0, epoch - (args.epochs - min(args.anneal, args.epochs - 1)))
        for group, base in zip(optimizer.param_groups, (args.lr, args.gate_lr)):
            group["lr"] = base * lr_factor
        order = torch.randperm(n).to(device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        rc_sum = torch.zeros((), dtype=torch.float64, device=device)
        batches = 0
        for first in range(0, n, args.batch):
            idx = order[first:first + args.batch]
            if distributed:
                # Equal shares of the global batch; a short last batch is dropped by every process.
                if idx.numel() < args.batch:
                    break
                idx = idx[rank * local:(rank + 1) * local]
            optimizer.zero_grad()
            loss = nnf.mse_loss(model(train_x[idx]), train_y[idx])
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            rc_sum += layer.last_rc_loss
            batches += 1
            if lead and batches % 20 == 0:
                progress(epoch, args.epochs, first, n)
        totals = torch.stack([loss_sum, rc_sum])
        if distributed:
            dist.all_reduce(totals)
            totals /= world
        mean_loss, mean_rc = (totals / batches).tolist()
        seconds += time.perf_counter() - start
        with torch.no_grad():
            within = heat.within_one_percent(layer(test_x), test_y)
        if epochs_to_99 is None and within >= 0.99:
            epochs_to_99 = epoch
        if lead:
            if sys.stderr.isatty():
                print(f"\r{' ' * 60}\r", end="", file=sys.stderr)
            print(f"epoch {epoch:3d}  loss {mean_loss:.3e}  rc_loss {mean_rc:.4f}  within 1%: {100 * within:7.3f}%  "
                  f"lr {args.lr * lr_factor:.1e}  ({seconds / epoch:.1f} s)", flush=True)

    if lead:
        agreement = heat.routing_agreement(regions, gate.routing.detach(), layer.weight.detach())
        images = heat.write_images(args.out, regions, gate.routing.detach().cpu(), layer.weight.detach().cpu())
        print(f"summary: final within 1%: {100 * within:.3f}%; epochs to reach 99%: "
              f"{epochs_to_99 if epochs_to_99 else 'not reached'}; seconds per epoch: {seconds / args.epochs:.2f}; "
              f"routing agrees with the true map at {100 * agreement:.2f}% of points")
        print("images: " + ", ".join(images))
        if args.report:
            with open(args.report, "w") as f:
                json.dump({"within": within, "loss": mean_loss, "rc_loss": mean_rc, "epochs_to_99": epochs_to_99,
                           "agreement": agreement, "weight": layer.weight.detach().cpu().flatten().tolist(),
                           "routing": gate.routing.detach().cpu().flatten().tolist()}, f)
    if distributed:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    args = parse(argv)
    if args.processes == 1:
        train(0, 1, args, None)
    else:
        mp.spawn(train, args=(args.processes, args, free_port()), nprocs=args.processes)


if __name__ == "__main__":
    main()
