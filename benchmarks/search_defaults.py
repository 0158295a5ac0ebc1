"""Choose the shipped SmolLM2 training defaults by a small, seeded search on a validation split.

Data (psychopathy, 1000 pairs): the README's test split is held out first and never used here
(``train_test_split(pairs, test_size=100, seed=0)``); the validation pairs are carved from the
remaining 900 with their own seed (``--val-seed``), and the first ``--n-train`` of what is left train.

For every objective (``--objectives``) and form (``--forms``) the search trains a seeded random
sample of ``--configs`` points of the grid (plus the current defaults from ``hparams/smollm2``) and
sweeps the validation pairs over ``--multipliers``. A configuration is scored as a *dial*:

* ``dial_min``: the lowest validation accuracy over m ∈ {1, 1.5, 2} (the working range: it must
  reach its accuracy by m = 1 and keep it up to m = 2); ties go to the higher UtilOdds at m = 1;
* ``dial_ok``: accuracy rises from m = 0 to 0.5 to 1 and the accuracy at 1.5 and 2 stays within
  ``--tolerance`` of the accuracy at 1.

The unsteered model is also measured on the validation pairs with and without each
``--instructions`` entry (UtilOdds and accuracy at m = 0), so the answer-format choice is made on
validation data too. Results are written to ``--output`` (JSON) after every configuration, so a run
stopped by ``--time-budget`` (or killed) leaves what it measured; configurations are interleaved
across (objective, form) so a cut-off run still covers every group.

    python benchmarks/search_defaults.py --forms vector --objectives split --configs 2 --n-train 8 \\
        --n-val 8 --output /tmp/search.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from easyedit_split.base.atomic_io import atomic_write_json
from easyedit_split.core.models import load_model
from easyedit_split.core.sites import Site, resolve_site
from easyedit_split.core.updates import VectorUpdate
from easyedit_split.data import load_builtin, train_test_split
from easyedit_split.evaluation.logodds import summarize
from easyedit_split.evaluation.sweep import sweep
from easyedit_split.training.api import load_train_hparams
from easyedit_split.training.trainer import Trainer, encode_for, select_pairs

logger = logging.getLogger("search_defaults")

FORMS = ("vector", "lora", "local_weight")
DIAL_RANGE = (1.0, 1.5, 2.0)
RANGE_FACTORS = {
    "one": [1.0],
    "half-to-two": [0.5, 1.0, 1.5, 2.0],
    "tenths": [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0],
    "one-to-two": [1.0, 1.5, 2.0],
}
LR = {"vector": [0.1, 0.25, 0.5], "lora": [0.05, 0.1, 0.2], "local_weight": [0.005, 0.01, 0.02]}
EPOCHS = {"vector": [2, 3], "lora": [2, 3], "local_weight": [1, 2]}
#: the grid: objective -> key -> values (lr and n_epochs per form)
GRIDS: dict[str, dict[str, list[Any]]] = {
    "split": {
        "steering_factors": list(RANGE_FACTORS),
        "margin_penalty_weight": [4.0, 8.0],
        "margin_threshold": [0.5, 2.0],
        "neg_loss_weight": [0.3, 0.5],
        "margin_scaling": ["constant", "factor"],
        "n_epochs": [],  # per form: EPOCHS
    },
    "sft": {"steering_factors": list(RANGE_FACTORS)},
}
TINY_GRIDS: dict[str, dict[str, list[Any]]] = {
    "split": {"steering_factors": ["half-to-two"], "margin_scaling": ["constant", "factor"]},
    "sft": {"steering_factors": ["one", "half-to-two"]},
}


def grid_points(objective: str, form: str, grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every point of ``grid`` for one objective and form (``lr``, ``n_epochs`` from the per-form lists)."""
    axes = {"lr": LR[form], **grid}
    if "n_epochs" in grid:
        axes["n_epochs"] = EPOCHS[form]
    keys = sorted(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*(axes[k] for k in keys))]


def to_overrides(point: dict[str, Any]) -> dict[str, Any]:
    out = dict(point)
    if isinstance(out.get("steering_factors"), str):
        out["steering_factors"] = RANGE_FACTORS[out["steering_factors"]]
    return out


def plan(objectives, forms, grids, n_configs: int, seed: int, hparams_dir: Path) -> list[dict[str, Any]]:
    """The configurations to run: per group the current defaults, then a seeded sample; interleaved."""
    groups = []
    for objective in objectives:
        for form in forms:
            rng = random.Random(f"{seed}/{objective}/{form}")
            points = grid_points(objective, form, grids[objective])
            sample = rng.sample(points, min(n_configs, len(points)))
            runs = [{"objective": objective, "form": form, "name": "defaults", "point": {}}]
            runs += [{"objective": objective, "form": form, "name": f"c{i}", "point": p} for i, p in enumerate(sample)]
            for r in runs:
                r["yaml"] = str(hparams_dir / f"{objective}_{form}.yaml")
            groups.append(runs)
    return [r for batch in itertools.zip_longest(*groups) for r in batch if r is not None]


def explicit_plan(path: Path, hparams_dir: Path) -> list[dict[str, Any]]:
    """The configurations listed in the JSON file ``path`` (see ``--points``), checked before any work."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"--points {path}: {exc}") from exc
    if not isinstance(entries, list) or not entries:
        raise SystemExit(f"--points {path}: expected a non-empty JSON list of configurations")
    runs, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"--points {path}, entry {i}"
        if not isinstance(entry, dict) or not {"objective", "form", "name"} <= set(entry):
            raise SystemExit(f"{where}: needs 'objective', 'form' and 'name' (and optionally 'point')")
        if entry["form"] not in FORMS:
            raise SystemExit(f"{where}: unknown form {entry['form']!r}; choose from {', '.join(FORMS)}")
        point = entry.get("point", {})
        if not isinstance(point, dict):
            raise SystemExit(f"{where}: 'point' must be a mapping of hparams keys to values")
        key = (entry["objective"], entry["form"], entry["name"])
        if key in seen:
            raise SystemExit(f"{where}: duplicate name {entry['name']!r} in {entry['objective']}/{entry['form']}")
        seen.add(key)
        yaml_path = hparams_dir / f"{entry['objective']}_{entry['form']}.yaml"
        if not yaml_path.is_file():
            raise SystemExit(f"{where}: no hparams file {yaml_path}")
        runs.append({"objective": entry["objective"], "form": entry["form"], "name": entry["name"],
                     "point": point, "yaml": str(yaml_path)})
    return runs


def build_hparams(run: dict[str, Any], common: dict[str, Any]):
    return load_train_hparams(run["yaml"], {**common, **to_overrides(run["point"])})


def summary_rows(table) -> dict[str, dict[str, float]]:
    s = summarize(table, reduction="sum", n_boot=0)
    return {f"{m:g}": {"accuracy": float(a), "pref": float(p), "util": float(u)}
            for m, a, p, u in zip(s["m"], s["accuracy"], s["pref"], s["util"])}


def dial_score(per_m: dict[str, dict[str, float]], tolerance: float) -> dict[str, Any]:
    acc = {float(k): v["accuracy"] for k, v in per_m.items()}
    in_range = [acc[m] for m in DIAL_RANGE if m in acc]
    rising = all(acc[a] <= acc[b] + 1e-9 for a, b in zip(sorted(acc)[:-1], sorted(acc)[1:]) if b <= 1.0)
    holds = all(acc[m] >= acc.get(1.0, 0.0) - tolerance for m in DIAL_RANGE if m in acc)
    return {"dial_min": min(in_range) if in_range else float("nan"), "dial_ok": bool(rising and holds),
            "util_at_1": per_m.get("1", {}).get("util", float("nan"))}


def unsteered(model, tok, pairs, layer: int, instruction: str | None, base_hp) -> dict[str, float]:
    """Accuracy and mean odds of the unsteered model (a zero vector at m = 0)."""
    rs = resolve_site(model, Site(layer, "residual"))
    zero = VectorUpdate(Site(layer, "residual"), rs.d_out).to(next(model.parameters()).device)
    hp = base_hp.__class__.from_dict(base_hp.to_dict(), overrides={"answer_instruction": instruction})
    table = sweep(model, tok, encode_for(hp, pairs, tok), [zero], [0.0], progress=False)
    return summary_rows(table)["0"]


def best_per_group(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for r in results:
        key = f"{r['objective']}/{r['form']}"
        rank = (r["score"]["dial_ok"], round(r["score"]["dial_min"], 6), r["score"]["util_at_1"])
        if key not in best or rank > best[key]["_rank"]:
            best[key] = {**r, "_rank": rank}
    return {k: {kk: vv for kk, vv in v.items() if kk != "_rank"} for k, v in best.items()}


def render(results: list[dict[str, Any]], multipliers: list[float]) -> str:
    ms = [f"{m:g}" for m in multipliers]
    head = "| group | config | " + " | ".join(f"acc@{m}" for m in ms) + " | util@0 | util@1 | dial_min | ok | s | point |"
    lines = [head, "|" + "---|" * (len(ms) + 8)]
    for r in sorted(results, key=lambda r: (r["objective"], r["form"], -r["score"]["dial_min"])):
        accs = " | ".join(f"{100 * r['per_m'][m]['accuracy']:.0f}" for m in ms)
        lines.append(f"| {r['objective']}/{r['form']} | {r['name']} | {accs} | {r['per_m']['0']['util']:.2f} | "
                     f"{r['score']['util_at_1']:.2f} | {100 * r['score']['dial_min']:.0f} | "
                     f"{'yes' if r['score']['dial_ok'] else 'no'} | {r['seconds']:.0f} | {json.dumps(r['point'])} |")
    return "\n".join(lines)


def evaluate_config(model, tok, hp, train_pairs, eval_pairs, multipliers, tolerance) -> dict[str, Any]:
    """Train ``hp`` on ``train_pairs`` and sweep ``eval_pairs`` over ``multipliers``."""
    t0 = time.perf_counter()
    result = Trainer(model, tok, hp).train(train_pairs, progress=False)
    table = sweep(model, tok, encode_for(hp, eval_pairs, tok), result.updates, multipliers, progress=False)
    per_m = summary_rows(table)
    return {"hparams": {k: getattr(hp, k) for k in HP_KEYS}, "per_m": per_m, "score": dial_score(per_m, tolerance),
            "seconds": time.perf_counter() - t0,
            "final_loss": result.loss_history[-1] if result.loss_history else None,
            "update_norm": float(sum(p.detach().float().pow(2).sum() for p in result.updates[0].parameters()) ** 0.5)}


HP_KEYS = ("lr", "n_epochs", "steering_factors", "margin_penalty_weight", "margin_threshold", "neg_loss_weight",
           "margin_scaling", "answer_instruction")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2", help="built-in name, model folder or .gguf file")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--forms", default=",".join(FORMS))
    ap.add_argument("--objectives", default="split,sft")
    ap.add_argument("--grid", choices=("small", "tiny"), default="small",
                    help="small: the built-in grid (lr, epochs per form × factor ranges × γ × θ × λ_n × margin "
                         "scaling); tiny: two points, for a smoke test")
    ap.add_argument("--configs", type=int, default=12, help="sampled grid points per (objective, form)")
    ap.add_argument("--points", default=None,
                    help="a JSON file with an explicit list of configurations to run instead of the sampled grid "
                         '(a refinement stage): [{"objective": "split", "form": "lora", "name": "r1", '
                         '"point": {"steering_factors": [1, 1.5, 2]}}, ...]; point keys override the yaml')
    ap.add_argument("--n-train", type=int, default=160)
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--val-seed", type=int, default=1)
    ap.add_argument("--test-size", type=int, default=100, help="held out first, with seed 0")
    ap.add_argument("--search-seed", type=int, default=0)
    ap.add_argument("--multipliers", default="0,0.5,1,1.5,2")
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--instructions", default="|Answer with Yes or No.|Answer with only Yes or No.",
                    help="'|'-separated answer-format instructions to measure unsteered (empty = none)")
    ap.add_argument("--train-instructions", default="Answer with Yes or No.|",
                    help="'|'-separated answer_instruction values (empty = none): the search trains with the first; "
                         "the best point of each group is then retrained with each of the others")
    ap.add_argument("--verify-test", action="store_true",
                    help="after the search, train each group's best as the shipped yaml would (first --n-train "
                         "pairs of the train part) and report the test split once; nothing is chosen from it")
    ap.add_argument("--hparams-dir", default=str(ROOT / "hparams" / "smollm2"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override an hparams key for every configuration (YAML value)")
    ap.add_argument("--time-budget", type=float, default=0.0,
                    help="seconds; the sampled search stops early enough to leave time for the instruction "
                         "reruns and the test verification")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--output", default="search_defaults.json")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    import yaml

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("easyedit_split.training.trainer").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    multipliers = sorted(float(x) for x in args.multipliers.split(","))
    forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    for f in forms:
        if f not in FORMS:
            raise SystemExit(f"--forms: unknown form {f!r}; choose from {', '.join(FORMS)}")
    grids = GRIDS if args.grid == "small" else TINY_GRIDS
    for o in objectives:
        if o not in grids:
            raise SystemExit(f"--objectives: no grid for {o!r}; choose from {', '.join(grids)}")
    train_instr = [x or None for x in args.train_instructions.split("|")]

    pairs = load_builtin("psychopathy")
    rest, test = train_test_split(pairs, args.test_size, seed=0)
    pool, val = train_test_split(rest, args.n_val, seed=args.val_seed)
    train = pool[: args.n_train]
    test_ids = {p.id for p in test}
    assert not test_ids & {p.id for p in val + train}, "validation/training pairs overlap the test split"

    model, tok = load_model(args.model, device=args.device)
    common: dict[str, Any] = {"device": args.device}
    for item in args.set:
        key, _, value = item.partition("=")
        common[key.strip()] = yaml.safe_load(value)

    if args.points:
        runs = explicit_plan(Path(args.points), Path(args.hparams_dir))
        n_groups = len({(r["objective"], r["form"]) for r in runs})
    else:
        runs = plan(objectives, forms, grids, args.configs, args.search_seed, Path(args.hparams_dir))
        n_groups = len(objectives) * len(forms)
    first_hp = build_hparams(runs[0], common)
    out: dict[str, Any] = {
        "settings": {**vars(args), "n_pairs_total": len(pairs), "n_test_held_out": len(test),
                     "n_val": len(val), "n_train": len(train), "multipliers": multipliers,
                     "device_name": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
                     "torch_threads": torch.get_num_threads(), "planned_configs": len(runs)},
        "unsteered_val": {}, "results": [], "best": {}, "test_verification": {},
    }
    for instr in args.instructions.split("|"):
        out["unsteered_val"][instr or "(none)"] = unsteered(model, tok, val, first_hp.layers[0], instr or None, first_hp)
        logger.info("unsteered on validation, instruction %r: %s", instr, out["unsteered_val"][instr or "(none)"])
    atomic_write_json(args.output, out)

    def record(run: dict[str, Any], overrides: dict[str, Any], name: str) -> dict[str, Any]:
        hp = build_hparams(run, {**common, **overrides})
        rec = {**{k: run[k] for k in ("objective", "form", "point")}, "name": name,
               **evaluate_config(model, tok, hp, train, val, multipliers, args.tolerance)}
        out["results"].append(rec)
        out["best"] = best_per_group(out["results"])
        atomic_write_json(args.output, out)
        logger.info("%s/%s %s: val acc %s dial_min %.2f ok %s util@1 %.2f (%.1f s)", run["objective"], run["form"],
                    name, [round(v["accuracy"], 2) for v in rec["per_m"].values()], rec["score"]["dial_min"],
                    rec["score"]["dial_ok"], rec["score"]["util_at_1"], rec["seconds"])
        return rec

    # stage 1: the sampled search, with the first training instruction
    reserve_runs = n_groups * (2 * (len(train_instr) - 1) + (1 if args.verify_test else 0))
    for i, run in enumerate(runs):
        done = out["results"]
        mean_s = sum(r["seconds"] for r in done) / len(done) if done else 0.0
        if args.time_budget and time.perf_counter() - t_start + 1.2 * mean_s * (reserve_runs + 1) > args.time_budget:
            logger.warning("time budget: stopping the search after %d of %d configurations", i, len(runs))
            out["settings"]["stopped_after"] = i
            break
        try:
            record(run, {"answer_instruction": train_instr[0]}, run["name"])
        except Exception as exc:  # one broken configuration must not end the search; it is recorded
            logger.exception("%s/%s %s failed", run["objective"], run["form"], run["name"])
            out.setdefault("failed", []).append({**run, "error": repr(exc)})
            atomic_write_json(args.output, out)

    # stage 2: each group's best point with the other training instructions (a paired comparison),
    # (and the old defaults, as the before/after reference)
    stage1_best = dict(out["best"]) if len(train_instr) > 1 else {}
    for key, best in stage1_best.items():
        for name in dict.fromkeys((best["name"], "defaults")):
            run = next((r for r in runs if f"{r['objective']}/{r['form']}" == key and r["name"] == name), None)
            if run is None:  # an explicit --points plan need not hold "defaults"
                continue
            for instr in train_instr[1:]:
                record(run, {"answer_instruction": instr}, f"{name}+instruction={instr or '(none)'}")

    # verification on the test split, once, for each group's final choice (trained as the yaml would)
    if args.verify_test:
        for key, best in out["best"].items():
            run = next(r for r in runs if f"{r['objective']}/{r['form']}" == key and r["name"] == best["name"].split("+")[0])
            hp = build_hparams(run, {**common, "answer_instruction": best["hparams"]["answer_instruction"]})
            shipped_train = select_pairs(hp, pairs)
            rec = evaluate_config(model, tok, hp, shipped_train, test, multipliers, args.tolerance)
            rec["n_train"] = len(shipped_train)
            out["test_verification"][key] = rec
            atomic_write_json(args.output, out)
            logger.info("TEST %s (%s): acc %s util %s", key, best["name"],
                        [round(v["accuracy"], 2) for v in rec["per_m"].values()],
                        [round(v["util"], 2) for v in rec["per_m"].values()])

    out["settings"]["seconds"] = time.perf_counter() - t_start
    atomic_write_json(args.output, out)
    print("unsteered (validation, m = 0):")
    for k, v in out["unsteered_val"].items():
        print(f"  {k}: accuracy {100 * v['accuracy']:.0f}%, PrefOdds {v['pref']:.2f}, UtilOdds {v['util']:.2f}")
    print(render(out["results"], multipliers))
    print("best per group (validation):")
    for k, v in out["best"].items():
        print(f"  {k}: {v['name']} {json.dumps(v['hparams'])} dial_min {100 * v['score']['dial_min']:.0f}% "
              f"ok {v['score']['dial_ok']}")
    for k, v in out["test_verification"].items():
        accs = ", ".join(f"m={m}: {100 * x['accuracy']:.0f}% / {x['util']:.2f}" for m, x in v["per_m"].items())
        print(f"  TEST {k}: {accs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
