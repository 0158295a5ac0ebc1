"""Quantities derived from PrefOdds(m) / UtilOdds(m) curves, usable by apply and generation.

* :func:`valid_region` — the interval of ``m`` around 0 where ``UtilOdds(m) >= UtilOdds(0) − δ``.
* :func:`calibrate` — the smallest ``|m|`` reaching a target PrefOdds (or accuracy) while the
  utility stays within a drop budget along the way; a float multiplier, or ``None`` with a reason.

**From the measurements by default.** Curves are the measured per-multiplier means, linearly
interpolated between grid points; a fitted curve (:class:`~.fitting.CurveFit`, docs/design.md §3)
stands in for them only when passed explicitly, and only if it converged (``status == "ok"``; a
failed or skipped fit is an error). The reference ``UtilOdds(0)`` (and ``PrefOdds(0)``) is always the
**measured** value at ``m = 0``. A NaN mean at ``m = 0`` is an error; a NaN mean elsewhere is an
error too unless ``skip_nan=True``, and then the multipliers left out are listed in the result
(``skipped_m``). Everything is evaluated on a dense grid inside the swept range — nothing is
extrapolated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from easyedit_split.errors import InputError
from easyedit_split.evaluation.curves import CurveFit

__all__ = ["Calibration", "MeasuredCurve", "ValidRegion", "calibrate", "first_reach", "measured_curve", "valid_region"]

_DENSE = 2001


@dataclass
class MeasuredCurve:
    """Measured means as a function of ``m`` (linear interpolation), with the value at ``m = 0``."""

    m: np.ndarray
    values: np.ndarray
    at_zero: float
    skipped_m: list[float]

    @property
    def lo(self) -> float:
        return float(self.m[0])

    @property
    def hi(self) -> float:
        return float(self.m[-1])

    def __call__(self, x) -> np.ndarray:
        return np.interp(np.asarray(x, dtype=np.float64), self.m, self.values)


def measured_curve(m: Sequence[float], values: Sequence[float], *, what: str = "values",
                   skip_nan: bool = False) -> MeasuredCurve:
    """Check and sort measured means; ``what`` names them in errors (e.g. ``"UtilOdds"``)."""
    if m is None or values is None:
        raise InputError(f"{what}: the measured means and their multipliers are required")
    mm = np.asarray(m, dtype=np.float64).reshape(-1)
    vv = np.asarray(values, dtype=np.float64).reshape(-1)
    if mm.shape != vv.shape:
        raise InputError(f"{what}: {mm.size} multipliers but {vv.size} values")
    if not np.isfinite(mm).all():
        raise InputError(f"{what}: the multipliers contain non-finite values")
    zero = np.nonzero(mm == 0.0)[0]
    if zero.size != 1:
        raise InputError(f"{what}: the multipliers must contain 0 (the unsteered reference) exactly once")
    if not np.isfinite(vv[zero[0]]):
        raise InputError(f"{what}: the measured mean at m = 0 is {vv[zero[0]]}; the unsteered reference is undefined")
    bad = ~np.isfinite(vv)
    skipped = sorted(float(v) for v in mm[bad])
    if skipped and not skip_nan:
        raise InputError(f"{what}: the measured mean is not finite at m = {', '.join(f'{v:g}' for v in skipped)} "
                         "(pass skip_nan=True to interpolate across those multipliers, which is then recorded)")
    mm, vv = mm[~bad], vv[~bad]
    if mm.size < 2:
        raise InputError(f"{what}: need at least two finite means")
    order = np.argsort(mm, kind="stable")
    mm, vv = mm[order], vv[order]
    return MeasuredCurve(mm, vv, float(vv[mm == 0.0][0]), skipped)


def first_reach(xs: np.ndarray, ys: np.ndarray, level: float, reached: np.ndarray) -> tuple[int, float] | None:
    """Walking along ``xs`` (from ``xs[0]``): ``(j, x)`` for the first ``j`` where ``reached[j]``
    holds, ``x`` the position where ``ys`` crosses ``level`` between ``xs[j-1]`` and ``xs[j]``
    (linear interpolation; ``xs[0]`` when it holds at the start); ``None`` when it never holds."""
    hit = np.flatnonzero(reached)
    if hit.size == 0:
        return None
    j = int(hit[0])
    if j == 0:
        return 0, float(xs[0])
    x0, x1, y0, y1 = xs[j - 1], xs[j], ys[j - 1], ys[j]
    return j, float(x0 + (level - y0) * (x1 - x0) / (y1 - y0))


def _fitted(fit: CurveFit, what: str) -> Callable[[np.ndarray], np.ndarray]:
    if fit.status != "ok":
        raise InputError(f"{what}: the {fit.label} fit has status {fit.status!r} ({fit.message}); "
                         "only a converged fit may stand in for the measured means")
    return fit.predict


def _check_zero_inside(lo: float, hi: float) -> None:
    if not lo <= 0.0 <= hi:
        raise InputError(f"the multiplier range [{lo}, {hi}] must contain 0 (the unsteered reference)")


@dataclass
class ValidRegion:
    """``[lo, hi]``: where utility stays within ``delta`` of ``reference`` = the measured ``UtilOdds(0)``.

    ``source``: ``"means"`` (interpolated measurements) or ``"fit"``. ``lo_at_edge`` / ``hi_at_edge``:
    the region reaches the end of the swept range there (the true bound lies further out).
    ``skipped_m``: multipliers whose mean was NaN and was interpolated across (``skip_nan=True``).
    """

    lo: float
    hi: float
    reference: float
    delta: float
    source: str
    lo_at_edge: bool
    hi_at_edge: bool
    skipped_m: list[float] = field(default_factory=list)

    def contains(self, m: float) -> bool:
        return self.lo <= m <= self.hi

    def clip(self, m: float) -> float:
        return float(min(max(m, self.lo), self.hi))

    def to_dict(self) -> dict:
        return asdict(self)


def valid_region(m: Sequence[float], util: Sequence[float], *, fit: CurveFit | None = None, delta: float = 1.0,
                 skip_nan: bool = False) -> ValidRegion:
    """The interval around 0 where ``UtilOdds(m) >= UtilOdds(0) − delta``.

    ``m``, ``util``: the measured per-multiplier means (required: they give the reference and the
    range). The curve is their interpolation, or ``fit`` (a converged UtilOdds fit) when given.
    """
    if delta < 0:
        raise InputError(f"delta must be >= 0, got {delta}")
    meas = measured_curve(m, util, what="UtilOdds", skip_nan=skip_nan)
    f = _fitted(fit, "valid_region") if fit is not None else meas
    lo, hi = meas.lo, meas.hi
    _check_zero_inside(lo, hi)
    ref = meas.at_zero
    floor = ref - delta
    bounds = []
    for end in (lo, hi):
        xs = np.linspace(0.0, end, _DENSE)
        ys = f(xs)
        out = first_reach(xs, ys, floor, ys < floor)  # at m = 0 only for a fitted curve below the reference
        bounds.append((float(end), True) if out is None else (out[1], False))
    return ValidRegion(bounds[0][0], bounds[1][0], ref, float(delta), "fit" if fit is not None else "means",
                       bounds[0][1], bounds[1][1], meas.skipped_m)


@dataclass
class Calibration:
    """The calibrated multiplier (``None`` when unreachable, with ``reason``).

    ``util_drop`` = measured ``UtilOdds(0)`` − ``UtilOdds(multiplier)``: negative when utility rises.
    ``source``: ``"means"`` or ``"fit"`` (the curves used for the crossing).
    """

    multiplier: float | None
    target: float
    target_kind: str  # "pref" or "accuracy"
    reached_value: float | None
    util_drop: float | None
    max_util_drop: float
    reason: str
    source: str = "means"
    skipped_m: list[float] = field(default_factory=list)

    def __float__(self) -> float:
        if self.multiplier is None:
            raise InputError(f"no calibrated multiplier: {self.reason}")
        return float(self.multiplier)

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(
    m: Sequence[float],
    *,
    pref: Sequence[float] | None = None,
    util: Sequence[float] | None = None,
    accuracy: Sequence[float] | None = None,
    pref_fit: CurveFit | None = None,
    util_fit: CurveFit | None = None,
    target_pref: float | None = None,
    target_accuracy: float | None = None,
    max_util_drop: float = 1.0,
    skip_nan: bool = False,
) -> Calibration:
    """Smallest ``|m|`` whose PrefOdds reaches ``target_pref`` (or whose accuracy reaches
    ``target_accuracy``) while ``UtilOdds`` stays ``>= UtilOdds(0) − max_util_drop`` on the whole
    way from 0.

    Measured means (``pref`` / ``accuracy``, and ``util``, always required) are interpolated; the
    converged fits ``pref_fit`` / ``util_fit`` replace them only when passed. The target is reached
    upward when it lies above the measured value at ``m = 0`` and downward otherwise (steering towards
    the negative concept). Both signs of ``m`` are searched.
    """
    if (target_pref is None) == (target_accuracy is None):
        raise InputError("give exactly one of target_pref and target_accuracy")
    if target_pref is not None:
        kind, target = "pref", float(target_pref)
        g_meas = measured_curve(m, pref, what="PrefOdds", skip_nan=skip_nan)
        fg = _fitted(pref_fit, "calibrate") if pref_fit is not None else g_meas
    else:
        kind, target = "accuracy", float(target_accuracy)  # type: ignore[arg-type]
        if not 0.0 <= target <= 1.0:
            raise InputError(f"target_accuracy must be in [0, 1], got {target}")
        g_meas = measured_curve(m, accuracy, what="accuracy", skip_nan=skip_nan)
        fg = g_meas
    u_meas = measured_curve(m, util, what="UtilOdds", skip_nan=skip_nan)
    fu = _fitted(util_fit, "calibrate") if util_fit is not None else u_meas
    source = "fit" if (util_fit is not None or (kind == "pref" and pref_fit is not None)) else "means"
    skipped = sorted(set(g_meas.skipped_m) | set(u_meas.skipped_m))
    lo, hi = max(g_meas.lo, u_meas.lo), min(g_meas.hi, u_meas.hi)
    _check_zero_inside(lo, hi)
    g0, u0 = g_meas.at_zero, u_meas.at_zero
    upward = target >= g0
    if g0 == target:
        return Calibration(0.0, target, kind, g0, 0.0, max_util_drop, "the unsteered model already reaches the target",
                           source, skipped)
    floor = u0 - max_util_drop
    best: tuple[float, float, float] | None = None
    blocked: list[tuple[float, float, float, float]] = []  # (m at target, m of lowest utility, lowest, utility at target)
    for end in (lo, hi):
        if end == 0.0:
            continue
        xs = np.linspace(0.0, end, _DENSE)
        gs, us = fg(xs), fu(xs)
        hit = first_reach(xs, gs, target, gs >= target if upward else gs <= target)
        if hit is None:
            continue
        j, x = hit
        if np.any(us[: j + 1] < floor):
            k = int(np.argmin(us[: j + 1]))
            blocked.append((x, float(xs[k]), float(us[k]), float(fu(np.array([x]))[0])))
            continue
        if best is None or abs(x) < abs(best[0]):
            best = (x, float(fg(np.array([x]))[0]), u0 - float(fu(np.array([x]))[0]))
    if best is not None:
        return Calibration(best[0], target, kind, best[1], best[2], max_util_drop, "ok", source, skipped)
    if blocked:
        x, xk, uk, ux = min(blocked, key=lambda b: abs(b[0]))
        reason = (f"{kind} reaches {target:g} at m = {x:.4g}, but on the way UtilOdds falls to {uk:.4g} at m = {xk:.4g}, "
                  f"more than {max_util_drop:g} below the measured UtilOdds(0) = {u0:.4g} (at m = {x:.4g} it is "
                  f"{ux:.4g}, {'up' if ux >= u0 else 'down'} {abs(ux - u0):.3g})")
    else:
        reason = f"{kind} never reaches {target:g} within the swept range [{lo:.4g}, {hi:.4g}] (measured at m=0: {g0:.4g})"
    return Calibration(None, target, kind, None, None, max_util_drop, reason, source, skipped)
