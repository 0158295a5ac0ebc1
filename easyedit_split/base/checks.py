"""Value checks shared by the command line and the library: counts, finite numbers, thread counts.

Each ``*_arg`` function is an ``argparse`` ``type=``: it turns the text into a value or raises
``argparse.ArgumentTypeError`` (argparse then prints ``usage`` and the message, exit status 2).
The plain functions check a value given through the Python API and raise
:class:`~easyedit_split.errors.InputError` naming it.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from easyedit_split.errors import InputError

__all__ = [
    "MAX_SEED",
    "check_int_at_least",
    "check_seed",
    "finite_float_arg",
    "int_at_least",
    "nonnegative_float_arg",
    "nonnegative_int_arg",
    "positive_float_arg",
    "positive_int_arg",
    "probability_arg",
    "seed_arg",
    "set_threads",
]

#: seeds are 0 … 2**32 - 1 (what numpy, torch and Python's random all accept)
MAX_SEED = 2**32 - 1


def check_int_at_least(value: Any, minimum: int, what: str) -> int:
    """``value`` as an int >= ``minimum``; raise :class:`InputError` naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise InputError(f"{what} must be >= {minimum}, got {value}")
    return int(value)


def int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


positive_int_arg = int_at_least(1)
nonnegative_int_arg = int_at_least(0)


def finite_float_arg(text: str) -> float:
    """An argparse type: a finite number (``nan``, ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


finite_float_arg.__name__ = "finite number"


def positive_float_arg(text: str) -> float:
    """An argparse type: a finite number > 0 (e.g. a sampling temperature)."""
    value = finite_float_arg(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


positive_float_arg.__name__ = "number > 0"


def nonnegative_float_arg(text: str) -> float:
    """An argparse type: a finite number >= 0 (a utility drop, a budget)."""
    value = finite_float_arg(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


nonnegative_float_arg.__name__ = "number >= 0"


def probability_arg(text: str) -> float:
    """An argparse type: a number in (0, 1] (e.g. top-p)."""
    value = finite_float_arg(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


probability_arg.__name__ = "number in (0, 1]"


def seed_arg(text: str) -> int:
    """An argparse type: a seed, a whole number in 0 … 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to {MAX_SEED}, got {text[:40]}")
    return value


seed_arg.__name__ = "seed"


def check_seed(value: Any, what: str = "seed") -> int:
    """``value`` as a seed (0 … 2**32 - 1); :class:`InputError` naming ``what`` otherwise."""
    seed = check_int_at_least(value, 0, what)
    if seed > MAX_SEED:
        raise InputError(f"{what} must be <= {MAX_SEED}, got {str(seed)[:40]}")
    return seed


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` after checking it is >= 1 (None: leave torch's default)."""
    if threads is None:
        return
    import torch

    torch.set_num_threads(check_int_at_least(threads, 1, "threads (--threads)"))
