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

__all__ = ["check_int_at_least", "finite_float_arg", "int_at_least", "nonnegative_int_arg",
           "positive_int_arg", "set_threads"]


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


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` after checking it is >= 1 (None: leave torch's default)."""
    if threads is None:
        return
    import torch

    torch.set_num_threads(check_int_at_least(threads, 1, "threads (--threads)"))
