"""Register the plugin into an EasyEdit checkout and select SPLIT by ``alg_name``.

    python examples/register_in_easyedit.py --easyedit /path/to/EasyEdit [--hparams hparams/smollm2/split_vector.yaml]
    python examples/register_in_easyedit.py                      # without EasyEdit: the plugin's own registry

After ``register_with_easyedit()``, EasyEdit's own registries resolve ``split`` (and upstream's
spelling ``spilt``). The script then does what EasyEdit's ``BaseVectorGenerator`` does: builds the
hyperparameters as ``HYPERPARAMS_CLASS_DICT[alg_name]['train'](**keys it knows)`` and trains with
``METHODS_CLASS_DICT[alg_name]['train'](hparams, dataset, dataset_name=...)``, which loads the model
itself. EasyEdit picks its model wrapper from the model *path* (a family name such as ``llama`` in
it), so the model (``--model``, default the built-in SmolLM2, a Llama) is given to it as a folder of
links named ``<name>-<model_type>`` under ``--output``. Vectors go to ``--output`` (never into the
repository); existing ``layer_L`` files there are refused unless ``--overwrite``. ``--keep-upstream``
keeps EasyEdit's own ``spilt``/``sft``/``reps`` (which cannot run on transformers 5).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--easyedit", default=None, help="path of an EasyEdit checkout (its steer/ package)")
    ap.add_argument("--hparams", default="hparams/smollm2/split_vector.yaml")
    ap.add_argument("--model", default="smollm2", help="model folder or built-in name (default: smollm2)")
    ap.add_argument("--layer", type=int, default=None, help="steered layer (default: the hparams file's)")
    ap.add_argument("--max-pairs", type=int, default=40, help="training pairs")
    ap.add_argument("--output", default="runs/examples/register_in_easyedit", help="where the vectors are written")
    ap.add_argument("--overwrite", action="store_true", help="replace layer_L files from an earlier run")
    ap.add_argument("--keep-upstream", action="store_true", help="keep EasyEdit's own spilt/sft/reps entries")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import easyedit_split
    from easyedit_split.base.atomic_io import refuse_existing
    from easyedit_split.base.hparams_io import load_yaml
    from easyedit_split.data import load_builtin
    from easyedit_split.editing.compare import easyedit_model_dir
    from easyedit_split.errors import OutputError

    if args.easyedit:
        sys.path.insert(0, args.easyedit)
    registered = easyedit_split.register_with_easyedit(keep_upstream=args.keep_upstream)
    if registered:
        tables = importlib.import_module(registered[0])
        print(f"registered into {registered[0]}")
    else:
        if args.easyedit:
            ap.error(f"EasyEdit's steering registry could not be imported from {args.easyedit} (see the warning above)")
        from easyedit_split.easyedit import registry as tables
        print("EasyEdit not importable: using the plugin's own registry (same shape)")

    out = Path(args.output)
    config = load_yaml(args.hparams)
    config["max_num_of_examples"] = args.max_pairs
    config["steer_vector_output_dir"] = str(out / "vectors")
    config["model_name_or_path"] = str(easyedit_model_dir(args.model, out / "models"))
    if args.layer is not None:
        config["layers"] = [args.layer]
    alg_name = config["alg_name"]
    hp_cls = tables.HYPERPARAMS_CLASS_DICT[alg_name]["train"]
    hparams = hp_cls(**{k: v for k, v in config.items() if k in hp_cls.__dataclass_fields__})
    try:  # before any work
        refuse_existing(sorted((out / "vectors").rglob("layer_*")), overwrite=args.overwrite)
    except OutputError as exc:
        ap.error(str(exc))
    train_fn = tables.METHODS_CLASS_DICT[alg_name]["train"]
    dataset = [{"question": p.question, "matching": p.positive, "not_matching": p.negative}
               for p in load_builtin("psychopathy")]
    vectors = train_fn(hparams, dataset, dataset_name="psychopathy")
    written = sorted(str(p) for p in Path(hparams.steer_vector_output_dir).rglob("layer_*"))
    print(f"alg_name={alg_name!r} -> {getattr(train_fn, '__name__', train_fn)}: {sorted(vectors)}; wrote {written}")


if __name__ == "__main__":
    main()
