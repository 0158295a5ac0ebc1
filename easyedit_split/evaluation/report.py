"""Markdown report of an evaluation: plots, the fits of both forms (docs/design.md §3), the derived
quantities, and a list of everything flagged (failed or skipped fits, NaN means)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from easyedit_split.base.atomic_io import atomic_write_report
from easyedit_split.evaluation.curves import CurveFit
from easyedit_split.evaluation.frontier import format_matched_table
from easyedit_split.evaluation.plots import plot_curves, plot_frontier, plot_manifold, plot_tradeoff
from easyedit_split.evaluation.results import EvaluationResult

__all__ = ["fit_row", "manifold_lines", "write_report"]


def _f(x, fmt: str = ".3g") -> str:
    if x is None:
        return "–"
    try:
        return format(float(x), fmt)
    except (TypeError, ValueError):
        return str(x)


_SYMBOLS = {"alpha": "α", "beta": "β", "b": "b", "m": "m", "L": "L", "p": "p"}


def _param_label(name: str) -> str:
    base, _, side = name.partition("_")
    return _SYMBOLS.get(base, base) + {"pos": "₊", "neg": "₋"}.get(side, "")


def _rounded(x: float) -> float:
    """``x`` to 6 significant digits: closer values are the same number in a report."""
    return float(format(float(x), ".6g"))


def _distinct_digits(*values: float) -> int:
    """Significant digits (3 to 6) that tell the distinct values among ``values`` apart."""
    finite = {_rounded(v) for v in values if v is not None and math.isfinite(float(v))}
    for digits in range(3, 6):
        if len({format(v, f".{digits}g") for v in finite}) == len(finite):
            return digits
    return 6


def param_with_interval(value: float, interval: tuple[float, float] | None) -> str:
    """``1.23 [1.01, 1.45]``, with enough digits to tell the three apart; ``†`` when the point lies outside
    its own interval, ``(every resample alike)`` when the interval has no width."""
    if interval is None:
        return _f(value)
    if not all(math.isfinite(float(v)) for v in (value, *interval)):
        return f"{_f(value)} [{_f(interval[0])}, {_f(interval[1])}]"
    v, lo, hi = _rounded(value), _rounded(interval[0]), _rounded(interval[1])
    spec = f".{_distinct_digits(v, lo, hi)}g"
    text = f"{_f(v, spec)} [{_f(lo, spec)}, {_f(hi, spec)}]"
    if lo == hi == v:
        return text + " (every resample alike)"
    return text if lo <= v <= hi else text + "†"


def fit_params(fit: CurveFit) -> str:
    """``α=1.2 [1.0, 1.4], …`` (bootstrap intervals when computed; see :func:`param_with_interval`)."""
    ci = fit.param_ci or {}
    return ", ".join(f"{_param_label(k)}={param_with_interval(v, ci.get(k))}" for k, v in fit.params.items())


def has_point_outside_interval(fit: CurveFit | None) -> bool:
    return fit is not None and "†" in fit_params(fit)


def fit_row(fit: CurveFit | None) -> str:
    """Cells: form | status | points / free parameters | parameters | R² [CI] | adjusted R² | fit time."""
    if fit is None:
        return "– | missing | – | – | – | – | –"
    form = fit.form.replace("_", "-")
    if fit.status == "skipped":
        return f"{form} | skipped: {fit.message} | {fit.n} / {fit.n_params} | – | – | – | –"
    status = "ok" if fit.status == "ok" else f"**{fit.status}**: {fit.message}"
    r2 = _f(fit.r2, ".4f") + (f" [{_f(fit.r2_ci[0], '.3f')}, {_f(fit.r2_ci[1], '.3f')}]" if fit.r2_ci else "")
    return (f"{form} | {status} | {fit.n} / {fit.n_params} | {fit_params(fit)} | {r2} | {_f(fit.r2_adj, '.4f')} | "
            f"{_f(fit.seconds * 1000, '.0f')} ms")


def comparison_lines(result: EvaluationResult, out: Path) -> list[str]:
    """Doses, the frontier plot and the matched-accuracy tables (writes ``frontier.png``)."""
    from easyedit_split.evaluation.doses import dose_lines

    lines: list[str] = []
    doses = {n: ev.dose for n, ev in result.methods.items() if ev.dose is not None}
    if doses:
        lines += ["", "## Doses", "",
                  "Every m below is a dose: the raw multiplier is factor × m (see the README's 'Comparable doses').", ""]
        lines += dose_lines(doses)
    points = {n: ev.frontier for n, ev in result.methods.items() if ev.frontier is not None}
    if not points:
        return lines
    path = plot_frontier(points, out / "frontier.png", matched=list(result.matched))
    result.files["frontier"] = str(path)
    s = result.settings
    src = (f"found on {s['n_validation_pairs']} validation pairs (apart from the evaluation pairs)"
           if s.get("n_validation_pairs") else "found on the evaluation pairs themselves (no validation split given)")
    lines += ["", "## Accuracy–utility frontier and matched accuracy", "",
              "![accuracy against UtilOdds over m](frontier.png)", "",
              "Frontier points (upper right: no other multiplier of the method has both higher accuracy and higher "
              "utility): " + "; ".join(f"{n}: m ∈ {{{', '.join(format(m, 'g') for m in p.loc[p['on_frontier'], 'm'])}}}"
                                       for n, p in points.items()) + ".", "",
              (f"At matched accuracy: m* is where a method's accuracy first reaches the target walking up from m = 0 "
              f"(linear interpolation), {src}; UtilOdds is the evaluation pairs' mean at m* with a "
              f"{100 * (result.matched[0].level if result.matched else 0.95):.0f}% bootstrap interval over "
              "examples (same resamples for every method, so differences are paired)."), ""]
    for c in result.matched:
        lines += [f"### Target accuracy {c.target_accuracy:g}", ""] + format_matched_table(c) + [""]
    return lines


def manifold_lines(result: EvaluationResult) -> list[str]:
    """The report's manifold section: per method and downstream layer, the PCA and the correlation."""
    lines = ["", "## Activation manifold", "",
             ("Residual-stream states downstream of the update (layers after it; the last before the final norm), "
              "each distinct token prefix once, without the prefix every sequence shares; PCA fitted on the "
              "unsteered states of one half of the pairs, distances scored on the other half's states. distance(m): "
              "off-subspace norm in excess of the unsteered held-out states', in units of their mean centred norm. "
              "Correlation across m with the scored pairs' mean UtilOdds, with a bootstrap interval over those pairs "
              "(a negative r: utility falls as states leave the manifold)."), "",
             ("| method | layer | fit / scored pairs | fit states (dim) | k (for variance) | explained | "
              "Pearson r [CI] | Spearman ρ [CI] | distance at min m | at max m |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    warns = []
    for name, ev in result.methods.items():
        mf = ev.manifold
        if mf is None:
            continue
        warns += [f"{name}: {w}" for w in mf.warnings]
        for layer in mf.layers:
            p = mf.pca[layer]
            c = mf.correlation.get(layer, {})
            t = mf.layer_table(layer).sort_values("m")
            pci, sci = c.get("pearson_ci") or [None, None], c.get("spearman_ci") or [None, None]
            lines.append(f"| {name} | {layer} | {mf.n_fit_pairs} / {mf.n_score_pairs} | {p['n_fit_states']} "
                         f"({p['dim']}) | {p['n_components']} ({p['n_components_for_variance']}) | "
                         f"{_f(p['explained_variance'])} | {_f(c.get('pearson'))} [{_f(pci[0])}, {_f(pci[1])}] | "
                         f"{_f(c.get('spearman'))} [{_f(sci[0])}, {_f(sci[1])}] | {_f(t['distance'].iloc[0])} | "
                         f"{_f(t['distance'].iloc[-1])} |")
    if warns:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in warns]
    return lines


def write_report(result: EvaluationResult, output_dir: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write the plots and ``report.md`` into ``output_dir`` (each file atomically); returns the report path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = {n: ev.summary for n, ev in result.methods.items()}
    fits = {n: ev.fits for n, ev in result.methods.items()}
    curves = plot_curves(summaries, fits, out / "curves.png", title=title)
    trade = plot_tradeoff(summaries, out / "tradeoff.png")
    result.files.update({"curves": str(curves), "tradeoff": str(trade)})
    manifolds = {n: ev.manifold.layer_table() for n, ev in result.methods.items() if ev.manifold is not None}
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
              "D(m) = (1 + (m − m±)²/L±)^(−p±) per sign of m (docs/design.md §3). **design** form: PrefOdds ≈ "
              "(α·m + β)·D + b, UtilOdds ≈ β·D + b, decay per side and continuous at 0 (8 / 7 free parameters). "
              "**per-side** form: every parameter per side, the curve continuous at 0 (11 / 9 free parameters). "
              "Fitted on the evaluation pairs' means by a fixed multi-start with a least-squares polish; a form is "
              "skipped when the grid has fewer than n_params + 3 points. R² interval: "
              + (f"{s.get('fit_boot')} bootstrap resamples of the pairs (seed {s['seed']}), 95% percentile"
                 if s.get("fit_boot") else "not computed")
              + "; adjusted R² = 1 − (1 − R²)(n − 1)/(n − n_params)"
              + ("; transfer R²: the training-pair fit scored on the evaluation means." if any(
                  ev.train_fits for ev in result.methods.values()) else "."), "",
              ("| method | curve | form | status | points / params | parameters | R² | adj. R² | fit time | train R² | "
               "transfer R² |"),
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, ev in result.methods.items():
        for key, fit in ev.fits.items():
            if fit is None:
                continue
            tf = ev.train_fits.get(key) if ev.train_fits else None
            label = "PrefOdds" if fit.kind == "pref" else "UtilOdds"
            lines.append(f"| {name} | {label} | {fit_row(fit)} | "
                         f"{_f(tf.r2, '.4f') if tf is not None and tf.status != 'skipped' else '–'} | "
                         f"{_f(ev.transfer_r2.get(key), '.4f') if ev.transfer_r2 else '–'} |")
    if any(has_point_outside_interval(f) for ev in result.methods.values() for f in ev.fits.values()):
        lines += ["", ("†: the fit to all pairs lies outside the interval of the fits to bootstrap resamples of the "
                       "pairs: the resampled fits settle elsewhere (a weakly determined parameter, often one at a bound "
                       "of the search; see Flags). Read the interval, not the point.")]
    lines += ["", "## Derived quantities", "",
              f"Valid steering region: UtilOdds(m) ≥ UtilOdds(0) − {s['delta']:g}, UtilOdds(0) the measured mean. "
              "Calibration: the smallest |m| "
              + (f"reaching PrefOdds {s['target_pref']:g}" if s.get("target_pref") is not None
                 else f"reaching accuracy {s['target_accuracy']:g}")
              + f" with UtilOdds never more than {s['max_util_drop']:g} below UtilOdds(0) on the way. Computed from "
              + ("converged design-form fits where available (source column)" if s.get("derived_from") == "fit"
                 else "the measured means, interpolated between grid points")
              + (" of the training pairs" if s.get("n_train_pairs") else "")
              + ". '(edge)': the bound is the end of the swept range.", "",
              ("| method | PrefOdds(0) | UtilOdds(0) | acc(0) | valid region | source | calibrated m | UtilOdds change "
               "at calibrated m | UtilOdds=+inf rows |"),
              "|---|---|---|---|---|---|---|---|---|"]

    def region(r):
        if r is None:
            return "–"
        return (f"[{_f(r.lo)}{' (edge)' if r.lo_at_edge else ''}, {_f(r.hi)}{' (edge)' if r.hi_at_edge else ''}]")

    for name, ev in result.methods.items():
        z = ev.summary.loc[ev.summary["m"] == 0.0].iloc[0]
        cal = ev.calibration
        cal_s = "–" if cal is None else (_f(cal.multiplier, ".4g") if cal.multiplier is not None else f"none: {cal.reason}")
        change = "–" if cal is None or cal.util_drop is None else f"{-cal.util_drop:+.3g}"
        src = ev.valid_region.source if ev.valid_region is not None else "–"
        lines.append(f"| {name} | {_f(z['pref'])} | {_f(z['util'])} | {_f(z['accuracy'])} | {region(ev.valid_region)} | "
                     f"{src} | {cal_s} | {change} | {ev.util_infinite} |")
    flagged = [(name, note) for name, ev in result.methods.items() for note in ev.notes]
    flagged += [(name, f"{f.label}: {w}") for name, ev in result.methods.items() for f in ev.fits.values()
                if f is not None and f.status == "ok" for w in f.warnings]
    lines += ["", "## Flags", ""]
    lines += [f"- {name or 'update'}: {note}" for name, note in flagged] if flagged else ["Nothing flagged: every fit converged."]
    lines += comparison_lines(result, out)
    if manifolds:
        lines += manifold_lines(result)
    lines += ["", "## Means per multiplier", ""]
    for name, ev in result.methods.items():
        lines += [f"### {name}", "", "| m | PrefOdds [95% CI] | UtilOdds [95% CI] | accuracy | +inf |", "|---|---|---|---|---|"]
        for _, r in ev.summary.iterrows():
            lines.append(f"| {r['m']:g} | {_f(r['pref'])} [{_f(r['pref_lo'])}, {_f(r['pref_hi'])}] | "
                         f"{_f(r['util'])} [{_f(r['util_lo'])}, {_f(r['util_hi'])}] | {_f(r['accuracy'])} | "
                         f"{int(r['util_n_inf'])} |")
        lines.append("")
    path = atomic_write_report(out / "report.md", "\n".join(lines) + "\n")
    result.files["report"] = str(path)
    return path
