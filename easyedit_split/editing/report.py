"""The editor comparison's ``report.md`` and ``comparison.png`` (both written atomically)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from easyedit_split.base.atomic_io import atomic_write_report
from easyedit_split.evaluation.cells import cell
from easyedit_split.evaluation.plots import pyplot, save_figure

__all__ = ["plot_comparison", "write_comparison_report"]


def plot_comparison(results: Mapping[str, Any], evaluations: Mapping[str, Mapping[str, Any]],
                    path: str | os.PathLike) -> Path:
    """Four panels: EasyEdit's accuracies per editor; edit-pair PrefOdds and UtilOdds against ``m``
    (means with fitted curves); locality-pair PrefOdds against ``m``."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    names = list(results["methods"])
    keys = (("rewrite_acc_post", "rewrite"), ("rephrase_acc_post", "rephrase"), ("locality_acc_post", "locality"))
    width = 0.8 / len(keys)
    x = np.arange(len(names))
    for j, (key, label) in enumerate(keys):
        vals = [results["methods"][n]["easyedit"][key] for n in names]
        axes[0].bar(x + (j - 1) * width, vals, width, label=label)
    axes[0].set_xticks(x, names)
    axes[0].set_ylim(0, 1.05)
    axes[0].set_title("EasyEdit metrics after the edit")
    axes[0].legend(fontsize=8)
    panels = ((axes[1], "edit", "pref", "edit pairs: PrefOdds"), (axes[2], "edit", "util", "edit pairs: UtilOdds"),
              (axes[3], "locality", "pref", "locality pairs: PrefOdds"))
    for ax, kind, key, title in panels:
        for i, name in enumerate(names):
            ev = evaluations[kind][name]
            s = ev.summary
            ax.plot(s["m"], s[key], "o", ms=3.5, color=f"C{i % 10}", label=name)
            fit = ev.fits.get(key)
            if fit is not None and fit.success:  # only converged fits are drawn
                dense = np.linspace(s["m"].min(), s["m"].max(), 300)
                ax.plot(dense, fit.predict(dense), "-", lw=1.2, color=f"C{i % 10}")
        ax.axvline(0, color="0.8", lw=0.8, zorder=0)
        ax.axvline(1, color="0.8", lw=0.8, ls="--", zorder=0)
        ax.set_xlabel("multiplier m (1 = the edit as made)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[3].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def write_comparison_report(results: Mapping[str, Any], path: str | os.PathLike, *, command: str = "") -> Path:
    m = results["methods"]
    grid = results["multipliers"]
    lines = ["# Knowledge editors on the preference–utility scale", "",
             (f"Model: `{results['model']}`; {results['n_requests']} edit requests, each edited on its own by "
             "EasyEdit's `BaseEditor.edit` (edit, score, restore); every edit turned into updates (ΔW, Δb) and swept "
             f"over {len(grid)} multipliers m ∈ [{min(grid):g}, {max(grid):g}] (m = 1 is the edit as made, m = 0 the "
             f"unedited model); losses: {'sequence sums' if results['reduction'] == 'sum' else 'per-token means'}."),
             ""]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    lines += ["![comparison](comparison.png)", "",
              "## EasyEdit's metrics", "",
              ("Teacher-forced token accuracy of `target_new` after the prompt (rewrite) and after the rephrased "
              "prompt (rephrase), before and after the edit; locality: share of the locality answer's tokens whose "
              "argmax prediction is unchanged by the edit."), "",
              "| editor | rewrite acc pre → post | rephrase acc pre → post | locality acc | s / edit | ‖Δ‖ (mean) | update |",
              "|---|---|---|---|---|---|---|"]
    for name, r in m.items():
        e = r["easyedit"]
        lines.append(f"| {name} | {cell(e['rewrite_acc_pre'], '.2f')} → {cell(e['rewrite_acc_post'], '.2f')} | "
                     f"{cell(e['rephrase_acc_pre'], '.2f')} → {cell(e['rephrase_acc_post'], '.2f')} | {cell(e['locality_acc_post'], '.2f')} | "
                     f"{cell(r['seconds_per_edit'], '.1f')} | {cell(r['delta_norm_mean'], '.3g')} | "
                     f"{', '.join(r['update_forms'])} |")
    lines += ["", "## Preference and utility", "",
              ("Edit pairs: question = prompt, positive = `target_new`, negative = `ground_truth`; PrefOdds = "
              "L_n − L_p (log-odds of the new answer over the old), UtilOdds = log-odds of the mass on the pair. "
              "Locality pairs: question = the locality prompt, positive = its true answer, negative = the request's "
              "`target_new` (a falling PrefOdds means the edit leaks into unrelated prompts). Means over requests; "
              "R² of the paper's curves fitted to the per-m means of the edit pairs."), "",
              ("| editor | PrefOdds m=0 → m=1 | UtilOdds m=0 → m=1 | accuracy m=0 → m=1 | R² PrefOdds | R² UtilOdds | "
              "locality PrefOdds m=0 → m=1 | locality UtilOdds m=0 → m=1 |"),
              "|---|---|---|---|---|---|---|---|"]
    for name, r in m.items():
        ep, lp = r["edit_pairs"], r["locality_pairs"]
        lines.append(f"| {name} | {cell(ep['pref_m0'], '.2f')} → {cell(ep['pref_m1'], '.2f')} | {cell(ep['util_m0'], '.2f')} → {cell(ep['util_m1'], '.2f')} | "
                     f"{cell(ep['accuracy_m0'], '.2f')} → {cell(ep['accuracy_m1'], '.2f')} | {cell(ep['r2_pref'], '.3f')} | "
                     f"{cell(ep['r2_util'], '.3f')} | {cell(lp['pref_m0'], '.2f')} → {cell(lp['pref_m1'], '.2f')} | "
                     f"{cell(lp['util_m0'], '.2f')} → {cell(lp['util_m1'], '.2f')} |")
    notes = [(n, note) for n, r in m.items() for note in r["notes"]]
    notes += [(n, f"**failed**, left out: {error}") for n, error in results.get("failed", {}).items()]
    if notes:
        lines += ["", "## Notes", ""] + [f"* {n}: {note}" for n, note in notes]
    lines += ["", ("Per-pair-kind reports with the fitted parameters and per-m means: `edit_pairs/report.md`, "
              "`locality_pairs/report.md`; all numbers: `results.json`."), ""]
    return atomic_write_report(path, "\n".join(lines))
