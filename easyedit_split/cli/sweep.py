"""``easyedit-split sweep``: preference–utility evaluation of one update over a multiplier grid."""

from __future__ import annotations

import argparse

from easyedit_split.cli.common import EVALUATION_FLAG_RULES, add_evaluation_arguments, run_evaluation

HELP = "sweep one update over multipliers: PrefOdds/UtilOdds, fitted curves, valid region, report"


FLAG_RULES = EVALUATION_FLAG_RULES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--update", required=True,
                   help="update file/folder (.safetensors, EasyEdit .pt, peft folder, edited checkpoint) "
                        "or diffmean@LAYER to build a DiffMean vector from the training pairs")
    add_evaluation_arguments(p)


def run(args: argparse.Namespace) -> int:
    return run_evaluation(args, {"": args.update})
