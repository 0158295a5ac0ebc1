"""Run SPLIT from an hparams YAML, EasyEdit style: generate (train) the update, apply it, generate text.

    python examples/run_split.py --hparams hparams/smollm2/split_vector.yaml \
        --apply-hparams hparams/smollm2/apply_split_vector.yaml [--max-pairs 40]

The same two calls EasyEdit's BaseVectorGenerator / BaseVectorApplier make:
``generate_split(hparams, dataset)`` and ``apply_split(apply_hparams, pipline)``. The update is written
under ``--output`` (default ``runs/examples/run_split``, never into the repository) and read back from
there by the apply step; files of an earlier run are refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from easyedit_split.base.atomic_io import refuse_existing
from easyedit_split.core.apply_hparams import ApplySplitHyperParams
from easyedit_split.core.generation import generate
from easyedit_split.core.models import load_model
from easyedit_split.data import load_builtin
from easyedit_split.easyedit.entry_points import apply_split, generate_split, remove_steering
from easyedit_split.errors import OutputError
from easyedit_split.training.api import output_folder
from easyedit_split.training.hparams import SplitHyperParams


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hparams", default="hparams/smollm2/split_vector.yaml")
    ap.add_argument("--apply-hparams", default="hparams/smollm2/apply_split_vector.yaml")
    ap.add_argument("--max-pairs", type=int, default=None, help="train on fewer pairs (quick look)")
    ap.add_argument("--prompt", default="How do you feel when you see someone crying?")
    ap.add_argument("--model", default=None, help="model folder or built-in name (default: the hparams file's)")
    ap.add_argument("--layer", type=int, default=None, help="steered layer (default: the hparams files')")
    ap.add_argument("--output", default="runs/examples/run_split", help="where the update is written")
    ap.add_argument("--overwrite", action="store_true", help="replace layer_L files from an earlier run")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    overrides = {"steer_vector_output_dir": args.output}
    if args.max_pairs:
        overrides["max_num_of_examples"] = args.max_pairs
    if args.model:
        overrides["model_name_or_path"] = args.model
    if args.layer is not None:
        overrides["layers"] = [args.layer]
    hparams = SplitHyperParams.from_hparams(args.hparams, overrides=overrides)
    folder = output_folder(hparams)
    try:  # before any work
        refuse_existing([folder / f"layer_{layer}.{ext}" for layer in hparams.layers for ext in ("safetensors", "pt")],
                        overwrite=args.overwrite)
    except OutputError as exc:
        ap.error(str(exc))
    model, tokenizer = load_model(hparams.model_name_or_path)
    dataset = [{"question": p.question, "answer_matching_behavior": p.positive,
                "answer_not_matching_behavior": p.negative} for p in load_builtin(hparams.steer_train_dataset)]

    class Pipline:  # EasyEdit's model wrapper exposes .model, .tokenizer, .device
        def __init__(self, model, tokenizer):
            self.model, self.tokenizer, self.device = model, tokenizer, next(model.parameters()).device

    pipline = Pipline(model, tokenizer)
    vectors = generate_split(hparams, dataset, model=pipline)
    print("trained:", {k: tuple(v.shape) if hasattr(v, "shape") else sorted(v) for k, v in vectors.items()})

    apply_overrides = {"steer_vector_load_dir": str(folder)}
    if args.layer is not None:
        apply_overrides["layers"] = [args.layer]
    apply_hp = ApplySplitHyperParams.from_hparams(args.apply_hparams, overrides=apply_overrides)
    before = generate(model, tokenizer, [args.prompt], max_new_tokens=48, progress=False)[0].text
    apply_split(apply_hp, pipline)
    after = generate(model, tokenizer, [args.prompt], max_new_tokens=48, progress=False)[0].text
    remove_steering(pipline)
    print(f"update: {Path(folder)}\nprompt: {args.prompt}\nunsteered: {before}\nSPLIT:     {after}")


if __name__ == "__main__":
    main()
