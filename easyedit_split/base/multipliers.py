"""The multiplier grammar shared by every command and the Python API.

A multiplier spec is a comma list ``"-2,0,1.5"`` or an evenly spaced grid ``"start:stop:num"``
(``num >= 2`` values, both ends included, ``stop > start``), or a sequence whose items are numbers
or such strings (the values are concatenated: ``["-1", "0:2:3"]``). Every value must be finite and
appear once; the order given is kept. :func:`parse_multipliers` is the only parser.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from easyedit_split.errors import InputError

__all__ = ["MAX_GRID_POINTS", "MultiplierError", "parse_multipliers", "with_zero"]


#: the most values a ``start:stop:num`` grid may have
MAX_GRID_POINTS = 10_000
#: the smallest spacing of a grid's points (closer ones underflow when tidied; repeats are caught after)
MIN_GRID_STEP = 1e-290


class MultiplierError(InputError):
    """A multiplier spec is malformed; the message names the bad value."""


def _number(text: str, spec: Any, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MultiplierError(f"{what} {spec!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise MultiplierError(f"{what} {spec!r}: {text!r} is not finite")
    return value


def _tidy(value: float, step: float) -> float:
    """A grid point without float noise: rounded to a billionth of the step (``0.49999999999999994`` →
    ``0.5``, ``5.6e-17`` → ``0``), which keeps the points of any finite grid distinct."""
    return float(round(value, math.ceil(-math.log10(step * 1e-9))))


def _parse_text(text: str, what: str) -> list[float]:
    s = text.strip()
    if not s:
        raise MultiplierError(f"{what}: empty multiplier spec")
    if ":" in s:
        parts = s.split(":")
        if len(parts) != 3:
            raise MultiplierError(f"{what} {text!r}: use start:stop:num, e.g. -5:5:21")
        start, stop = _number(parts[0].strip(), text, what), _number(parts[1].strip(), text, what)
        try:
            num = int(parts[2])
        except ValueError:
            raise MultiplierError(f"{what} {text!r}: num must be an integer, got {parts[2]!r}") from None
        if num < 2:
            raise MultiplierError(f"{what} {text!r}: num must be >= 2, got {num}")
        if not stop > start:
            raise MultiplierError(f"{what} {text!r}: stop {stop:g} must be greater than start {start:g}")
        if num > MAX_GRID_POINTS:
            raise MultiplierError(f"{what} {text!r}: num must be <= {MAX_GRID_POINTS}, got {num}")
        step = (stop - start) / (num - 1)
        if not math.isfinite(step):
            raise MultiplierError(f"{what} {text!r}: stop - start is too large to be a finite number")
        if step < MIN_GRID_STEP:
            raise MultiplierError(f"{what} {text!r}: the points would be {step:.3g} apart, too close to be told apart "
                                  "as numbers; use fewer points or a wider range")
        return [start] + [_tidy(start + i * step, step) for i in range(1, num - 1)] + [stop]
    out = []
    for tok in s.split(","):
        if not tok.strip():
            raise MultiplierError(f"{what} {text!r}: empty entry in the list")
        out.append(_number(tok.strip(), text, what))
    return out


def parse_multipliers(spec: str | float | Iterable[Any], *, what: str = "multipliers") -> list[float]:
    """Multiplier values from a spec (see the module doc); ``what`` names the option in errors."""
    if isinstance(spec, str):
        values = _parse_text(spec, what)
    elif isinstance(spec, bool):
        raise MultiplierError(f"{what}: {spec!r} is not a number")
    elif isinstance(spec, (int, float)):
        try:
            values = [_number(repr(float(spec)), spec, what)]
        except OverflowError:
            raise MultiplierError(f"{what}: {spec!r} is too large to be a finite number") from None
    elif not isinstance(spec, Iterable):
        raise MultiplierError(f"{what}: {spec!r} is not a number, a string or a list of them")
    else:
        values = []
        for item in spec:
            values.extend(parse_multipliers(item, what=what))
        if not values:
            raise MultiplierError(f"{what}: no multipliers given")
    seen: set[float] = set()
    for v in values:
        if v in seen:
            raise MultiplierError(f"{what} {spec!r}: the value {v:g} appears twice")
        seen.add(v)
    return values


def with_zero(values: Iterable[float]) -> list[float]:
    """Sorted values with the unsteered multiplier 0 added when missing."""
    grid = sorted(values)
    return grid if 0.0 in grid else sorted([*grid, 0.0])
