"""Batched steered generation: per-row multipliers in one call, merged mode, sampling, EOS handling."""

from __future__ import annotations

import re

import pytest
import torch

from easyedit_split.core.apply import apply_updates
from easyedit_split.core.generation import Generation, _cut_at_eos, generate, left_padded_batch
from easyedit_split.core.sites import Site
from tests.test_core import random_update
from tests.tiny_models import tiny_model

PROMPTS = [
    "is the sky blue ?",
    "write a short review of this film",
    "i like pizza",
    "answer : ( a ) or ( b )",
]
N_NEW = 6


@pytest.fixture()
def setup(tiny_tokenizer):
    model = tiny_model("llama")
    model.generation_config.eos_token_id = tiny_tokenizer.eos_token_id
    model.generation_config.bos_token_id = tiny_tokenizer.bos_token_id
    return model, tiny_tokenizer


def _reference(model, tok, prompt, update, m):
    """One prompt alone (no padding), steered by apply_updates + model.generate directly."""
    text = tok.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad(), apply_updates(model, update, m):
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=N_NEW,
            min_new_tokens=N_NEW,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
    return out[0, ids.shape[1] :].tolist()


@pytest.mark.parametrize(
    "form,component", [("vector", "residual"), ("lora", "mlp_down"), ("local_weight", "attn_out")]
)
def test_per_row_multipliers_in_one_batch_equal_one_at_a_time(setup, form, component, monkeypatch):
    model, tok = setup
    u = random_update(model, form, Site(1, component))
    mults = [0.0, 2.0, -1.5, 1.0]
    calls = []
    original = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: calls.append(kw["input_ids"].shape) or original(**kw))
    gens = generate(model, tok, PROMPTS, u, mults, max_new_tokens=N_NEW, min_new_tokens=N_NEW, progress=False)
    assert len(calls) == 1 and calls[0][0] == len(PROMPTS)  # one batched call, no per-prompt loop
    assert [g.prompt for g in gens] == PROMPTS and [g.multiplier for g in gens] == mults
    for g, m in zip(gens, mults):
        assert g.token_ids == _reference(model, tok, g.prompt, u, m)
        assert g.text == tok.decode(g.token_ids, skip_special_tokens=True)
    unsteered = generate(model, tok, PROMPTS, max_new_tokens=N_NEW, min_new_tokens=N_NEW, progress=False)
    assert unsteered[0].token_ids == gens[0].token_ids  # m = 0 row is unsteered
    assert any(a.token_ids != b.token_ids for a, b in zip(unsteered[1:], gens[1:]))  # steering acts


def test_merged_mode_equals_hook_mode_and_groups_multipliers(setup, monkeypatch):
    model, tok = setup
    u = random_update(model, "local_weight", Site(2, "mlp_down"))
    mults = [1.0, -2.0, 1.0, -2.0]
    hook = generate(model, tok, PROMPTS, u, mults, max_new_tokens=N_NEW, min_new_tokens=N_NEW, progress=False)
    calls = []
    original = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: calls.append(kw["input_ids"].shape) or original(**kw))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merged = generate(
        model,
        tok,
        PROMPTS,
        u,
        mults,
        mode="merged",
        max_new_tokens=N_NEW,
        min_new_tokens=N_NEW,
        progress=False,
    )
    assert len(calls) == 2  # one batch per distinct multiplier
    assert [g.token_ids for g in merged] == [g.token_ids for g in hook]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # unmerged afterwards


def test_batches_padding_side_and_pad_token_restored(setup, monkeypatch):
    model, tok = setup
    tok.padding_side = "right"
    calls = []
    original = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: calls.append(kw["input_ids"].shape) or original(**kw))
    one = generate(
        model, tok, PROMPTS, batch_size=3, max_new_tokens=N_NEW, min_new_tokens=N_NEW, progress=False
    )
    assert [c[0] for c in calls] == [3, 1]
    assert tok.padding_side == "right"
    big = generate(
        model, tok, PROMPTS, batch_size=16, max_new_tokens=N_NEW, min_new_tokens=N_NEW, progress=False
    )
    assert [g.token_ids for g in one] == [g.token_ids for g in big]  # padding does not change results


def test_pad_token_defaults_to_eos_and_masks_come_from_tokenizer(tiny_tokenizer):
    tok = tiny_tokenizer
    saved = tok.pad_token
    tok.pad_token = None
    try:
        # the EOS appears inside the second prompt: it must stay attended
        enc = left_padded_batch(
            tok, ["i like it", "is it </s> blue yes no"], add_special_tokens=True, device="cpu"
        )
        assert tok.pad_token is None and tok.padding_side == "right"
        mask = enc["attention_mask"]
        assert mask[1].all() and mask[0].sum() == 4 and not mask[0, :3].any()
        assert (enc["input_ids"][1] == tok.eos_token_id).sum() == 1
    finally:
        tok.pad_token = saved


def test_generated_text_is_cut_at_eos(setup):
    model, tok = setup
    eos = tok.eos_token_id
    full = generate(model, tok, PROMPTS[:2], max_new_tokens=N_NEW, suppress_tokens=[eos], progress=False)
    assert full[0].finish_reason == "length" and len(full[0].token_ids) == N_NEW
    stop = full[0].token_ids[2]
    model.generation_config.eos_token_id = [stop]
    cut = generate(model, tok, PROMPTS[:2], max_new_tokens=N_NEW, suppress_tokens=[eos], progress=False)
    assert cut[0].token_ids == full[0].token_ids[: full[0].token_ids.index(stop)]
    assert cut[0].finish_reason == "eos" and stop not in cut[0].token_ids
    assert _cut_at_eos([5, 6, 2, 7], {2}) == ([5, 6], "eos") and _cut_at_eos([5], {2}) == ([5], "length")


def test_seeded_sampling_is_reproducible(setup):
    model, tok = setup
    u = random_update(model, "vector", Site(1, "residual"))
    kw = {
        "do_sample": True,
        "temperature": 1.5,
        "top_k": 50,
        "top_p": 0.95,
        "max_new_tokens": N_NEW,
        "min_new_tokens": N_NEW,
        "progress": False,
    }
    state = torch.random.get_rng_state()
    a = generate(model, tok, PROMPTS, u, [0.5, 1.0, 2.0, 0.0], seed=7, **kw)
    assert torch.equal(state, torch.random.get_rng_state())  # caller's RNG untouched
    b = generate(model, tok, PROMPTS, u, [0.5, 1.0, 2.0, 0.0], seed=7, **kw)
    c = generate(model, tok, PROMPTS, u, [0.5, 1.0, 2.0, 0.0], seed=8, **kw)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_ids for g in a] != [g.token_ids for g in c]


def test_num_return_sequences_with_per_row_multipliers(setup):
    model, tok = setup
    u = random_update(model, "vector", Site(1, "residual"))
    gens = generate(
        model,
        tok,
        PROMPTS[:2],
        u,
        [0.0, 3.0],
        do_sample=True,
        seed=1,
        num_return_sequences=3,
        max_new_tokens=N_NEW,
        progress=False,
    )
    assert len(gens) == 6 and [g.multiplier for g in gens] == [0.0] * 3 + [3.0] * 3
    assert all(isinstance(g, Generation) for g in gens) and [g.index for g in gens] == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="do_sample"):
        generate(model, tok, PROMPTS[:2], u, num_return_sequences=2, progress=False)


def test_bad_arguments(setup):
    model, tok = setup
    u = random_update(model, "vector", Site(1, "residual"))
    with pytest.raises(ValueError, match="2 multipliers for 4 prompts"):
        generate(model, tok, PROMPTS, u, [1.0, 2.0], progress=False)
    with pytest.raises(ValueError, match="mode"):
        generate(model, tok, PROMPTS, u, mode="fused", progress=False)
    with pytest.raises(ValueError, match="merged mode"):
        generate(model, tok, PROMPTS, u, mode="merged", positions="generated", progress=False)


# ------------------------------------------------------------------------------------------------ CLI


def _saved_tiny(tmp_path, tok):
    from easyedit_split.core.serialization import save_updates

    model = tiny_model("llama")
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    u = random_update(model, "vector", Site(1, "residual"))
    save_updates(tmp_path / "u.safetensors", [u], model=model, method="test")
    return model, u


def test_cli_generate_writes_jsonl_with_every_multiplier(tmp_path, tiny_tokenizer, capsys):
    import json

    from easyedit_split.cli import main

    _saved_tiny(tmp_path, tiny_tokenizer)
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "i like pizza"}\n{"question": "is the sky blue ?"}\n')
    out = tmp_path / "gen.jsonl"
    argv = [
        "generate",
        "--model",
        str(tmp_path / "model"),
        "--update",
        str(tmp_path / "u.safetensors"),
        "--multiplier",
        "0",
        "2",
        "--prompts-file",
        str(tmp_path / "prompts.jsonl"),
        "--max-new-tokens",
        "4",
        "--metrics",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["multiplier"], r["prompt"]) for r in recs] == [
        (0.0, "i like pizza"),
        (0.0, "is the sky blue ?"),
        (2.0, "i like pizza"),
        (2.0, "is the sky blue ?"),
    ]
    assert all("perplexity" in r and len(r["token_ids"]) <= 4 for r in recs)
    printed = capsys.readouterr().out
    assert re.search(r"^m=2: perplexity_mean=[0-9.]+, distinct_1=[0-9.]+", printed, re.MULTILINE), printed


def test_cli_generate_bad_prompts_file(tmp_path, tiny_tokenizer):
    from easyedit_split.cli import main

    _saved_tiny(tmp_path, tiny_tokenizer)
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"text_field": 1}\n')
    assert main(["generate", "--model", str(tmp_path / "model"), "--prompts-file", str(bad)]) == 2
