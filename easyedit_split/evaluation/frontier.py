"""Comparing methods honestly: accuracy–utility frontiers and utility at matched accuracy (pure numpy).

A single cell (every method at ``m = 1``) compares different doses. Two comparisons that do not
depend on the dose:

* **frontier** — for each method, the points ``(accuracy(m), mean UtilOdds(m))`` over its grid
  and their upper-right (Pareto) frontier: the points no other point of the same method beats on
  both accuracy and utility (:func:`curve_points`, :func:`upper_right_frontier`);
* **matched accuracy** — for a target accuracy ``a``, each method's multiplier ``m*`` where its
  accuracy first reaches ``a`` walking from ``m = 0`` towards positive ``m`` (linear interpolation
  between grid points, :func:`first_crossing`), and the mean UtilOdds there (each example's
  UtilOdds interpolated to ``m*``). Intervals come from a seeded bootstrap over examples; the same
  resampled examples are used for every method (the methods are scored on the same pairs), so the
  difference to a reference method gets a paired interval. When ``m*`` comes from the evaluation
  pairs it is re-found in every resample; when validation tables are given, ``m*`` is found on
  them (fixed) and only the evaluation examples are resampled — the test split then tunes nothing.

Inputs are the per-``(example, m)`` sweep tables of :func:`~.sweep.sweep` (columns ``example_id``,
``m``, ``L_p``, ``L_n`` and the ``util_odds`` / ``util_odds_mean`` columns).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from easyedit_split.errors import InputError
from easyedit_split.evaluation.cells import cell
from easyedit_split.evaluation.derived import first_reach
from easyedit_split.evaluation.logodds import percentile_interval

__all__ = [
    "MatchedComparison",
    "MatchedRow",
    "PerExample",
    "curve_points",
    "first_crossing",
    "format_matched_table",
    "matched_accuracy",
    "per_example",
    "upper_right_frontier",
]

REDUCTIONS = ("sum", "mean")


@dataclass
class PerExample:
    """One method's sweep as matrices: ``correct[i, j]`` (0/1) and ``util[i, j]`` for example i, ``m = grid[j]``."""

    ids: list[str]
    grid: np.ndarray
    correct: np.ndarray
    util: np.ndarray


def per_example(table: pd.DataFrame, reduction: str = "sum") -> PerExample:
    """Pivot a sweep table into :class:`PerExample` (rows sorted by example id, columns by ``m``)."""
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    sfx = "" if reduction == "sum" else "_mean"
    need = ["example_id", "m", f"L_p{sfx}", f"L_n{sfx}", f"util_odds{sfx}"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise InputError(f"sweep table lacks columns {missing}")
    if "layer" in table.columns and table["layer"].nunique() > 1:
        raise InputError("the sweep table has several layers; select one layer first")
    df = table.assign(_correct=(table[f"L_p{sfx}"] < table[f"L_n{sfx}"]).astype(np.float64))
    if df.duplicated(["example_id", "m"]).any():
        raise InputError("the sweep table has several rows for one (example_id, m)")
    c = df.pivot(index="example_id", columns="m", values="_correct").sort_index().sort_index(axis=1)
    u = df.pivot(index="example_id", columns="m", values=f"util_odds{sfx}").sort_index().sort_index(axis=1)
    if c.isna().to_numpy().any():
        raise InputError("the sweep table is not a full (example, m) grid")
    return PerExample([str(i) for i in c.index], c.columns.to_numpy(dtype=np.float64), c.to_numpy(), u.to_numpy(np.float64))


def _finite_mean(x: np.ndarray, axis: int = 0) -> np.ndarray:
    ok = np.isfinite(x)
    n = ok.sum(axis=axis)
    s = np.where(ok, x, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def curve_points(data: PerExample) -> pd.DataFrame:
    """``m, accuracy, util`` (mean of the finite UtilOdds) per multiplier, plus ``on_frontier``."""
    acc = data.correct.mean(axis=0)
    util = _finite_mean(data.util, axis=0)
    df = pd.DataFrame({"m": data.grid, "accuracy": acc, "util": util})
    df["on_frontier"] = upper_right_frontier(acc, util)
    return df


def upper_right_frontier(accuracy: Sequence[float], util: Sequence[float]) -> np.ndarray:
    """Boolean mask: points not dominated by another (≥ on both, > on one). NaN points are never on it."""
    a = np.asarray(accuracy, dtype=np.float64).reshape(-1)
    u = np.asarray(util, dtype=np.float64).reshape(-1)
    if a.shape != u.shape:
        raise InputError(f"{a.size} accuracies but {u.size} utilities")
    ok = np.isfinite(a) & np.isfinite(u)
    out = np.zeros(a.size, dtype=bool)
    for i in np.flatnonzero(ok):
        ge = ok & (a >= a[i]) & (u >= u[i])
        gt = (a > a[i]) | (u > u[i])
        out[i] = not np.any(ge & gt)
    return out


def first_crossing(m: Sequence[float], values: Sequence[float], target: float) -> float | None:
    """The first ``m ≥ 0`` where ``values`` reaches ``target``, walking up from ``m = 0``.

    Linear interpolation between neighbouring grid points; ``0.0`` when the value at ``m = 0``
    already reaches it; ``None`` when the swept range never does. ``m`` must contain 0.
    """
    mm = np.asarray(m, dtype=np.float64).reshape(-1)
    vv = np.asarray(values, dtype=np.float64).reshape(-1)
    if mm.shape != vv.shape:
        raise InputError(f"{mm.size} multipliers but {vv.size} values")
    order = np.argsort(mm)
    mm, vv = mm[order], vv[order]
    zero = np.flatnonzero(mm == 0.0)
    if zero.size == 0:
        raise InputError("the multiplier grid must contain 0")
    j0 = int(zero[0])
    hit = first_reach(mm[j0:], vv[j0:], target, vv[j0:] >= target)
    if hit is None:
        return None
    return 0.0 if hit[0] == 0 else hit[1]


def _interp_columns(grid: np.ndarray, mat: np.ndarray, m: float) -> np.ndarray:
    """Each row of ``mat`` (values at ``grid``) linearly interpolated to ``m`` (inside the grid)."""
    j = int(np.searchsorted(grid, m))
    if j < grid.size and grid[j] == m:
        return mat[:, j]
    if j == 0 or j >= grid.size:
        raise InputError(f"m = {m} lies outside the grid [{grid[0]}, {grid[-1]}]")
    w = (m - grid[j - 1]) / (grid[j] - grid[j - 1])
    with np.errstate(invalid="ignore"):
        return (1 - w) * mat[:, j - 1] + w * mat[:, j]


@dataclass
class MatchedRow:
    """One method at the target accuracy."""

    method: str
    m_star: float | None  # None: the target is not reached on the swept range
    m_source: str  # "validation" or "evaluation"
    accuracy: float | None  # evaluation accuracy at m*
    util: float | None  # mean UtilOdds at m* (evaluation pairs)
    util_lo: float | None
    util_hi: float | None
    reached_fraction: float  # bootstrap resamples in which the target was reached
    diff: float | None = None  # util − the reference method's util
    diff_lo: float | None = None
    diff_hi: float | None = None


@dataclass
class MatchedComparison:
    target_accuracy: float
    reference: str | None
    n_boot: int
    level: float
    seed: int
    rows: list[MatchedRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def row(self, method: str) -> MatchedRow:
        for r in self.rows:
            if r.method == method:
                return r
        raise KeyError(method)


def _util_at(data: PerExample, rows: np.ndarray, target: float, m_fixed: float | None) -> tuple[float | None, float | None]:
    """``(m*, mean UtilOdds at m*)`` on the examples ``rows`` (m* found on them unless fixed)."""
    c, u = data.correct[rows], data.util[rows]
    m_star = m_fixed if m_fixed is not None else first_crossing(data.grid, c.mean(axis=0), target)
    if m_star is None:
        return None, None
    vals = _interp_columns(data.grid, u, m_star)
    ok = np.isfinite(vals)
    return m_star, (float(vals[ok].mean()) if ok.any() else None)


def matched_accuracy(
    evaluation: Mapping[str, PerExample],
    target_accuracy: float,
    *,
    validation: Mapping[str, PerExample] | None = None,
    reference: str | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> MatchedComparison:
    """Mean UtilOdds of every method at the multiplier where it reaches ``target_accuracy``.

    ``evaluation``: method → :class:`PerExample` on the same evaluation pairs. ``validation``
    (optional, same methods, other pairs): where ``m*`` is found. ``reference``: a method whose
    utility the others are differenced against (paired bootstrap). Percentile intervals over the
    resamples in which the target is reached; ``reached_fraction`` says how often that was.
    """
    if not 0 < target_accuracy <= 1:
        raise InputError(f"target accuracy must be in (0, 1], got {target_accuracy}")
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    if not evaluation:
        raise InputError("no methods to compare")
    if reference is not None and reference not in evaluation:
        raise InputError(f"reference method {reference!r} is not among {sorted(evaluation)}")
    ids = next(iter(evaluation.values())).ids
    for name, d in evaluation.items():
        if d.ids != ids:
            raise InputError(f"{name}: evaluated on other pairs than {next(iter(evaluation))}; matched comparison "
                             "needs the same evaluation pairs for every method")
    fixed: dict[str, float | None] = {}
    for name in evaluation:
        if validation is not None:
            if name not in validation:
                raise InputError(f"validation tables lack the method {name!r}")
            v = validation[name]
            fixed[name] = first_crossing(v.grid, v.correct.mean(axis=0), target_accuracy)
        else:
            fixed[name] = None
    n = len(ids)
    all_rows = np.arange(n)
    rng = np.random.default_rng(seed)
    boot_idx = rng.integers(0, n, size=(max(int(n_boot), 0), n))
    boots: dict[str, np.ndarray] = {}
    point: dict[str, tuple[float | None, float | None]] = {}
    for name, d in evaluation.items():
        if validation is not None and fixed[name] is None:
            point[name] = (None, None)
            boots[name] = np.full(len(boot_idx), np.nan)
            continue
        point[name] = _util_at(d, all_rows, target_accuracy, fixed[name])
        vals = [_util_at(d, b, target_accuracy, fixed[name])[1] for b in boot_idx]
        boots[name] = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
    out = MatchedComparison(float(target_accuracy), reference, int(n_boot), float(level), int(seed))
    for name, d in evaluation.items():
        m_star, util = point[name]
        acc = None
        if m_star is not None:
            acc = float(_interp_columns(d.grid, d.correct, m_star).mean())
        lo, hi = percentile_interval(boots[name], level)
        reached = float(np.isfinite(boots[name]).mean()) if boots[name].size else (1.0 if util is not None else 0.0)
        row = MatchedRow(name, m_star, "validation" if validation is not None else "evaluation", acc, util, lo, hi,
                         reached)
        if reference is not None and name != reference and util is not None and point[reference][1] is not None:
            row.diff = util - point[reference][1]
            row.diff_lo, row.diff_hi = percentile_interval(boots[name] - boots[reference], level)
        out.rows.append(row)
    return out


def format_matched_table(comparison: MatchedComparison) -> list[str]:
    """Markdown lines: one row per method at the target accuracy, then a line naming the methods that do not
    reach it (whose cells say "not reached" rather than "–")."""
    ref = comparison.reference
    head = "| method | m* | m* from | accuracy at m* | UtilOdds at m* [CI] | resamples reaching |"
    sep = "|---|---|---|---|---|---|"
    if ref:
        head += f" Δ UtilOdds vs {ref} [CI] |"
        sep += "---|"
    lines = [head, sep]
    missed = []
    for r in comparison.rows:
        if r.m_star is None:
            missed.append(r)
            cells = (f"| {r.method} | not reached | {r.m_source} | – | – | "
                     f"{cell(100 * r.reached_fraction, '.0f')}% |")
        else:
            cells = (f"| {r.method} | {cell(r.m_star)} | {r.m_source} | {cell(r.accuracy)} | "
                     f"{cell(r.util)} [{cell(r.util_lo)}, {cell(r.util_hi)}] | "
                     f"{cell(100 * r.reached_fraction, '.0f')}% |")
        if ref:
            if r.method == ref:
                cells += " (reference) |"
            elif r.diff is None:
                cells += " – (one of the two does not reach the target) |"
            else:
                cells += f" {cell(r.diff)} [{cell(r.diff_lo)}, {cell(r.diff_hi)}] |"
        lines.append(cells)
    if missed:
        where = "validation" if missed[0].m_source == "validation" else "evaluation"
        lines += ["", (f"Not reached: {', '.join(r.method for r in missed)} — accuracy stays below "
                       f"{comparison.target_accuracy:g} on the {where} pairs at every m ≥ 0 of the grid, so there is no "
                       "matched point to compare.")]
    return lines
