"""Statistics across concepts (pure numpy): summaries with bootstrap intervals, paired differences, failures.

Every statistic is over *concepts* (one value per concept and method); a concept whose value is not finite
(e.g. a target accuracy never reached) is left out of that statistic and the count ``n`` says how many
remain. Intervals are seeded percentile bootstraps over concepts (:func:`bootstrap_interval`); paired
differences resample the same concepts for both methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from easyedit_split.errors import InputError

__all__ = ["METRICS", "TIE_TOLERANCE", "aggregate", "bootstrap_interval", "failures", "metric_values",
           "paired_difference", "summary_stats"]

#: the per-concept numbers aggregated: name -> (path in a cell record, higher is better)
METRICS: dict[str, tuple[tuple[str, ...], bool]] = {
    "acc_chosen": (("chosen", "accuracy"), True),
    "acc_m1": (("at_1", "accuracy"), True),
    "acc_m2": (("at_2", "accuracy"), True),
    "pref_chosen": (("chosen", "pref"), True),
    "pref_m1": (("at_1", "pref"), True),
    "pref_m2": (("at_2", "pref"), True),
    "util_chosen": (("chosen", "util"), True),
    "util_m1": (("at_1", "util"), True),
    "util_m2": (("at_2", "util"), True),
    "dial": (("dial",), True),
    "m_chosen": (("chosen", "m"), True),
    "unsteered": (("unsteered", "accuracy"), True),
}
#: |difference| at or below which a paired comparison is a tie: accuracies (fractions) and odds (nats)
TIE_TOLERANCE = {"acc": 0.02, "dial": 0.02, "default": 0.1}


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64).reshape(-1)
    return x[np.isfinite(x)]


def bootstrap_interval(values: Sequence[float], stat: Callable[[np.ndarray], float], *, n_boot: int = 2000,
                       level: float = 0.95, seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile interval of ``stat`` over ``n_boot`` resamples (with replacement) of the finite values;
    ``(None, None)`` with fewer than 2 values."""
    x = _finite(values)
    if x.size < 2 or n_boot <= 0:
        return None, None
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    stats = np.array([stat(x[row]) for row in idx])
    a = (1.0 - level) / 2
    lo, hi = np.quantile(stats, [a, 1 - a])
    return float(lo), float(hi)


def summary_stats(values: Sequence[float], *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """``n``, median and mean of the finite values with bootstrap intervals, and the lower quartile."""
    x = _finite(values)
    if x.size == 0:
        return {"n": 0, "median": None, "median_ci": [None, None], "mean": None, "mean_ci": [None, None],
                "q25": None}
    return {"n": int(x.size), "median": float(np.median(x)),
            "median_ci": list(bootstrap_interval(x, np.median, n_boot=n_boot, level=level, seed=seed)),
            "mean": float(x.mean()), "mean_ci": list(bootstrap_interval(x, np.mean, n_boot=n_boot, level=level, seed=seed)),
            "q25": float(np.quantile(x, 0.25))}


def paired_difference(values: Sequence[float], reference: Sequence[float], *, tie: float, higher_is_better: bool = True,
                      n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """``values − reference`` over the concepts where both are finite: mean and median with bootstrap
    intervals, and wins / ties / losses of ``values`` (a tie: ``|difference| <= tie``)."""
    a = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    b = np.asarray([np.nan if v is None else v for v in reference], dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"{a.size} values but {b.size} reference values")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    better = d if higher_is_better else -d
    out: dict[str, Any] = {"n": int(d.size), "wins": int((better > tie).sum()), "ties": int((np.abs(d) <= tie).sum()),
                           "losses": int((better < -tie).sum()), "tie_tolerance": tie}
    if d.size == 0:
        return {**out, "mean": None, "mean_ci": [None, None], "median": None, "median_ci": [None, None]}
    return {**out, "mean": float(d.mean()), "mean_ci": list(bootstrap_interval(d, np.mean, n_boot=n_boot, level=level, seed=seed)),
            "median": float(np.median(d)),
            "median_ci": list(bootstrap_interval(d, np.median, n_boot=n_boot, level=level, seed=seed))}


def failures(concepts: Sequence[str], accuracy: Sequence[float], unsteered: Sequence[float], *,
             margin: float = 0.10) -> list[str]:
    """Concepts where ``accuracy`` (at the chosen factor) is below the unsteered accuracy + ``margin``
    (a missing accuracy is a failure too)."""
    out = []
    for c, a, u in zip(concepts, accuracy, unsteered):
        a = np.nan if a is None else float(a)
        u = np.nan if u is None else float(u)
        if not (np.isfinite(a) and np.isfinite(u) and a >= u + margin - 1e-12):
            out.append(c)
    return out


def _get(record: Mapping[str, Any], path: Sequence[str]) -> float:
    value: Any = record
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return float("nan")
        value = value[key]
    return float("nan") if value is None else float(value)


def metric_values(records: Mapping[str, Mapping[str, Any]], metric: str) -> list[float]:
    """One metric of one method, per concept in ``records``' order (``{concept: cell record}``)."""
    if metric.startswith("util_matched@"):
        target = float(metric.split("@", 1)[1])
        out = []
        for r in records.values():
            hit = [m for m in r.get("matched", []) if abs(float(m["target"]) - target) < 1e-9]
            out.append(float("nan") if not hit or hit[0]["util"] is None else float(hit[0]["util"]))
        return out
    if metric.startswith("r2_"):
        key = metric[3:]  # a fit key: pref, util, pref_per_side, util_per_side; only converged fits count
        fits = [(r.get("fits") or {}).get(key) or {} for r in records.values()]
        return [float(f["r2"]) if f.get("status") == "ok" and f.get("r2") is not None else float("nan") for f in fits]
    path, _ = METRICS[metric]
    return [_get(r, path) for r in records.values()]


def _tie_for(metric: str) -> float:
    if metric.startswith("acc") or metric == "unsteered":
        return TIE_TOLERANCE["acc"]
    return TIE_TOLERANCE.get(metric, TIE_TOLERANCE["default"])


def aggregate(by_method: Mapping[str, Mapping[str, Mapping[str, Any]]], *, metrics: Sequence[str],
              reference_for: Callable[[str], str | None], fail_margin: float = 0.10, n_boot: int = 2000,
              seed: int = 0) -> dict[str, Any]:
    """``by_method``: ``{method name: {concept: cell record}}`` (the same concepts for every method).

    Per method and metric: :func:`summary_stats`; against ``reference_for(method)`` (e.g. SPLIT of the same
    form; None: no comparison): :func:`paired_difference`; and the failures (:func:`failures`) and cell
    errors.
    """
    out: dict[str, Any] = {}
    for name, records in by_method.items():
        concepts = list(records)
        entry: dict[str, Any] = {"n_concepts": len(concepts), "metrics": {}, "vs_reference": {}}
        for metric in metrics:
            values = metric_values(records, metric)
            entry["metrics"][metric] = summary_stats(values, n_boot=n_boot, seed=seed)
            ref = reference_for(name)
            if ref is not None and ref != name and ref in by_method:
                ref_records = by_method[ref]
                ref_values = [metric_values({c: ref_records[c]}, metric)[0] if c in ref_records else float("nan")
                              for c in concepts]
                higher = METRICS.get(metric, ((), True))[1]
                entry["vs_reference"].setdefault("reference", ref)
                entry["vs_reference"][metric] = paired_difference(values, ref_values, tie=_tie_for(metric),
                                                                  higher_is_better=higher, n_boot=n_boot, seed=seed)
        entry["failures"] = failures(concepts, metric_values(records, "acc_chosen"),
                                     metric_values(records, "unsteered"), margin=fail_margin)
        entry["errors"] = {c: r.get("error") for c, r in records.items() if r.get("status") != "ok"}
        out[name] = entry
    return out
