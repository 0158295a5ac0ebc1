"""Quantities derived from PrefOdds(m) / UtilOdds(m) curves, usable by apply and generation.

* :func:`valid_region` — the interval of ``m`` around 0 where ``UtilOdds(m) >= UtilOdds(0) − δ``.
* :func:`calibrate` — the smallest ``|m|`` reaching a target PrefOdds (or accuracy) while the
  utility stays within a drop budget along the way; a float multiplier, or ``None`` with a reason.

Curves come from a fit (:class:`~.fitting.CurveFit`) or from raw per-multiplier means (linearly
interpolated); both are evaluated on a dense grid inside the swept range — nothing is extrapolated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .fitting import CurveFit

__all__ = ["Calibration", "ValidRegion", "calibrate", "curve_function", "valid_region"]

_DENSE = 2001


def curve_function(m: Sequence[float] | None = None, values: Sequence[float] | None = None,
                   fit: CurveFit | None = None) -> tuple[Callable[[np.ndarray], np.ndarray], float, float]:
    """``(f, m_lo, m_hi)``: the fitted curve, else linear interpolation of raw means, and its domain."""
    if fit is not None:
        lo, hi = fit.m_min, fit.m_max
        if m is not None:
            lo, hi = float(np.min(m)), float(np.max(m))
        return fit.predict, lo, hi
    if m is None or values is None:
        raise ValueError("give either fit= or both m and values")
    mm = np.asarray(m, dtype=np.float64).reshape(-1)
    vv = np.asarray(values, dtype=np.float64).reshape(-1)
    if mm.shape != vv.shape:
        raise ValueError(f"{mm.size} multipliers but {vv.size} values")
    ok = np.isfinite(vv)
    mm, vv = mm[ok], vv[ok]
    if mm.size < 2:
        raise ValueError("need at least two finite points")
    order = np.argsort(mm)
    mm, vv = mm[order], vv[order]
    return (lambda x: np.interp(x, mm, vv)), float(mm[0]), float(mm[-1])


def _check_zero_inside(lo: float, hi: float) -> None:
    if not lo <= 0.0 <= hi:
        raise ValueError(f"the multiplier range [{lo}, {hi}] must contain 0 (the unsteered reference)")


@dataclass
class ValidRegion:
    """``[lo, hi]``: where utility stays within ``delta`` of ``reference = UtilOdds(0)``.

    ``lo_at_edge`` / ``hi_at_edge``: the region reaches the end of the swept range there (the true
    bound lies further out).
    """

    lo: float
    hi: float
    reference: float
    delta: float
    source: str  # "fit" or "means"
    lo_at_edge: bool
    hi_at_edge: bool

    def contains(self, m: float) -> bool:
        return self.lo <= m <= self.hi

    def clip(self, m: float) -> float:
        return float(min(max(m, self.lo), self.hi))

    def to_dict(self) -> dict:
        return asdict(self)


def valid_region(m: Sequence[float] | None = None, util: Sequence[float] | None = None, *,
                 fit: CurveFit | None = None, delta: float = 1.0) -> ValidRegion:
    """The interval around 0 where ``UtilOdds(m) >= UtilOdds(0) − delta`` (from ``fit`` or raw means)."""
    if delta < 0:
        raise ValueError(f"delta must be >= 0, got {delta}")
    f, lo, hi = curve_function(m, util, fit)
    _check_zero_inside(lo, hi)
    ref = float(f(np.array([0.0]))[0])
    floor = ref - delta
    bounds = []
    for end in (lo, hi):
        xs = np.linspace(0.0, end, _DENSE)
        ys = f(xs)
        bad = np.nonzero(ys < floor)[0]
        if bad.size == 0:
            bounds.append((float(end), True))
            continue
        j = int(bad[0])  # first point outside; interpolate the crossing between j-1 and j
        x0, x1, y0, y1 = xs[j - 1], xs[j], ys[j - 1], ys[j]
        cross = x0 + (floor - y0) * (x1 - x0) / (y1 - y0) if y1 != y0 else x0
        bounds.append((float(cross), False))
    return ValidRegion(bounds[0][0], bounds[1][0], ref, float(delta), "fit" if fit is not None else "means",
                       bounds[0][1], bounds[1][1])


@dataclass
class Calibration:
    """The calibrated multiplier (``None`` when unreachable, with ``reason``)."""

    multiplier: float | None
    target: float
    target_kind: str  # "pref" or "accuracy"
    reached_value: float | None
    util_drop: float | None  # UtilOdds(0) − UtilOdds(multiplier)
    max_util_drop: float
    reason: str

    def __float__(self) -> float:
        if self.multiplier is None:
            raise ValueError(f"no calibrated multiplier: {self.reason}")
        return float(self.multiplier)

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(
    m: Sequence[float] | None = None,
    *,
    pref: Sequence[float] | None = None,
    util: Sequence[float] | None = None,
    accuracy: Sequence[float] | None = None,
    pref_fit: CurveFit | None = None,
    util_fit: CurveFit | None = None,
    target_pref: float | None = None,
    target_accuracy: float | None = None,
    max_util_drop: float = 1.0,
) -> Calibration:
    """Smallest ``|m|`` whose PrefOdds reaches ``target_pref`` (or whose accuracy reaches
    ``target_accuracy``) while ``UtilOdds`` stays ``>= UtilOdds(0) − max_util_drop`` on the whole
    way from 0.

    The target is reached upward when it lies above the value at ``m = 0`` (PrefOdds rising) and
    downward otherwise (steering towards the negative concept). Both signs of ``m`` are searched.
    """
    if (target_pref is None) == (target_accuracy is None):
        raise ValueError("give exactly one of target_pref and target_accuracy")
    if target_pref is not None:
        kind, target = "pref", float(target_pref)
        fg, lo, hi = curve_function(m, pref, pref_fit)
    else:
        kind, target = "accuracy", float(target_accuracy)  # type: ignore[arg-type]
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"target_accuracy must be in [0, 1], got {target}")
        fg, lo, hi = curve_function(m, accuracy, None)
    fu, ulo, uhi = curve_function(m, util, util_fit)
    lo, hi = max(lo, ulo), min(hi, uhi)
    _check_zero_inside(lo, hi)
    g0 = float(fg(np.array([0.0]))[0])
    u0 = float(fu(np.array([0.0]))[0])
    upward = target >= g0
    if (upward and g0 >= target) or (not upward and g0 <= target):
        return Calibration(0.0, target, kind, g0, 0.0, max_util_drop, "the unsteered model already reaches the target")
    best: tuple[float, float, float] | None = None
    blocked = []
    for end in (lo, hi):
        if end == 0.0:
            continue
        xs = np.linspace(0.0, end, _DENSE)
        gs, us = fg(xs), fu(xs)
        hit = np.nonzero(gs >= target if upward else gs <= target)[0]
        if hit.size == 0:
            continue
        j = int(hit[0])
        if np.any(us[: j + 1] < u0 - max_util_drop):
            blocked.append(float(xs[j]))
            continue
        x = float(xs[j])
        if j > 0 and gs[j] != gs[j - 1]:  # interpolate the crossing
            x = float(xs[j - 1] + (target - gs[j - 1]) * (xs[j] - xs[j - 1]) / (gs[j] - gs[j - 1]))
        if best is None or abs(x) < abs(best[0]):
            best = (x, float(fg(np.array([x]))[0]), u0 - float(fu(np.array([x]))[0]))
    if best is not None:
        return Calibration(best[0], target, kind, best[1], best[2], max_util_drop, "ok")
    if blocked:
        reason = (f"{kind} reaches {target} only at m = {min(blocked, key=abs):.4g}, where utility has dropped more "
                  f"than {max_util_drop} below UtilOdds(0) = {u0:.4g}")
    else:
        reason = f"{kind} never reaches {target} within the swept range [{lo:.4g}, {hi:.4g}] (value at m=0: {g0:.4g})"
    return Calibration(None, target, kind, None, None, max_util_drop, reason)
