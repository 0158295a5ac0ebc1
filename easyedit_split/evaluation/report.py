"""Markdown report of an evaluation: plots, a table of fits and the derived quantities."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .._io import atomic_write_text
from .fitting import CurveFit
from .plots import plot_curves, plot_manifold, plot_tradeoff

if TYPE_CHECKING:
    from .api import EvaluationResult

__all__ = ["fit_row", "write_report"]


def _f(x, fmt: str = ".3g") -> str:
    if x is None:
        return "–"
    try:
        return format(float(x), fmt)
    except (TypeError, ValueError):
        return str(x)


def fit_row(fit: CurveFit | None) -> str:
    if fit is None:
        return "fit failed | – | –"
    p = fit.params
    lin = f"α={_f(p['alpha'])}, β={_f(p['beta'])}, b={_f(p['b'])}" if fit.kind == "pref" else f"β={_f(p['beta'])}, b={_f(p['b'])}"
    dec = (f"m₊={_f(p['m_pos'])}, L₊={_f(p['L_pos'])}, p₊={_f(p['p_pos'])}; "
           f"m₋={_f(p['m_neg'])}, L₋={_f(p['L_neg'])}, p₋={_f(p['p_neg'])}")
    return f"{lin}; {dec} | {_f(fit.r2, '.4f')} | {_f(fit.seconds * 1000, '.0f')} ms"


def write_report(result: EvaluationResult, output_dir: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write the plots and ``report.md`` into ``output_dir`` (each file atomically); returns the report path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = {n: ev.summary for n, ev in result.methods.items()}
    fits = {n: ev.fits for n, ev in result.methods.items()}
    curves = plot_curves(summaries, fits, out / "curves.png", title=title)
    trade = plot_tradeoff(summaries, out / "tradeoff.png")
    result.files.update({"curves": str(curves), "tradeoff": str(trade)})
    manifolds = {n: ev.manifold.table for n, ev in result.methods.items() if ev.manifold is not None}
    man_path = None
    if manifolds:
        man_path = plot_manifold(manifolds, summaries, out / "manifold.png")
        result.files["manifold"] = str(man_path)

    grid = result.multipliers
    s = result.settings
    lines = [f"# {title or 'Preference–utility evaluation'}", ""]
    lines.append(f"{s['n_pairs']} evaluation pairs"
                 + (f", {s['n_train_pairs']} training pairs" if s.get("n_train_pairs") else "")
                 + f"; {len(grid)} multipliers in [{min(grid):g}, {max(grid):g}]; losses: sequence "
                 + ("sums" if result.reduction == "sum" else "per-token means")
                 + f"; {s['n_boot']} bootstrap resamples (seed {s['seed']}) for 95% CIs.")
    lines += ["", "![PrefOdds and UtilOdds against m](curves.png)", "",
              "![preference–utility trade-off](tradeoff.png)", ""]
    if man_path is not None:
        lines += ["![manifold distance against m](manifold.png)", ""]

    lines += ["## Curve fits", "",
              "D(m) = (1 + (m − m±)²/L±)^(−p±) per sign of m; PrefOdds ≈ (α·m + β)·D + b; UtilOdds ≈ β·D + b. "
              "Fitted on the evaluation pairs' means"
              + ("; transfer R²: the training-pair fit scored on the evaluation means." if any(
                  ev.train_fits for ev in result.methods.values()) else "."), "",
              "| method | curve | parameters | R² | fit time | train R² | transfer R² |",
              "|---|---|---|---|---|---|---|"]
    for name, ev in result.methods.items():
        for key, label in (("pref", "PrefOdds"), ("util", "UtilOdds")):
            tf = ev.train_fits.get(key) if ev.train_fits else None
            lines.append(f"| {name} | {label} | {fit_row(ev.fits.get(key))} | {_f(tf.r2, '.4f') if tf else '–'} | "
                         f"{_f(ev.transfer_r2.get(key), '.4f') if ev.transfer_r2 else '–'} |")
    lines += ["", "## Derived quantities", "",
              f"Valid steering region: UtilOdds(m) ≥ UtilOdds(0) − {s['delta']:g}. Calibration: the smallest |m| "
              + (f"reaching PrefOdds {s['target_pref']:g}" if s.get("target_pref") is not None
                 else f"reaching accuracy {s['target_accuracy']:g}")
              + f" with a utility drop ≤ {s['max_util_drop']:g}. '(edge)': the bound is the end of the swept range.", "",
              ("| method | PrefOdds(0) | UtilOdds(0) | acc(0) | valid region (fit) | valid region (means) | "
              "calibrated m | UtilOdds=+inf rows |"),
              "|---|---|---|---|---|---|---|---|"]

    def region(r):
        if r is None:
            return "–"
        return (f"[{_f(r.lo)}{' (edge)' if r.lo_at_edge else ''}, {_f(r.hi)}{' (edge)' if r.hi_at_edge else ''}]")

    for name, ev in result.methods.items():
        z = ev.summary.loc[ev.summary["m"] == 0.0].iloc[0]
        cal = ev.calibration
        cal_s = "–" if cal is None else (_f(cal.multiplier, ".4g") if cal.multiplier is not None else f"none: {cal.reason}")
        lines.append(f"| {name} | {_f(z['pref'])} | {_f(z['util'])} | {_f(z['accuracy'])} | {region(ev.valid_region)} | "
                     f"{region(ev.valid_region_means)} | {cal_s} | {ev.util_infinite} |")
    if manifolds:
        lines += ["", "## Activation manifold", "",
                  ("Distance of steered site outputs from the principal subspace of unsteered ones (PCA, k components "
                  "explaining the target variance), in excess of the unsteered states', in units of their mean centred "
                  "norm; correlation with mean UtilOdds across m."), "",
                  "| method | site | tokens | k | explained | Pearson r | Spearman ρ | distance at min m | at max m |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, ev in result.methods.items():
            mf = ev.manifold
            if mf is None:
                continue
            c = mf.correlation
            t = mf.table.sort_values("m")
            lines.append(f"| {name} | {mf.site} | {mf.positions} | {mf.n_components} | {_f(mf.explained_variance)} | "
                         f"{_f(c.get('pearson'))} | {_f(c.get('spearman'))} | {_f(t['distance'].iloc[0])} | "
                         f"{_f(t['distance'].iloc[-1])} |")
    lines += ["", "## Means per multiplier", ""]
    for name, ev in result.methods.items():
        lines += [f"### {name}", "", "| m | PrefOdds [95% CI] | UtilOdds [95% CI] | accuracy | +inf |", "|---|---|---|---|---|"]
        for _, r in ev.summary.iterrows():
            lines.append(f"| {r['m']:g} | {_f(r['pref'])} [{_f(r['pref_lo'])}, {_f(r['pref_hi'])}] | "
                         f"{_f(r['util'])} [{_f(r['util_lo'])}, {_f(r['util_hi'])}] | {_f(r['accuracy'])} | "
                         f"{int(r['util_n_inf'])} |")
        lines.append("")
    path = atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    result.files["report"] = str(path)
    return path
