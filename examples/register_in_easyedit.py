"""Register the plugin into an EasyEdit checkout and select SPLIT by ``alg_name``.

    python examples/register_in_easyedit.py --easyedit /path/to/EasyEdit --hparams hparams/smollm2/split_vector.yaml

After ``register_with_easyedit()``, EasyEdit's own registries resolve ``split`` (and upstream's
spelling ``spilt``): ``HYPERPARAMS_CLASS_DICT[alg_name]['train'].from_hparams(path)`` builds the
hyperparameters and ``METHODS_CLASS_DICT[alg_name]['train'](hparams, dataset)`` trains — exactly
what EasyEdit's ``BaseVectorGenerator`` does for its built-in methods. Without ``--easyedit`` the
script uses the plugin's own registry, which has the same shape.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

import easyedit_split
from easyedit_split.data import load_builtin
from easyedit_split.hparams import load_yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--easyedit", default=None, help="path of an EasyEdit checkout (its steer/ package)")
    ap.add_argument("--hparams", default="hparams/smollm2/split_vector.yaml")
    ap.add_argument("--max-pairs", type=int, default=40)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.easyedit:
        sys.path.insert(0, args.easyedit)
    registered = easyedit_split.register_with_easyedit()
    if registered:
        tables = importlib.import_module(registered[0])
        print(f"registered into {registered[0]}")
    else:
        from easyedit_split import registry as tables
        print("EasyEdit not importable: using the plugin's own registry (same shape)")

    alg_name = load_yaml(args.hparams)["alg_name"]
    hparams = tables.HYPERPARAMS_CLASS_DICT[alg_name]["train"].from_hparams(
        args.hparams, overrides={"max_num_of_examples": args.max_pairs})
    train_fn = tables.METHODS_CLASS_DICT[alg_name]["train"]
    if isinstance(train_fn, str):  # a METHOD_FNS-style lazy target
        module, _, fn = train_fn.partition(":")
        train_fn = getattr(importlib.import_module(module), fn)
    dataset = [{"question": p.question, "answer_matching_behavior": p.positive,
                "answer_not_matching_behavior": p.negative} for p in load_builtin("psychopathy")]
    vectors = train_fn(hparams, dataset)
    print(f"alg_name={alg_name!r} -> {train_fn.__name__}: {sorted(vectors)} saved under {hparams.steer_vector_output_dir}")


if __name__ == "__main__":
    main()
