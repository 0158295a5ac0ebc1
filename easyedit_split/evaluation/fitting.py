"""Fitted preference and utility curves (docs/design.md §3).

Piecewise rational-quadratic decay, one piece per sign of ``m``::

    D(m) = (1 + (m - m₊)² / L₊)^(-p₊)   for m >= 0
    D(m) = (1 + (m - m₋)² / L₋)^(-p₋)   for m < 0          (L± > 0, p± > 0)

Two fitted forms, each named in results and reports:

``"design"`` — the form of docs/design.md §3, nothing shared beyond what it states: the decay has its
own ``m±, L±, p±`` per side, continuous at ``m = 0`` (``D₊(0) = D₋(0)``), and one set of amplitude
parameters::

    PrefOdds(m) ≈ (α·m + β)·D(m) + b          9 parameters, 8 free (continuity fixes one)
    UtilOdds(m) ≈ β_u·D(m) + b_u              8 parameters, 7 free

``"per_side"`` — every parameter per side, the curve (not only the decay) continuous at ``m = 0``::

    PrefOdds(m) ≈ (α± ·m + β±)·D±(m) + b±     12 parameters, 11 free (b₋ follows from continuity)
    UtilOdds(m) ≈ β±·D±(m) + b±               10 parameters, 9 free

**How it is fitted** (deterministic for any thread count; no random numbers):

* scaled units: ``x = m / max|m|``, ``z = (y − mean y) / std y`` (sums by :func:`math.fsum`);
* positivity by reparametrisation (``L = e^λ``, ``p = e^π``, bounded so nothing overflows) and
  continuity by construction: in the design form both pieces are written through their common value
  ``D(0) = e^(−r²)``, so ``m± = ±r·√(L±/p±)·√(expm1(r²/p±)/(r²/p±))`` — exact for any parameters;
  in the per-side form ``b₋ = β₊·D₊(0) + b₊ − β₋·D₋(0)``;
* the amplitude parameters enter linearly and are solved exactly for every decay (variable
  projection), so the search runs over the decay parameters only (5 or 6);
* a fixed grid of decay starts (several hundred) is screened by the projected squared error, the best
  few are polished by :func:`scipy.optimize.least_squares` (trust-region reflective with bounds), and
  the winner is the earliest start (in grid order) among those whose squared error is within
  :data:`LOSS_RTOL` of the lowest — float noise cannot pick between two equally good optima;
* products ``Φ·c`` are explicit column sums and squared errors :func:`math.fsum`, so the objective has
  no BLAS-order-dependent reduction.

**Too few points**: a fit needs ``n_points >= n_free + MIN_EXTRA_POINTS`` (3) finite points, and at
least two on each side of 0; otherwise the result has ``status == "skipped"`` and a ``message`` saying
why, and a warning is logged. A 7-point grid therefore fits none of the four curves.

**Uncertainty**: :func:`~.fit_bootstrap.bootstrap_fit` (in its own module, built on this one) resamples examples (seeded), refits the per-m means
from the fitted optimum and gives percentile intervals on R² and every parameter.

The curves themselves, their parameters and :class:`~.curves.CurveFit` live in :mod:`.curves` (and are
importable from here too).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from easyedit_split.errors import InputError

from .curves import (  # noqa: F401 - the curves are importable from here, as before the split
    _CURVES,
    _N_FREE,
    _PARAMS,
    DECAY_PARAMS,
    FORMS,
    KINDS,
    PREF_PARAMS,
    PREF_PARAMS_PER_SIDE,
    UTIL_PARAMS,
    UTIL_PARAMS_PER_SIDE,
    CurveFit,
    _check_kind_form,
    _piece,
    curve_params,
    n_free_params,
    pref_curve,
    pref_curve_per_side,
    r2_score,
    rq_decay,
    transfer_r2,
    util_curve,
    util_curve_per_side,
)

logger = logging.getLogger(__name__)

#: this module's own names; the curves it re-exports are listed in :mod:`.curves`
__all__ = ["LOSS_RTOL", "MIN_EXTRA_POINTS", "fit_curve", "fit_pref_odds", "fit_util_odds"]

MIN_EXTRA_POINTS = 3  # a fit needs n_points >= n_free + MIN_EXTRA_POINTS
LOSS_RTOL = 1e-7  # squared errors within this relative tolerance count as a tie
N_POLISH = 6  # screened starts polished by least squares
_STOP_FLOOR = 1e-2  # see _polish

# bounds in scaled units (x = m / max|m|)
_LOG_L = (math.log(1e-4), math.log(1e4))
_LOG_P = (math.log(1e-2), math.log(1e2))
_R = (-2.5, 2.5)  # design form: D(0) = exp(−r²) >= 0.002
_MU = (-3.0, 3.0)  # per-side form: peak positions


# ---------------------------------------------------------------------------------------------
# the model in scaled units: decay parameters θ (searched), amplitudes c (linear)


def _design_centre(r, L, p):
    """``μ = r·√(L/p)·√(expm1(t)/t)`` with ``t = r²/p`` (so that ``D(0) = e^(−r²)``) and its
    derivatives with respect to ``r``, ``ln L`` and ``ln p``; smooth through ``r = 0``."""
    t = r * r / p
    small = t < 1e-8
    ts = np.where(small, 1.0, t)
    q = np.where(small, 1.0 + t / 4, np.sqrt(np.expm1(ts) / ts))
    w = np.where(small, 0.5 + t / 12, 1.0 / -np.expm1(-ts) - 1.0 / ts)  # 2·d ln q / dt
    s = np.sqrt(L / p)
    mu = r * s * q
    return mu, s * q * (1.0 + t * w), mu / 2, mu * (-0.5 - 0.5 * t * w)


def _piece_grad(x, mu, L, p):
    """A decay piece and its derivatives with respect to its centre, ``ln L`` and ``ln p``."""
    dx = x - mu
    u = dx * dx / L
    lg = np.log1p(u)
    d = np.exp(-p * lg)
    k = d * p / (1.0 + u)
    return d, k * 2.0 * dx / L, k * u, -lg * d * p


class _Scaled:
    """One (kind, form) model on scaled multipliers ``x = m / max|m|``.

    Decay parameters θ: design form ``(r, ln L₊, ln p₊, ln L₋, ln p₋)`` plus a fixed ``sign`` (+1: both
    centres on the same side of 0, −1: on opposite sides); per-side form
    ``(m₊, ln L₊, ln p₊, m₋, ln L₋, ln p₋)``. Amplitudes ``c`` multiply the basis columns ``Φ(θ)``.
    """

    def __init__(self, kind: str, form: str, x: np.ndarray):
        self.kind, self.form, self.x = kind, form, x
        self.pos = x >= 0
        self.n_theta = 5 if form == "design" else 6

    def sides(self, th, sign):
        """Per-side ``(centre, L, p)`` (arrays broadcast over a batch of θ rows ``[..., n_theta]``)."""
        th = np.asarray(th, dtype=np.float64)
        if self.form == "design":
            r = th[..., 0]
            Lp, pp, Ln, pn = (np.exp(th[..., j]) for j in (1, 2, 3, 4))
            return ((_design_centre(r, Lp, pp)[0], Lp, pp),
                    (np.asarray(sign) * _design_centre(r, Ln, pn)[0], Ln, pn))
        return ((th[..., 0], np.exp(th[..., 1]), np.exp(th[..., 2])),
                (th[..., 3], np.exp(th[..., 4]), np.exp(th[..., 5])))

    def basis(self, th, sign, grad: bool = False):
        """``Φ`` ``[S, n, k]`` for θ rows ``[S, n_theta]`` (and ``dΦ/dθ`` ``[S, n, k, n_theta]``)."""
        th = np.atleast_2d(np.asarray(th, dtype=np.float64))
        sign = np.broadcast_to(np.asarray(sign, dtype=np.float64), (th.shape[0],))[:, None]
        x, pos = self.x[None, :], self.pos[None, :]
        one, zero = np.ones((th.shape[0], x.shape[1])), np.zeros((th.shape[0], x.shape[1]))
        col = [th[:, j:j + 1] for j in range(self.n_theta)]
        if self.form == "design":
            r = col[0]
            Lp, pp, Ln, pn = (np.exp(c) for c in col[1:])
            mp, mp_r, mp_l, mp_p = _design_centre(r, Lp, pp)
            mn, mn_r, mn_l, mn_p = (sign * v for v in _design_centre(r, Ln, pn))
            dp, dp_mu, dp_l, dp_p = _piece_grad(x, mp, Lp, pp)
            dn, dn_mu, dn_l, dn_p = _piece_grad(x, mn, Ln, pn)
            d = np.where(pos, dp, dn)
            dd = [np.where(pos, dp_mu * mp_r, dn_mu * mn_r), np.where(pos, dp_l + dp_mu * mp_l, 0.0),
                  np.where(pos, dp_p + dp_mu * mp_p, 0.0), np.where(pos, 0.0, dn_l + dn_mu * mn_l),
                  np.where(pos, 0.0, dn_p + dn_mu * mn_p)]
            if self.kind == "pref":
                cols = [x * d, d, one]
                dcols = [[x * g for g in dd], dd, [zero] * 5]
            else:
                cols = [d, one]
                dcols = [dd, [zero] * 5]
        else:
            mp, Lp, pp, mn, Ln, pn = col[0], np.exp(col[1]), np.exp(col[2]), col[3], np.exp(col[4]), np.exp(col[5])
            dp, *gp = _piece_grad(x, mp, Lp, pp)
            dn, *gn = _piece_grad(x, mn, Ln, pn)
            d0p, *g0p = _piece_grad(0.0, mp, Lp, pp)
            d0n, *g0n = _piece_grad(0.0, mn, Ln, pn)
            # b₋ = β₊·D₊(0) + b₊ − β₋·D₋(0) is eliminated: β₊ also acts on m < 0, β₋ through D₋ − D₋(0)
            beta_p = np.where(pos, dp, d0p)
            beta_n = np.where(pos, 0.0, dn - d0n)
            d_beta_p = [np.where(pos, g, g0) for g, g0 in zip(gp, g0p)] + [zero] * 3
            d_beta_n = [zero] * 3 + [np.where(pos, 0.0, g - g0) for g, g0 in zip(gn, g0n)]
            if self.kind == "util":
                cols = [beta_p, one, beta_n]
                dcols = [d_beta_p, [zero] * 6, d_beta_n]
            else:
                alpha_p = np.where(pos, x * dp, 0.0)
                alpha_n = np.where(pos, 0.0, x * dn)
                d_alpha_p = [np.where(pos, x * g, 0.0) for g in gp] + [zero] * 3
                d_alpha_n = [zero] * 3 + [np.where(pos, 0.0, x * g) for g in gn]
                cols = [alpha_p, beta_p, one, alpha_n, beta_n]
                dcols = [d_alpha_p, d_beta_p, [zero] * 6, d_alpha_n, d_beta_n]
        phi = np.stack(np.broadcast_arrays(*cols), axis=-1)
        if not grad:
            return phi
        return phi, np.stack([np.stack(np.broadcast_arrays(*dc), axis=-1) for dc in dcols], axis=-2)

    def project(self, th, sign, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each θ row the best amplitudes ``c`` ``[S, k]`` and the squared error ``[S]``."""
        phi = self.basis(th, sign)
        finite = np.isfinite(phi).all(axis=(1, 2))
        phi = np.where(finite[:, None, None], phi, 0.0)
        c = np.einsum("skn,n->sk", np.linalg.pinv(phi), z)
        res = np.einsum("snk,sk->sn", phi, c) - z
        loss = np.where(finite, np.sum(res * res, axis=1), np.inf)
        return c, loss

    def projected(self, th: np.ndarray, sign: int, z: np.ndarray, grad: bool = False):
        """Variable projection at one θ: ``(c, residual)`` and, with ``grad``, the Jacobian of the
        residual with respect to θ (Kaufman's form ``(I − ΦΦ⁺)·Σ_k c_k ∂Φ_k/∂θ``)."""
        if grad:
            phi, dphi = self.basis(th, sign, grad=True)
            phi, dphi = phi[0], dphi[0]
        else:
            phi = self.basis(th, sign)[0]
        if not np.isfinite(phi).all():
            bad = np.full(z.shape, 1e6)
            return (np.zeros(phi.shape[1]), bad, np.zeros((z.size, self.n_theta))) if grad else (np.zeros(phi.shape[1]), bad)
        pinv = np.linalg.pinv(phi)
        c = np.einsum("kn,n->k", pinv, z)
        fitted = np.zeros_like(z)
        for k in range(phi.shape[1]):  # explicit column sum: no BLAS reduction
            fitted = fitted + c[k] * phi[:, k]
        res = fitted - z
        if not grad:
            return c, res
        j = np.zeros((z.size, self.n_theta))
        for k in range(phi.shape[1]):
            j = j + c[k] * dphi[:, k, :]
        j = j - np.einsum("nk,kt->nt", phi, np.einsum("kn,nt->kt", pinv, j))
        return c, res, j

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        if self.form == "design":
            lo, hi = zip(_R, _LOG_L, _LOG_P, _LOG_L, _LOG_P)
        else:
            lo, hi = zip(_MU, _LOG_L, _LOG_P, _MU, _LOG_L, _LOG_P)
        return np.array(lo, dtype=np.float64), np.array(hi, dtype=np.float64)

    def starts(self) -> tuple[np.ndarray, np.ndarray]:
        """The fixed start grid: θ rows ``[S, n_theta]`` and their signs ``[S]``, in a fixed order."""
        p_grid = [math.log(v) for v in (0.5, 2.0)]
        rows, signs = [], []
        if self.form == "design":
            L_grid = [math.log(v) for v in (0.02, 0.1, 0.5, 2.5)]
            for r in (0.0, 0.6, -0.6, 1.2, -1.2, 1.8, -1.8):
                for sign in ((1,) if r == 0.0 else (1, -1)):
                    for lLp, lpp, lLn, lpn in itertools.product(L_grid, p_grid, L_grid, p_grid):
                        rows.append([r, lLp, lpp, lLn, lpn])
                        signs.append(sign)
        else:
            L_grid = [math.log(v) for v in (0.03, 0.2, 1.5)]
            side = list(itertools.product((0.0, 0.3, 0.6, 1.0, -0.5), L_grid, p_grid))
            for (mp, lLp, lpp), (mn, lLn, lpn) in itertools.product(side, side):
                rows.append([mp, lLp, lpp, -mn, lLn, lpn])
                signs.append(1)
        return np.array(rows, dtype=np.float64), np.array(signs, dtype=np.int64)


@dataclass
class _Solution:
    th: np.ndarray
    c: np.ndarray
    sign: int
    loss: float
    converged: bool
    message: str
    start_index: int


def _polish(model: _Scaled, z: np.ndarray, th0: np.ndarray, sign: int, index: int,
            max_nfev: int = 300) -> _Solution:
    """Least squares over the decay parameters (amplitudes projected out, analytic Jacobian)."""
    lo, hi = model.bounds()
    # a constant extra residual (zero Jacobian row) makes the relative stopping rule absolute: the polish
    # stops once a step improves the squared error by less than ~1e-12 of the total sum of squares, instead
    # of chasing a zero-residual optimum that only a limit of the parameters reaches
    floor = np.array([math.sqrt(_STOP_FLOOR * math.fsum((z * z).tolist()))])
    zero_row = np.zeros((1, model.n_theta))

    def fun(th):
        return np.concatenate([model.projected(th, sign, z)[1], floor])

    def jac(th):
        return np.concatenate([model.projected(th, sign, z, grad=True)[2], zero_row])

    with np.errstate(all="ignore"):
        res = least_squares(fun, np.clip(th0, lo, hi), jac=jac, bounds=(lo, hi), method="trf", ftol=1e-8,
                            xtol=1e-10, gtol=1e-10, max_nfev=max_nfev)
    th = np.clip(res.x, lo, hi)
    c, r = model.projected(th, sign, z)
    loss = math.fsum((r * r).tolist())
    ok = bool(res.status > 0) and math.isfinite(loss)
    return _Solution(th, c, sign, loss, ok, str(res.message), index)


def _best(solutions: list[_Solution], scale: float) -> _Solution:
    """The earliest start among those within :data:`LOSS_RTOL` (of ``scale``) of the lowest loss."""
    finite = [s for s in solutions if math.isfinite(s.loss)]
    if not finite:
        return min(solutions, key=lambda s: s.start_index)
    lowest = min(s.loss for s in finite)
    return min((s for s in finite if s.loss <= lowest + LOSS_RTOL * scale), key=lambda s: s.start_index)


def _search(model: _Scaled, z: np.ndarray) -> tuple[_Solution, int]:
    """Screen the start grid (amplitudes solved exactly), polish the best :data:`N_POLISH`."""
    starts, signs = model.starts()
    loss = model.project(starts, signs, z)[1]
    scale = math.fsum((z * z).tolist())
    q = LOSS_RTOL * scale
    rounded = np.where(np.isfinite(loss), np.floor(loss / q + 0.5), np.inf)
    order = np.lexsort((np.arange(loss.size), rounded))  # by rounded loss, then by start index
    polished = [_polish(model, z, starts[i], int(signs[i]), int(i)) for i in order[:N_POLISH]]
    best = _best(polished, scale)
    if not best.converged:  # continue from where it stopped
        more = _polish(model, z, best.th, best.sign, best.start_index, max_nfev=2000)
        if more.converged or more.loss <= best.loss:
            best = more
    return best, len(starts)

# ---------------------------------------------------------------------------------------------
# public fitting functions


@dataclass
class _Data:
    m: np.ndarray
    y: np.ndarray
    x: np.ndarray
    z: np.ndarray
    s_m: float
    y_c: float
    s_y: float
    warnings: list[str]


def _prepare(m, y, what: str) -> _Data:
    m = np.asarray(m, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if m.shape != y.shape:
        raise InputError(f"{what}: {m.size} multipliers but {y.size} values")
    warnings = []
    ok = np.isfinite(m) & np.isfinite(y)
    if (~ok).any():
        bad = ", ".join(f"{v:g}" for v in m[~ok])
        warnings.append(f"{int((~ok).sum())} non-finite point(s) left out (m = {bad})")
    m, y = m[ok], y[ok]
    order = np.argsort(m, kind="stable")
    m, y = m[order], y[order]
    s_m = float(np.max(np.abs(m))) if m.size else 1.0
    s_m = s_m or 1.0
    y_c = math.fsum(y.tolist()) / y.size if y.size else 0.0
    s_y = math.sqrt(math.fsum(((y - y_c) ** 2).tolist()) / y.size) if y.size else 1.0
    s_y = s_y or 1.0
    return _Data(m, y, m / s_m, (y - y_c) / s_y, s_m, y_c, s_y, warnings)


def _skip_reason(kind: str, form: str, data: _Data, min_extra_points: int) -> str | None:
    k = n_free_params(kind, form)
    need = k + min_extra_points
    if data.m.size < need:
        return (f"{data.m.size} finite points for {k} free parameters; the {form.replace('_', '-')} form needs "
                f"n_points >= n_params + {min_extra_points} = {need}")
    n_neg, n_pos = int((data.m < 0).sum()), int((data.m > 0).sum())
    if n_neg < 2 or n_pos < 2:
        return f"needs at least 2 points on each side of m = 0 (has {n_neg} below, {n_pos} above)"
    return None


def _to_params(model: _Scaled, sol: _Solution, data: _Data) -> dict[str, float]:
    (mp, Lp, pp), (mn, Ln, pn) = ((float(v) for v in side) for side in model.sides(sol.th, sol.sign))
    s_m, s_y, y_c = data.s_m, data.s_y, data.y_c
    decay = {"m_pos": mp * s_m, "L_pos": Lp * s_m ** 2, "p_pos": pp,
             "m_neg": mn * s_m, "L_neg": Ln * s_m ** 2, "p_neg": pn}
    c = [float(v) for v in sol.c]
    if model.form == "design":
        if model.kind == "pref":
            lin = {"alpha": c[0] * s_y / s_m, "beta": c[1] * s_y, "b": y_c + c[2] * s_y}
        else:
            lin = {"beta": c[0] * s_y, "b": y_c + c[1] * s_y}
        return {**lin, **decay}
    d0p = float(_piece(np.zeros(1), mp, Lp, pp)[0])
    d0n = float(_piece(np.zeros(1), mn, Ln, pn)[0])
    if model.kind == "pref":
        a_p, b_p, c_p, a_n, b_n = c
        lin = {"alpha_pos": a_p * s_y / s_m, "beta_pos": b_p * s_y, "b_pos": y_c + c_p * s_y,
               "alpha_neg": a_n * s_y / s_m, "beta_neg": b_n * s_y}
    else:
        b_p, c_p, b_n = c
        lin = {"beta_pos": b_p * s_y, "b_pos": y_c + c_p * s_y, "beta_neg": b_n * s_y}
    lin["b_neg"] = lin["beta_pos"] * d0p + lin["b_pos"] - lin["beta_neg"] * d0n
    names = _PARAMS[(model.kind, model.form)]
    out = {**lin, **decay}
    return {k: out[k] for k in names}


def _at_bound_warnings(model: _Scaled, sol: _Solution) -> list[str]:
    lo, hi = model.bounds()
    names = (("r", "L_pos", "p_pos", "L_neg", "p_neg") if model.form == "design"
             else ("m_pos", "L_pos", "p_pos", "m_neg", "L_neg", "p_neg"))
    hit = [n for n, v, a, b in zip(names, sol.th, lo, hi) if abs(v - a) < 1e-9 * max(1.0, abs(a))
           or abs(v - b) < 1e-9 * max(1.0, abs(b))]
    out = [f"parameter(s) at a search bound: {', '.join(hit)}"] if hit else []
    if np.max(np.abs(sol.c)) > 100:  # amplitudes in units of the data's standard deviation
        out.append("amplitudes over 100× the spread of the data: the curve is near a limit of the form, "
                   "its parameters are poorly identified (the fitted values are still valid)")
    return out


def _skipped(kind: str, form: str, data: _Data, reason: str, t0: float) -> CurveFit:
    what = f"{'PrefOdds' if kind == 'pref' else 'UtilOdds'} ({form.replace('_', '-')} form)"
    logger.warning("%s fit skipped: %s", what, reason)
    return CurveFit(kind=kind, params={}, r2=float("nan"), rmse=float("nan"), n=int(data.m.size),
                    m_min=float(data.m.min()) if data.m.size else float("nan"),
                    m_max=float(data.m.max()) if data.m.size else float("nan"), status="skipped", message=reason,
                    n_starts=0, seconds=time.perf_counter() - t0, form=form, n_params=n_free_params(kind, form),
                    warnings=[*data.warnings, f"not fitted: {reason}"])


def _make_fit(model: _Scaled, sol: _Solution, data: _Data, n_starts: int, t0: float) -> CurveFit:
    kind, form = model.kind, model.form
    params = _to_params(model, sol, data)
    k = n_free_params(kind, form)
    fit = CurveFit(kind=kind, params=params, r2=0.0, rmse=0.0, n=int(data.m.size), m_min=float(data.m.min()),
                   m_max=float(data.m.max()), status="ok" if sol.converged else "failed", message=sol.message,
                   n_starts=n_starts, seconds=0.0, form=form, n_params=k,
                   warnings=[*data.warnings, *_at_bound_warnings(model, sol)],
                   extra={"theta": [float(v) for v in sol.th], "sign": sol.sign, "start_index": sol.start_index})
    y_hat = fit.predict(data.m)
    fit.r2 = r2_score(data.y, y_hat)
    fit.rmse = math.sqrt(math.fsum(((data.y - y_hat) ** 2).tolist()) / data.m.size)
    n = data.m.size
    fit.r2_adj = 1.0 - (1.0 - fit.r2) * (n - 1) / (n - k)
    f0 = _CURVES[(kind, form)]
    p = params
    pos0 = float(f0(np.array([0.0]), **p)[0])
    neg_p = {**p, "m_pos": p["m_neg"], "L_pos": p["L_neg"], "p_pos": p["p_neg"]}  # evaluate the negative piece at 0
    if form == "per_side":
        neg_p.update({k2.replace("_neg", "_pos"): v for k2, v in p.items() if k2.endswith("_neg")})
    fit.continuity_gap = abs(pos0 - float(f0(np.array([0.0]), **neg_p)[0]))
    if not sol.converged:
        fit.warnings.append(f"optimiser did not converge: {sol.message}")
        logger.warning("%s fit did not converge: %s", fit.label, sol.message)
    fit.seconds = time.perf_counter() - t0
    return fit


def fit_curve(kind: str, m: Sequence[float], y: Sequence[float], *, form: str = "design",
              min_extra_points: int = MIN_EXTRA_POINTS) -> CurveFit:
    """Fit one curve (``kind`` ``"pref"`` / ``"util"``, ``form`` ``"design"`` / ``"per_side"``) to
    per-multiplier means; non-finite points are left out (and listed in ``warnings``).

    Returns a :class:`CurveFit` with ``status`` ``"ok"``, ``"failed"`` or ``"skipped"`` (fewer than
    ``n_free + min_extra_points`` points, or fewer than 2 on either side of 0).
    """
    _check_kind_form(kind, form)
    if min_extra_points < 1:
        raise InputError(f"min_extra_points must be >= 1, got {min_extra_points}")
    t0 = time.perf_counter()
    data = _prepare(m, y, f"fit {kind}")
    reason = _skip_reason(kind, form, data, min_extra_points)
    if reason is not None:
        return _skipped(kind, form, data, reason, t0)
    model = _Scaled(kind, form, data.x)
    sol, n_starts = _search(model, data.z)
    return _make_fit(model, sol, data, n_starts, t0)


def fit_pref_odds(m: Sequence[float], y: Sequence[float], *, form: str = "design", **kw: Any) -> CurveFit:
    """Fit ``PrefOdds(m)`` (see :func:`fit_curve`)."""
    return fit_curve("pref", m, y, form=form, **kw)


def fit_util_odds(m: Sequence[float], y: Sequence[float], *, form: str = "design", **kw: Any) -> CurveFit:
    """Fit ``UtilOdds(m)`` (see :func:`fit_curve`)."""
    return fit_curve("util", m, y, form=form, **kw)

