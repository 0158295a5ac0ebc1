"""Compare SPLIT against the built-in methods — SFT, RePS, DiffMean/CAA and a LoRA trained through
peft — on the same held-out pairs, in one preference–utility report.

    python examples/compare_methods.py [--n-train 160] [--n-eval 40] [--output runs/examples/compare_methods]

SPLIT/SFT/RePS vectors are trained by this plugin's trainer with the shipped hyperparameters
(``hparams/smollm2/<method>_vector.yaml``), DiffMean is train-free, and the peft LoRA is trained with
peft's own modules (plain SFT on the positive answers) and read back through ``from_peft`` — the
evaluator does not care where an update came from. Every row is scored with the same prompt rendering
(the SPLIT file's chat template and system prompt), so the rows differ by their updates only; the grid
of 15 multipliers has enough points for all four curve fits. On SmolLM2 and 2 CPU cores it takes
several minutes (three trainings on 160 pairs, then 5 × 40 pairs × 15 multipliers).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from easyedit_split.adapters.artefacts import load_artefact
from easyedit_split.core.models import load_model
from easyedit_split.core.serialization import save_updates
from easyedit_split.data import collate_sequences, encode_pairs, load_builtin, train_test_split
from easyedit_split.data.logprobs import answer_nll
from easyedit_split.evaluation import evaluate_preference_utility
from easyedit_split.training import Trainer, diffmean_update
from easyedit_split.training.api import load_train_hparams

#: 15 multipliers: enough points for all four fits (the per-side PrefOdds form has 11 free parameters)
GRID = "-6,-4,-3,-2,-1.5,-1,-0.5,0,0.5,1,1.5,2,3,4,6"


def train_peft_lora(model, tokenizer, pairs, layer: int, out: Path, rendering: dict, steps: int = 40) -> Path:
    """A rank-4 peft LoRA on one layer's down_proj, trained on the positive answers (rendered as ``rendering``)."""
    import peft

    cfg = peft.LoraConfig(r=4, lora_alpha=4, lora_dropout=0.0, target_modules=[f"layers.{layer}.mlp.down_proj"])
    pm = peft.get_peft_model(model, cfg)
    enc = encode_pairs(pairs, tokenizer, **rendering)
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(enc), (min(4, len(enc)),), generator=g).tolist()
        batch = collate_sequences([(enc[i].prompt_ids, enc[i].positive_ids) for i in idx], tokenizer.pad_token_id)
        loss = answer_nll(pm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits, batch)[1].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    pm.save_pretrained(out)
    pm.unload()  # back to the plain base model
    for p in model.parameters():
        p.requires_grad_(False)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hparams-dir", default="hparams/smollm2", help="folder with split/sft/reps_vector.yaml, diffmean.yaml")
    ap.add_argument("--n-train", type=int, default=160, help="training pairs (the shipped max_num_of_examples)")
    ap.add_argument("--n-eval", type=int, default=40, help="held-out pairs swept")
    ap.add_argument("--layer", type=int, default=None, help="steered layer (default: the hparams files')")
    ap.add_argument("--multipliers", default=GRID, help="sweep grid (comma list or start:stop:num)")
    ap.add_argument("--peft-steps", type=int, default=40, help="optimizer steps of the peft LoRA")
    ap.add_argument("--model", default=None, help="model folder or built-in name (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--output", default="runs/examples/compare_methods")
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier run in --output")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.output)
    if (out / "report").exists() and not args.overwrite:
        ap.error(f"{out} holds an earlier run; pass --overwrite or another --output")

    model, tok = load_model(args.model)
    train, test = train_test_split(load_builtin("psychopathy"), 100, seed=0)
    train, test = train[: args.n_train], test[: args.n_eval]
    overrides = {"max_num_of_examples": args.n_train, **({"layers": [args.layer]} if args.layer is not None else {})}
    folder = Path(args.hparams_dir)
    specs = {}
    for name in ("split", "sft", "reps"):
        hp = load_train_hparams(folder / f"{name}_vector.yaml", overrides)
        specs[name] = str(Trainer(model, tok, hp).train(train, output_path=out / f"{name}.safetensors").output_path)
    dm_hp = load_train_hparams(folder / "diffmean.yaml", overrides)
    dm = diffmean_update(model, tok, train, dm_hp)
    specs["diffmean"] = str(save_updates(out / "diffmean.safetensors", [dm], model=model, method="diffmean",
                                         hparams=dm_hp.to_dict()))
    rendering = load_artefact(specs["split"], model).rendering()  # one rendering for every row
    layer = int(hp.layers[0])
    specs["peft_lora"] = str(train_peft_lora(model, tok, train, layer, out / "peft_lora", rendering, args.peft_steps))

    result = evaluate_preference_utility(model, tok, specs, test, args.multipliers, output_dir=out / "report",
                                         encode_kwargs=rendering, title="SPLIT vs built-in methods")
    print(f"every row rendered with {rendering}")
    for name, ev in result.methods.items():
        for m in (0.0, 1.0):
            row = ev.summary.loc[ev.summary["m"] == m].iloc[0]
            print(f"{name:<10} m={m:g}  accuracy {row['accuracy']:.2f}  PrefOdds {row['pref']:+.2f}  "
                  f"UtilOdds {row['util']:+.2f}")
    print(f"report: {out / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
