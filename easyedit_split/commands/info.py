"""``easyedit-split info``: the architecture of a model and the resolved sites of every layer."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "print a model's architecture and the resolved intervention sites of every layer"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="HF folder, hub id (cached), .gguf file, or a built-in name (default: smollm2)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")


def run(args: argparse.Namespace) -> int:
    from ..models import load_model
    from ..sites import arch_spec, describe_sites, hidden_size, model_type

    model, _ = load_model(args.model, dtype=args.dtype)
    rows = describe_sites(model)
    summary = {
        "class": type(model).__name__,
        "model_type": model_type(model),
        "known_architecture": arch_spec(model) is not None,
        "hidden_size": hidden_size(model),
        "num_layers": len(rows),
        "sites": rows,
    }
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    out.write(f"{summary['class']} (model_type={summary['model_type']}, hidden_size={summary['hidden_size']}, "
              f"{summary['num_layers']} layers, table entry: {'yes' if summary['known_architecture'] else 'no'})\n")
    for row in rows:
        out.write(f"layer {row['layer']:>3}: residual={row['residual']}\n")
        out.write(f"           mlp_down={row['mlp_down']}\n")
        out.write(f"           attn_out={row['attn_out']}\n")
        out.write(f"           residual vector merges into: {row['residual_merge_target'] or 'nothing (hook mode only)'}\n")
    return 0
