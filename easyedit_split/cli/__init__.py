"""``easyedit-split`` command line (``python -m easyedit_split.cli``): one sub-command per module of this
package (:data:`COMMANDS`; :mod:`.common` holds what several commands share).

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.

Errors: bad input raises a subclass of :class:`~easyedit_split.errors.EasyEditSplitError` (or an
``OSError`` for I/O); the CLI prints ``error: <message>`` to stderr and exits with status 2
(``-vv`` shows the traceback too). Any other exception is a bug and is shown in full.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from easyedit_split import __version__
from easyedit_split.base.progress import set_progress
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
}


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
        p.set_defaults(_run=module.run)
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else (logging.INFO if args.verbose == 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("easyedit_split").setLevel(min(level, logging.INFO))
    set_progress(not args.no_progress)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except EasyEditSplitError as exc:  # bad input: the message says what, where and what to do
        return _fail(str(exc), args.verbose)
    except OSError as exc:  # I/O: name the path
        return _fail(_describe_os_error(exc), args.verbose)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; outputs written so far are complete (partial results are kept for a rerun)\n")
        return 130
    finally:
        for note in getattr(args, "deprecated_options", None) or []:
            logging.getLogger("easyedit_split.cli").warning("%s", note)


def _describe_os_error(exc: OSError) -> str:
    if not exc.strerror:
        return str(exc)
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{exc.strerror}: {' -> '.join(paths)}" if paths else exc.strerror


def _fail(message: str, verbose: int) -> int:
    """Print ``error: message`` to stderr and return the bad-input exit status (re-raise with -vv)."""
    sys.stderr.write(f"error: {message}\n")
    if verbose >= 2:
        raise  # noqa: PLE0704 - called from an except block: show the traceback on request
    return EXIT_BAD_INPUT

