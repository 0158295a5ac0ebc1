"""EasyEdit's knowledge editors and SPLIT-as-editor, compared on EasyEdit's metrics and on the
preference–utility scale.

``python -m easyedit_split.editing.compare --requests FILE --output DIR`` (defaults: the shipped
requests and the SmolLM2 YAMLs in ``hparams/smollm2/editing/``):

1. EasyEdit's ``easyeditor`` is imported (:func:`~easyedit_split.editing.import_easyeditor`) and
   the SPLIT editor registered in its ``ALG_DICT``;
2. for every editing YAML (``alg_name`` FT, LoRA, ROME, MEMIT, SPLIT, …) EasyEdit's own
   ``BaseEditor`` loads the model and edits every request on its own (``edit(...,
   sequential_edit=False)``: edit, score, restore), returning EasyEdit's metrics (rewrite,
   rephrase and locality accuracy); ROME/MEMIT first get covariance statistics from local text
   (:mod:`~easyedit_split.editing.covariance`);
3. meanwhile :class:`~easyedit_split.editing.capture.EditRecorder` turns each edit into updates
   ``(ΔW, Δb)`` against a separately loaded copy of the unedited model;
4. each request's update is swept over the multipliers ``m`` on that request's edit pair
   (prompt; positive ``target_new``, negative ``ground_truth``) and locality pair (locality
   prompt; positive its answer, negative ``target_new``); per-m means over the requests are fitted
   with the paper's curves;
5. ``report.md`` (one table: EasyEdit's metrics, preference/utility at ``m = 0`` and ``m = 1``, fit
   R², locality shift), ``comparison.png``, ``results.json`` and the per-pair sweep tables are written
   atomically, plus a preference–utility report per pair kind (``edit_pairs/``, ``locality_pairs/``).

EasyEdit's ``BaseEditor`` picks a tokenizer class from a family name in the model path (``llama``,
``qwen``, ``gpt`` …); :func:`easyedit_model_dir` gives the built-in SmolLM2 (a Llama model in a
folder called ``smollm2``) such a name through a folder of links.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from easyedit_split.base.atomic_io import atomic_write_json, atomic_write_text
from easyedit_split.base.hparams_io import HParamsError, read_yaml_mapping
from easyedit_split.editing.capture import CapturedEdit, recording
from easyedit_split.editing.covariance import write_local_stats
from easyedit_split.editing.easyeditor_import import import_easyeditor
from easyedit_split.editing.requests import (
    EditRequest,
    edit_kwargs,
    edit_pairs,
    locality_pairs,
    read_requests,
)
from easyedit_split.editing.split_editor import ALG_NAME, SplitEditHyperParams, register_editor
from easyedit_split.errors import InputError
from easyedit_split.evaluation.api import EvaluationResult, MethodEvaluation, fit_summary, slug
from easyedit_split.evaluation.logodds import summarize
from easyedit_split.evaluation.report import write_report
from easyedit_split.evaluation.sweep import sweep, write_table

logger = logging.getLogger(__name__)

__all__ = ["EditorRun", "compare_editors", "easyedit_model_dir", "load_editor_hparams", "main"]

#: substrings by which EasyEdit's BaseEditor chooses how to load a model and its tokenizer
EASYEDIT_MODEL_FAMILIES = ("llama", "qwen2", "qwen3", "qwen", "mistral", "gpt", "internlm", "baichuan", "chatglm", "t5")
SHIPPED_HPARAMS = Path(__file__).resolve().parents[2] / "hparams" / "smollm2" / "editing"
DEFAULT_EDITORS = ("SPLIT", "FT", "LoRA", "ROME", "MEMIT")


# ------------------------------------------------------------------------------------ model and hparams


def easyedit_model_dir(model: str | os.PathLike, workdir: str | os.PathLike) -> Path:
    """A folder EasyEdit's ``BaseEditor`` can load ``model`` from (a built-in name or a HF folder).

    The folder itself when its name already says its family; otherwise ``workdir/<name>-<model_type>``,
    a folder of links to its files (nothing is copied).
    """
    from easyedit_split.core.models import builtin_model_path, canonical_builtin

    path = Path(model).expanduser()
    if not path.exists():
        builtin = canonical_builtin(str(model))
        if builtin is None:
            raise FileNotFoundError(f"model {model!r} is neither a folder nor a built-in model name")
        path = builtin_model_path(builtin)
    path = path.resolve()
    if any(f in path.name.lower() for f in EASYEDIT_MODEL_FAMILIES):
        return path
    config = path / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{path} has no config.json; EasyEdit's BaseEditor needs a Hugging Face folder")
    model_type = str(json.loads(config.read_text()).get("model_type", ""))
    if not any(f in model_type.lower() for f in EASYEDIT_MODEL_FAMILIES):
        raise InputError(f"{path}: model_type {model_type!r} is none of the families EasyEdit's BaseEditor loads "
                         f"({', '.join(EASYEDIT_MODEL_FAMILIES)})")
    view = Path(workdir).resolve() / f"{path.name}-{model_type}"
    view.mkdir(parents=True, exist_ok=True)
    for item in path.iterdir():
        link = view / item.name
        if not link.exists():
            link.symlink_to(item)
    return view


def load_editor_hparams(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> Any:
    """An editing YAML as the hparams object of its ``alg_name`` (EasyEdit's class, or ours for SPLIT)."""
    p = Path(path)
    config = read_yaml_mapping(p, what="editing hyperparameter file")
    if "alg_name" not in config:
        raise HParamsError(f"{p}: an editing YAML must be a mapping with an 'alg_name' key")
    config.update(overrides or {})
    alg = str(config["alg_name"])
    if alg.upper() == ALG_NAME:
        return SplitEditHyperParams.from_dict(config, source=str(p))
    easyeditor = import_easyeditor()
    cls = getattr(easyeditor, f"{alg}HyperParams", None)
    if cls is None:
        raise HParamsError(f"{p}: key 'alg_name' is {alg!r}, but easyeditor has no {alg}HyperParams")
    config = cls.construct_float_from_scientific_notation(config)
    try:
        return cls(**config)
    except TypeError as exc:
        raise HParamsError(f"{p}: {cls.__name__} rejects these keys: {exc}") from exc


# ------------------------------------------------------------------------------------ running editors


@dataclass
class EditorRun:
    """One editor over all requests: EasyEdit's metrics per request and each edit as updates."""

    name: str
    alg_name: str
    metrics: list[dict[str, Any]]
    edits: list[CapturedEdit]
    seconds: float
    notes: list[str] = field(default_factory=list)

    def easyedit_means(self) -> dict[str, float]:
        """Means over requests of EasyEdit's accuracies (each request's token accuracies averaged first)."""

        def mean_of(phase: str, key: str, section: str | None = None) -> float:
            vals = []
            for m in self.metrics:
                d = m.get(phase, {})
                d = d.get(section, {}) if section else d
                if key in d:
                    vals.append(float(np.mean(d[key])))
            return float(np.mean(vals)) if vals else float("nan")

        return {
            "rewrite_acc_pre": mean_of("pre", "rewrite_acc"),
            "rewrite_acc_post": mean_of("post", "rewrite_acc"),
            "rephrase_acc_pre": mean_of("pre", "rephrase_acc"),
            "rephrase_acc_post": mean_of("post", "rephrase_acc"),
            "locality_acc_post": mean_of("post", "neighborhood_acc", "locality"),
        }


def run_editor(name: str, hparams: Any, requests: Sequence[EditRequest], reference: Any, workdir: Path) -> EditorRun:
    """Edit every request with EasyEdit's ``BaseEditor`` and record the edits (see the module doc)."""
    from easyeditor import BaseEditor

    start = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    notes = []
    with contextlib.chdir(workdir):  # BaseEditor writes ./logs/run.log and ./logs/results.json
        editor = BaseEditor.from_hparams(hparams)
        if hasattr(hparams, "mom2_dataset"):
            files = write_local_stats(editor.model, editor.tok, hparams)
            notes.append(f"covariance statistics from {hparams.mom2_n_samples} local texts ({files[0].parent})")
        with recording(editor, reference) as recorder:
            metrics, _, _ = editor.edit(**edit_kwargs(requests), sequential_edit=False, verbose=False)
    if len(recorder.edits) != len(requests):
        raise RuntimeError(f"{name}: {len(recorder.edits)} edits recorded for {len(requests)} requests")
    notes += [f"request {e.index}: {e.note}" for e in recorder.edits if e.note]
    del editor
    gc.collect()
    return EditorRun(name, str(hparams.alg_name), metrics, recorder.edits, time.perf_counter() - start, notes)


# ------------------------------------------------------------------------------------ evaluation


def sweep_edits(run: EditorRun, model: Any, tokenizer: Any, requests: Sequence[EditRequest],
                multipliers: Sequence[float]) -> dict[str, pd.DataFrame]:
    """Per-request sweeps of each edit on its own edit pair and locality pair: ``{"edit": table, "locality": table}``."""
    tables: dict[str, list[pd.DataFrame]] = {"edit": [], "locality": []}
    for request, edit in zip(requests, run.edits):
        if not edit.updates:
            continue
        for kind, pairs in (("edit", edit_pairs([request])), ("locality", locality_pairs([request]))):
            tables[kind].append(sweep(model, tokenizer, pairs, edit.updates, multipliers, method=run.name,
                                      progress=False, encode_kwargs={"chat_template": False}))
    if not tables["edit"]:
        raise RuntimeError(f"{run.name}: no edit changed any weight; nothing to sweep")
    return {k: pd.concat(v, ignore_index=True) for k, v in tables.items()}


def _method_evaluation(name: str, table: pd.DataFrame, reduction: str, n_boot: int) -> MethodEvaluation:
    summary = summarize(table, reduction=reduction, n_boot=n_boot)
    util_col = "util_odds" if reduction == "sum" else "util_odds_mean"
    return MethodEvaluation(name, "easyedit-edit", "edited-weights", table, summary, fit_summary(summary, name),
                            util_infinite=int(np.isinf(table[util_col]).sum()))


def _at(summary: pd.DataFrame, m: float, col: str) -> float:
    row = summary.loc[np.isclose(summary["m"], m)]
    return float(row[col].iloc[0]) if len(row) else float("nan")


def compare_editors(
    hparams_files: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    requests: Sequence[EditRequest] | None = None,
    model: str | os.PathLike | None = None,
    multipliers: Sequence[float] = tuple(np.linspace(-3, 3, 13)),
    easyedit_path: str | os.PathLike | None = None,
    reduction: str = "sum",
    n_boot: int = 1000,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Run the comparison (see the module doc); returns the results written to ``results.json``.

    ``model`` overrides every YAML's ``model_name`` (a built-in name or a folder); without it all
    YAMLs must name the same model. ``overrides``: per ``alg_name``, keys replacing the YAML's.
    """
    from easyedit_split.core.models import load_model

    grid = sorted(float(m) for m in multipliers)
    if not any(np.isclose(grid, 0.0)) or not any(np.isclose(grid, 1.0)):
        raise InputError("the multiplier grid must contain 0 (unedited) and 1 (the edit as made)")
    requests = list(requests) if requests is not None else read_requests()
    out = Path(output_dir)
    workdir = (out / "work").resolve()
    register_editor(easyedit_path)

    loaded = [(Path(f), load_editor_hparams(f, (overrides or {}).get(_alg_of(f), {}))) for f in hparams_files]
    names = [str(hp.model_name) for _, hp in loaded]
    model_spec = model if model is not None else names[0]
    if model is None and len(set(names)) != 1:
        raise InputError(f"the YAMLs name different models {sorted(set(names))}; pass model= to compare on one")
    model_dir = easyedit_model_dir(model_spec, workdir)
    reference, tokenizer = load_model(model_dir)

    runs: list[EditorRun] = []
    failures: dict[str, str] = {}
    algs = [str(hp.alg_name) for _, hp in loaded]
    for path, hp in loaded:
        hp.model_name = str(model_dir)
        if hasattr(hp, "stats_dir"):
            hp.stats_dir = str(workdir / "stats")
        name = str(hp.alg_name) if algs.count(str(hp.alg_name)) == 1 else f"{hp.alg_name} ({path.stem})"
        logger.info("editing %d requests with %s (%s)", len(requests), name, path)
        try:
            runs.append(run_editor(name, hp, requests, reference, workdir))
        except Exception as exc:  # one editor failing must not lose the others' results
            failures[name] = f"{type(exc).__name__}: {exc} ({path})"
            logger.exception("%s failed; it is reported as failed and the comparison goes on", name)
    if not runs:
        raise RuntimeError(f"every editor failed: {failures}")

    evaluations: dict[str, dict[str, MethodEvaluation]] = {"edit": {}, "locality": {}}
    for run in runs:
        tables = sweep_edits(run, reference, tokenizer, requests, grid)
        for kind, table in tables.items():
            evaluations[kind][run.name] = _method_evaluation(run.name, table, reduction, n_boot)
            write_table(table, out / f"{kind}_pairs" / f"sweep_{slug(run.name)}.csv")
    settings = {"delta": 1.0, "target_pref": None, "target_accuracy": 0.9, "max_util_drop": 1.0,
                "n_pairs": len(requests), "n_boot": n_boot, "fit_boot": 0, "derived_from": "means", "seed": 0}
    for kind, title in (("edit", "Edit pairs: prompt → target_new (positive) vs ground_truth (negative)"),
                        ("locality", "Locality pairs: locality prompt → its answer (positive) vs target_new (negative)")):
        write_report(EvaluationResult(evaluations[kind], grid, reduction, settings), out / f"{kind}_pairs", title=title)

    results = _results(runs, evaluations, requests, grid, reduction, model_dir)
    results["failed"] = failures
    from easyedit_split.editing.report import plot_comparison, write_comparison_report

    plot_comparison(results, evaluations, out / "comparison.png")
    write_comparison_report(results, out / "report.md", command=command)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "requests.jsonl", "".join(
        json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in requests))
    return results


def _alg_of(path: str | os.PathLike) -> str:
    try:
        from easyedit_split.base.hparams_io import safe_load

        return str((safe_load(Path(path).read_text(encoding="utf-8")) or {}).get("alg_name", ""))
    except (OSError, UnicodeDecodeError, AttributeError, yaml.YAMLError):
        return ""


def _results(runs, evaluations, requests, grid, reduction, model_dir) -> dict[str, Any]:
    methods = {}
    for run in runs:
        ev, loc = evaluations["edit"][run.name], evaluations["locality"][run.name]
        fits = {k: (f.r2 if f is not None and f.success else None) for k, f in ev.fits.items()}
        methods[run.name] = {
            "alg_name": run.alg_name,
            "n_edits": len(run.edits),
            "n_edits_changing_weights": sum(1 for e in run.edits if e.updates),
            "seconds_total": run.seconds,
            "seconds_per_edit": float(np.mean([e.seconds for e in run.edits])),
            "delta_norm_mean": float(np.mean([e.delta_norm() for e in run.edits])),
            "update_forms": sorted({f"{u.form}@{u.site}" for e in run.edits for u in e.updates}),
            "easyedit": run.easyedit_means(),
            "edit_pairs": {
                "pref_m0": _at(ev.summary, 0.0, "pref"), "pref_m1": _at(ev.summary, 1.0, "pref"),
                "util_m0": _at(ev.summary, 0.0, "util"), "util_m1": _at(ev.summary, 1.0, "util"),
                "accuracy_m0": _at(ev.summary, 0.0, "accuracy"), "accuracy_m1": _at(ev.summary, 1.0, "accuracy"),
                "r2_pref": fits.get("pref"), "r2_util": fits.get("util"),
                "summary": ev.summary.to_dict(orient="list"),
                "fits": {k: (f.to_dict() if f is not None else None) for k, f in ev.fits.items()},
            },
            "locality_pairs": {
                "pref_m0": _at(loc.summary, 0.0, "pref"), "pref_m1": _at(loc.summary, 1.0, "pref"),
                "util_m0": _at(loc.summary, 0.0, "util"), "util_m1": _at(loc.summary, 1.0, "util"),
                "summary": loc.summary.to_dict(orient="list"),
            },
            "notes": run.notes,
        }
    return {"model": str(model_dir), "n_requests": len(requests), "multipliers": grid, "reduction": reduction,
            "methods": methods}


# ------------------------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m easyedit_split.editing.compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hparams", action="append", metavar="YAML",
                   help=f"an EasyEdit editing YAML (repeat); default: {', '.join(DEFAULT_EDITORS)} from {SHIPPED_HPARAMS}")
    p.add_argument("--requests", default=None, help="edit requests (.jsonl/.json); default: the shipped set")
    p.add_argument("--n-requests", type=int, default=None, help="use the first N requests (after --skip-requests)")
    p.add_argument("--skip-requests", type=int, default=0,
                   help="drop the first N requests (e.g. --skip-requests 40 --n-requests 20: the 20 validation "
                        "requests the SPLIT editor's settings were chosen on)")
    p.add_argument("--model", default=None, help="model for every editor (built-in name or folder); default: the YAMLs'")
    p.add_argument("--multipliers", default="-3:3:13", help="start:stop:num or a comma list; must hold 0 and 1")
    p.add_argument("--easyedit", default=None, help="EasyEdit checkout (default: $EASYEDIT_PATH)")
    p.add_argument("--reduction", choices=("sum", "mean"), default="sum", help="sequence sums or per-token means")
    p.add_argument("--set", action="append", default=[], metavar="ALG.key=value",
                   help="override a YAML key of one editor, e.g. SPLIT.lr=0.01 (value parsed as YAML)")
    p.add_argument("--output", required=True, help="output folder")
    return p


def _parse_sets(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, eq, raw = item.partition("=")
        alg, dot, key = target.partition(".")
        if not eq or not dot or not alg or not key:
            raise InputError(f"--set {item!r}: use ALG.key=value, e.g. SPLIT.lr=0.01")
        from easyedit_split.base.hparams_io import safe_load

        try:
            out.setdefault(alg, {})[key] = safe_load(raw)
        except yaml.YAMLError as exc:
            raise InputError(f"--set {item!r}: the value is not valid YAML ({exc}); quote it") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from easyedit_split.base.multipliers import parse_multipliers

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    files = args.hparams or [str(SHIPPED_HPARAMS / f"{name}.yaml") for name in DEFAULT_EDITORS]
    requests = read_requests(args.requests, limit=args.n_requests, skip=args.skip_requests)
    results = compare_editors(files, args.output, requests=requests, model=args.model,
                              multipliers=parse_multipliers(args.multipliers, what="--multipliers"), easyedit_path=args.easyedit,
                              reduction=args.reduction, overrides=_parse_sets(args.set),
                              command="python -m easyedit_split.editing.compare " + " ".join(
                                  sys.argv[1:] if argv is None else argv))
    print(f"{Path(args.output) / 'report.md'} ({len(results['methods'])} editors, {results['n_requests']} requests)")
    for name, error in results["failed"].items():
        print(f"{name} FAILED: {error}", file=sys.stderr)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
