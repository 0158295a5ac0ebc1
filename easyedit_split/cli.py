"""``easyedit-split`` command line: one sub-command per module in :mod:`easyedit_split.commands`.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__

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
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        logging.getLogger("easyedit_split").error("%s", exc)
        if args.verbose >= 2:
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
