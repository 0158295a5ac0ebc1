"""Bootstrap intervals on a fitted curve: resample examples, refit the per-m means from the fit's optimum
(a warm start of :mod:`.fitting`'s least-squares polish), percentile intervals on R² and every parameter."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from easyedit_split.errors import InputError

from .curves import _CURVES, CurveFit, r2_score
from .fitting import _polish, _prepare, _Scaled, _skip_reason, _to_params

__all__ = ["bootstrap_fit"]


def _finite_column_means(samples: np.ndarray) -> np.ndarray:
    """Mean of the finite entries of each column (NaN where a column has none)."""
    finite = np.isfinite(samples)
    counts = finite.sum(axis=0)
    sums = np.array([math.fsum(col[ok].tolist()) for col, ok in zip(samples.T, finite.T)])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def bootstrap_fit(fit: CurveFit, m: Sequence[float], samples, *, n_boot: int = 30, seed: int = 0,
                  level: float = 0.95, max_nfev: int = 100) -> CurveFit:
    """``fit`` with percentile-bootstrap intervals on R² and every parameter.

    ``samples``: per-example values, shape ``[n_examples, len(m)]`` (``±inf`` entries are left out of
    the means, as in :func:`~.logodds.summarize`; NaN is an error). Each of ``n_boot`` resamples
    (``numpy.random.default_rng(seed)``) draws examples with replacement, takes the per-m means and
    refits them by least squares from ``fit``'s optimum (a warm start of at most ``max_nfev``
    evaluations: the interval describes the optimum's basin, not a new multi-start search). A refit
    that stops at that limit (typically creeping along a flat valley of the form) is kept — its R² is
    then a slight underestimate — and counted in ``extra["boot_unconverged"]`` and ``warnings``;
    resamples that cannot be fitted at all (a multiplier without finite values) are left out and
    counted in ``extra["boot_failed"]``. A skipped fit, or ``n_boot <= 0``, is returned unchanged.
    """
    if fit.status == "skipped" or n_boot <= 0:
        return fit
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    s = np.asarray(samples, dtype=np.float64)
    mm = np.asarray(m, dtype=np.float64).reshape(-1)
    if s.ndim != 2 or s.shape[1] != mm.size:
        raise InputError(f"bootstrap_fit: samples must have shape [n_examples, {mm.size}], got {list(s.shape)}")
    if np.isnan(s).any():
        raise InputError("bootstrap_fit: samples contain NaN")
    if s.shape[0] < 2:
        raise InputError("bootstrap_fit: needs at least 2 examples")
    rng = np.random.default_rng(seed)
    th0 = np.asarray(fit.extra["theta"], dtype=np.float64)
    sign = int(fit.extra["sign"])
    r2s: list[float] = []
    params: dict[str, list[float]] = {k: [] for k in fit.params}
    failed = unconverged = 0
    for _ in range(n_boot):
        idx = rng.integers(0, s.shape[0], size=s.shape[0])
        data = _prepare(mm, _finite_column_means(s[idx]), "bootstrap")
        if _skip_reason(fit.kind, fit.form, data, 1) is not None:
            failed += 1
            continue
        model = _Scaled(fit.kind, fit.form, data.x)
        sol = _polish(model, data.z, th0, sign, 0, max_nfev=max_nfev)
        unconverged += not sol.converged
        p = _to_params(model, sol, data)
        r2s.append(r2_score(data.y, _CURVES[(fit.kind, fit.form)](data.m, **p)))
        for k, values in params.items():
            values.append(p[k])
    out = replace(fit, warnings=list(fit.warnings), extra=dict(fit.extra))
    out.n_boot, out.ci_level = n_boot, level
    out.extra["boot_failed"] = failed
    out.extra["boot_unconverged"] = unconverged
    a = (1.0 - level) / 2
    if len(r2s) >= 2:
        out.r2_ci = tuple(float(v) for v in np.quantile(np.array(r2s), [a, 1 - a]))
        out.param_ci = {k: tuple(float(v) for v in np.quantile(np.array(vs), [a, 1 - a])) for k, vs in params.items()}
    if failed:
        out.warnings.append(f"{failed} of {n_boot} bootstrap resamples could not be fitted (left out of the intervals)")
    if unconverged:
        out.warnings.append(f"{unconverged} of {n_boot} bootstrap refits stopped at {max_nfev} evaluations "
                            "(kept in the intervals)")
    return out
