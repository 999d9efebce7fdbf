"""Forecasting on the WeatherBench grid with the paper's ResNet, plain or with SMoE layers.

Without --data-dir it runs the demo: it writes a synthetic archive in WeatherBench's 5.625deg
layout (Z500 and T850 anomalies turning into each other one way over land, the other way over
sea), reads it back like the real one, and trains each configuration of --configs on it; the plain
ResNet is widened to the SMoE network's parameter count, and the SMoE gates start from the land-sea
map (--no-prior: from random scores). With --data-dir it trains on the real
archive (e.g. --data-dir /data/WeatherBench/5.625deg --lead-hours 72 --blocks 19 --filters 128).
It prints the latitude-weighted RMSE of Z500 and T850 on the test years per configuration and
writes pictures of the learned routing beside the land-sea map.

  ./smoe python examples/weather/train.py                      # the demo: plain vs SMoE everywhere
  ./smoe python examples/weather/train.py --configs none,first,last,all
  ./smoe python examples/weather/train.py --processes 2        # DDP over 2 processes (gloo, CPU)
"""
import argparse
import os
import socket
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn import functional as nnf
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import weatherbench  # noqa: E402

import smoe  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", help="a WeatherBench 5.625deg archive (default: write the synthetic one)")
    p.add_argument("--configs", default="none,all",
                   help="comma-separated: none (plain ResNet), first, last, all (where the SMoE layers go)")
    p.add_argument("--lead-hours", type=int, default=None, help="forecast lead time (default: 24 demo, 72 data)")
    p.add_argument("--step-hours", type=int, default=6, help="hours between samples")
    p.add_argument("--train-years", default=None, help="first-last (default: 2000-2002 demo, 1979-2015 data)")
    p.add_argument("--test-years", default=None, help="first-last (default: 2003-2003 demo, 2017-2018 data)")
    p.add_argument("--blocks", type=int, default=2, help="residual blocks (the paper's network: 19)")
    p.add_argument("--filters", type=int, default=16, help="filters (the paper's network: 128); SMoE: E = filters")
    p.add_argument("--experts", type=int, default=None, help="NE of the SMoE layers (default 2 x filters)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the weights")
    p.add_argument("--gate-lr", type=float, default=1e-2, help="Adam learning rate of the routing scores")
    p.add_argument("--prior", action=argparse.BooleanOptionalAction, default=True,
                   help="start the gates from the land-sea map (the archive's constants/constants_5.625deg.nc "
                        "lsm; on by default)")
    p.add_argument("--no-equal-params", dest="equal_params", action="store_false",
                   help="keep the plain ResNet at --filters instead of widening it to the SMoE parameter count")
    p.add_argument("--processes", type=int, default=1, help="DDP processes (gloo); the batch is split over them")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="weather_output", help="where the synthetic archive and pictures go")
    args = p.parse_args(argv)
    demo = args.data_dir is None
    args.lead_hours = args.lead_hours or (24 if demo else 72)
    args.train_years = span(args.train_years or ("2000-2002" if demo else "1979-2015"))
    args.test_years = span(args.test_years or ("2003-2003" if demo else "2017-2018"))
    args.configs = [None if c == "none" else c for c in args.configs.split(",")]
    for c in args.configs:
        if c not in smoe.WeatherResNet.PLACES:
            p.error(f"--configs: {c!r} is not none, first, last or all")
    if args.batch % args.processes:
        p.error("--batch must be a multiple of --processes")
    return args


def span(text):
    first, _, last = text.partition("-")
    return int(first), int(last or first)


def parameters(model):
    return sum(p.numel() for p in model.parameters())


def make_model(config, args, channels, width_filters=None):
    return smoe.WeatherResNet(channels, channels, weatherbench.HEIGHT, weatherbench.WIDTH,
                              filters=width_filters or args.filters, blocks=args.blocks, smoe=config,
                              experts=args.experts)


def plain_filters_for(target, args, channels):
    """The smallest plain width whose parameter count reaches `target`."""
    filters = args.filters
    while parameters(make_model(None, args, channels, filters)) < target:
        filters += 1
    return filters


def write_png(path, rgb):
    """rgb [H, W, 3] uint8 as a PNG (no dependencies)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def routing_picture(model, land, path, scale=8):
    """The first SMoE layer's routing: each point coloured by whether its selected experts are
    closer (Jaccard) to the land points' usual set or the sea points'; returns the agreement with
    the land-sea map. Beside it (right) the true map. Rows are drawn north up."""
    gate = next(iter(model.gates.values()))
    selected = torch.zeros_like(gate.routing, dtype=torch.float32)
    selected.scatter_(0, gate.routing.detach().topk(gate.selected, dim=0).indices, 1.0)
    land_t = torch.from_numpy(land).bool()
    typical_land, typical_sea = selected[:, land_t].mean(1), selected[:, ~land_t].mean(1)

    def jaccard(typical):
        inter = (selected * typical.view(-1, 1, 1)).sum(0)
        union = selected.sum(0) + typical.sum() - inter
        return inter / union

    learned = (jaccard(typical_land) > jaccard(typical_sea)).numpy()
    agreement = float((learned == (land == 1)).mean())
    colours = {0: (40, 90, 200), 1: (60, 160, 60)}
    image = np.zeros((land.shape[0], 2 * land.shape[1] + 2, 3), dtype=np.uint8) + 255
    for (y, x), v in np.ndenumerate(learned.astype(int)):
        image[y, x] = colours[v]
    for (y, x), v in np.ndenumerate(land):
        image[y, land.shape[1] + 2 + x] = colours[int(v)]
    image = image[::-1].repeat(scale, 0).repeat(scale, 1)
    write_png(path, np.ascontiguousarray(image))
    return agreement


def train_config(rank, world, args, config, data, filters, land_sea):
    torch.manual_seed(args.seed)
    channels = len(data.variables)
    model = make_model(config, args, channels, filters)
    gates = [p for g in model.gates.values() for p in g.parameters()]
    if config is not None and args.prior:
        model.init_gates_from_class_map(torch.from_numpy(land_sea), 2)
    weights = [p for n, p in model.named_parameters() if not n.startswith("gates.")]
    optimizer = torch.optim.Adam([{"params": weights, "lr": args.lr}, {"params": gates, "lr": args.gate_lr}])
    net = DistributedDataParallel(model) if world > 1 else model
    train_x, train_y = data.pairs("train")
    test_x, test_y = data.pairs("test")
    n, local = train_x.shape[0], args.batch // world
    seconds = 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed + epoch))
        loss_sum, batches = torch.zeros((), dtype=torch.float64), 0
        for first in range(0, n - args.batch + 1, args.batch):
            idx = order[first:first + args.batch][rank * local:(rank + 1) * local]
            optimizer.zero_grad()
            loss = nnf.mse_loss(net(train_x[idx]), train_y[idx])
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            batches += 1
        if world > 1:
            dist.all_reduce(loss_sum)
            loss_sum /= world
        seconds += time.perf_counter() - start
        if rank == 0:
            print(f"  {config or 'none':5} epoch {epoch:2d}  train loss {float(loss_sum) / batches:.4f}  "
                  f"({seconds / epoch:.1f} s/epoch)", flush=True)
    model.eval()
    with torch.no_grad():
        forecast = torch.cat([model(test_x[i:i + 64]) for i in range(0, test_x.shape[0], 64)])
    return model, data.scores(forecast, test_y), seconds / args.epochs


def run(rank, world, args, port):
    if world > 1:
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    lead = rank == 0
    root = args.data_dir or os.path.join(args.out, "synthetic_archive")
    if args.data_dir is None and lead:
        os.makedirs(args.out, exist_ok=True)
        weatherbench.write_synthetic_archive(root, (args.train_years[0], args.test_years[1]), args.step_hours,
                                             args.seed)
    if world > 1:
        dist.barrier()
    data = weatherbench.WeatherBenchData(root, lead_hours=args.lead_hours, step_hours=args.step_hours,
                                         train_years=args.train_years, valid_years=args.test_years,
                                         test_years=args.test_years)
    land_sea = read_land_sea(args, root, data)
    channels = len(data.variables)
    smoe_params = max([parameters(make_model(c, args, channels)) for c in args.configs if c] or [0])
    test_x, test_y = data.pairs("test")
    rows = [("persistence", "-", data.scores(test_x, test_y), "-"),
            ("climatology", "-", data.scores(torch.zeros_like(test_y), test_y), "-")]
    if lead:
        print(f"weather: {'the synthetic archive ' + root if args.data_dir is None else root}; "
              f"{data.pairs('train')[0].shape[0]} training pairs, {test_x.shape[0]} test pairs, lead "
              f"{args.lead_hours} h; ResNet of {args.blocks} blocks; batch {args.batch}"
              f"{f' over {world} DDP processes' if world > 1 else ''}, {torch.get_num_threads()} threads", flush=True)
    pictures = []
    for config in args.configs:
        filters = plain_filters_for(smoe_params, args, channels) if config is None and args.equal_params and \
            smoe_params else args.filters
        model, scores, seconds = train_config(rank, world, args, config, data, filters, land_sea)
        label = "plain" if config is None else f"SMoE {config}"
        rows.append((f"{label} ({filters} filters)", parameters(model), scores, f"{seconds:.1f}"))
        if lead and config is not None and land_sea is not None:
            os.makedirs(args.out, exist_ok=True)
            path = os.path.join(args.out, f"routing_{config}.png")
            agreement = routing_picture(model, land_sea, path)
            pictures.append(f"{path} (routing agrees with the land-sea map at {100 * agreement:.1f}% of points)")
    if lead:
        print("\n| configuration | parameters | Z500 RMSE (m²/s²) | T850 RMSE (K) | s / epoch |\n|---|---|---|---|---|")
        for name, count, scores, seconds in rows:
            print(f"| {name} | {count} | {scores['z500']:.1f} | {scores['t850']:.3f} | {seconds} |")
        for picture in pictures:
            print("picture: " + picture)
    if world > 1:
        dist.destroy_process_group()


def read_land_sea(args, root, data):
    """The archive's land-sea mask for the prior and the routing pictures; None when the archive has
    none and no prior asks for it."""
    wanted = args.prior and any(c is not None for c in args.configs)
    try:
        land_sea = weatherbench.open_land_sea_mask(root)
    except (FileNotFoundError, KeyError) as e:
        if not wanted:
            return None
        raise SystemExit(f"--prior: {e}; pass --no-prior to start the gates from random scores")
    grid = (len(data.lat), len(data.lon))
    if land_sea.shape != grid:
        raise SystemExit(f"--prior: the land-sea mask is {land_sea.shape[0]}x{land_sea.shape[1]}, the fields "
                         f"{grid[0]}x{grid[1]}")
    return land_sea


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    args = parse(argv)
    if args.processes == 1:
        run(0, 1, args, None)
    else:
        mp.spawn(run, args=(args.processes, args, free_port()), nprocs=args.processes)


if __name__ == "__main__":
    main()
