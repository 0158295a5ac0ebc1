"""Preference and utility log-odds from answer losses (pure numpy functions).

With teacher-forced answer losses ``L_p = -log P(A_p|q)`` and ``L_n = -log P(A_n|q)``:

    PrefOdds = L_n - L_p
    UtilOdds = log(s / (1 - s)),   s = e^-L_p + e^-L_n   (the mass on the valid pair)

``UtilOdds`` is computed stably: ``log s = logaddexp(-L_p, -L_n)`` and
``log(1 - s) = log(-expm1(log s))``. For sequence sums ``s`` is a probability mass and ``s < 1``
except through rounding; for per-token means it is not a probability and ``s >= 1`` can happen
(e.g. two answers each with mean token probability above 1/2). **Where ``s >= 1`` UtilOdds is
``+inf``**: the valid pair holds all the mass the scale can express. Dataset means skip those
values and report how many there were (:class:`MeanCI` ``n_infinite``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from easyedit_split.errors import InputError

__all__ = [
    "MeanCI",
    "accuracy",
    "add_log_odds",
    "bootstrap_mean_ci",
    "log_valid_mass",
    "percentile_interval",
    "pref_odds",
    "summarize",
    "util_odds",
]


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def pref_odds(L_p, L_n) -> np.ndarray:
    """``L_n - L_p`` (positive when the positive answer is the more likely one)."""
    return _arr(L_n) - _arr(L_p)


def log_valid_mass(L_p, L_n) -> np.ndarray:
    """``log(e^-L_p + e^-L_n)``, stable for any losses."""
    return np.logaddexp(-_arr(L_p), -_arr(L_n))


def util_odds(L_p, L_n) -> np.ndarray:
    """``log(s / (1 - s))`` with ``s = e^-L_p + e^-L_n``; ``+inf`` where ``s >= 1`` (see module doc)."""
    log_s = log_valid_mass(L_p, L_n)
    scalar = np.ndim(log_s) == 0
    log_s = np.atleast_1d(log_s)
    out = np.full(log_s.shape, np.inf)
    ok = log_s < 0
    out[ok] = log_s[ok] - np.log(-np.expm1(log_s[ok]))
    out[np.isnan(log_s)] = np.nan
    return np.float64(out[0]) if scalar else out


def accuracy(L_p, L_n) -> float:
    """Fraction of examples whose positive answer is more likely (``L_p < L_n``)."""
    lp, ln = _arr(L_p), _arr(L_n)
    if lp.size == 0:
        raise InputError("accuracy of an empty set")
    return float(np.mean(lp < ln))


@dataclass
class MeanCI:
    """Mean of the finite values with a percentile-bootstrap confidence interval."""

    mean: float
    lo: float
    hi: float
    n: int  # finite values used
    n_infinite: int  # +inf / -inf values left out
    level: float

    def to_dict(self) -> dict:
        return asdict(self)


def percentile_interval(values, level: float) -> tuple[float | None, float | None]:
    """Equal-tailed ``level`` percentile interval of the finite entries of ``values`` (bootstrap
    statistics); ``(None, None)`` when none is finite."""
    x = _arr(values).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None, None
    a = (1 - level) / 2
    lo, hi = np.quantile(x, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_mean_ci(values, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> MeanCI:
    """Mean of the finite entries of ``values`` with a seeded percentile-bootstrap CI.

    Infinite entries are counted in ``n_infinite`` and excluded; NaN raises.
    """
    v = _arr(values).reshape(-1)
    if np.isnan(v).any():
        raise InputError("bootstrap_mean_ci: values contain NaN")
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    finite = v[np.isfinite(v)]
    n_inf = int(v.size - finite.size)
    if finite.size == 0:
        return MeanCI(float("nan"), float("nan"), float("nan"), 0, n_inf, level)
    mean = float(finite.mean())
    if finite.size == 1 or n_boot <= 0:
        return MeanCI(mean, mean, mean, int(finite.size), n_inf, level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, finite.size, size=(n_boot, finite.size))
    lo, hi = percentile_interval(finite[idx].mean(axis=1), level)
    return MeanCI(mean, lo, hi, int(finite.size), n_inf, level)


def add_log_odds(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``pref_odds``/``util_odds`` (sums) and ``pref_odds_mean``/``util_odds_mean`` (per-token means)."""
    df = df.copy()
    df["pref_odds"] = pref_odds(df["L_p"], df["L_n"])
    df["util_odds"] = util_odds(df["L_p"], df["L_n"])
    if "L_p_mean" in df and "L_n_mean" in df:
        df["pref_odds_mean"] = pref_odds(df["L_p_mean"], df["L_n_mean"])
        df["util_odds_mean"] = util_odds(df["L_p_mean"], df["L_n_mean"])
    return df


def summarize(
    df: pd.DataFrame,
    *,
    by: Sequence[str] = ("m",),
    reduction: str = "sum",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Dataset means per group (default per multiplier) with bootstrap CIs and accuracy.

    ``reduction="sum"`` uses sequence losses, ``"mean"`` per-token means. Output columns: the
    ``by`` keys, ``n``, ``pref``, ``pref_lo``, ``pref_hi``, ``util``, ``util_lo``, ``util_hi``,
    ``util_n_inf`` (rows with UtilOdds = +inf, left out of the mean), ``accuracy``.
    """
    if reduction not in ("sum", "mean"):
        raise InputError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    sfx = "" if reduction == "sum" else "_mean"
    lp_col, ln_col = ("L_p", "L_n") if reduction == "sum" else ("L_p_mean", "L_n_mean")
    missing = [c for c in (*by, lp_col, ln_col) if c not in df.columns]
    if missing:
        raise InputError(f"summarize: table lacks columns {missing}")
    rows = []
    for key, g in df.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        pref = pref_odds(g[lp_col], g[ln_col]) if f"pref_odds{sfx}" not in g else g[f"pref_odds{sfx}"].to_numpy()
        util = util_odds(g[lp_col], g[ln_col]) if f"util_odds{sfx}" not in g else g[f"util_odds{sfx}"].to_numpy()
        p = bootstrap_mean_ci(pref, n_boot=n_boot, level=level, seed=seed)
        u = bootstrap_mean_ci(util, n_boot=n_boot, level=level, seed=seed)
        row = dict(zip(by, key))
        row.update(n=len(g), pref=p.mean, pref_lo=p.lo, pref_hi=p.hi, util=u.mean, util_lo=u.lo, util_hi=u.hi,
                   util_n_inf=u.n_infinite, accuracy=accuracy(g[lp_col], g[ln_col]))
        rows.append(row)
    return pd.DataFrame(rows)
