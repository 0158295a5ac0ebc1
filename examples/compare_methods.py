"""Compare SPLIT against the built-in methods — SFT, RePS, DiffMean/CAA and a LoRA trained through
peft — on the same held-out pairs, in one preference–utility report.

    python examples/compare_methods.py [--n-train 80] [--n-eval 30] [--output runs/compare]

SPLIT/SFT/RePS vectors come from this plugin's trainer, DiffMean is train-free, and the peft LoRA is
trained with peft's own modules (plain SFT on the positive answers) and read back through
``from_peft`` — the evaluator does not care where an update came from.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from easyedit_split.core.models import load_model
from easyedit_split.core.serialization import save_updates
from easyedit_split.data import collate_sequences, encode_pairs, load_builtin, train_test_split
from easyedit_split.data.logprobs import answer_nll
from easyedit_split.evaluation import evaluate_preference_utility
from easyedit_split.training import Trainer, diffmean_update
from easyedit_split.training.hparams import (
    DiffMeanHyperParams,
    RePSHyperParams,
    SFTHyperParams,
    SplitHyperParams,
)


def train_peft_lora(model, tokenizer, pairs, layer: int, out: Path, steps: int = 40) -> Path:
    """A rank-4 peft LoRA on one layer's down_proj, trained on the positive answers."""
    import peft

    cfg = peft.LoraConfig(r=4, lora_alpha=4, lora_dropout=0.0, target_modules=[f"layers.{layer}.mlp.down_proj"])
    pm = peft.get_peft_model(model, cfg)
    enc = encode_pairs(pairs, tokenizer, system_prompt="")
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(enc), (4,), generator=g).tolist()
        batch = collate_sequences([(enc[i].prompt_ids, enc[i].positive_ids) for i in idx], tokenizer.pad_token_id)
        loss = answer_nll(pm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits, batch)[1].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    pm.save_pretrained(out)
    pm.unload()  # back to the plain base model
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=80)
    ap.add_argument("--n-eval", type=int, default=30)
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--output", default="runs/compare")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.output)

    model, tok = load_model()
    train, test = train_test_split(load_builtin("psychopathy"), 100, seed=0)
    train, test = train[: args.n_train], test[: args.n_eval]
    common = {"layers": [args.layer], "n_epochs": 1, "batch_size": 4, "gradient_accumulation_steps": 1, "lr": 0.5,
              "steering_factors": [0.5, 1.0, 1.5], "system_prompt": "", "seed": 0}
    specs = {}
    for name, cls, extra in (("split", SplitHyperParams, {"neg_loss_weight": 0.5, "margin_penalty_weight": 4.0}),
                             ("sft", SFTHyperParams, {}), ("reps", RePSHyperParams, {})):
        hp = cls.from_dict({"alg_name": name, **common, **extra})
        specs[name] = str(Trainer(model, tok, hp).train(train, output_path=out / f"{name}.safetensors").output_path)
    dm_hp = DiffMeanHyperParams.from_dict({"alg_name": "diffmean", "layers": [args.layer], "system_prompt": "", "seed": 0})
    dm = diffmean_update(model, tok, train, dm_hp)
    specs["diffmean"] = str(save_updates(out / "diffmean.safetensors", [dm], model=model, method="diffmean",
                                         hparams=dm_hp.to_dict()))
    specs["peft_lora"] = str(train_peft_lora(model, tok, train, args.layer, out / "peft_lora"))

    result = evaluate_preference_utility(model, tok, specs, test, [-4, -2, -1, -0.5, 0, 0.5, 1, 2, 4],
                                         output_dir=out / "report", title="SPLIT vs built-in methods")
    for name, ev in result.methods.items():
        at1 = ev.summary.loc[ev.summary["m"] == 1.0].iloc[0]
        print(f"{name:<10} accuracy@m=1 {at1['accuracy']:.2f}  PrefOdds {at1['pref']:+.2f}  UtilOdds {at1['util']:+.2f}")
    print(f"report: {out / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
