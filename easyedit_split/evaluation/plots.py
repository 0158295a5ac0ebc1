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
from easyedit_split.evaluation.fitting import CurveFit

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


def plot_curves(summaries: Mapping[str, pd.DataFrame], fits: Mapping[str, Mapping[str, CurveFit]] | None,
                path: str | os.PathLike, *, title: str | None = None) -> Path:
    """``summaries[name]``: per-m means (columns m, pref, pref_lo, pref_hi, util, util_lo, util_hi);
    ``fits[name]``: ``{"pref": CurveFit, "util": CurveFit, "pref_per_side": …, "util_per_side": …}``
    (optional; design form solid, per-side form dotted, converged fits only)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (name, s) in enumerate(summaries.items()):
        color = f"C{i % 10}"
        m = s["m"].to_numpy()
        dense = np.linspace(m.min(), m.max(), 400)
        for ax, key, label in ((axes[0], "pref", "PrefOdds"), (axes[1], "util", "UtilOdds")):
            y = s[key].to_numpy()
            err = np.vstack([y - s[f"{key}_lo"].to_numpy(), s[f"{key}_hi"].to_numpy() - y])
            ax.errorbar(m, y, yerr=err, fmt="o", ms=3.5, color=color, capsize=2, label=f"{name} (mean ± CI)")
            for fkey, style in ((key, "-"), (f"{key}_per_side", ":")):
                fit = (fits or {}).get(name, {}).get(fkey)
                if fit is not None and fit.success:  # only converged fits are drawn
                    ax.plot(dense, fit.predict(dense), style, color=color, lw=1.5,
                            label=f"{name} {fit.form.replace('_', '-')} fit (R²={fit.r2:.3f})")
            ax.set_xlabel("multiplier m")
            ax.set_ylabel(label)
            ax.axvline(0, color="0.8", lw=0.8, zorder=0)
            ax.grid(alpha=0.3)
    axes[0].set_title("preference log-odds")
    axes[1].set_title("utility log-odds")
    axes[1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_tradeoff(summaries: Mapping[str, pd.DataFrame], path: str | os.PathLike, *, title: str | None = None) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, (name, s) in enumerate(summaries.items()):
        s = s.sort_values("m")
        ax.plot(s["pref"], s["util"], "-o", ms=3, color=f"C{i % 10}", label=name)
        zero = s.loc[s["m"] == 0]
        if len(zero):
            ax.plot(zero["pref"], zero["util"], "k*", ms=10)
    ax.set_xlabel("PrefOdds (mean)")
    ax.set_ylabel("UtilOdds (mean)")
    ax.set_title(title or "preference–utility trade-off (★: m = 0)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
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
    ax.legend(fontsize=8, loc="upper center")
    ax.set_title(title or "distance from the unsteered principal subspace")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_frontier(points: Mapping[str, pd.DataFrame], path: str | os.PathLike, *, matched=None,
                  title: str | None = None) -> Path:
    """``points[name]``: columns m, accuracy, util, on_frontier (:func:`~.frontier.curve_points`);
    ``matched``: a :class:`~.frontier.MatchedComparison` drawn as a vertical line and error bars."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, (name, p) in enumerate(points.items()):
        color = f"C{i % 10}"
        p = p.sort_values("m")
        ax.plot(p["accuracy"], p["util"], ":o", ms=3, color=color, alpha=0.6, label=f"{name} (over m)")
        f = p.loc[p["on_frontier"]].sort_values("accuracy")
        ax.plot(f["accuracy"], f["util"], "-", lw=2, color=color, label=f"{name} frontier")
        zero = p.loc[p["m"] == 0]
        if len(zero):
            ax.plot(zero["accuracy"], zero["util"], "k*", ms=9)
        if matched is not None:
            r = next((r for r in matched.rows if r.method == name), None)
            if r is not None and r.util is not None and r.util_lo is not None:
                ax.errorbar([r.accuracy], [r.util], yerr=[[r.util - r.util_lo], [r.util_hi - r.util]], fmt="s",
                            color=color, ms=6, capsize=3)
    if matched is not None:
        ax.axvline(matched.target_accuracy, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("accuracy (evaluation pairs)")
    ax.set_ylabel("UtilOdds (mean)")
    ax.set_title(title or "accuracy–utility frontier (★: m = 0; ■: matched accuracy ± CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)
