"""One rule for showing progress, used by every long loop of the package.

* on a terminal (stderr is a TTY): a tqdm bar, removed when done;
* otherwise (a log file, a pipe, CI): an INFO log line when the loop starts, every
  :data:`LOG_EVERY_SECONDS` while it runs, and when it ends — no carriage-return bars in log files;
* off: nothing, with ``enabled=False`` for one loop or :func:`set_progress` (``False``) for the
  whole process (the CLI's global ``--no-progress``).

``progress(iterable, desc=..., unit=...)`` wraps an iterable; ``progress(total=N, desc=...)`` gives
an object with ``update(n)``, ``set_postfix(**values)`` and ``close()`` (also a context manager).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["LOG_EVERY_SECONDS", "LogProgress", "is_bar_writer", "progress", "progress_enabled", "set_progress"]

#: seconds between two log lines of one loop when the output is not a terminal
LOG_EVERY_SECONDS = 30.0
#: a loop that ends sooner than this logs no "done" line (its "started" line is enough)
QUIET_BELOW_SECONDS = 1.0

_STATE = {"enabled": True}


def is_bar_writer(module_name: str) -> bool:
    """True for the module a terminal bar writes from (tqdm's own code): the CLI's sanitised stderr keeps
    that write's carriage returns, so the bar redraws in place."""
    return module_name.split(".")[0] == "tqdm"


def set_progress(enabled: bool) -> None:
    """Turn progress reporting on or off for the whole process (the CLI's ``--no-progress``)."""
    _STATE["enabled"] = bool(enabled)


def progress_enabled() -> bool:
    return _STATE["enabled"]


def _on_terminal() -> bool:
    stream = sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


class _Silent:
    """Progress that shows nothing."""

    def __init__(self, iterable: Iterable | None = None):
        self._iterable = iterable

    def __iter__(self) -> Iterator:
        return iter(self._iterable if self._iterable is not None else ())

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LogProgress(_Silent):
    """Progress as INFO log lines: at the start, every ``every`` seconds, and at the end."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, every: float | None = None, clock=None):
        super().__init__(iterable)
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.n = total, desc, unit, int(initial)
        self.every = LOG_EVERY_SECONDS if every is None else float(every)
        self._clock = clock or time.monotonic
        self._start = self._last = self._clock()
        self._postfix = ""
        self._closed = False
        logger.info("%s: started (%s)", desc, self._count())

    def _count(self) -> str:
        if self.total:
            return f"{self.n}/{self.total} {self.unit}, {100.0 * self.n / self.total:.0f}%"
        return f"{self.n} {self.unit}"

    def _line(self, now: float) -> str:
        elapsed = now - self._start
        text = f"{self.desc}: {self._count()}, {elapsed:.0f} s"
        if self.total and 0 < self.n < self.total:
            text += f", about {elapsed / self.n * (self.total - self.n):.0f} s left"
        return text + (f" ({self._postfix})" if self._postfix else "")

    def __iter__(self) -> Iterator:
        for item in super().__iter__():
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = self._clock()
        if now - self._last >= self.every:
            self._last = now
            logger.info("%s", self._line(now))

    def set_postfix(self, **values: Any) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            now = self._clock()
            if now - self._start >= QUIET_BELOW_SECONDS:
                logger.info("%s: done, %s", self.desc, self._line(now).split(": ", 1)[1])


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True, initial: int = 0, leave: bool = False):
    """A progress reporter for one loop: a tqdm bar on a terminal, INFO log lines otherwise, nothing when off."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if not (enabled and _STATE["enabled"]) or total == 0:  # off, or nothing to do
        return _Silent(iterable)
    if _on_terminal():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave)
    return LogProgress(iterable, total=total, desc=desc, unit=unit, initial=initial)
