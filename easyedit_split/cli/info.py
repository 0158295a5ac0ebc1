"""``easyedit-split info``: the architecture of a model and the resolved sites of every layer."""

from __future__ import annotations

import argparse
import json
import sys

from easyedit_split.cli.common import add_model_arguments

HELP = "print a model's architecture and the resolved intervention sites of every layer"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from easyedit_split.core.models import load_model
    from easyedit_split.core.sites import describe_model, describe_sites, hidden_size

    model, _ = load_model(args.model, dtype=args.dtype, device=args.device)
    where = describe_model(model)
    rows = describe_sites(model)
    summary = {
        "class": type(model).__name__,
        "model_type": where["model_type"],
        "known_architecture": where["table_row"],
        "hidden_size": hidden_size(model),
        "num_layers": len(rows),
        "layers": where["layers"],
        "final_norm": where["final_norm"],
        "inferred": where["inferred"],
        "sites": rows,
    }
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    out.write(f"{summary['class']} (model_type={summary['model_type']}, hidden_size={summary['hidden_size']}, "
              f"{summary['num_layers']} layers, table entry: {'yes' if summary['known_architecture'] else 'no'})\n")
    out.write(f"decoder layers: {summary['layers']}; final norm: {summary['final_norm'] or 'none'}\n")
    inferred = ", ".join(summary["inferred"]) or "nothing (all from the table)"
    out.write(f"found by module names and shapes: {inferred}\n")
    for row in rows:
        mark = {comp: " (inferred)" if comp in row["inferred"] else "" for comp in ("mlp_down", "attn_out", "residual_writer")}
        merge = row["residual_merge_target"] or f"nothing, hook mode only: {row['residual_merge_blocked_by']}"
        out.write(f"layer {row['layer']:>3}: residual={row['residual']}\n")
        out.write(f"           mlp_down={row['mlp_down']}{mark['mlp_down']}\n")
        out.write(f"           attn_out={row['attn_out']}{mark['attn_out']}\n")
        out.write(f"           residual vector merges into: {merge}{mark['residual_writer']}\n")
    return 0
