"""A tiny model, tokenizer, three tiny concept folders and hparams for the benchmark's tests."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from tests.conftest import build_tiny_tokenizer
from tests.tiny_models import tiny_model

SUBJECTS = ["sky", "film", "food", "pizza", "place", "review", "street"]
ADJECTIVES = ["blue", "great", "awful", "short"]
CONCEPTS = {"likes-things": ("yes", "no"), "hates-things": ("no", "yes"), "short-answers": ("yes", "no")}
COMMON = "layers: [1]\nn_epochs: 1\nbatch_size: 4\ngradient_accumulation_steps: 1\nsteering_factors: [1.0]\n"
HPARAMS = {
    "split_vector.yaml": "alg_name: split\nintervention_method: vector\nlr: 0.1\nneg_loss_weight: 0.5\n"
                         "margin_penalty_weight: 4\nmargin_threshold: 0.5\n" + COMMON,
    "sft_vector.yaml": "alg_name: sft\nintervention_method: vector\nlr: 0.1\n" + COMMON,
    "reps_vector.yaml": "alg_name: reps\nintervention_method: vector\nlr: 0.1\n" + COMMON,
    "sft_lora.yaml": "alg_name: sft\nintervention_method: lora\nlow_rank_dimension: 2\nlr: 0.05\n" + COMMON,
    "split_lora.yaml": "alg_name: split\nintervention_method: lora\nlow_rank_dimension: 2\nlr: 0.05\n" + COMMON,
    "diffmean.yaml": "alg_name: diffmean\nlayers: [1]\n",
}
GRID = "-2,-1,-0.5,0,0.5,1,1.5,2,3,4,6"
SIZES = ["--n-train", "8", "--n-val", "4", "--n-test", "6"]


def write_model(folder: Path) -> Path:
    model = tiny_model("llama")
    tok = build_tiny_tokenizer()
    model.config.pad_token_id = tok.pad_token_id
    model.config.eos_token_id = tok.eos_token_id
    model.config.bos_token_id = tok.bos_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_concepts(folder: Path, *, easyedit_layout: str | None = "short-answers") -> Path:
    """Three concept files of 28 pairs (one of them in EasyEdit's layout: matching / not_matching)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, (concept, (pos, neg)) in enumerate(CONCEPTS.items()):
        rows = []
        for i, (s, a) in enumerate(itertools.product(SUBJECTS, ADJECTIVES)):
            q = f"is the {s} {a} ?" if k != 1 else f"i hate this {s} , {a} ?"
            p, n = (pos, neg) if (i + k) % 3 else (neg, pos)
            if concept == easyedit_layout:
                rows.append({"question": q, "matching": p, "not_matching": n})
            else:
                rows.append({"question": q, "answer_matching_behavior": p, "answer_not_matching_behavior": n})
        rows.append(dict(rows[0]))  # a duplicate: counted once
        (folder / f"{concept}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def write_hparams(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in HPARAMS.items():
        (folder / name).write_text(text)
    return folder


def setup(tmp: Path) -> dict[str, Path]:
    return {"model": write_model(tmp / "model"), "concepts": write_concepts(tmp / "concepts"),
            "hparams": write_hparams(tmp / "hparams")}


def bench_args(paths: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["bench", "--model", str(paths["model"]), "--concepts-dir", str(paths["concepts"]), "--hparams-dir",
            str(paths["hparams"]), "--role", "all", f"--multipliers={GRID}", *SIZES, "--output", str(out),
            "--no-progress", "--threads", "1", *extra]
