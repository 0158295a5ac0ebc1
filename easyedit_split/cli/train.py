"""``easyedit-split train``: train SPLIT (or SFT, RePS, DPO, DiffMean) updates from an hparams YAML."""

from __future__ import annotations

import argparse
import contextlib
import sys

from easyedit_split.cli.common import add_device_map_arguments

HELP = "train steering updates (split, sft, reps, dpo, diffmean) from an EasyEdit-style hparams YAML"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hparams", required=True, help="hparams YAML (EasyEdit key names; alg_name picks the method)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override hparams keys (values parsed as YAML)")
    p.add_argument("--model", default=None, help="model folder / built-in name (default: hparams model_name_or_path)")
    p.add_argument("--data", default=None, help="data file or built-in dataset (default: hparams steer_train_dataset)")
    p.add_argument("--module-path", dest="module_path", default=None,
                   help="module the update sits on instead of the component, e.g. 'model.layers.{layer}.mlp.down_proj' ('{layer}' = the layer) (hparams key intervention_module_path)")
    p.add_argument("--output", default=None, help="output folder (default: hparams steer_vector_output_dir)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace existing layer_L files in the output folder")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars or progress log lines (same as before the command)")
    add_device_map_arguments(p)


def run(args: argparse.Namespace) -> int:
    from easyedit_split.base.atomic_io import check_writable, output_lock, refuse_existing
    from easyedit_split.base.hparams_io import parse_overrides
    from easyedit_split.core.distributed import current
    from easyedit_split.training.api import load_train_hparams, output_folder, train_layers

    overrides = parse_overrides(args.overrides)
    if args.model:
        overrides["model_name_or_path"] = args.model
    if args.data:
        overrides["steer_train_dataset"] = args.data
    if args.output:
        overrides["steer_vector_output_dir"] = args.output
    if args.module_path:
        overrides["intervention_module_path"] = args.module_path
    hp = load_train_hparams(args.hparams, overrides)
    folder = output_folder(hp) if hp.save_vectors else None
    main = current().is_main  # under torchrun every rank trains on its share of each batch; rank 0 writes
    if folder is not None and main:  # before any work: a location that cannot be written, or files that would be replaced
        check_writable(folder, what="output folder (--output / steer_vector_output_dir)")
        refuse_existing([folder / f"layer_{layer}.{ext}" for layer in hp.layers for ext in ("safetensors", "pt")],
                        overwrite=args.overwrite or args.resume)
    lock = output_lock(folder, what="output folder") if folder is not None and main else contextlib.nullcontext()
    with lock:
        result = train_layers(hp, resume=args.resume, progress=not getattr(args, "no_progress", False),
                              device_map=args.device_map, max_memory=args.max_memory)
    if not main:
        return 0
    for r in result.layers:
        loss = r.final_loss
        tail = f", final loss {loss:.4f}" if loss is not None else ""
        easyedit = f"EasyEdit: {r.easyedit_path}" if r.easyedit_path is not None else "no EasyEdit .pt"
        where = f"{r.path} ({easyedit})" if r.path is not None else "not saved"
        sys.stdout.write(f"{result.method} {r.update.form_key} layer {r.layer}: {where}{tail}\n")
    if result.output_dir is None:
        sys.stdout.write("save_vectors is false: nothing was written\n")
    return 0
