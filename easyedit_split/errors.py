"""The package's one error base class.

Every error this package raises for bad input (a file, a key, a value, a model that does not fit)
subclasses :class:`EasyEditSplitError`. The CLI catches exactly this base (plus ``OSError`` for I/O
and ``KeyboardInterrupt``), prints ``error: <message>`` and exits with status 2; any other exception
is a bug and is shown in full.

The concrete classes keep ``ValueError`` (or ``RuntimeError``) as a second base so that code written
against the older hierarchy (``except ValueError``) still works.
"""

from __future__ import annotations

__all__ = ["EXIT_BAD_INPUT", "EasyEditSplitError", "InputError", "InputTypeError", "NonFiniteResultError", "OutputError"]

#: exit status of the CLI for bad input (argparse uses 2 for bad arguments too)
EXIT_BAD_INPUT = 2


class EasyEditSplitError(Exception):
    """Base class of every error this package raises for bad input; the message says what, where and
    what to do."""


class OutputError(EasyEditSplitError, OSError):
    """An output location cannot be written, collides with another output or is in use."""


class InputError(EasyEditSplitError, ValueError):
    """An argument of a command or API function is invalid (the message names it and what to give)."""


class InputTypeError(InputError, TypeError):
    """An argument of an API function has the wrong type (a string where pairs are expected, …); a
    ``TypeError`` too, for code that catches that."""


class NonFiniteResultError(EasyEditSplitError, ArithmeticError):
    """A computation produced NaN/inf where a number was needed; what was done before is kept."""
