"""``easyedit-split sweep``: preference–utility evaluation of one update over a multiplier grid."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Any

import numpy as np

HELP = "sweep one update over multipliers: PrefOdds/UtilOdds, fitted curves, valid region, report"

logger = logging.getLogger(__name__)

_DIFFMEAN = re.compile(r"^diffmean@(\d+)(?::(\w+))?$")


def parse_grid(text: str) -> list[float]:
    """``"start:stop:num"`` (``num`` evenly spaced values, ends included) or a comma list ``"-2,0,1.5"``."""
    s = str(text).strip()
    if not s:
        raise ValueError("empty multiplier grid")
    if ":" in s:
        parts = s.split(":")
        if len(parts) != 3:
            raise ValueError(f"multiplier grid {text!r}: use start:stop:num, e.g. -5:5:21")
        try:
            start, stop = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"multiplier grid {text!r}: start and stop must be numbers") from None
        try:
            num = int(parts[2])
        except ValueError:
            raise ValueError(f"multiplier grid {text!r}: num must be an integer, got {parts[2]!r}") from None
        if num < 2:
            raise ValueError(f"multiplier grid {text!r}: num must be >= 2")
        if not stop > start:
            raise ValueError(f"multiplier grid {text!r}: stop must be greater than start")
        values = np.linspace(start, stop, num)
        return [float(round(v, 12)) for v in values]
    out = []
    for tok in s.split(","):
        tok = tok.strip()
        if not tok:
            raise ValueError(f"multiplier grid {text!r}: empty entry in the list")
        try:
            v = float(tok)
        except ValueError:
            raise ValueError(f"multiplier grid {text!r}: {tok!r} is not a number") from None
        if not np.isfinite(v):
            raise ValueError(f"multiplier grid {text!r}: {tok!r} is not finite")
        out.append(v)
    if len(set(out)) != len(out):
        raise ValueError(f"multiplier grid {text!r} has duplicate values")
    return sorted(out)


def with_zero(grid: list[float]) -> list[float]:
    return grid if 0.0 in grid else sorted([*grid, 0.0])


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder / hub id / .gguf / built-in name (default: smollm2)")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16 (fp32/bf16/fp16)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps")
    p.add_argument("--device-map", dest="device_map", default=None, help="e.g. auto: spread a large model over GPUs")
    p.add_argument("--data", default="psychopathy", help="built-in dataset (psychopathy, power-seeking, sentiment) or a file")
    p.add_argument("--multipliers", default="-5:5:21", help="start:stop:num or a comma list; 0 is added if missing (write --multipliers=-5:5:21 when it starts with -)")
    p.add_argument("--n-pairs", type=int, default=100, help="evaluation pairs (held-out part of the split)")
    p.add_argument("--n-train", type=int, default=0,
                   help="training pairs (for transfer R², and for building diffmean@L updates; default 0, or 200 with diffmean)")
    p.add_argument("--train-sweep-pairs", type=int, default=None,
                   help="sweep only this many training pairs for the transfer R² (default: all; 0: no training sweep)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layer", type=int, default=None, help="layer for an EasyEdit .pt file not named layer_N.pt")
    p.add_argument("--module-path", dest="module_path", default=None,
                   help="module a diffmean@LAYER vector is read from and sits on, e.g. 'model.layers.{layer}.mlp.down_proj'")
    p.add_argument("--reduction", choices=("sum", "mean"), default="sum", help="sequence-sum or per-token-mean losses")
    p.add_argument("--delta", type=float, default=1.0, help="utility drop defining the valid region")
    p.add_argument("--target-accuracy", type=float, default=None, help="calibration target (default 0.9)")
    p.add_argument("--target-pref", type=float, default=None, help="calibration target PrefOdds instead of accuracy")
    p.add_argument("--max-util-drop", type=float, default=1.0, help="utility budget of the calibration")
    p.add_argument("--derived-from", dest="derived_from", choices=("means", "fit"), default="means",
                   help="valid region and calibration from the measured means (default) or from converged fits")
    p.add_argument("--fit-boot", dest="fit_boot", type=int, default=30,
                   help="bootstrap resamples of the pairs for intervals on the fits' R² and parameters (0: none)")
    p.add_argument("--manifold", action="store_true", help="also measure the activation-manifold distance")
    p.add_argument("--manifold-positions", choices=("answer", "prompt", "all"), default="all",
                   help="tokens whose site outputs the manifold measure uses")
    p.add_argument("--batch-rows", type=int, default=128, help="(pair, m) rows per forward pass")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", help="sweep table format")
    p.add_argument("--output", required=True, help="output folder (tables, results.json, PNGs, report.md)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--title", default=None)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--update", required=True,
                   help="update file/folder (.safetensors, EasyEdit .pt, peft folder, edited checkpoint) "
                        "or diffmean@LAYER to build a DiffMean vector from the training pairs")
    add_common_arguments(p)


def load_data(args: argparse.Namespace, need_train: bool) -> tuple[list, list]:
    from pathlib import Path

    from ..data import load_builtin, read_pairs, train_test_split
    from ..data.pairs import BUILTIN_DATASETS

    name = args.data
    if Path(name).exists():
        pairs = read_pairs(name)
    elif name.strip().lower() in BUILTIN_DATASETS or name.strip().lower() in ("power-seeking", "power-seeking-inclination"):
        pairs = load_builtin(name)
    else:
        raise FileNotFoundError(f"--data {name!r} is neither a file nor a built-in dataset ({', '.join(BUILTIN_DATASETS)})")
    n_train = args.n_train or (200 if need_train else 0)
    if args.n_pairs < 1:
        raise ValueError(f"--n-pairs must be >= 1, got {args.n_pairs}")
    if args.n_pairs + n_train > len(pairs):
        raise ValueError(f"--n-pairs {args.n_pairs} + training pairs {n_train} exceed the {len(pairs)} pairs of {name}")
    rest, test = train_test_split(pairs, args.n_pairs, seed=args.seed)
    train = rest[:n_train]
    return train, test


def resolve_update(spec: str, model: Any, tokenizer: Any, train: list, layer: int | None,
                   module_path: str | None = None) -> Any:
    from ..evaluation.loading import LoadedUpdates, diffmean_from_pairs, load_any_update

    m = _DIFFMEAN.match(spec.strip())
    if m:
        if not train:
            raise ValueError(f"{spec}: building a DiffMean vector needs training pairs (--n-train)")
        u = diffmean_from_pairs(model, tokenizer, train, int(m.group(1)), component=m.group(2) or "residual",
                                module_path=module_path)
        logger.info("DiffMean vector at %s from %d pairs, |v|=%.3f", u.site, len(train), float(u.delta_bias().detach().norm()))
        return LoadedUpdates([u], "diffmean", "diffmean", spec)
    return load_any_update(spec, model, layer=layer)


def evaluate(args: argparse.Namespace, specs: dict[str, str]) -> int:
    import torch

    from ..evaluation.api import evaluate_preference_utility
    from ..models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    grid = with_zero(parse_grid(args.multipliers))
    need_train = any(_DIFFMEAN.match(s.strip()) for s in specs.values())
    train, test = load_data(args, need_train)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device, device_map=args.device_map)
    sweep_train = train if args.train_sweep_pairs is None else train[: args.train_sweep_pairs]
    resolved = {name: resolve_update(spec, model, tokenizer, train, args.layer, getattr(args, "module_path", None))
                for name, spec in specs.items()}
    for name, (spec, loaded) in zip(specs, zip(specs.values(), resolved.values())):
        if _DIFFMEAN.match(spec.strip()):  # keep the train-free vector that was evaluated
            from pathlib import Path

            from ..serialization import save_updates

            path = Path(args.output) / f"diffmean_{name or 'update'}.safetensors"
            save_updates(path, loaded.updates, model=model, method="diffmean",
                         extra={"n_train_pairs": len(train), "data": args.data, "seed": args.seed})
            logger.info("saved the DiffMean vector to %s", path)
    result = evaluate_preference_utility(
        model, tokenizer, resolved, test, grid, train_pairs=sweep_train or None, output_dir=args.output,
        manifold_positions=args.manifold_positions,
        reduction=args.reduction, delta=args.delta, target_pref=args.target_pref, target_accuracy=args.target_accuracy,
        max_util_drop=args.max_util_drop, derived_from=args.derived_from, fit_boot=args.fit_boot,
        manifold=args.manifold, batch_rows=args.batch_rows, seed=args.seed,
        title=args.title, table_format=args.format)
    out = sys.stdout
    for name, ev in result.methods.items():
        for fit in ev.fits.values():
            out.write(f"{name or 'update'}: {fit.label} R²={fit.r2:.4f}\n" if fit.success
                      else f"{name or 'update'}: {fit.label} {fit.status}: {fit.message}\n")
        if ev.valid_region:
            out.write(f"  valid region [{ev.valid_region.lo:.3g}, {ev.valid_region.hi:.3g}] (from the {ev.valid_region.source})\n")
        if ev.calibration:
            c = ev.calibration
            out.write(f"  calibrated multiplier: {c.multiplier if c.multiplier is not None else 'none'} ({c.reason})\n")
    out.write(f"report: {result.files.get('report')}\n")
    return 0


def run(args: argparse.Namespace) -> int:
    return evaluate(args, {"": args.update})
