"""Mixed-update batches against one sweep per update: 8 DiffMean vectors at one site of SmolLM2-135M.

The 8 vectors come from 8 disjoint slices of training pairs of the built-in datasets (psychopathy,
power-seeking, sentiment), all at the same layer: eight "concepts". Both ways sweep the same held-out
pairs over the same multipliers with the same ``batch_rows``: (a) ``sweep`` once per vector, (b)
``sweep_many`` once, where a batch holds rows of every vector. Printed: rows/s of each (best of
``--reps``, the two interleaved, one torch thread), their ratio, and the largest difference between
the two tables (vectors: expected 0).

    python benchmarks/bench_mixed.py [--pairs 16] [--multipliers 5] [--concepts 8] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--multipliers", type=int, default=5)
    ap.add_argument("--concepts", type=int, default=8)
    ap.add_argument("--pairs-per-vector", type=int, default=8)
    ap.add_argument("--batch-rows", type=int, default=128)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--model", default=None)
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    from easyedit_split.core.models import load_model
    from easyedit_split.data import load_pairs, train_test_split
    from easyedit_split.evaluation.sweep import sweep, sweep_many
    from easyedit_split.training.diffmean import diffmean_update
    from easyedit_split.training.hparams import DiffMeanHyperParams

    model, tok = load_model(args.model)
    rest, test = train_test_split(load_pairs("psychopathy"), args.pairs, seed=0)
    pools = [rest] + [load_pairs(name) for name in ("power-seeking", "sentiment")]
    hp = DiffMeanHyperParams.from_dict({"layers": [args.layer]})
    k = args.pairs_per_vector
    vectors = {}
    for i in range(args.concepts):
        pool = pools[i % len(pools)]
        j = i // len(pools)
        vectors[f"c{i}"] = [diffmean_update(model, tok, pool[j * k:(j + 1) * k], hp)]
    grid = np.linspace(-4, 4, args.multipliers).tolist()
    rows = len(test) * len(grid) * len(vectors)
    best = {"separate": float("inf"), "mixed": float("inf")}
    tables = {}
    for _ in range(args.reps):
        t0 = time.perf_counter()
        tables["separate"] = {name: sweep(model, tok, test, v, grid, batch_rows=args.batch_rows, progress=False)
                              for name, v in vectors.items()}
        best["separate"] = min(best["separate"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        tables["mixed"] = sweep_many(model, tok, test, vectors, grid, batch_rows=args.batch_rows, progress=False)
        best["mixed"] = min(best["mixed"], time.perf_counter() - t0)
    worst = 0.0
    for name, alone in tables["separate"].items():
        part = tables["mixed"][tables["mixed"]["method"] == name].reset_index(drop=True)
        for col in ("L_p", "L_n"):
            worst = max(worst, float(np.abs(part[col].to_numpy() - alone[col].to_numpy()).max()))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end; torch {torch.__version__}, 1 thread")
    print(f"{len(vectors)} DiffMean vectors at layer {args.layer} (SmolLM2-135M), {len(test)} held-out pairs × "
          f"{len(grid)} multipliers = {rows} rows, batch_rows {args.batch_rows}")
    for way in ("separate", "mixed"):
        print(f"{way:8s}: {best[way]:7.2f} s, {rows / best[way]:7.1f} rows/s")
    print(f"mixed / separate throughput: {best['separate'] / best['mixed']:.2f}×; "
          f"max |mixed - separate| answer loss: {worst:.3g}")


if __name__ == "__main__":
    main()
