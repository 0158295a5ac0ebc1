"""Fitted preference and utility curves (DESIGN.md §3).

Piecewise rational-quadratic decay, one piece per sign of ``m``::

    D(m) = (1 + (m - m₊)² / L₊)^(-p₊)   for m >= 0
    D(m) = (1 + (m - m₋)² / L₋)^(-p₋)   for m < 0          (L± > 0, p± > 0)

    PrefOdds(m) ≈ (α·m + β)·D_p(m) + b_p
    UtilOdds(m) ≈ β_u·D_u(m) + b_u

Fitted by least squares with scipy's SLSQP: ``L±`` and ``p±`` are bounded away from zero, the two
pieces are continuous at ``m = 0`` (``D₊(0) = D₋(0)``, an equality constraint), and several
deterministic starting points are tried in a fixed order; the best feasible one wins (the loop
stops early once three starts reach the same optimum, within 0.1% of its squared error). The problem is solved in
scaled units (``m / max|m|``, standardised ``y``) and the parameters converted back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

logger = logging.getLogger(__name__)

__all__ = [
    "PREF_PARAMS",
    "UTIL_PARAMS",
    "CurveFit",
    "fit_curve",
    "fit_pref_odds",
    "fit_util_odds",
    "pref_curve",
    "r2_score",
    "rq_decay",
    "transfer_r2",
    "util_curve",
]

DECAY_PARAMS = ("m_pos", "L_pos", "p_pos", "m_neg", "L_neg", "p_neg")
PREF_PARAMS = ("alpha", "beta", "b") + DECAY_PARAMS
UTIL_PARAMS = ("beta", "b") + DECAY_PARAMS

_L_BOUNDS = (1e-4, 1e4)  # scaled units (m / max|m|)²
_P_BOUNDS = (1e-3, 50.0)
_M0_BOUNDS = (-3.0, 3.0)  # scaled units


def rq_decay(m, m_pos: float, L_pos: float, p_pos: float, m_neg: float, L_neg: float, p_neg: float) -> np.ndarray:
    """``D(m)``: the piecewise rational-quadratic decay."""
    m = np.asarray(m, dtype=np.float64)
    pos = np.exp(-p_pos * np.log1p((m - m_pos) ** 2 / L_pos))
    neg = np.exp(-p_neg * np.log1p((m - m_neg) ** 2 / L_neg))
    return np.where(m >= 0, pos, neg)


def pref_curve(m, alpha: float, beta: float, b: float, **decay: float) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return (alpha * m + beta) * rq_decay(m, **decay) + b


def util_curve(m, beta: float, b: float, **decay: float) -> np.ndarray:
    return beta * rq_decay(m, **decay) + b


def r2_score(y, y_hat) -> float:
    y, y_hat = np.asarray(y, dtype=np.float64), np.asarray(y_hat, dtype=np.float64)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum((y - y_hat) ** 2))
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else float("-inf")
    return 1.0 - ss_res / ss_tot


@dataclass
class CurveFit:
    """A fitted curve: ``kind`` is ``"pref"`` or ``"util"``; ``params`` in original units."""

    kind: str
    params: dict[str, float]
    r2: float
    rmse: float
    n: int
    m_min: float
    m_max: float
    success: bool
    message: str
    n_starts: int
    seconds: float
    continuity_gap: float = 0.0  # |D₊(0) − D₋(0)| at the solution
    extra: dict[str, Any] = field(default_factory=dict)

    def predict(self, m) -> np.ndarray:
        if self.kind == "pref":
            return pref_curve(m, **self.params)
        return util_curve(m, **self.params)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CurveFit:
        return cls(**d)


def _decay_and_grad(x: np.ndarray, th: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``D(x)`` and ``dD/dθ`` ``[n, 6]`` for θ = (m₊, L₊, p₊, m₋, L₋, p₋)."""
    D = np.empty_like(x)
    G = np.zeros((x.size, 6))
    for piece, sel in ((0, x >= 0), (1, x < 0)):
        m0, L, p = th[3 * piece: 3 * piece + 3]
        dx = x[sel] - m0
        u = dx * dx / L
        lu = np.log1p(u)
        d = np.exp(-p * lu)
        D[sel] = d
        k = d * p / (1.0 + u)
        G[sel, 3 * piece] = k * 2.0 * dx / L
        G[sel, 3 * piece + 1] = k * u / L
        G[sel, 3 * piece + 2] = -lu * d
    return D, G


def _continuity_grad(th_decay: np.ndarray) -> np.ndarray:
    mp, Lp, pp, mn, Ln, pn = th_decay
    up, un = mp * mp / Lp, mn * mn / Ln
    return np.array([pp * 2 * mp / Lp / (1 + up), -pp * up / Lp / (1 + up), np.log1p(up),
                     -pn * 2 * mn / Ln / (1 + un), pn * un / Ln / (1 + un), -np.log1p(un)])


def _continuity(th_decay: np.ndarray) -> float:
    mp, Lp, pp, mn, Ln, pn = th_decay
    return float(pp * np.log1p(mp * mp / Lp) - pn * np.log1p(mn * mn / Ln))


def _prepare(m, y) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    m = np.asarray(m, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if m.shape != y.shape:
        raise ValueError(f"fit: {m.size} multipliers but {y.size} values")
    ok = np.isfinite(m) & np.isfinite(y)
    if (~ok).any():
        logger.info("fit: ignoring %d non-finite points", int((~ok).sum()))
    m, y = m[ok], y[ok]
    if m.size < 4:
        raise ValueError(f"fit needs at least 4 finite points, got {m.size}")
    s_m = float(np.max(np.abs(m))) or 1.0
    y_c = float(y.mean())
    s_y = float(y.std()) or 1.0
    return m, y, s_m, y_c, s_y


def _starts_decay(x_peak: float) -> list[np.ndarray]:
    # the continuity constraint has a zero gradient when m₊ = m₋ = 0: start just off it
    if abs(x_peak) < 0.05:
        x_peak = 0.05 if x_peak >= 0 else -0.05
    out = []
    for p, L in ((1.0, 1.0), (0.5, 0.25), (2.0, 4.0), (0.5, 4.0), (1.0, 0.1)):
        out.append(np.array([x_peak, L, p, x_peak, L, p]))
    return out


def _solve(objective, starts: list[np.ndarray], bounds: list[tuple], n_lin: int) -> tuple[np.ndarray, Any, int]:
    """``objective(th) -> (value, gradient)``."""

    def cons_jac(th):
        g = np.zeros(th.size)
        g[n_lin:] = _continuity_grad(th[n_lin:])
        return g

    cons = [{"type": "eq", "fun": lambda th: _continuity(th[n_lin:]), "jac": cons_jac}]
    best_th, best_res, best_val = None, None, np.inf
    agree, tried = 0, 0
    for th0 in starts:
        with np.errstate(all="ignore"):
            res = minimize(objective, th0, jac=True, method="SLSQP", bounds=bounds, constraints=cons,
                           options={"maxiter": 150, "ftol": 1e-12})
        th = np.clip(res.x, [b[0] if b[0] is not None else -np.inf for b in bounds],
                     [b[1] if b[1] is not None else np.inf for b in bounds])
        val = float(objective(th)[0])
        feasible = abs(_continuity(th[n_lin:])) < 1e-6
        tried += 1
        if not (np.isfinite(val) and feasible):
            continue
        if best_th is not None and abs(val - best_val) <= 1e-3 * abs(best_val) + 1e-12:
            agree += 1  # another start reached the same optimum
        elif val < best_val:
            agree = 0
        if val < best_val:
            best_th, best_res, best_val = th, res, val
        if agree >= 2:  # three starts agree: stop early (deterministic: same order every time)
            break
    if best_th is None:  # no feasible solution: take the lowest objective and say so
        raise RuntimeError("no start converged to a feasible (continuous) solution")
    return best_th, best_res, tried


def _decay_to_original(th_d: np.ndarray, s_m: float) -> dict[str, float]:
    mp, Lp, pp, mn, Ln, pn = (float(v) for v in th_d)
    return {"m_pos": mp * s_m, "L_pos": Lp * s_m ** 2, "p_pos": pp, "m_neg": mn * s_m, "L_neg": Ln * s_m ** 2, "p_neg": pn}


def _finish(kind: str, params: dict[str, float], m, y, res, n_starts: int, t0: float) -> CurveFit:
    fit = CurveFit(kind=kind, params=params, r2=0.0, rmse=0.0, n=int(m.size), m_min=float(m.min()),
                   m_max=float(m.max()), success=bool(res.success), message=str(res.message),
                   n_starts=n_starts, seconds=0.0)
    y_hat = fit.predict(m)
    fit.r2 = r2_score(y, y_hat)
    fit.rmse = float(np.sqrt(np.mean((y - y_hat) ** 2)))
    d = params
    fit.continuity_gap = float(abs(rq_decay(0.0, **{k: d[k] for k in DECAY_PARAMS})
                                   - (1 + d["m_neg"] ** 2 / d["L_neg"]) ** (-d["p_neg"])))
    fit.seconds = time.perf_counter() - t0
    return fit


def fit_pref_odds(m: Sequence[float], y: Sequence[float]) -> CurveFit:
    """Fit ``PrefOdds(m) ≈ (α·m + β)·D(m) + b``."""
    t0 = time.perf_counter()
    m, y, s_m, y_c, s_y = _prepare(m, y)
    x, z = m / s_m, (y - y_c) / s_y

    n = x.size

    def objective(th):
        a, bb, c = th[:3]
        D, G = _decay_and_grad(x, th[3:])
        lin = a * x + bb
        r = lin * D + c - z
        w = 2.0 * r / n
        grad = np.concatenate([[np.dot(w, x * D), np.dot(w, D), w.sum()], (w * lin) @ G])
        return float(np.dot(r, r) / n), grad

    # linear start from the points nearest m = 0
    near = np.argsort(np.abs(x))[: max(3, x.size // 3)]
    slope, icpt = np.polyfit(x[near], z[near], 1) if np.ptp(x[near]) > 0 else (0.0, float(z.mean()))
    starts = []
    for d0 in _starts_decay(0.0):
        for c0 in (0.0, float(z[np.argmin(x)] + z[np.argmax(x)]) / 2):
            starts.append(np.concatenate([[slope, icpt - c0, c0], d0]))
    bounds = [(None, None)] * 3 + [_M0_BOUNDS, _L_BOUNDS, _P_BOUNDS] * 2
    th, res, n_starts = _solve(objective, starts, bounds, 3)
    a, bb, c = th[:3]
    params = {"alpha": float(a * s_y / s_m), "beta": float(bb * s_y), "b": float(y_c + c * s_y)}
    params.update(_decay_to_original(th[3:], s_m))
    return _finish("pref", params, m, y, res, n_starts, t0)


def fit_util_odds(m: Sequence[float], y: Sequence[float]) -> CurveFit:
    """Fit ``UtilOdds(m) ≈ β_u·D(m) + b_u``."""
    t0 = time.perf_counter()
    m, y, s_m, y_c, s_y = _prepare(m, y)
    x, z = m / s_m, (y - y_c) / s_y

    n = x.size

    def objective(th):
        bb, c = th[:2]
        D, G = _decay_and_grad(x, th[2:])
        r = bb * D + c - z
        w = 2.0 * r / n
        grad = np.concatenate([[np.dot(w, D), w.sum()], (w * bb) @ G])
        return float(np.dot(r, r) / n), grad

    i_peak = int(np.argmax(z))
    x_peak = float(np.clip(x[i_peak], *_M0_BOUNDS))
    starts = []
    for d0 in _starts_decay(x_peak) + _starts_decay(0.0)[:2]:
        starts.append(np.concatenate([[float(z.max() - z.min()), float(z.min())], d0]))
    bounds = [(None, None)] * 2 + [_M0_BOUNDS, _L_BOUNDS, _P_BOUNDS] * 2
    th, res, n_starts = _solve(objective, starts, bounds, 2)
    bb, c = th[:2]
    params = {"beta": float(bb * s_y), "b": float(y_c + c * s_y)}
    params.update(_decay_to_original(th[2:], s_m))
    return _finish("util", params, m, y, res, n_starts, t0)


def fit_curve(kind: str, m: Sequence[float], y: Sequence[float]) -> CurveFit:
    if kind == "pref":
        return fit_pref_odds(m, y)
    if kind == "util":
        return fit_util_odds(m, y)
    raise ValueError(f"kind must be 'pref' or 'util', got {kind!r}")


def transfer_r2(fit: CurveFit, m: Sequence[float], y_heldout: Sequence[float]) -> float:
    """R² of ``fit`` (made on training data) on held-out values at multipliers ``m``."""
    m = np.asarray(m, dtype=np.float64).reshape(-1)
    y = np.asarray(y_heldout, dtype=np.float64).reshape(-1)
    if m.shape != y.shape:
        raise ValueError(f"transfer_r2: {m.size} multipliers but {y.size} values")
    ok = np.isfinite(y)
    return r2_score(y[ok], fit.predict(m[ok]))
