"""Text from files, made safe to show: the one sanitiser of everything printed or written into a report.

Text that comes from a file (a data row, an update's ``base_model``, a method name, a YAML value) may
hold terminal escapes (``ESC [ …``), other C0/C1 control characters, NUL, bidirectional overrides that
make a line read differently than it is (``U+202E``), or bytes that were not UTF-8 (kept as lone
surrogates). :func:`printable` turns each such character into a visible escape (``\\x1b``,
``\\u202e``), keeping newlines and tabs; :func:`shown` is a bounded ``repr`` for echoing a value in a
message (a huge value is cut, and computing it takes bounded time whatever its nesting);
:func:`capped` cuts a long message in the middle.

The CLI passes its output, its log records and its error messages through :func:`printable`, and every
report writer (``report.md``, ``summary.md``) through :func:`markdown_safe`.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

__all__ = ["MAX_MESSAGE_CHARS", "MAX_SHOWN_CHARS", "capped", "markdown_safe", "printable", "progress_printable", "shown"]

#: the most characters :func:`shown` gives for one value
MAX_SHOWN_CHARS = 300
#: the most characters of one error message the CLI prints (head and tail are kept)
MAX_MESSAGE_CHARS = 20_000

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
#: C0 controls except tab and newline, DEL, C1 controls, bidi controls, lone surrogates, BOM / zero-width no-break
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI + "\ud800-\udfff\ufeff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: Any) -> str:
    """``text`` (``str()`` of it) with every control, bidi-override and undecodable character escaped
    visibly; newlines and tabs are kept."""
    return _UNSAFE.sub(_escape, text if isinstance(text, str) else str(text))


#: what a terminal progress bar writes to redraw itself: carriage return, cursor up
_PROGRESS_CONTROLS = re.compile("(\r|\x1b\\[A)")


def progress_printable(text: str) -> str:
    """:func:`printable` for a progress bar's own writes: its redraw controls (``\\r``, cursor up) are
    kept, so the bar redraws in place; everything else (e.g. a description taken from a file) is escaped."""
    return "".join(part if _PROGRESS_CONTROLS.fullmatch(part) else printable(part)
                   for part in _PROGRESS_CONTROLS.split(text))


def markdown_safe(text: Any) -> str:
    """:func:`printable` for a Markdown report (the same escapes; Markdown itself is left as written)."""
    return printable(text)


_REPR = reprlib.Repr()
_REPR.maxstring = 160
_REPR.maxother = 160
_REPR.maxlong = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = _REPR.maxarray = 12
_REPR.maxdict = 8
_REPR.maxlevel = 4


def shown(value: Any) -> str:
    """A short, safe ``repr`` of ``value`` for an error message: long strings, numbers and collections are
    cut (``…``), deep nesting is elided, and control characters are escaped."""
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is shown by its type
        text = f"<{type(value).__name__}>"
    return printable(text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 4] + " …" + text[-2:])


def capped(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut in the middle to at most about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit // 2], text[-limit // 4:]
    return f"{head} … [{len(text) - len(head) - len(tail)} characters left out] … {tail}"
