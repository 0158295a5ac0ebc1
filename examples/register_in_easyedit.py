"""Register the plugin into an EasyEdit checkout and select SPLIT by ``alg_name``.

    python examples/register_in_easyedit.py --easyedit /path/to/EasyEdit --hparams hparams/smollm2/split_vector.yaml

After ``register_with_easyedit()``, EasyEdit's own registries resolve ``split`` (and upstream's
spelling ``spilt``). The script then does what EasyEdit's ``BaseVectorGenerator`` does: builds the
hyperparameters as ``HYPERPARAMS_CLASS_DICT[alg_name]['train'](**keys it knows)`` and trains with
``get_method_fn(alg_name, 'train')(hparams, dataset, dataset_name=...)``. Without ``--easyedit`` it
uses the plugin's own registry, which has the same shape. ``--keep-upstream`` keeps EasyEdit's own
``spilt``/``sft``/``reps`` (which cannot run on transformers 5).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--easyedit", default=None, help="path of an EasyEdit checkout (its steer/ package)")
    ap.add_argument("--hparams", default="hparams/smollm2/split_vector.yaml")
    ap.add_argument("--max-pairs", type=int, default=40)
    ap.add_argument("--keep-upstream", action="store_true", help="keep EasyEdit's own spilt/sft/reps entries")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import easyedit_split
    from easyedit_split.base.hparams_io import load_yaml
    from easyedit_split.data import load_builtin

    if args.easyedit:
        sys.path.insert(0, args.easyedit)
    registered = easyedit_split.register_with_easyedit(keep_upstream=args.keep_upstream)
    if registered:
        tables = importlib.import_module(registered[0])
        print(f"registered into {registered[0]}")
    else:
        from easyedit_split.easyedit import registry as tables
        print("EasyEdit not importable: using the plugin's own registry (same shape)")

    config = load_yaml(args.hparams)
    config["max_num_of_examples"] = args.max_pairs
    alg_name = config["alg_name"]
    hp_cls = tables.HYPERPARAMS_CLASS_DICT[alg_name]["train"]
    hparams = hp_cls(**{k: v for k, v in config.items() if k in hp_cls.__dataclass_fields__})
    train_fn = tables.METHODS_CLASS_DICT[alg_name]["train"]
    dataset = [{"question": p.question, "matching": p.positive, "not_matching": p.negative}
               for p in load_builtin("psychopathy")]
    vectors = train_fn(hparams, dataset, dataset_name="psychopathy")
    print(f"alg_name={alg_name!r} -> {train_fn.__name__}: {sorted(vectors)} saved under {hparams.steer_vector_output_dir}")


if __name__ == "__main__":
    main()
