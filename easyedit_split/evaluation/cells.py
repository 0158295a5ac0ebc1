"""Markdown table cells: a number in a given format, or "–" where there is none (None or NaN)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["cell"]


def cell(x: Any, spec: str = ".3g") -> str:
    """``format(x, spec)``, or "–" for a missing value (None or NaN)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return format(x, spec)
