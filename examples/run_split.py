"""Run SPLIT from an hparams YAML, EasyEdit style: generate (train) the update, apply it, generate text.

    python examples/run_split.py --hparams hparams/smollm2/split_vector.yaml \
        --apply-hparams hparams/smollm2/apply_split_vector.yaml [--max-pairs 40]

The same two calls EasyEdit's BaseVectorGenerator / BaseVectorApplier make:
``generate_split(hparams, dataset)`` and ``apply_split(apply_hparams, pipline)``.
"""

from __future__ import annotations

import argparse
import logging

from easyedit_split.core.apply_hparams import ApplySplitHyperParams
from easyedit_split.core.generation import generate
from easyedit_split.core.models import load_model
from easyedit_split.data import load_builtin
from easyedit_split.easyedit.entry_points import apply_split, generate_split, remove_steering
from easyedit_split.training.hparams import SplitHyperParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hparams", default="hparams/smollm2/split_vector.yaml")
    ap.add_argument("--apply-hparams", default="hparams/smollm2/apply_split_vector.yaml")
    ap.add_argument("--max-pairs", type=int, default=None, help="train on fewer pairs (quick look)")
    ap.add_argument("--prompt", default="How do you feel when you see someone crying?")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    overrides = {"max_num_of_examples": args.max_pairs} if args.max_pairs else None
    hparams = SplitHyperParams.from_hparams(args.hparams, overrides=overrides)
    model, tokenizer = load_model(hparams.model_name_or_path)
    dataset = [{"question": p.question, "answer_matching_behavior": p.positive,
                "answer_not_matching_behavior": p.negative} for p in load_builtin(hparams.steer_train_dataset)]

    class Pipline:  # EasyEdit's model wrapper exposes .model, .tokenizer, .device
        def __init__(self, model, tokenizer):
            self.model, self.tokenizer, self.device = model, tokenizer, next(model.parameters()).device

    pipline = Pipline(model, tokenizer)
    vectors = generate_split(hparams, dataset, model=pipline)
    print("trained:", {k: tuple(v.shape) if hasattr(v, "shape") else sorted(v) for k, v in vectors.items()})

    before = generate(model, tokenizer, [args.prompt], max_new_tokens=48, progress=False)[0].text
    apply_split(ApplySplitHyperParams.from_hparams(args.apply_hparams), pipline)
    after = generate(model, tokenizer, [args.prompt], max_new_tokens=48, progress=False)[0].text
    remove_steering(pipline)
    print(f"\nprompt: {args.prompt}\nunsteered: {before}\nSPLIT:     {after}")


if __name__ == "__main__":
    main()
