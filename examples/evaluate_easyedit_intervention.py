"""Load an EasyEdit-trained intervention file (``layer_{L}.pt``) and evaluate it.

    python examples/evaluate_easyedit_intervention.py PATH/layer_15.pt [--multipliers=-4:4:17]
    python examples/evaluate_easyedit_intervention.py --demo

EasyEdit's files are read with ``torch.load(weights_only=True)``: a vector (a tensor or
``{"proj.weight": ...}``) becomes a residual-stream VectorUpdate, ``lora_A``/``lora_B`` a LoRAUpdate
and ``weight``/``bias`` a LocalWeightUpdate on the MLP down-projection (EasyEdit's ``mlp_mid``).
``--demo`` first writes a DiffMean vector in EasyEdit's layout (``<output>/layer_15.pt``) and evaluates
that. Prompts are rendered with the chat template and ``--system-prompt`` (default: none, as the
shipped SmolLM2 hparams train); the default grid of 15 multipliers has enough points for all four fits.
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

#: 15 multipliers: enough points for all four fits (the per-side PrefOdds form has 11 free parameters)
GRID = "-6,-4,-3,-2,-1.5,-1,-0.5,0,0.5,1,1.5,2,3,4,6"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", nargs="?", help="an EasyEdit layer_{L}.pt")
    ap.add_argument("--demo", action="store_true", help="write a demo layer_{L}.pt (DiffMean) and evaluate it")
    ap.add_argument("--layer", type=int, default=15, help="layer of the --demo vector")
    ap.add_argument("--multipliers", default=GRID, help="sweep grid (comma list or start:stop:num)")
    ap.add_argument("--n-eval", type=int, default=30, help="held-out pairs swept")
    ap.add_argument("--system-prompt", default="", help="system prompt of the rendered pairs (default: none)")
    ap.add_argument("--model", default=None, help="model folder or built-in name (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--output", default="runs/examples/easyedit_pt")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.path is None and not args.demo:
        ap.error("give a layer_{L}.pt path, or --demo")
    model, tok = load_model(args.model)
    train, test = train_test_split(load_builtin("psychopathy"), 100, seed=0)
    path = args.path
    if path is None:
        hp = DiffMeanHyperParams.from_dict({"alg_name": "diffmean", "layers": [args.layer],
                                            "system_prompt": args.system_prompt})
        vec = diffmean_update(model, tok, train[:80], hp).vector.detach()
        path = Path(args.output) / f"layer_{args.layer}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(vec, path)  # EasyEdit's vector layout: a bare tensor
    update = from_easyedit_pt(path, model)
    print(f"{path}: {update.form} update at {update.site}")
    result = evaluate_preference_utility(model, tok, {"easyedit": update}, test[: args.n_eval], args.multipliers,
                                         output_dir=Path(args.output) / "report",
                                         encode_kwargs={"system_prompt": args.system_prompt})
    print(result.only.summary[["m", "accuracy", "pref", "util"]].to_string(index=False))
    fits = result.only.fits
    print("fits: " + ", ".join(f"{k} {f.status}" + (f" R²={f.r2:.3f}" if f.success else "") for k, f in fits.items() if f))
    print(f"report: {Path(args.output) / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
