"""Choose a method's SmolLM2 defaults on the *tuning* concepts' validation pairs (never a report concept).

For every configuration of ``--points`` (hparams keys that override the method's shipped YAML) and every
tuning concept (the benchmark's recorded split; ``--concepts-dir`` for another folder), train on the
concept's training pairs (the benchmark's seeded pair split and sizes) and sweep its validation pairs
over ``--multipliers``. The objective is robust across concepts: the **lower quartile of validation
accuracy over m ∈ {1, 1.5, 2}**, pooled over concepts (every concept contributes its three values); ties go
to the median of the same pool. Results are written to ``--output`` after every (concept, configuration)
and reused by a rerun with the same settings.

    python benchmarks/search_bench_defaults.py --points notes/bench_search/split_vector_round1.points.json \\
        --output notes/bench_search/split_vector_round1.json --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from easyedit_split.base.atomic_io import atomic_write_json
from easyedit_split.base.checks import set_threads
from easyedit_split.bench.api import QUICK
from easyedit_split.bench.cells import CellSetup
from easyedit_split.bench.concepts import (
    concept_files,
    digest,
    embedded_concepts_dir,
    load_concept_pairs,
    roles_for,
    split_pairs,
)

logger = logging.getLogger("search_bench_defaults")
DIAL = (1.0, 1.5, 2.0)


def objective(per_concept: dict[str, dict[str, float]]) -> dict[str, float]:
    """Lower quartile (and median, minimum) of the validation accuracies at m ∈ DIAL, pooled over concepts."""
    pool = [acc[f"{m:g}"] for acc in per_concept.values() for m in DIAL if f"{m:g}" in acc]
    if not pool:
        return {"q25": float("nan"), "median": float("nan"), "min": float("nan"), "n": 0}
    x = np.asarray(pool, dtype=np.float64)
    return {"q25": float(np.quantile(x, 0.25)), "median": float(np.median(x)), "min": float(x.min()), "n": int(x.size)}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", required=True, help='JSON list: [{"name": "...", "point": {hparams key: value}}, ...]')
    ap.add_argument("--method", default="split")
    ap.add_argument("--form", default="vector")
    ap.add_argument("--concepts-dir", default=None, help="default: the embedded subset")
    ap.add_argument("--max-concepts", type=int, default=None)
    ap.add_argument("--n-train", type=int, default=QUICK["n_train"])
    ap.add_argument("--n-val", type=int, default=QUICK["n_val"])
    ap.add_argument("--n-test", type=int, default=QUICK["n_test"], help="held out (never swept here)")
    ap.add_argument("--multipliers", default="0,0.5,1,1.5,2,3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--hparams-dir", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--output", required=True)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    set_threads(args.threads)
    points = json.loads(Path(args.points).read_text(encoding="utf-8"))
    names = [p["name"] for p in points]
    if len(set(names)) != len(names) or not all(isinstance(p.get("point", {}), dict) for p in points):
        raise SystemExit(f"--points {args.points}: every entry needs a unique 'name' and a mapping 'point'")
    folder = Path(args.concepts_dir) if args.concepts_dir else embedded_concepts_dir()
    files = concept_files(folder)
    tuning = roles_for(files, seed=args.seed).tuning[: args.max_concepts]
    grid = sorted(float(m) for m in args.multipliers.split(","))
    out = Path(args.output)
    record: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    settings = {"method": args.method, "form": args.form, "concepts": tuning, "sizes": [args.n_train, args.n_val, args.n_test],
                "grid": grid, "seed": args.seed, "model": args.model or "smollm2",
                "source": str(folder.resolve()) if args.concepts_dir else "embedded"}
    if record.get("settings") != settings:
        record = {"settings": settings, "runs": {}}
    from easyedit_split.core.models import load_model
    from easyedit_split.evaluation.logodds import summarize
    from easyedit_split.evaluation.sweep import sweep
    from easyedit_split.training.api import train_layers
    from easyedit_split.training.trainer import encode_for

    model, tok = load_model(args.model)
    for concept in tuning:  # concept by concept: a cut-off run has every configuration on the same concepts
        split = split_pairs(concept, load_concept_pairs(files[concept]), n_train=args.n_train, n_val=args.n_val,
                            n_test=args.n_test, seed=args.seed)
        for p in points:
            setup = CellSetup(model_id=settings["model"], dtype="float32", grid=tuple(grid), seed=args.seed,
                              matched_targets=(), n_boot=0, fit_boot=0,
                              hparams_dir=Path(args.hparams_dir) if args.hparams_dir else None,
                              overrides={args.method: p.get("point", {})}, layer=None, prompt_template="")
            hp = setup.hparams(args.method, args.form, args.seed)
            key = f"{p['name']}/{concept}"
            fp = digest([hp.to_dict(), split.digests()])
            if record["runs"].get(key, {}).get("fingerprint") == fp:
                continue
            t0 = time.perf_counter()
            result = train_layers(hp, split.train, model, tok, output_dir=None, progress=False)
            table = sweep(model, tok, encode_for(hp, split.val, tok), [r.update for r in result.layers], grid,
                          progress=False)
            s = summarize(table, reduction="sum", n_boot=0)
            record["runs"][key] = {"fingerprint": fp, "config": p["name"], "concept": concept, "point": p.get("point", {}),
                                   "accuracy": {f"{m:g}": float(a) for m, a in zip(s["m"], s["accuracy"])},
                                   "util": {f"{m:g}": float(u) for m, u in zip(s["m"], s["util"])},
                                   "seconds": time.perf_counter() - t0}
            logger.info("%s: %s (%.0f s)", key, {k: round(v, 3) for k, v in record["runs"][key]["accuracy"].items()},
                        record["runs"][key]["seconds"])
            record["summary"] = _summary(record, points)
            atomic_write_json(out, record)
    record["summary"] = _summary(record, points)
    atomic_write_json(out, record)
    for name, s in sorted(record["summary"].items(), key=lambda kv: (-kv[1]["q25"], -kv[1]["median"])):
        print(f"{name:<22} q25 {100 * s['q25']:5.1f}  median {100 * s['median']:5.1f}  min {100 * s['min']:5.1f}  "
              f"({s['n_concepts']} concepts)")
    return 0


def _summary(record: dict[str, Any], points) -> dict[str, Any]:
    out = {}
    for p in points:
        per = {r["concept"]: r["accuracy"] for r in record["runs"].values() if r["config"] == p["name"]}
        out[p["name"]] = {**objective(per), "n_concepts": len(per), "point": p.get("point", {})}
    return out


if __name__ == "__main__":
    sys.exit(main())
