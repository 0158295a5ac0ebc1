"""The fitted curves' model (docs/design.md §3): the piecewise rational-quadratic decay, the two forms of
PrefOdds and UtilOdds with their parameter names, R², and :class:`CurveFit`, the result of a fit.

How the curves are fitted is :mod:`.fitting`; intervals on a fit are :mod:`.fit_bootstrap`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from easyedit_split.errors import InputError

__all__ = [
    "DECAY_PARAMS",
    "FORMS",
    "KINDS",
    "PREF_PARAMS",
    "PREF_PARAMS_PER_SIDE",
    "UTIL_PARAMS",
    "UTIL_PARAMS_PER_SIDE",
    "CurveFit",
    "curve_params",
    "n_free_params",
    "pref_curve",
    "pref_curve_per_side",
    "r2_score",
    "rq_decay",
    "transfer_r2",
    "util_curve",
    "util_curve_per_side",
]

FORMS = ("design", "per_side")
KINDS = ("pref", "util")

DECAY_PARAMS = ("m_pos", "L_pos", "p_pos", "m_neg", "L_neg", "p_neg")
PREF_PARAMS = ("alpha", "beta", "b") + DECAY_PARAMS
UTIL_PARAMS = ("beta", "b") + DECAY_PARAMS
PREF_PARAMS_PER_SIDE = ("alpha_pos", "beta_pos", "b_pos", "alpha_neg", "beta_neg", "b_neg") + DECAY_PARAMS
UTIL_PARAMS_PER_SIDE = ("beta_pos", "b_pos", "beta_neg", "b_neg") + DECAY_PARAMS

_PARAMS = {("pref", "design"): PREF_PARAMS, ("util", "design"): UTIL_PARAMS,
           ("pref", "per_side"): PREF_PARAMS_PER_SIDE, ("util", "per_side"): UTIL_PARAMS_PER_SIDE}
# one continuity equation per form: free = all parameters − 1
_N_FREE = {key: len(names) - 1 for key, names in _PARAMS.items()}

def _check_kind_form(kind: str, form: str) -> None:
    if kind not in KINDS:
        raise InputError(f"kind must be 'pref' or 'util', got {kind!r}")
    if form not in FORMS:
        raise InputError(f"form must be one of {FORMS}, got {form!r}")


def n_free_params(kind: str, form: str = "design") -> int:
    """Free parameters of a fitted form (its parameters minus the continuity equation)."""
    _check_kind_form(kind, form)
    return _N_FREE[(kind, form)]


def curve_params(kind: str, form: str = "design") -> tuple[str, ...]:
    """Names of the reported parameters of a fitted form (original units)."""
    _check_kind_form(kind, form)
    return _PARAMS[(kind, form)]


# ---------------------------------------------------------------------------------------------
# the curves (original units)


def _piece(m: np.ndarray, centre: float, L: float, p: float) -> np.ndarray:
    return np.exp(-p * np.log1p((m - centre) ** 2 / L))


def rq_decay(m, m_pos: float, L_pos: float, p_pos: float, m_neg: float, L_neg: float, p_neg: float) -> np.ndarray:
    """``D(m)``: the piecewise rational-quadratic decay."""
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 0, _piece(m, m_pos, L_pos, p_pos), _piece(m, m_neg, L_neg, p_neg))


def pref_curve(m, alpha: float, beta: float, b: float, **decay: float) -> np.ndarray:
    """Design form: ``(α·m + β)·D(m) + b``."""
    m = np.asarray(m, dtype=np.float64)
    return (alpha * m + beta) * rq_decay(m, **decay) + b


def util_curve(m, beta: float, b: float, **decay: float) -> np.ndarray:
    """Design form: ``β_u·D(m) + b_u``."""
    return beta * rq_decay(m, **decay) + b


def pref_curve_per_side(m, alpha_pos: float, beta_pos: float, b_pos: float, alpha_neg: float, beta_neg: float,
                        b_neg: float, **decay: float) -> np.ndarray:
    """Per-side form: ``(α±·m + β±)·D±(m) + b±``."""
    m = np.asarray(m, dtype=np.float64)
    d = rq_decay(m, **decay)
    return np.where(m >= 0, (alpha_pos * m + beta_pos) * d + b_pos, (alpha_neg * m + beta_neg) * d + b_neg)


def util_curve_per_side(m, beta_pos: float, b_pos: float, beta_neg: float, b_neg: float, **decay: float) -> np.ndarray:
    """Per-side form: ``β±·D±(m) + b±``."""
    m = np.asarray(m, dtype=np.float64)
    d = rq_decay(m, **decay)
    return np.where(m >= 0, beta_pos * d + b_pos, beta_neg * d + b_neg)


_CURVES = {("pref", "design"): pref_curve, ("util", "design"): util_curve,
           ("pref", "per_side"): pref_curve_per_side, ("util", "per_side"): util_curve_per_side}


def r2_score(y, y_hat) -> float:
    """``1 − SS_res / SS_tot`` with :func:`math.fsum` sums (order-independent)."""
    y, y_hat = np.asarray(y, dtype=np.float64).reshape(-1), np.asarray(y_hat, dtype=np.float64).reshape(-1)
    mean = math.fsum(y.tolist()) / y.size
    ss_tot = math.fsum(((y - mean) ** 2).tolist())
    ss_res = math.fsum(((y - y_hat) ** 2).tolist())
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else float("-inf")
    return 1.0 - ss_res / ss_tot


# ---------------------------------------------------------------------------------------------
# the result


@dataclass
class CurveFit:
    """A fitted curve.

    ``kind``: ``"pref"`` or ``"util"``; ``form``: ``"design"`` or ``"per_side"`` (module docstring);
    ``params`` in original units (empty when skipped); ``n_params``: free parameters; ``n``: points
    used. ``status``: ``"ok"`` (converged), ``"failed"`` (the optimiser did not converge: do not use
    the curve) or ``"skipped"`` (not fitted: too few points; ``message`` says why). ``warnings``:
    everything a reader should know (points left out, parameters at a bound). ``r2_ci`` /
    ``param_ci``: bootstrap percentile intervals (:func:`bootstrap_fit`), ``None`` until computed.
    """

    kind: str
    params: dict[str, float]
    r2: float
    rmse: float
    n: int
    m_min: float
    m_max: float
    status: str
    message: str
    n_starts: int
    seconds: float
    form: str = "design"
    n_params: int = 0
    r2_adj: float = float("nan")
    continuity_gap: float = 0.0  # |f₊(0) − f₋(0)| of the fitted curve at m = 0
    warnings: list[str] = field(default_factory=list)
    r2_ci: tuple[float, float] | None = None
    param_ci: dict[str, tuple[float, float]] | None = None
    n_boot: int = 0
    ci_level: float = 0.95
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        """Converged (``status == "ok"``): only then may a curve stand in for the measurements."""
        return self.status == "ok"

    @property
    def label(self) -> str:
        """``"PrefOdds (design form)"`` etc."""
        return f"{'PrefOdds' if self.kind == 'pref' else 'UtilOdds'} ({self.form.replace('_', '-')} form)"

    def predict(self, m) -> np.ndarray:
        if self.status == "skipped":
            raise InputError(f"{self.label} was not fitted: {self.message}")
        return _CURVES[(self.kind, self.form)](m, **self.params)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["success"] = self.success
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CurveFit:
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        for key in ("r2_ci",):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        if d.get("param_ci") is not None:
            d["param_ci"] = {k: tuple(v) for k, v in d["param_ci"].items()}
        return cls(**d)


def transfer_r2(fit: CurveFit, m: Sequence[float], y_heldout: Sequence[float]) -> float:
    """R² of ``fit`` (made on training data) on held-out values at multipliers ``m``."""
    if fit.status == "skipped":
        raise InputError(f"transfer_r2: {fit.label} was not fitted: {fit.message}")
    m = np.asarray(m, dtype=np.float64).reshape(-1)
    y = np.asarray(y_heldout, dtype=np.float64).reshape(-1)
    if m.shape != y.shape:
        raise InputError(f"transfer_r2: {m.size} multipliers but {y.size} values")
    ok = np.isfinite(y)
    return r2_score(y[ok], fit.predict(m[ok]))
