"""Data-parallel sweeps and training under torch.distributed (gloo on CPU): 2 ranks × 1 thread
against 1 rank × 2 threads (and 1 rank × 1 thread), measured in the same run on SmolLM2-135M.

Each configuration runs in fresh spawned processes (the model is loaded before the clock starts);
the figure is the wall time of the slowest rank between two barriers, the best of ``--reps`` runs,
the configurations interleaved so that a change in machine load hits all of them. Printed: seconds,
the speed-up of 2×1 over 1×2 (the question: do two processes beat one process with two threads on
the same cores) and the parallel efficiency ``T(1×1) / (2·T(2×1))``. The sweep results of the two
layouts with one thread per process (1×1 and 2×1) are checked to be identical.

    python benchmarks/bench_distributed.py [--pairs 24] [--multipliers 5] [--train-pairs 16] [--reps 2]

``--quick-set`` measures the concept benchmark itself instead: ``easyedit-split bench --quick`` run as
one process with two threads and under ``torchrun --nproc-per-node 2`` with one thread per rank (and, with
``--with-serial``, one process with one thread), each from an empty output folder, wall time of the whole
command (model loads, every cell, the aggregate). ``--max-concepts N`` takes the first N quick-set
concepts. The per-cell results of the layouts are compared (accuracies equal; largest per-example
difference printed: with the same threads per process the cells are bit-identical).

    python benchmarks/bench_distributed.py --quick-set [--max-concepts 8] [--with-serial]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=24, help="held-out pairs swept")
    ap.add_argument("--multipliers", type=int, default=5, help="grid size (-2..2)")
    ap.add_argument("--train-pairs", type=int, default=16, help="SPLIT vector training pairs (1 epoch); 0: no training")
    ap.add_argument("--batch-rows", type=int, default=32)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--model", default=None)
    ap.add_argument("--quick-set", action="store_true",
                    help="time `bench --quick` as 1 process × 2 threads against torchrun 2 ranks × 1 thread")
    ap.add_argument("--max-concepts", type=int, default=None, help="--quick-set: only the first N concepts")
    ap.add_argument("--with-serial", action="store_true", help="--quick-set: also 1 process × 1 thread")
    ap.add_argument("--keep", default=None,
                    help="--quick-set: keep each layout's bench output in KEEP/<world>x<threads> (default: a temporary folder)")
    ap.add_argument("--gather-rows", type=int, default=0,
                    help="only measure gathering a sweep table of this many (pair, m) rows over 2 gloo ranks")
    return ap.parse_args(argv)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, threads: int, port: int, args: argparse.Namespace, out: str) -> None:
    torch.set_num_threads(threads)
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import numpy as np

    from easyedit_split.core.distributed import distributed
    from easyedit_split.core.models import load_model
    from easyedit_split.core.sites import Site, resolve_site
    from easyedit_split.core.updates import VectorUpdate
    from easyedit_split.data import load_pairs, train_test_split
    from easyedit_split.evaluation.sweep import sweep
    from easyedit_split.training.hparams import SplitHyperParams
    from easyedit_split.training.trainer import Trainer

    with distributed() as ctx:
        model, tok = load_model(args.model)
        rest, test = train_test_split(load_pairs("psychopathy"), args.pairs, seed=0)
        rs = resolve_site(model, Site(args.layer, "residual"))
        g = torch.Generator().manual_seed(0)
        vec = VectorUpdate(rs.site, rs.d_out, vector=torch.randn(rs.d_out, generator=g) * 0.5)
        grid = np.linspace(-2, 2, args.multipliers).tolist()
        times = {}
        ctx.barrier()
        t0 = time.perf_counter()
        table = sweep(model, tok, test, [vec], grid, batch_rows=args.batch_rows, progress=False)
        ctx.barrier()
        times["sweep"] = time.perf_counter() - t0
        if args.train_pairs:
            hp = SplitHyperParams.from_dict({"layers": [args.layer], "n_epochs": 1, "batch_size": 8, "seed": 0,
                                             "intervention_method": "vector", "lr": 0.01})
            ctx.barrier()
            t0 = time.perf_counter()
            Trainer(model, tok, hp).train(rest[: args.train_pairs], progress=False)
            ctx.barrier()
            times["train"] = time.perf_counter() - t0
        if ctx.is_main:
            name = f"{world}x{threads}"
            (Path(out) / f"{name}.json").write_text(__import__("json").dumps(times))
            table.to_csv(Path(out) / f"{name}.csv", index=False)


def _gather_worker(rank: int, world: int, port: int, rows: int, out: str) -> None:
    """Time the all-gather of a sweep table's columns (as the sweep gathers them) of ``rows`` rows in all."""
    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import numpy as np

    from easyedit_split.core.distributed import distributed

    with distributed() as ctx:
        n = rows // world
        local = {"example_id": [f"concept{rank}-pair{i}" for i in range(n)],
                 **{k: np.random.default_rng(rank).standard_normal(n) for k in ("L_p", "L_n", "L_p_mean", "L_n_mean")},
                 "_g": np.zeros(n, dtype=np.int64), "_k": np.zeros(n, dtype=np.int64)}
        best = float("inf")
        for _ in range(3):
            ctx.barrier()
            t0 = time.perf_counter()
            parts = ctx.gather(local)
            best = min(best, time.perf_counter() - t0)
        assert sum(len(p["example_id"]) for p in parts) == n * world
        if ctx.is_main:
            (Path(out) / "gather.txt").write_text(f"{best:.4f}")


def run(world: int, threads: int, args: argparse.Namespace, out: str) -> dict[str, float]:
    import json

    mp.start_processes(_worker, args=(world, threads, _port(), args, out), nprocs=world, join=True,
                       start_method="spawn")
    return json.loads((Path(out) / f"{world}x{threads}.json").read_text())


def _bench_command(world: int, threads: int, out: Path, args: argparse.Namespace) -> list[str]:
    import sys

    cli = ["-m", "easyedit_split.cli", "bench", "--quick", "--threads", str(threads), "--output", str(out),
           "--no-progress"]
    if args.max_concepts:
        cli += ["--max-concepts", str(args.max_concepts)]
    if args.model:
        cli += ["--model", args.model]
    if world == 1:
        return [sys.executable, *cli]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}", *cli]


def _cell_values(out: Path) -> dict[str, dict]:
    import json

    cells = {}
    for f in sorted((out / "cells").glob("*/*.json")):
        d = json.loads(f.read_text(encoding="utf-8"))
        cells[f"{f.parent.name}/{f.stem}"] = d
    return cells


def _largest_difference(a, b) -> float:
    """Largest absolute difference between the numbers of two JSON values of the same shape."""
    if isinstance(a, dict) and isinstance(b, dict):
        return max((_largest_difference(a[k], b[k]) for k in a.keys() & b.keys()), default=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return max((_largest_difference(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if a == b or (math.isnan(a) and math.isnan(b)):
            return 0.0
        return abs(float(a) - float(b))
    return 0.0


def _accuracies(cell: dict) -> list[str]:
    """The cell's chosen m and accuracies (at the chosen m, m = 1, m = 2), as text so that NaN equals NaN."""
    def acc(part):
        return part.get("accuracy") if isinstance(part, dict) else part

    chosen = cell.get("chosen", {})
    return [repr(v) for v in (chosen.get("m"), acc(chosen), acc(cell.get("at_1")), acc(cell.get("at_2")))]


_TIMING_KEYS = ("seconds", "timings", "rank", "mixed_sweep")


def quick_set(args: argparse.Namespace) -> None:
    import subprocess

    layouts = [(1, 2), (2, 1)] + ([(1, 1)] if args.with_serial else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    times, cells = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for world, threads in layouts:
            out = Path(args.keep or tmp) / f"{world}x{threads}"
            if out.exists():
                raise SystemExit(f"--keep {args.keep}: {out} exists; the benchmark times runs from an empty folder")
            cmd = _bench_command(world, threads, out, args)
            print(f"{world}×{threads}: {' '.join(cmd[1:])}", flush=True)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[(world, threads)] = time.perf_counter() - t0
            cells[(world, threads)] = {k: {f: v for f, v in d.items() if f not in _TIMING_KEYS}
                                       for k, d in _cell_values(out).items()}
            print(f"  {len(cells[(world, threads)])} cells in {times[(world, threads)]:.0f} s", flush=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end; torch {torch.__version__}")
    t12, t21 = times[(1, 2)], times[(2, 1)]
    print(f"bench --quick{f' --max-concepts {args.max_concepts}' if args.max_concepts else ''}: "
          f"1 process×2 threads {t12:.0f} s | torchrun 2 ranks×1 thread {t21:.0f} s | 2×1 vs 1×2: {t12 / t21:.2f}×")
    if (1, 1) in times:
        t11 = times[(1, 1)]
        print(f"1 process×1 thread {t11:.0f} s | parallel efficiency T(1×1)/(2·T(2×1)) {t11 / (2 * t21):.2f} | "
              f"threads: T(1×1)/(2·T(1×2)) {t11 / (2 * t12):.2f}")
    for other in [layout for layout in layouts if layout != (2, 1)]:
        a, b = cells[(2, 1)], cells[other]
        same_keys = a.keys() == b.keys()
        acc_same = same_keys and all(_accuracies(a[k]) == _accuracies(b[k]) for k in a)
        diff = max((_largest_difference(a[k], b[k]) for k in a.keys() & b.keys()), default=0.0)
        print(f"cells of 2×1 and {other[0]}×{other[1]}: same cells {same_keys}; chosen m, accuracy at the chosen m, "
              f"at m = 1 and 2 identical {acc_same}; largest difference of any recorded number {diff:.2e}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.quick_set:
        quick_set(args)
        return
    if args.gather_rows:
        with tempfile.TemporaryDirectory() as out:
            mp.start_processes(_gather_worker, args=(2, _port(), args.gather_rows, out), nprocs=2, join=True,
                               start_method="spawn")
            t = float((Path(out) / "gather.txt").read_text())
        print(f"all-gather of a {args.gather_rows}-row sweep table over 2 gloo ranks (CPU): {t:.3f} s (best of 3); "
              f"load average {os.getloadavg()[0]:.1f}")
        return
    layouts = [(1, 1), (1, 2), (2, 1)]
    best: dict[tuple[int, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.reps):
            for world, threads in layouts:
                t = run(world, threads, args, out)
                prev = best.get((world, threads))
                best[(world, threads)] = t if prev is None else {k: min(v, prev[k]) for k, v in t.items()}
        same = (Path(out) / "1x1.csv").read_bytes() == (Path(out) / "2x1.csv").read_bytes()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end; torch {torch.__version__}")
    print(f"sweep: {args.pairs} pairs × {args.multipliers} multipliers (SmolLM2-135M, vector at layer {args.layer}, "
          f"batch_rows {args.batch_rows}); training: {args.train_pairs} pairs, 1 epoch, batch 8")
    for job in best[(1, 1)]:
        t11, t12, t21 = (best[layout][job] for layout in layouts)
        print(f"{job:6s} 1 rank×1 thread {t11:7.2f} s | 1 rank×2 threads {t12:7.2f} s | 2 ranks×1 thread {t21:7.2f} s"
              f" | 2×1 vs 1×2: {t12 / t21:.2f}× | parallel efficiency T(1×1)/(2·T(2×1)) {t11 / (2 * t21):.2f}")
    print(f"sweep tables of 1×1 and 2×1 (one thread per process both) identical: {same}")


if __name__ == "__main__":
    main()
