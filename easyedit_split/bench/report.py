"""The benchmark's outputs: per-concept files, ``results.json``, ``report.md`` and plots.

* ``concepts/<concept>.json`` — the concept's cells (without their per-pair matrices) and, per form and
  target accuracy, the paired comparison of UtilOdds at matched accuracy against SPLIT on the concept's
  test pairs (:func:`~easyedit_split.evaluation.frontier.matched_accuracy`, ``m*`` from validation);
* ``results.json`` — settings, the concept split, per concept the headline numbers, per method the
  aggregate (:func:`~.aggregate.aggregate`);
* ``report.md`` — the aggregate tables (:func:`aggregate_table`, :func:`paired_table`), failures and
  the per-concept table;
* ``accuracy_vs_split.png``, ``dial.png``, ``util_matched.png``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from easyedit_split.base.atomic_io import atomic_write_json, atomic_write_text
from easyedit_split.bench.aggregate import METRICS, aggregate, metric_values
from easyedit_split.bench.cells import PROMPT_FORM, Cell, per_example_from, read_cell
from easyedit_split.evaluation.cells import cell as fmt

logger = logging.getLogger(__name__)

__all__ = ["aggregate_table", "paired_table", "reference_for", "write_concept_files", "write_report"]

HEADLINE = ("acc_chosen", "acc_m1", "acc_m2", "dial", "util_chosen", "util_m1", "m_chosen")


def reference_for(name: str) -> str:
    """The SPLIT column a method is compared with: SPLIT in the same form (vector for DiffMean and the prompt)."""
    form = name.split("_", 1)[1] if "_" in name else "vector"
    return f"split_{form}"


def _compact(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("per_example", "settings")}


def _paired_matched(cells: Mapping[str, Mapping[str, Any]], targets: Sequence[float], n_boot: int, seed: int):
    from easyedit_split.evaluation.frontier import matched_accuracy

    curves = {n: r for n, r in cells.items() if r.get("status") == "ok" and r.get("per_example")}
    out: dict[str, Any] = {}
    for ref in sorted({reference_for(n) for n in curves}):
        group = {n: r for n, r in curves.items() if reference_for(n) == ref}
        if ref not in group or len(group) < 2:
            continue
        test = {n: per_example_from(r["per_example"]["test"]) for n, r in group.items()}
        val = {n: per_example_from(r["per_example"]["val"]) for n, r in group.items()}
        for t in targets:
            comp = matched_accuracy(test, float(t), validation=val, reference=ref, n_boot=n_boot, seed=seed)
            out.setdefault(ref, {})[f"{t:g}"] = comp.to_dict()
    return out


def write_concept_files(out: Path, cells: Sequence[Cell], fingerprints: Mapping[str, str], splits, roles,
                        setup) -> dict[str, dict[str, dict[str, Any]]]:
    """One file per concept whose cells are all done; returns ``{concept: {name: cell record}}`` of those."""
    by_concept: dict[str, list[Cell]] = {}
    for c in cells:
        by_concept.setdefault(c.concept, []).append(c)
    complete: dict[str, dict[str, dict[str, Any]]] = {}
    for concept, group in by_concept.items():
        records = {c.name: read_cell(c, out, fingerprints[c.key]) for c in group}
        if any(r is None for r in records.values()):
            missing = [n for n, r in records.items() if r is None]
            logger.warning("concept %s incomplete (missing %s); left out of the aggregate", concept, ", ".join(missing))
            continue
        try:
            role = roles.role(concept)
        except KeyError:
            role = "unassigned"
        file = {"concept": concept, "role": role, "data": splits[concept].digests(),
                "cell_fingerprints": {c.name: fingerprints[c.key] for c in group},
                "cells": {n: _compact(r) for n, r in records.items()},
                "matched_vs_split": _paired_matched(records, setup.matched_targets, setup.n_boot, setup.seed)}
        atomic_write_json(out / "concepts" / f"{concept}.json", file)
        complete[concept] = records
    return complete


def _metrics(targets: Sequence[float]) -> list[str]:
    return [*METRICS, *(f"util_matched@{t:g}" for t in targets), "r2_pref", "r2_util"]


def _interval(stats: Mapping[str, Any], key: str, scale: float, spec: str) -> str:
    v = stats.get(key)
    lo, hi = stats.get(f"{key}_ci", [None, None])
    if v is None:
        return "–"
    text = fmt(scale * v, spec)
    if lo is not None and hi is not None:
        text += f" [{fmt(scale * lo, spec)}, {fmt(scale * hi, spec)}]"
    return text


_LABEL = {"split": "SPLIT", "sft": "SFT", "reps": "RePS", "dpo": "DPO", "diffmean": "DiffMean", "prompt": "prompt"}


def label(name: str) -> str:
    method, _, form = name.partition("_")
    return _LABEL.get(method, method) + (f" ({form.replace('_', ' ')})" if form else "")


def aggregate_table(results: Mapping[str, Any]) -> list[str]:
    """Markdown: one row per method; accuracies in % (median [95 % CI] over concepts), odds in nats."""
    targets = results["settings"]["matched_accuracy"]
    head = ("| method | concepts | accuracy at chosen m | accuracy at m = 1 | accuracy at m = 2 | dial (m=2 − m=1) "
            "| UtilOdds at chosen m | " + " | ".join(f"UtilOdds at acc {t:g}" for t in targets)
            + " | R² pref / util | failures |")
    lines = [head, "|" + "---|" * (9 + len(targets))]
    for name, entry in results["methods"].items():
        m = entry["metrics"]
        matched = " | ".join(f"{_interval(m[f'util_matched@{t:g}'], 'median', 1, '.2f')} (n={m[f'util_matched@{t:g}']['n']})"
                             for t in targets)
        r2 = f"{fmt(m['r2_pref']['median'], '.2f')} / {fmt(m['r2_util']['median'], '.2f')}"
        lines.append(f"| {label(name)} | {entry['n_concepts']} | {_interval(m['acc_chosen'], 'median', 100, '.0f')} | "
                     f"{_interval(m['acc_m1'], 'median', 100, '.0f')} | {_interval(m['acc_m2'], 'median', 100, '.0f')} | "
                     f"{_interval(m['dial'], 'median', 100, '+.0f')} | {_interval(m['util_chosen'], 'median', 1, '.2f')} | "
                     f"{matched} | {r2} | {len(entry['failures'])} |")
    return lines


def paired_table(results: Mapping[str, Any]) -> list[str]:
    """Markdown: each method minus SPLIT (same form) per concept: mean [CI], and wins/ties/losses."""
    targets = results["settings"]["matched_accuracy"]
    metrics = ["acc_chosen", "acc_m1", "acc_m2", "dial", *(f"util_matched@{t:g}" for t in targets)]
    names = {"acc_chosen": "accuracy at chosen m", "acc_m1": "accuracy at m = 1", "acc_m2": "accuracy at m = 2",
             "dial": "dial"}
    head = "| method − SPLIT | " + " | ".join(names[k] if k in names else f"UtilOdds at acc {k.split('@')[1]}"
                                           for k in metrics) + " |"
    lines = [head, "|" + "---|" * (1 + len(metrics))]
    for name, entry in results["methods"].items():
        vs = entry.get("vs_reference", {})
        if not vs:
            continue
        cells = []
        for k in metrics:
            d = vs.get(k, {})
            scale, spec = (100, "+.1f") if k.startswith("acc") or k == "dial" else (1, "+.2f")
            cells.append(f"{_interval(d, 'mean', scale, spec)}; {d.get('wins', 0)}/{d.get('ties', 0)}/{d.get('losses', 0)}")
        lines.append(f"| {label(name)} − {label(vs['reference'])} | " + " | ".join(cells) + " |")
    return lines


def _per_concept(records: Mapping[str, Mapping[str, Mapping[str, Any]]], names: Sequence[str]) -> dict[str, Any]:
    out = {}
    for concept, cells in records.items():
        out[concept] = {}
        for n in names:
            r = cells[n]
            out[concept][n] = {k: metric_values({concept: r}, k)[0] for k in HEADLINE + ("unsteered",)}
            out[concept][n]["failed"] = bool(r.get("failed"))
            out[concept][n]["status"] = r.get("status")
    return out


def write_report(out: Path, cfg, settings: Mapping[str, Any], records: Mapping[str, Mapping[str, Mapping[str, Any]]],
                 roles, *, seconds: float, plots: bool = True) -> dict[str, Any]:
    """Aggregate the complete concepts into ``results.json``, ``report.md`` and the plots."""
    names: list[str] = []
    for cells in records.values():
        for n in cells:
            if n not in names:
                names.append(n)
    by_method = {n: {c: records[c][n] for c in records} for n in names}
    targets = list(settings["matched_accuracy"])
    agg = aggregate(by_method, metrics=_metrics(targets), reference_for=reference_for, n_boot=cfg.concept_boot,
                    seed=cfg.seed)
    timings = [r.get("seconds", 0.0) for cells in records.values() for r in cells.values()]
    results = {"settings": dict(settings), "concept_split": roles.to_dict(), "concepts": list(records),
               "missing_concepts": [c for c in settings["concepts"] if c not in records],
               "methods": agg, "per_concept": _per_concept(records, names),
               "seconds": {"wall_this_run": seconds, "cells_sum": float(sum(timings))}}
    atomic_write_json(out / "results.json", results)
    files = _plots(out, by_method, names, targets) if plots and records else []
    atomic_write_text(out / "report.md", "\n".join(_markdown(results, names, files)) + "\n")
    return results


def _markdown(results: Mapping[str, Any], names: Sequence[str], files: Sequence[str]) -> list[str]:
    s = results["settings"]
    lines = ["# Many-concept benchmark", "",
             (f"Model {s['model']} ({s['dtype']}); {len(results['concepts'])} concepts ({s['concepts_source']}); "
              f"per concept {s['sizes']['train']} training, {s['sizes']['val']} validation and {s['sizes']['test']} "
              f"test pairs; grid m ∈ {s['grid']}; seed {s['seed']}. The factor is chosen on the validation pairs "
              "and every number is on the test pairs. Medians over concepts with 95 % bootstrap intervals "
              "(over concepts); accuracies in %, odds in nats."), ""]
    if results["missing_concepts"]:
        lines += [f"Incomplete concepts (left out): {', '.join(results['missing_concepts'])}", ""]
    lines += ["## Per method", "", *aggregate_table(results), "",
              "## Against SPLIT (paired over concepts)", "",
              ("Mean difference [95 % CI]; wins / ties / losses of the method against SPLIT (tie: within 2 points "
               "of accuracy, 0.1 nats of UtilOdds)."), "", *paired_table(results), "",
              "## Failures", "",
              ("A method fails on a concept when its test accuracy at the chosen factor is below the unsteered "
               "accuracy + 10 points (or the cell raised an error)."), ""]
    for name, entry in results["methods"].items():
        fails = entry["failures"]
        errors = entry["errors"]
        lines.append(f"- {label(name)}: {len(fails)} of {entry['n_concepts']}" + (f" ({', '.join(fails)})" if fails else "")
                     + (f"; errors: {', '.join(f'{c}: {e}' for c, e in errors.items())}" if errors else ""))
    lines += ["", "## Per concept (test accuracy % at the chosen factor; m in brackets)", "",
              "| concept | role | unsteered | " + " | ".join(label(n) for n in names) + " |",
              "|" + "---|" * (3 + len(names))]
    roles = results["settings"]["roles"]
    for concept, row in results["per_concept"].items():
        first = next(iter(row.values()))
        cells = [f"{fmt(100 * v['acc_chosen'], '.0f')}" + (f" ({fmt(v['m_chosen'], 'g')})" if v["m_chosen"] == v["m_chosen"] else "")
                 + (" ✗" if v["failed"] else "") for v in row.values()]
        lines.append(f"| {concept} | {roles.get(concept, '')} | {fmt(100 * first['unsteered'], '.0f')} | " + " | ".join(cells) + " |")
    if files:
        lines += ["", "## Plots", ""] + [f"![{f}]({f})" for f in files]
    return lines


def _plots(out: Path, by_method, names: Sequence[str], targets: Sequence[float]) -> list[str]:
    from easyedit_split.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    files = []
    others = [n for n in names if reference_for(n) != n and reference_for(n) in by_method]
    if others:
        fig, axes = plt.subplots(1, len(others), figsize=(3.2 * len(others), 3.6), squeeze=False, layout="constrained")
        for ax, n in zip(axes[0], others):
            ref = reference_for(n)
            x = [100 * v for v in metric_values(by_method[ref], "acc_chosen")]
            y = [100 * v for v in metric_values(by_method[n], "acc_chosen")]
            ax.plot([0, 100], [0, 100], color="grey", lw=0.8, ls="--")
            ax.scatter(x, y, s=18)
            ax.set_xlim(0, 100)
            ax.set_ylim(0, 100)
            ax.set_xlabel(f"{label(ref)} accuracy %", fontsize=8)
            ax.set_ylabel(f"{label(n)} accuracy %", fontsize=8)
            ax.set_title(f"{label(n)} (above the line: better)", fontsize=8)
        fig.suptitle("Test accuracy at the chosen factor, per concept", fontsize=10)
        save_figure(fig, out / "accuracy_vs_split.png")
        files.append("accuracy_vs_split.png")
    curves = [n for n in names if next(iter(by_method[n].values()))["form"] != PROMPT_FORM]  # the prompt has no m
    for fname, metric, scale, ylabel in (("dial.png", "dial", 100, "accuracy at m = 2 − at m = 1 (points)"),
                                         *((f"util_matched_{t:g}.png", f"util_matched@{t:g}", 1,
                                            f"UtilOdds at matched accuracy {t:g}") for t in targets)):
        data = [[scale * v for v in metric_values(by_method[n], metric) if math.isfinite(v)] for n in curves]
        if not any(data):
            continue
        fig, ax = plt.subplots(figsize=(1.4 * len(curves) + 2, 3.4))
        for i, vals in enumerate(data):
            if vals:
                ax.boxplot([vals], positions=[i], widths=0.5, showfliers=False)
                jitter = np.random.default_rng(i).uniform(-0.12, 0.12, len(vals))
                ax.scatter(i + jitter, vals, s=12, alpha=0.7)
        ax.set_xticks(range(len(curves)), [label(n) for n in curves], fontsize=8)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_ylabel(ylabel)
        save_figure(fig, out / fname)
        files.append(fname)
    return files
