"""Mixed-update batches: every row its own update (among several at a site) and multiplier, equal to
separate runs (≤ 1e-6 in float32; steering vectors bit for bit) — in hook mode, sweeps and generation."""

from __future__ import annotations

import pytest
import torch

from easyedit_split.core.apply import MergeError, apply_mixed_updates, apply_updates, steer
from easyedit_split.core.generation import generate
from easyedit_split.core.sites import Site
from easyedit_split.evaluation.sweep import sweep, sweep_many
from tests.dist_workers import TOK, encoded_pairs
from tests.test_core import random_update
from tests.tiny_models import tiny_inputs, tiny_model

SITES = {"vector": Site(1, "residual"), "lora": Site(2, "mlp_down"), "local_weight": Site(1, "attn_out")}


def _groups(model):
    """Seven groups: every form, two of each at the SAME site (different seeds), and a two-site group."""
    groups = []
    for form, site in SITES.items():
        groups.append([random_update(model, form, site, seed=1)])
        groups.append([random_update(model, form, site, seed=2)])
    groups.append([random_update(model, "vector", Site(2, "residual"), seed=3),
                   random_update(model, "lora", Site(2, "mlp_down"), seed=4)])
    return groups


def _mask(B, T):
    am = torch.ones(B, T, dtype=torch.long)
    for r in range(0, B, 3):
        am[r, : r % 4] = 0  # left padding on some rows
    return am


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_each_row_equals_its_own_separate_run(arch):
    model = tiny_model(arch)
    groups = _groups(model)
    K = len(groups)
    B = 2 * K + 2
    ids = tiny_inputs(batch=B, seq=7)
    am = _mask(B, 7)
    sel = torch.tensor([k % K for k in range(2 * K)] + [-1, 0])
    m = torch.linspace(-2.0, 2.5, B)
    m[-1] = 0.0  # a selected row at m = 0 is the base model too
    with torch.no_grad():
        with apply_mixed_updates(model, groups, sel, m):
            mixed = model(input_ids=ids, attention_mask=am).logits
        base = model(input_ids=ids, attention_mask=am).logits
        worst = 0.0
        for k, group in enumerate(groups):
            with apply_updates(model, group, m):  # the same batch, steered by group k alone
                alone = model(input_ids=ids, attention_mask=am).logits
            rows = (sel == k).nonzero(as_tuple=True)[0]
            if k == 0:
                rows = rows[:-1]  # the last row selects group 0 at m = 0
            diff = float((mixed[rows] - alone[rows]).abs().max())
            worst = max(worst, diff / max(1.0, float(alone[rows].abs().max())))
            if all(u.form == "vector" for u in group):
                assert torch.equal(mixed[rows], alone[rows]), k  # vectors: bit for bit
        assert worst <= 1e-6, worst
        unsteered = (sel == -1) | (m == 0)
        assert torch.equal(mixed[unsteered], base[unsteered])


def test_selection_changes_between_forwards_and_bad_input():
    model = tiny_model("llama")
    groups = _groups(model)[:2]
    ids = tiny_inputs(batch=2)
    with torch.no_grad():
        with apply_mixed_updates(model, groups, [0, 1], 1.0) as st:
            a = model(input_ids=ids).logits
            st.set_selection([1, 0])
            b = model(input_ids=ids).logits
        refs = []
        for g in groups:
            with apply_updates(model, g, 1.0):
                refs.append(model(input_ids=ids).logits)
        assert torch.equal(a[0], refs[0][0]) and torch.equal(a[1], refs[1][1])  # vectors: bit for bit
        assert torch.equal(b[0], refs[1][0]) and torch.equal(b[1], refs[0][1])
    with pytest.raises(ValueError, match="selection values must lie in -1..1"), \
            apply_mixed_updates(model, groups, [0, 2], 1.0):
        pass
    with pytest.raises(MergeError, match="cannot give rows different updates"), \
            steer(model, groups, 1.0, mode="merged", selection=[0, 1]):
        pass
    with torch.no_grad(), apply_mixed_updates(model, groups, [0, 1, 0], 1.0), \
            pytest.raises(ValueError, match="selection has 3 rows but the batch has 2"):
        model(input_ids=ids)
    # the hooks are gone after an error
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("single", [True, False])
def test_sweep_many_equals_one_sweep_per_update(single):
    model = tiny_model("llama")
    groups = _groups(model)
    named = {f"g{k}": g for k, g in enumerate(groups)}
    data = encoded_pairs(7, 5, single=single)
    grid = [-1.5, 0.0, 0.5, 2.0]
    many = sweep_many(model, TOK, data, named, grid, batch_rows=24, progress=False)
    assert list(many["method"].unique()) == list(named)
    for name, g in named.items():
        alone = sweep(model, TOK, data, g, grid, batch_rows=24, progress=False)
        part = many[many["method"] == name].drop(columns=["method"]).reset_index(drop=True)
        assert list(part["example_id"]) == list(alone["example_id"]) and list(part["m"]) == list(alone["m"])
        for col in ("L_p", "L_n", "L_p_mean", "L_n_mean"):
            a, b = part[col].to_numpy(), alone[col].to_numpy()
            assert abs(a - b).max() <= 1e-6 * max(1.0, abs(b).max()), (name, col, abs(a - b).max())


def test_generate_with_a_different_update_and_multiplier_per_prompt(tiny_tokenizer, monkeypatch):
    tok = tiny_tokenizer
    model = tiny_model("llama")
    model.generation_config.eos_token_id = tok.eos_token_id
    groups = _groups(model)[:4] + [_groups(model)[-1]]
    prompts = ["is the sky blue ?", "i like pizza", "write a short review of this film", "answer : ( a ) or ( b )",
               "the food was great", "i hate this film"]
    which = [0, 2, 3, 4, -1, 1]
    mults = [2.0, -1.5, 1.0, 3.0, 1.0, 0.5]
    calls = []
    original = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: calls.append(kw["input_ids"].shape) or original(**kw))
    gens = generate(model, tok, prompts, groups, mults, update_index=which, max_new_tokens=5, min_new_tokens=5,
                    progress=False)
    assert len(calls) == 1  # one batched call for every update
    assert [g.update_index for g in gens] == which
    for i, g in enumerate(gens):
        ups = groups[which[i]] if which[i] >= 0 else []
        alone = generate(model, tok, prompts, ups, mults[i], max_new_tokens=5, min_new_tokens=5, progress=False)[i]
        assert g.token_ids == alone.token_ids, i
    merged = generate(model, tok, prompts, groups, mults, update_index=which, mode="merged", max_new_tokens=5,
                      min_new_tokens=5, progress=False)
    assert len(merged) == len(prompts)
    from easyedit_split.errors import InputError

    with pytest.raises(InputError, match="update index 9 out of range"):
        generate(model, tok, prompts, groups, mults, update_index=[9] * 6, progress=False)


def test_cli_generate_several_updates_and_per_prompt_fields(tmp_path, tiny_tokenizer):
    import json

    from easyedit_split.cli import main
    from easyedit_split.core.serialization import save_updates
    from tests.test_generation import _saved_tiny

    model, _ = _saved_tiny(tmp_path, tiny_tokenizer)
    w = random_update(model, "lora", Site(2, "mlp_down"), seed=5)
    save_updates(tmp_path / "w.safetensors", [w], model=model, method="test")
    base = ["generate", "--model", str(tmp_path / "model"), "--update", f"vec={tmp_path / 'u.safetensors'}",
            "--update", f"lora={tmp_path / 'w.safetensors'}", "--max-new-tokens", "4"]
    out = tmp_path / "a.jsonl"
    assert main([*base, "--multiplier", "0.5", "2", "--prompt", "i like pizza", "--prompt", "is the sky blue ?",
                 "--output", str(out)]) == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["update"], r["multiplier"], r["prompt"]) for r in recs] == [
        (n, m, p) for n in ("vec", "lora") for m in (0.5, 2.0) for p in ("i like pizza", "is the sky blue ?")]
    # each completion equals the one-update command's
    for name, file in (("vec", "u"), ("lora", "w")):
        one = tmp_path / f"{name}.jsonl"
        assert main(["generate", "--model", str(tmp_path / "model"), "--update", str(tmp_path / f"{file}.safetensors"),
                     "--max-new-tokens", "4", "--multiplier", "0.5", "2", "--prompt", "i like pizza", "--prompt",
                     "is the sky blue ?", "--output", str(one)]) == 0
        alone = [json.loads(x) for x in one.read_text().splitlines()]
        assert [r["token_ids"] for r in recs if r["update"] == name] == [r["token_ids"] for r in alone]
    pf = tmp_path / "p.jsonl"
    pf.write_text('{"prompt": "i like pizza", "update": "lora", "multiplier": 1.5}\n'
                  '{"prompt": "is the sky blue ?", "update": null}\n{"prompt": "the food was great", "multiplier": -1}\n')
    out2 = tmp_path / "b.jsonl"
    assert main([*base, "--prompts-file", str(pf), "--output", str(out2)]) == 0
    recs = [json.loads(x) for x in out2.read_text().splitlines()]
    assert [(r["update"], r["multiplier"]) for r in recs] == [("lora", 1.5), (None, 0.0), ("vec", -1.0), ("lora", -1.0)]
    pf.write_text('{"prompt": "i like pizza", "update": "nope"}\n')
    assert main([*base, "--prompts-file", str(pf)]) == 2
    assert main([*base[:5], "--update", "x.safetensors", "--prompt", "hi"]) == 2  # several need NAME=FILE
