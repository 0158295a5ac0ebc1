"""``easyedit-split`` command line: one sub-command per module in :mod:`easyedit_split.commands`.

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

from . import __version__
from .errors import EXIT_BAD_INPUT, EasyEditSplitError

#: sub-command → module (imported only when that command runs, or for --help)
COMMANDS: dict[str, str] = {
    "info": "easyedit_split.commands.info",
    "train": "easyedit_split.commands.train",
    "sweep": "easyedit_split.commands.sweep",
    "compare": "easyedit_split.commands.compare",
    "generate": "easyedit_split.commands.generate",
    "export": "easyedit_split.commands.export",
    "run": "easyedit_split.commands.run",
    "easyedit": "easyedit_split.commands.easyedit",
}

#: commands that share their work over the ranks of a torchrun job (the others run in one process)
DISTRIBUTED_COMMANDS = frozenset({"train", "sweep", "compare"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="easyedit-split",
        description="SPLIT steering and preference-utility analysis (EasyEdit plugin).",
    )
    parser.add_argument("--version", action="version", version=f"easyedit-split {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
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
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else (logging.INFO if args.verbose == 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("easyedit_split").setLevel(min(level, logging.INFO))
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return _run_command(args)
    except EasyEditSplitError as exc:  # bad input: the message says what, where and what to do
        return _fail(str(exc), args.verbose)
    except OSError as exc:  # I/O: name the path
        return _fail(_describe_os_error(exc), args.verbose)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; outputs written so far are complete (partial results are kept for a rerun)\n")
        return 130


def _run_command(args: argparse.Namespace) -> int:
    """Run the command; under torchrun (``WORLD_SIZE`` > 1) inside a process group that is destroyed after."""
    from .distributed import DistributedError, context_from_env, distributed

    if not context_from_env().enabled:
        return int(args._run(args) or 0)
    if args.command not in DISTRIBUTED_COMMANDS:
        raise DistributedError(f"`{args.command}` runs in one process; start it without torchrun "
                               f"(under torchrun: {', '.join(sorted(DISTRIBUTED_COMMANDS))})")
    with distributed():
        return int(args._run(args) or 0)


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


if __name__ == "__main__":
    sys.exit(main())
