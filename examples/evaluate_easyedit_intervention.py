"""Load an EasyEdit-trained intervention file (``layer_{L}.pt``) and evaluate it.

    python examples/evaluate_easyedit_intervention.py PATH/layer_15.pt [--multipliers -4,-2,0,2,4]

EasyEdit's files are read with ``torch.load(weights_only=True)``: a vector (a tensor or
``{"proj.weight": ...}``) becomes a residual-stream VectorUpdate, ``lora_A``/``lora_B`` a LoRAUpdate
and ``weight``/``bias`` a LocalWeightUpdate on the MLP down-projection (EasyEdit's ``mlp_mid``).
Without a path, ``--demo`` writes a DiffMean vector in EasyEdit's layout first.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from easyedit_split.adapters.builders import from_easyedit_pt
from easyedit_split.core.models import load_model
from easyedit_split.data import load_builtin, train_test_split
from easyedit_split.evaluation import evaluate_preference_utility
from easyedit_split.training import diffmean_update
from easyedit_split.training.hparams import DiffMeanHyperParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", nargs="?", help="an EasyEdit layer_{L}.pt")
    ap.add_argument("--demo", action="store_true", help="write a demo layer_15.pt (DiffMean) and evaluate it")
    ap.add_argument("--multipliers", default="-4,-2,-1,0,1,2,4")
    ap.add_argument("--n-eval", type=int, default=30)
    ap.add_argument("--output", default="runs/easyedit_pt")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model, tok = load_model()
    train, test = train_test_split(load_builtin("psychopathy"), 100, seed=0)
    path = args.path
    if path is None:
        if not args.demo:
            ap.error("give a layer_{L}.pt path, or --demo")
        hp = DiffMeanHyperParams.from_dict({"alg_name": "diffmean", "layers": [15], "system_prompt": ""})
        vec = diffmean_update(model, tok, train[:80], hp).vector.detach()
        path = Path(args.output) / "layer_15.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(vec, path)  # EasyEdit's vector layout: a bare tensor
    update = from_easyedit_pt(path, model)
    print(f"{path}: {update.form} update at {update.site}")
    ms = [float(x) for x in args.multipliers.split(",")]
    result = evaluate_preference_utility(model, tok, {"easyedit": update}, test[: args.n_eval], ms,
                                         output_dir=Path(args.output) / "report")
    print(result.only.summary[["m", "accuracy", "pref", "util"]].to_string(index=False))
    print(f"report: {Path(args.output) / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
