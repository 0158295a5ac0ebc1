"""``easyedit-split compare``: several updates on the same pairs and multipliers, one report."""

from __future__ import annotations

import argparse

from easyedit_split.cli.common import EVALUATION_FLAG_RULES, add_evaluation_arguments, run_evaluation
from easyedit_split.errors import InputError

HELP = "compare several updates (NAME=PATH each) on the same data: one preference-utility report"


def parse_named(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, spec = v.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise InputError(f"--update {v!r}: use NAME=PATH (or NAME=diffmean@LAYER)")
        if name.strip() in out:
            raise InputError(f"--update: the name {name.strip()!r} is used twice")
        out[name.strip()] = spec.strip()
    if len(out) < 1:
        raise InputError("give at least one --update NAME=PATH")
    return out


FLAG_RULES = EVALUATION_FLAG_RULES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--update", action="append", required=True, metavar="NAME=PATH",
                   help="a named update (repeat); PATH as for `sweep`, or diffmean@LAYER")
    add_evaluation_arguments(p)


def run(args: argparse.Namespace) -> int:
    return run_evaluation(args, parse_named(args.update))
