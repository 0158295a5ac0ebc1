"""Choosing the steering factor on validation pairs (AxBench's protocol: chosen on one split, reported on another).

Rule (:func:`choose_factor`): among the grid's multipliers ``m > 0``, the one with the highest validation
accuracy; ties (within :data:`TIE`) go to the higher mean validation UtilOdds, then to the smaller ``m``.
A multiplier whose mean UtilOdds is NaN counts as the lowest utility.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from easyedit_split.errors import InputError

__all__ = ["RULE", "TIE", "ChosenFactor", "choose_factor"]

TIE = 1e-9
RULE = ("m > 0 of the grid with the highest validation accuracy; ties -> the higher mean validation UtilOdds -> "
        "the smaller m")


@dataclass(frozen=True)
class ChosenFactor:
    m: float
    val_accuracy: float
    val_util: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_factor(val_per_m: Mapping[float, Mapping[str, float]]) -> ChosenFactor:
    """``val_per_m``: ``{m: {"accuracy": …, "util": …}}`` on the validation pairs."""
    candidates = sorted(m for m in val_per_m if m > 0)
    if not candidates:
        raise InputError("no multiplier > 0 to choose from; the grid needs positive multipliers")

    def util(m: float) -> float:
        u = float(val_per_m[m]["util"])
        return u if math.isfinite(u) else -math.inf

    best = candidates[0]
    for m in candidates[1:]:
        a, b = float(val_per_m[m]["accuracy"]), float(val_per_m[best]["accuracy"])
        if a > b + TIE or (abs(a - b) <= TIE and util(m) > util(best)):
            best = m  # equal accuracy and utility: the smaller m (earlier) stays
    return ChosenFactor(float(best), float(val_per_m[best]["accuracy"]), float(val_per_m[best]["util"]))
