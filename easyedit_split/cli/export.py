"""``easyedit-split export``: a model with an update merged at a fixed multiplier, as a plain HF folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from easyedit_split.base.checks import finite_float_arg, nonnegative_int_arg
from easyedit_split.cli.common import add_model_arguments

HELP = "export the model with an update merged at a fixed multiplier (loads with plain transformers / vLLM)"


def _is_pt(args: argparse.Namespace) -> bool:
    from easyedit_split.adapters.artefacts import is_pt_spec

    return is_pt_spec(args.update)


#: flags that apply only in some cases (see ``cli``)
FLAG_RULES = (("layer", _is_pt, "to an EasyEdit .pt update file (whose name does not give the layer)"),)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--update", required=True,
                   help="update file or folder (.safetensors, EasyEdit .pt, peft folder, edited checkpoint)")
    p.add_argument(
        "--layer", type=nonnegative_int_arg, default=None, help="layer for an EasyEdit .pt file not named layer_N.pt"
    )
    p.add_argument(
        "--multiplier", type=finite_float_arg, required=True, help="the fixed multiplier merged into the weights"
    )
    p.add_argument(
        "--output", required=True, metavar="DIR", help="output folder (must not exist unless --overwrite)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_model_arguments(p)
    p.add_argument("--no-safe-merge", action="store_true", help="skip the NaN/inf check of merged weights")


def run(args: argparse.Namespace) -> int:
    from easyedit_split.adapters.artefacts import check_spec, load_artefact
    from easyedit_split.base.atomic_io import check_writable, refuse_replacing_inputs
    from easyedit_split.core.export import check_export_destination, export_merged
    from easyedit_split.core.models import load_model
    from easyedit_split.errors import OutputError

    check_spec(args.update, what="--update")  # before the model load: the update, then the output
    check_writable(Path(args.output).parent, what="the folder of --output")
    refuse_replacing_inputs(args.output, {"the --update": args.update, "the --model folder": args.model},
                            what="--output", replaces_folder=True)
    if Path(args.output).exists() and not args.overwrite:
        raise OutputError(f"--output {args.output} already exists; pass --overwrite to replace it, or choose another "
                          "folder")
    check_export_destination(args.output, overwrite=args.overwrite)
    model, tok = load_model(args.model, dtype=args.dtype, device=args.device)
    updates = load_artefact(args.update, model, layer=args.layer).updates
    result = export_merged(
        model,
        tok,
        updates,
        args.multiplier,
        args.output,
        safe_merge=not args.no_safe_merge,
        overwrite=args.overwrite,
    )
    changes = ", ".join(f"{k}={v}" for k, v in result.config_changes.items()) or "none"
    sys.stdout.write(
        f"exported {len(updates)} update(s) merged at m={result.multiplier:g} into {', '.join(result.merged_modules)}\n"
        f"config changes: {changes}; zero biases added: {len(result.zero_biases)}\n"
        f"load it with AutoModelForCausalLM.from_pretrained({str(result.output_dir)!r})\n"
    )
    return 0
