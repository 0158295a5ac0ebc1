"""PNG plots (matplotlib, Agg backend), each written atomically.

* :func:`plot_curves` — PrefOdds and UtilOdds against ``m`` (mean ± CI) with the fitted curves,
  one colour per method;
* :func:`plot_tradeoff` — the preference–utility trade-off: x = PrefOdds, y = UtilOdds, one line
  per method across ``m``;
* :func:`plot_manifold` — manifold distance against ``m``, with UtilOdds on a second axis;
* :func:`plot_frontier` — accuracy against mean UtilOdds across ``m`` per method, its upper-right
  frontier, and each method's point at a matched accuracy with its bootstrap interval.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from easyedit_split.base.atomic_io import atomic_path
from easyedit_split.evaluation.curves import CurveFit

__all__ = ["plot_curves", "plot_frontier", "plot_manifold", "plot_tradeoff"]


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike) -> Path:
    p = Path(path)
    with atomic_path(p, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    pyplot().close(fig)
    return p


def _legend_below(fig, axes, ncol: int = 2) -> None:
    """One legend for the figure, under the axes, so that it covers no data."""
    handles, labels, seen = [], [], set()
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in seen:
                seen.add(lab)
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, fontsize=7, frameon=False)


def _label_m(ax, xs, ys, ms, color) -> None:
    """Write each point's multiplier next to it."""
    for x, y, m in zip(xs, ys, ms):
        if np.isfinite(x) and np.isfinite(y):
            ax.annotate(f"{m:g}", (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6, color=color)


def plot_curves(summaries: Mapping[str, pd.DataFrame], fits: Mapping[str, Mapping[str, CurveFit]] | None,
                path: str | os.PathLike, *, title: str | None = None, level: float = 0.95) -> Path:
    """``summaries[name]``: per-m means (columns m, pref, pref_lo, pref_hi, util, util_lo, util_hi);
    ``fits[name]``: ``{"pref": CurveFit, "util": CurveFit, "pref_per_side": …, "util_per_side": …}``
    (optional; design form solid, per-side form dotted, converged fits only). ``level``: the intervals'
    coverage, said in the legend. The legend sits under both panels."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ci = f"{100 * level:.0f}% CI"
    for i, (name, s) in enumerate(summaries.items()):
        color = f"C{i % 10}"
        m = s["m"].to_numpy()
        dense = np.linspace(m.min(), m.max(), 400)
        for ax, key, label in ((axes[0], "pref", "PrefOdds"), (axes[1], "util", "UtilOdds")):
            y = s[key].to_numpy()
            err = np.vstack([y - s[f"{key}_lo"].to_numpy(), s[f"{key}_hi"].to_numpy() - y])
            ax.errorbar(m, y, yerr=err, fmt="o", ms=3.5, color=color, capsize=2, label=f"{name or 'update'}: mean ± {ci}")
            for fkey, style in ((key, "-"), (f"{key}_per_side", ":")):
                fit = (fits or {}).get(name, {}).get(fkey)
                if fit is not None and fit.success:  # only converged fits are drawn
                    ax.plot(dense, fit.predict(dense), style, color=color, lw=1.5,
                            label=f"{name or 'update'} {label} {fit.form.replace('_', '-')} fit (R²={fit.r2:.3f})")
            ax.set_xlabel("multiplier m")
            ax.set_ylabel(label)
            ax.axvline(0, color="0.8", lw=0.8, zorder=0)
            ax.grid(alpha=0.3)
    axes[0].set_title("preference log-odds (PrefOdds)")
    axes[1].set_title("utility log-odds (UtilOdds)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _legend_below(fig, axes, ncol=3)
    return save_figure(fig, path)


def plot_tradeoff(summaries: Mapping[str, pd.DataFrame], path: str | os.PathLike, *, title: str | None = None) -> Path:
    """PrefOdds against UtilOdds, one line per method in order of increasing m (arrows), each point labelled
    with its m."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for i, (name, s) in enumerate(summaries.items()):
        color = f"C{i % 10}"
        s = s.sort_values("m")
        x, y, m = s["pref"].to_numpy(), s["util"].to_numpy(), s["m"].to_numpy()
        ax.plot(x, y, "o", ms=3, color=color, label=name or "update")
        for k in range(len(x) - 1):  # the direction of increasing m
            if np.all(np.isfinite([x[k], y[k], x[k + 1], y[k + 1]])):
                ax.annotate("", xy=(x[k + 1], y[k + 1]), xytext=(x[k], y[k]),
                            arrowprops={"arrowstyle": "->", "color": color, "lw": 1, "alpha": 0.7})
        _label_m(ax, x, y, m, color)
        zero = s.loc[s["m"] == 0]
        if len(zero):
            ax.plot(zero["pref"], zero["util"], "k*", ms=10)
    ax.set_xlabel("PrefOdds (mean)")
    ax.set_ylabel("UtilOdds (mean)")
    ax.set_title(title or "preference–utility trade-off\n(arrows: increasing m; numbers: m; ★: m = 0)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _legend_below(fig, [ax], ncol=4)
    return save_figure(fig, path)


def plot_manifold(manifolds: Mapping[str, pd.DataFrame], summaries: Mapping[str, pd.DataFrame] | None,
                  path: str | os.PathLike, *, title: str | None = None) -> Path:
    """``manifolds[name]``: columns m, distance; UtilOdds means on a second axis when given."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax2 = ax.twinx() if summaries else None
    for i, (name, t) in enumerate(manifolds.items()):
        color = f"C{i % 10}"
        ax.plot(t["m"], t["distance"], "-o", ms=3, color=color, label=f"{name}: manifold distance")
        if ax2 is not None and name in summaries:
            s = summaries[name]
            ax2.plot(s["m"], s["util"], "--", color=color, alpha=0.6, label=f"{name}: UtilOdds")
    ax.set_xlabel("multiplier m")
    ax.set_ylabel("off-manifold distance (excess over m = 0)")
    if ax2 is not None:
        ax2.set_ylabel("UtilOdds (mean, dashed)")
    ax.grid(alpha=0.3)
    ax.set_title(title or "distance from the unsteered principal subspace")
    fig.tight_layout()
    _legend_below(fig, [ax] + ([ax2] if ax2 is not None else []), ncol=2)
    return save_figure(fig, path)


_TARGET_MARKERS = ("s", "D", "^", "v", "P", "X")


def plot_frontier(points: Mapping[str, pd.DataFrame], path: str | os.PathLike, *, matched=None,
                  title: str | None = None) -> Path:
    """``points[name]``: columns m, accuracy, util, on_frontier (:func:`~.frontier.curve_points`);
    ``matched``: one :class:`~.frontier.MatchedComparison` or a list of them (one per target accuracy), each
    drawn as a dashed vertical line at its target and, per method that reaches it, its point with the
    bootstrap interval (one marker shape per target). Methods that do not reach a target are named under
    the plot. Every point is labelled with its m; frontier points are drawn large, so that a one-point
    frontier shows."""
    plt = pyplot()
    comparisons = [] if matched is None else (list(matched) if isinstance(matched, (list, tuple)) else [matched])
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, (name, p) in enumerate(points.items()):
        color = f"C{i % 10}"
        p = p.sort_values("m")
        ax.plot(p["accuracy"], p["util"], ":o", ms=3, color=color, alpha=0.6, label=f"{name} (over m)")
        f = p.loc[p["on_frontier"]].sort_values("accuracy")
        ax.plot(f["accuracy"], f["util"], "-o", lw=2, ms=7, mfc="none", mew=1.5, color=color,
                label=f"{name} frontier ({len(f)} point{'s' if len(f) != 1 else ''})")
        _label_m(ax, p["accuracy"].to_numpy(), p["util"].to_numpy(), p["m"].to_numpy(), color)
        zero = p.loc[p["m"] == 0]
        if len(zero):
            ax.plot(zero["accuracy"], zero["util"], "k*", ms=9)
    missing: list[str] = []
    level = None
    for k, c in enumerate(comparisons):
        marker = _TARGET_MARKERS[k % len(_TARGET_MARKERS)]
        level = c.level
        ax.axvline(c.target_accuracy, color="0.5", lw=0.8, ls="--")
        ax.annotate(f"target {c.target_accuracy:g}", (c.target_accuracy, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(2, -10), textcoords="offset points", fontsize=7, color="0.35")
        for i, name in enumerate(points):
            r = next((r for r in c.rows if r.method == name), None)
            if r is None:
                continue
            if r.util is None or r.accuracy is None:
                missing.append(f"{name} does not reach {c.target_accuracy:g}" + (
                    " on the validation pairs" if r.m_source == "validation" else ""))
                continue
            lo = r.util if r.util_lo is None else r.util_lo
            hi = r.util if r.util_hi is None else r.util_hi
            ax.errorbar([r.accuracy], [r.util], yerr=[[r.util - lo], [hi - r.util]], fmt=marker, color=f"C{i % 10}",
                        ms=7, capsize=3, mec="k", label=f"{name} at matched accuracy {c.target_accuracy:g} (m* = {r.m_star:.3g})")
    ax.set_xlabel("accuracy (evaluation pairs)")
    ax.set_ylabel("UtilOdds (mean)")
    ci = f", {100 * level:.0f}% CI" if level is not None else ""
    ax.set_title(title or f"accuracy–utility frontier (numbers: m; ★: m = 0;\nfilled markers: UtilOdds at each matched "
                          f"accuracy{ci})", fontsize=10)
    ax.grid(alpha=0.3)
    for text in missing:  # said in the legend, where the reader looks for the markers
        ax.plot([], [], " ", label=f"× {text}")
    fig.tight_layout()
    _legend_below(fig, [ax], ncol=2)
    return save_figure(fig, path)
