"""Sweep throughput on SmolLM2-135M (one torch thread): (pair, m) rows per second.

For the multi-token ``sentiment`` set and the single-token ``psychopathy`` set, with a DiffMean
vector at layer ``--layer``:

* plain   — batched full forward passes of the model (full logits, both answer sequences of each
            row, per-row multipliers) over the same tokens, losses by ``answer_nll``;
* sweep   — :func:`easyedit_split.evaluation.sweep` without the frozen prefix;
* sweep+prefix — the same with the frozen prefix (layers below the site once per pair).

Also the time of a 21-point PrefOdds and UtilOdds fit. Prints figures (and ``--json``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from easyedit_split.base.atomic_io import atomic_write_json
from easyedit_split.core.apply import apply_updates
from easyedit_split.core.models import load_model
from easyedit_split.data import collate_pairs, encode_pairs, load_builtin, pad_id_of
from easyedit_split.data.logprobs import answer_nll
from easyedit_split.evaluation.fitting import fit_pref_odds, fit_util_odds
from easyedit_split.evaluation.sweep import sweep
from easyedit_split.training.diffmean import default_diffmean_hparams, diffmean_update

EASYEDIT_S_PER_ROW = 6.8


@torch.no_grad()
def plain_rows_per_s(model, encoded, grid, pad, update, batch_rows):
    M = len(grid)
    rows = [(i, m) for m in grid for i in range(len(encoded))]
    t0 = time.perf_counter()
    for s in range(0, len(rows), batch_rows):
        chunk = rows[s:s + batch_rows]
        batch = collate_pairs([encoded[i] for i, _ in chunk], pad)
        ms = torch.tensor([m for _, m in chunk] * 2, dtype=torch.float32)
        with apply_updates(model, [update], ms):
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        answer_nll(logits, batch)
    return len(encoded) * M / (time.perf_counter() - t0)


def sweep_rows_per_s(model, tok, encoded, grid, update, batch_rows, prefix):
    t0 = time.perf_counter()
    sweep(model, tok, encoded, [update], grid, batch_rows=batch_rows, use_prefix_cache=prefix, progress=False)
    return len(encoded) * len(grid) / (time.perf_counter() - t0)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--train-pairs", type=int, default=64, help="pairs for the DiffMean vector")
    ap.add_argument("--batch-rows", type=int, default=64)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    model, tok = load_model()
    pad = pad_id_of(tok)
    grid = np.linspace(-10, 10, 21).tolist()
    out = {"pairs": args.pairs, "multipliers": len(grid), "layer": args.layer, "batch_rows": args.batch_rows}
    for name in ("sentiment", "psychopathy"):
        pairs = load_builtin(name)
        train, evals = pairs[: args.train_pairs], pairs[len(pairs) // 2:][: args.pairs]
        update = diffmean_update(model, tok, train, default_diffmean_hparams(args.layer))
        encoded = encode_pairs(evals, tok)
        single = all(e.single_token for e in encoded)
        r_plain = plain_rows_per_s(model, encoded, grid, pad, update, args.batch_rows)
        r_sweep = sweep_rows_per_s(model, tok, encoded, grid, update, args.batch_rows, prefix=False)
        r_prefix = sweep_rows_per_s(model, tok, encoded, grid, update, args.batch_rows, prefix=True)
        res = {"single_token": single, "n_pairs": len(encoded), "plain_rows_s": r_plain, "sweep_rows_s": r_sweep,
               "sweep_prefix_rows_s": r_prefix, "speedup_no_prefix": r_sweep / r_plain,
               "speedup_prefix": r_prefix / r_plain, "vs_easyedit": r_prefix * EASYEDIT_S_PER_ROW}
        out[name] = res
        print(f"{name} ({'single' if single else 'multi'}-token, {len(encoded)} pairs x {len(grid)} m): "
              f"plain {r_plain:.2f} rows/s | sweep {r_sweep:.2f} ({r_sweep / r_plain:.2f}x) | "
              f"sweep+prefix@{args.layer} {r_prefix:.2f} ({r_prefix / r_plain:.2f}x) | "
              f"{r_prefix * EASYEDIT_S_PER_ROW:.0f}x EasyEdit's 6.8 s/row", flush=True)
    m = np.linspace(-5, 5, 21)
    rng = np.random.default_rng(0)
    yp = (2 * m + 0.5) * (1 + (m - 0.3) ** 2 / 2) ** -0.8 - 0.3 + rng.normal(0, 0.05, m.size)
    yu = 3 * (1 + (m - 0.2) ** 2 / 3) ** -1.0 - 4 + rng.normal(0, 0.05, m.size)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        fit_pref_odds(m, yp)
        t1 = time.perf_counter()
        fit_util_odds(m, yu)
        times.append((t1 - t0, time.perf_counter() - t1))
    tp, tu = np.median(times, axis=0)
    out["fit_s"] = {"pref": float(tp), "util": float(tu)}
    print(f"21-point fit: PrefOdds {tp * 1000:.0f} ms, UtilOdds {tu * 1000:.0f} ms (median of 5)")
    if args.json:
        atomic_write_json(args.json, out)


if __name__ == "__main__":
    main()
