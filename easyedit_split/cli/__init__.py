"""``easyedit-split`` command line (``python -m easyedit_split.cli``): one sub-command per module of this
package (:data:`COMMANDS`; :mod:`.common` holds what several commands share).

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.

Errors: bad input raises a subclass of :class:`~easyedit_split.errors.EasyEditSplitError` (or an
``OSError`` for I/O); the CLI prints ``error: <message>`` to stderr and exits with status 2
(``-vv`` shows the traceback too). Any other exception is a bug and is shown in full.

Everything the CLI prints (results, log records, error messages) passes through
:func:`~easyedit_split.safe_text.printable`, so text from a file cannot drive the terminal; an error
message is cut to :data:`~easyedit_split.safe_text.MAX_MESSAGE_CHARS`.

Options: ``key=value`` overrides may come anywhere on the line (also after options). A command module
may define ``FLAG_RULES``: ``(dest, applies(args) -> bool, when)`` rows; a flag given (not at its default)
where it does not apply is refused (``--layer`` with an update that is not an EasyEdit ``.pt``), instead
of being silently ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

from easyedit_split import __version__
from easyedit_split.base.progress import is_bar_writer, set_progress
from easyedit_split.base.safe_text import capped, printable, progress_printable
from easyedit_split.cli.common import HelpFormatter
from easyedit_split.errors import EXIT_BAD_INPUT, EasyEditSplitError

#: sub-command → module (imported only when that command runs, or for --help)
COMMANDS: dict[str, str] = {
    "info": "easyedit_split.cli.info",
    "train": "easyedit_split.cli.train",
    "sweep": "easyedit_split.cli.sweep",
    "compare": "easyedit_split.cli.compare",
    "generate": "easyedit_split.cli.generate",
    "export": "easyedit_split.cli.export",
    "run": "easyedit_split.cli.run",
    "easyedit": "easyedit_split.cli.easyedit",
    "bench": "easyedit_split.cli.bench",
}

#: commands that run under torchrun (``WORLD_SIZE`` > 1) → whether they share their sweeps and training over
#: the ranks (:func:`easyedit_split.core.distributed.distributed`); the others run in one process only.
#: ``bench`` gives each rank its own cells (or concepts), so its sweeps and training stay rank-local.
DISTRIBUTED_COMMANDS: dict[str, bool] = {"train": True, "sweep": True, "compare": True, "bench": False}
#: how long a command's ranks wait for each other at a collective (default 30 min): a benchmark rank that
#: finished its cells waits at the final barrier for the slowest rank's cells
DISTRIBUTED_TIMEOUT_S: dict[str, float] = {"bench": 24 * 3600.0}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="easyedit-split",
        description="SPLIT steering and preference-utility analysis (EasyEdit plugin).",
    )
    parser.add_argument("--version", action="version", version=f"easyedit-split {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    parser.add_argument("--no-progress", dest="no_progress", action="store_true",
                        help="no progress bars (on a terminal) or progress log lines (otherwise)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # command not available in this build
            raise
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        if "no_progress" not in {a.dest for a in p._actions}:  # the global flag, also accepted after the command
            p.add_argument("--no-progress", dest="no_progress", action="store_true", default=argparse.SUPPRESS,
                           help="no progress bars or progress log lines (same as before the command)")
        p.set_defaults(_run=module.run, _parser=p, _flag_rules=getattr(module, "FLAG_RULES", ()))
    for p in _all_parsers(parser):
        p.formatter_class = HelpFormatter  # every --help shows the defaults
    return parser


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every sub-command parser under it, nested ones included."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _all_parsers(sub)
    return found


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` overrides given after an option join the command's overrides."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides"):
        moved = [a for a in extra if "=" in a and not a.startswith("-")]
        args.overrides = [*(args.overrides or []), *moved]
        extra = [a for a in extra if a not in moved]
    if extra:
        (getattr(args, "_parser", None) or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _option_name(parser: argparse.ArgumentParser, dest: str) -> str:
    for action in parser._actions:
        if action.dest == dest:
            return "/".join(action.option_strings) or dest
    return dest


def _refuse_inapplicable_flags(args: argparse.Namespace) -> None:
    """A flag given (not at its default) where its command's ``FLAG_RULES`` say it does not apply is an
    error, instead of a flag that silently does nothing."""
    parser = getattr(args, "_parser", None)
    for dest, applies, when in getattr(args, "_flag_rules", ()):
        if parser is None or getattr(args, dest, None) == parser.get_default(dest):
            continue
        if not applies(args):
            from easyedit_split.errors import InputError

            typed = (getattr(args, "option_spellings", None) or {}).get(dest)  # an old spelling, as typed
            raise InputError(f"{typed or _option_name(parser, dest)} does nothing here: it applies only {when}; "
                             "leave it out")


class _SafeStream:
    """A text stream whose writes pass through :func:`printable` (everything else is the stream's)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if is_bar_writer(caller):  # a progress bar redrawing itself keeps its \r
            return self._stream.write(progress_printable(text))
        return self._stream.write(printable(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _SafeFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


@contextlib.contextmanager
def _safe_output() -> Iterator[None]:
    """stdout and stderr sanitised while a command runs (restored afterwards)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _SafeStream(saved[0]), _SafeStream(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    level = logging.WARNING if args.verbose == 0 else (logging.INFO if args.verbose == 1 else logging.DEBUG)
    if not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(_SafeFormatter("%(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("easyedit_split").setLevel(min(level, logging.INFO))
    set_progress(not args.no_progress)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    with _safe_output():
        try:
            _refuse_inapplicable_flags(args)
            return _run_command(args)
        except EasyEditSplitError as exc:  # bad input: the message says what, where and what to do
            return _fail(str(exc), args.verbose)
        except OSError as exc:  # I/O: name the path
            return _fail(_describe_os_error(exc), args.verbose)
        except MemoryError:
            return _fail("out of memory; a size in the input (a rank, a batch size, a number of pairs or "
                         "tokens) is too large for this machine — lower it", args.verbose)
        except KeyboardInterrupt:
            sys.stderr.write("interrupted; outputs written so far are complete (partial results are kept for a rerun)\n")
            return 130
        finally:
            for note in getattr(args, "deprecated_options", None) or []:
                logging.getLogger("easyedit_split.cli").warning("%s", note)


def _run_command(args: argparse.Namespace) -> int:
    """Run the command; under torchrun inside a process group that is destroyed afterwards."""
    from easyedit_split.core.distributed import DistributedError, context_from_env, distributed

    if not context_from_env().enabled:
        return int(args._run(args) or 0)
    if args.command not in DISTRIBUTED_COMMANDS:
        raise DistributedError(f"`{args.command}` runs in one process; start it without torchrun "
                               f"(under torchrun: {', '.join(sorted(DISTRIBUTED_COMMANDS))})")
    with distributed(share=DISTRIBUTED_COMMANDS[args.command],
                     timeout_s=DISTRIBUTED_TIMEOUT_S.get(args.command, 1800.0)):
        return int(args._run(args) or 0)


def _describe_os_error(exc: OSError) -> str:
    if not exc.strerror:
        return str(exc)
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{exc.strerror}: {' -> '.join(paths)}" if paths else exc.strerror


def _fail(message: str, verbose: int) -> int:
    """Print ``error: message`` to stderr and return the bad-input exit status (re-raise with -vv)."""
    sys.stderr.write(f"error: {printable(capped(message))}\n")
    if verbose >= 2:
        raise  # noqa: PLE0704 - called from an except block: show the traceback on request
    return EXIT_BAD_INPUT

