"""Table 3 on SmolLM2-135M-Instruct, psychopathy: held-out accuracy and mean UtilOdds at m = 1.

Rows: vector, LoRA, local weight. Columns: unsteered, DiffMean (vector only), SFT, RePS, SPLIT.
Seeded split of the shipped psychopathy data with 100 test pairs; training on the first
``--n-train`` pairs of the train part. Each cell is written to ``notes/table3.json`` as soon as it is
done and the table is re-rendered to stdout and ``notes/table3.md`` (so a partial run still leaves
a partial table).

    python benchmarks/table3.py --layer 15 --n-train 160

With ``--hparams-dir hparams/smollm2`` every cell is trained with the shipped YAML of its method and
form (``<method>_<form>.yaml``, ``diffmean.yaml``) instead of the table's own options (which are then
ignored), on the same split; ``--multipliers 0,0.5,1,1.5,2`` adds a table of accuracy per m (the dial).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from easyedit_split.base.atomic_io import atomic_write_json, atomic_write_text
from easyedit_split.base.methods import hparams_class
from easyedit_split.core.models import load_model
from easyedit_split.core.scoring import PairScorer
from easyedit_split.data import load_builtin, train_test_split
from easyedit_split.training.api import load_train_hparams
from easyedit_split.training.diffmean import diffmean_update
from easyedit_split.training.trainer import Trainer, encode_for

FORMS = ("vector", "lora", "local_weight")
METHODS = ("sft", "reps", "split")
COLUMNS = ("unsteered", "diffmean", "sft", "reps", "split")
ROW_NAMES = {"vector": "vector", "lora": "LoRA", "local_weight": "local weight"}


def util_odds(L_p: torch.Tensor, L_n: torch.Tensor) -> torch.Tensor:
    """log((e^-Lp + e^-Ln) / (1 - e^-Lp - e^-Ln)), stably."""
    log_mass = torch.logsumexp(torch.stack([-L_p, -L_n]), 0).clamp_max(-1e-7)
    return log_mass - torch.log(-torch.expm1(log_mass))


def evaluate(model, tok, updates, encoded, multipliers=(1.0,)):
    """The cell at m = 1 (accuracy, mean UtilOdds and PrefOdds), and every m of ``multipliers`` under ``per_m``."""
    scorer = PairScorer(model, updates, pad_token_id=tok.pad_token_id)
    prepared = scorer.prepare(encoded)
    per_m = {}
    with torch.no_grad():
        for m in multipliers if updates else (0.0,):
            L_p, L_n = scorer.score(prepared, m).losses("sum")
            per_m[f"{m:g}"] = {"accuracy": float((L_p < L_n).float().mean()),
                               "util_odds": float(util_odds(L_p, L_n).mean()), "pref_odds": float((L_n - L_p).mean())}
    return {**per_m["1" if updates else "0"], "per_m": per_m}


def render(cells: dict, cfg: dict) -> str:
    lines = [
        "# Table 3 (SmolLM2-135M-Instruct, psychopathy, held-out)",
        "",
        (f"Layer {cfg['layer']}, {cfg['n_train']} training pairs, {cfg['n_test']} test pairs (seed {cfg['seed']}), "
         + (f"{cfg['epochs']} epoch(s) (per-form overrides below), " if not cfg.get("hparams_dir") else "")
         + "evaluation at m = 1. Each cell: accuracy % / mean UtilOdds."),
        "",
        "| form | unsteered | DiffMean | SFT | RePS | SPLIT |",
        "|---|---|---|---|---|---|",
    ]
    for form in FORMS:
        row = [ROW_NAMES[form]]
        for col in COLUMNS:
            c = cells.get(f"{form}/{col}") or (cells.get(f"vector/{col}") if col == "unsteered" else None)
            if col == "diffmean" and form != "vector":
                row.append("–")
            elif c is None:
                row.append("(not run)")
            else:
                row.append(f"{100 * c['accuracy']:.0f} / {c['util_odds']:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    multipliers = cfg.get("multipliers", [1.0])
    if len(multipliers) > 1:
        ms = [f"{m:g}" for m in multipliers]
        lines += ["", "Held-out accuracy % at each m (the dial):", "",
                  "| cell | " + " | ".join(f"m = {m}" for m in ms) + " |", "|---|" + "---|" * len(ms)]
        for key, c in cells.items():
            if "per_m" in c and len(c["per_m"]) > 1:
                lines.append(f"| {key} | " + " | ".join(
                    f"{100 * c['per_m'][m]['accuracy']:.0f}" if m in c["per_m"] else "–" for m in ms) + " |")
    if cfg.get("hparams_dir"):
        lines += ["", (f"Hyperparameters: the shipped YAMLs in {cfg['hparams_dir']} (<method>_<form>.yaml, "
                       "diffmean.yaml), recorded per cell in the json.")]
    else:
        lines += ["", "Hyperparameters per form:", ""]
        for form in FORMS:
            lines.append(f"- {ROW_NAMES[form]}: {json.dumps(cfg['forms'][form])}")
        lines.append(f"- shared: {json.dumps(cfg['shared'])}")
    times = {k: round(v["seconds"]) for k, v in cells.items() if "seconds" in v}
    lines += ["", f"Training seconds per cell (2-core shared CPU, 1 thread): {json.dumps(times)}", ""]
    return "\n".join(lines)


def resumed_cells(out_json: Path, cfg: dict) -> dict:
    """The cells of a partial run in ``out_json`` to resume from, or none; a file made with other
    settings is refused rather than mixed into this table."""
    if not out_json.exists():
        return {}
    saved = json.loads(out_json.read_text())
    if saved.get("config") != json.loads(json.dumps(cfg)):
        raise SystemExit(f"{out_json} holds cells made with other settings; pass another --out (or remove it) "
                         "instead of mixing them into this table")
    return saved["cells"]


def parse_args(argv=None) -> argparse.Namespace:
    """The options, with every ``--set`` checked (FORM.KEY=JSON) and decoded into ``args.form_sets``."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--n-train", type=int, default=160)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr-vector", type=float, default=0.5)
    ap.add_argument("--lr-lora", type=float, default=0.05)
    ap.add_argument("--lr-local-weight", type=float, default=0.01)
    ap.add_argument("--forms", default=",".join(FORMS))
    ap.add_argument("--methods", default="diffmean," + ",".join(METHODS))
    ap.add_argument("--factors", default="0.5,1.0,1.5", help="steering factors, comma-separated")
    ap.add_argument("--gamma", type=float, default=4.0, help="SPLIT margin weight")
    ap.add_argument("--theta", type=float, default=0.5, help="SPLIT margin threshold")
    ap.add_argument("--lambda-n", type=float, default=0.5, help="SPLIT weight of the losing answer's NLL")
    ap.add_argument("--lora-rank", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--epochs-vector", type=int, default=None, help="per-form override of --epochs")
    ap.add_argument("--epochs-lora", type=int, default=None)
    ap.add_argument("--epochs-local-weight", type=int, default=None)
    ap.add_argument("--layer-vector", type=int, default=None, help="per-form override of --layer")
    ap.add_argument("--layer-lora", type=int, default=None)
    ap.add_argument("--layer-local-weight", type=int, default=None)
    ap.add_argument("--set", dest="form_sets", action="append", default=[], metavar="FORM.KEY=JSON",
                    help="per-form hparam override, e.g. local_weight.steering_factors=[0.5,1,1.5] or "
                         "local_weight.margin_penalty_weight=4 (SPLIT weights reach only the SPLIT cell)")
    ap.add_argument("--hparams-dir", default=None,
                    help="train every cell with <method>_<form>.yaml from this folder (the shipped defaults); "
                         "the lr/epochs/factors/γ/θ/λ_n/rank/layer options and --set are then ignored")
    ap.add_argument("--multipliers", default="1",
                    help="comma list of m to evaluate every cell at (must hold 1, the table's column)")
    ap.add_argument("--out", default=str(ROOT / "notes" / "table3.md"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    sets = []
    for item in args.form_sets:
        target, _, value = item.partition("=")
        form, _, key = target.partition(".")
        if form not in FORMS or not key or not value:
            ap.error(f"--set {item!r}: expected FORM.KEY=JSON with FORM in {', '.join(FORMS)}")
        try:
            sets.append((form, key, json.loads(value)))
        except json.JSONDecodeError as exc:
            ap.error(f"--set {item!r}: the value is not JSON ({exc})")
    args.form_sets = sets
    try:
        args.multipliers = sorted({float(x) for x in args.multipliers.split(",") if x.strip()})
    except ValueError:
        ap.error(f"--multipliers {args.multipliers!r}: expected a comma list of numbers")
    if 1.0 not in args.multipliers:
        ap.error(f"--multipliers {args.multipliers}: must hold 1 (the table's column)")
    if args.hparams_dir is not None:
        missing = [f"{m}_{f}.yaml" for m in METHODS for f in FORMS
                   if not (Path(args.hparams_dir) / f"{m}_{f}.yaml").is_file()]
        if missing:
            ap.error(f"--hparams-dir {args.hparams_dir}: missing {', '.join(missing)}")
        if args.form_sets:
            ap.error("--set cannot be combined with --hparams-dir (edit the YAMLs instead)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    model, tok = load_model()
    pairs = load_builtin("psychopathy")
    train, test = train_test_split(pairs, args.n_test, seed=args.seed)
    train = train[: args.n_train]
    factors = [float(f) for f in args.factors.split(",") if f]
    shared = {"layers": [args.layer], "n_epochs": args.epochs, "batch_size": args.batch_size,
              "gradient_accumulation_steps": 1,
              "seed": args.seed, "system_prompt": "", "use_chat_template": True, "steering_factors": factors,
                  "preference_pairs": ["orig_add", "orig_sub"], "warmup_ratio": 0.0, "max_grad_norm": 1.0}
    split_w = {"pos_loss_weight": 1.0, "neg_loss_weight": args.lambda_n, "margin_penalty_weight": args.gamma,
               "margin_threshold": args.theta}
    forms_cfg = {"vector": {"lr": args.lr_vector}, "lora": {"lr": args.lr_lora, "low_rank_dimension": args.lora_rank},
                 "local_weight": {"lr": args.lr_local_weight}}
    for form, flag in (("vector", "vector"), ("lora", "lora"), ("local_weight", "local_weight")):
        ep, ly = getattr(args, f"epochs_{flag}"), getattr(args, f"layer_{flag}")
        if ep is not None:
            forms_cfg[form]["n_epochs"] = ep
        if ly is not None:
            forms_cfg[form]["layers"] = [ly]
    for form, key, value in args.form_sets:
        forms_cfg[form][key] = value
    cfg = {"layer": args.layer, "n_train": len(train), "n_test": len(test), "seed": args.seed, "epochs": args.epochs,
           "shared": {**shared, "split": split_w}, "forms": forms_cfg, "multipliers": args.multipliers,
           "hparams_dir": args.hparams_dir}
    yaml_dir = Path(args.hparams_dir) if args.hparams_dir else None

    def shipped(method: str, form: str | None):
        """The hparams of a cell from the shipped YAML (``--hparams-dir``)."""
        return load_train_hparams(yaml_dir / (f"{method}_{form}.yaml" if form else f"{method}.yaml"), {"device": "cpu"})
    out_md = Path(args.out)
    out_json = out_md.with_suffix(".json")
    cells = resumed_cells(out_json, cfg)

    def publish():
        text = render(cells, cfg)
        atomic_write_text(out_md, text)
        atomic_write_json(out_json, {"config": cfg, "cells": cells})
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    probe_hp = hparams_class("split").from_dict({**shared, "alg_name": "split"})
    enc_test = encode_for(probe_hp, test, tok)
    if "vector/unsteered" not in cells:
        cells["vector/unsteered"] = evaluate(model, tok, [], enc_test, args.multipliers)
        publish()
    forms = [f for f in args.forms.split(",") if f]
    methods = [m for m in args.methods.split(",") if m]
    if "vector" in forms and "diffmean" in methods and "vector/diffmean" not in cells:
        t = time.perf_counter()
        dm_layer = forms_cfg["vector"].get("layers", [args.layer])[0]
        dm_hp = shipped("diffmean", None) if yaml_dir else hparams_class("diffmean").from_dict(
            {"alg_name": "diffmean", "layers": [dm_layer], "use_chat_template": probe_hp.use_chat_template,
             "system_prompt": probe_hp.system_prompt})
        dm = diffmean_update(model, tok, train, dm_hp)
        cells["vector/diffmean"] = {**evaluate(model, tok, [dm], encode_for(dm_hp, test, tok), args.multipliers),
                                    "seconds": time.perf_counter() - t}
        publish()
    # SPLIT first in every form, so that a partial run still compares SPLIT with something
    order = [(m, f) for m in ("split", "sft", "reps") if m in methods for f in forms]
    for method, form in order:
        key = f"{form}/{method}"
        if key in cells:
            continue
        if yaml_dir:
            hp = shipped(method, form)
        else:
            own = {k: v for k, v in forms_cfg[form].items() if k not in split_w}
            extra = {**split_w, **{k: v for k, v in forms_cfg[form].items() if k in split_w}} if method == "split" else {}
            hp = hparams_class(method).from_dict({**shared, **own, **extra, "alg_name": method,
                                                  "intervention_method": form})
        t = time.perf_counter()
        res = Trainer(model, tok, hp).train(train, progress=False)
        cells[key] = {**evaluate(model, tok, res.updates, encode_for(hp, test, tok), args.multipliers),
                      "seconds": time.perf_counter() - t,
                      "final_loss": res.loss_history[-1], "first_loss": res.loss_history[0]}
        if yaml_dir:
            cells[key]["hparams"] = str(yaml_dir / f"{method}_{form}.yaml")
        publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
