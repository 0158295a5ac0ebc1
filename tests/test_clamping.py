"""EasyEdit's ``intervention_type: clamping`` for a steering vector: h' = h − (h·v̂)v̂ + m·v at the steered
positions (hook math, merged mode, training through it, the update file, the consumers)."""

import json
import logging
import types

import pytest
import torch

from easyedit_split.base.hparams_io import HParamsError
from easyedit_split.core.apply import MergeError, apply_updates, merged_updates
from easyedit_split.core.easyedit_layout import AdapterError, to_easyedit_state
from easyedit_split.core.record import site_output
from easyedit_split.core.scoring import PairScorer
from easyedit_split.core.serialization import UpdateFileError, load_updates, read_metadata, save_updates
from easyedit_split.core.sites import Site, resolve_site
from easyedit_split.core.updates import ClampedVectorUpdate, VectorUpdate, make_update
from easyedit_split.evaluation.sweep import replace_at_layer
from easyedit_split.training.hparams import SplitHyperParams
from easyedit_split.training.trainer import Trainer
from tests.test_training import pairs
from tests.tiny_models import tiny_inputs, tiny_model

TOK = types.SimpleNamespace(pad_token_id=0, eos_token_id=1)


def _vector(d=32, seed=5, scale=0.7):
    return torch.randn(d, generator=torch.Generator().manual_seed(seed)) * scale


def _by_hand(h, v, m):
    """The clamping intervention written out: the component along v̂ replaced by m·‖v‖."""
    unit = v / v.norm()
    coef = h @ unit
    return h - coef.unsqueeze(-1) * unit + m * v


def _full_site_output(model, site, ids, mask):
    """The site's output (after any steering hook) in a forward of the whole model, which is what passes the
    attention mask to the steering (padding-aware)."""
    seen = []
    module = resolve_site(model, site).module
    handle = module.register_forward_hook(lambda mod, args, out: seen.append(out[0] if isinstance(out, tuple) else out))
    try:
        _logits(model, ids, mask)
    finally:
        handle.remove()
    return seen[0]


def _logits(model, ids, mask=None):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


# ------------------------------------------------------------------------------------------ hook math


@pytest.mark.parametrize("component", ["residual", "mlp_down", "attn_out"])
@pytest.mark.parametrize("m", [0.0, 1.5, -2.0])
def test_hook_replaces_the_component_along_the_direction(component, m):
    model, ids = tiny_model("llama"), tiny_inputs()
    site = Site(1, component)
    v = _vector()
    base = site_output(model, site, ids)
    with apply_updates(model, [ClampedVectorUpdate(site, 32, vector=v)], m):
        steered = site_output(model, site, ids)
    torch.testing.assert_close(steered, _by_hand(base, v, m), atol=1e-5, rtol=1e-5)
    # the new component along v̂ is m·‖v‖ at every position, whatever it was before
    along = steered @ (v / v.norm())
    torch.testing.assert_close(along, torch.full_like(along, m * float(v.norm())), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(base @ (v / v.norm()), along)


def test_zero_multiplier_is_not_the_base_model_but_addition_at_zero_is():
    model, ids = tiny_model("llama"), tiny_inputs()
    site, v = Site(1, "residual"), _vector()
    base = _logits(model, ids)
    with apply_updates(model, [VectorUpdate(site, 32, vector=v)], 0.0):
        torch.testing.assert_close(_logits(model, ids), base)
    with apply_updates(model, [ClampedVectorUpdate(site, 32, vector=v)], 0.0) as state:
        assert not torch.allclose(_logits(model, ids), base, atol=1e-4)
        state.active = False  # the off switch EasyEdit's ori_generate uses: the base model
        torch.testing.assert_close(_logits(model, ids), base)


def test_padding_and_unsteered_positions_are_left_alone():
    model = tiny_model("llama")
    ids = tiny_inputs(batch=2, seq=6)
    mask = torch.ones_like(ids)
    mask[0, 4:] = 0  # right padding of row 0
    site, v = Site(1, "residual"), _vector()
    base = _full_site_output(model, site, ids, mask)
    with apply_updates(model, [ClampedVectorUpdate(site, 32, vector=v)], 2.0):
        steered = _full_site_output(model, site, ids, mask)
    torch.testing.assert_close(steered[0, 4:], base[0, 4:])
    torch.testing.assert_close(steered[0, :4], _by_hand(base[0, :4], v, 2.0), atol=1e-5, rtol=1e-5)
    # an explicit position mask: only the masked positions are projected
    pm = torch.zeros_like(ids, dtype=torch.bool)
    pm[:, -1] = True
    with apply_updates(model, [ClampedVectorUpdate(site, 32, vector=v)], 2.0) as state:
        state.set_position_mask(pm)
        steered = site_output(model, site, ids)
    base = site_output(model, site, ids)
    torch.testing.assert_close(steered[:, :-1], base[:, :-1])
    torch.testing.assert_close(steered[:, -1], _by_hand(base[:, -1], v, 2.0), atol=1e-5, rtol=1e-5)


def test_per_row_multipliers_and_the_scorer_use_the_same_intervention():
    model, ids = tiny_model("llama"), tiny_inputs(batch=2)
    site, v = Site(2, "residual"), _vector()
    upd = ClampedVectorUpdate(site, 32, vector=v)
    base = site_output(model, site, ids)
    with apply_updates(model, [upd], [0.0, 3.0]):
        rows = site_output(model, site, ids)
    torch.testing.assert_close(rows[0], _by_hand(base[0], v, 0.0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rows[1], _by_hand(base[1], v, 3.0), atol=1e-5, rtol=1e-5)
    # the scorer (training and sweeps) at m = 0: hooks stay on (the prefix cache included); unsteered: off
    data = pairs(4)
    with torch.no_grad():
        cached = PairScorer(model, [upd], pad_token_id=0)
        full = PairScorer(model, [upd], pad_token_id=0, use_prefix_cache=False)
        bare = PairScorer(model, [], pad_token_id=0)
        at0 = cached.score(cached.prepare(data), 0.0).sum_p
        torch.testing.assert_close(at0, full.score(full.prepare(data), 0.0).sum_p, atol=1e-5, rtol=1e-5)
        base_losses = bare.score(bare.prepare(data), 0.0).sum_p
        assert not torch.allclose(at0, base_losses, atol=1e-4)
        torch.testing.assert_close(cached.score(cached.prepare(data), 0.0, unsteered=True).sum_p, base_losses)


def test_scaling_keeps_the_direction_and_refuses_zero():
    site, v = Site(1, "residual"), _vector()
    u = ClampedVectorUpdate(site, 32, vector=v)
    for f in (2.5, -1.0):
        s = u.scaled(f)
        assert isinstance(s, ClampedVectorUpdate)
        torch.testing.assert_close(s.projection(), u.projection())
        torch.testing.assert_close(s.vector.detach(), v * f)
    with pytest.raises(ValueError, match="direction would be lost"):
        u.scaled(0.0)
    moved = replace_at_layer([u], 3)[0]
    assert isinstance(moved, ClampedVectorUpdate) and moved.site.layer == 3


# ------------------------------------------------------------------------------------------ merged mode


@pytest.mark.parametrize("arch, component", [("llama", "mlp_down"), ("llama", "attn_out"), ("gpt2", "mlp_down")])
def test_merged_mode_is_exact_on_a_linear_site(arch, component):
    model, ids = tiny_model(arch), tiny_inputs()
    site = Site(1, component)
    d = resolve_site(model, site).d_out
    ups = [ClampedVectorUpdate(site, d, vector=_vector(d)), VectorUpdate(site, d, vector=_vector(d, seed=9))]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for m in (0.0, 1.7):
        with apply_updates(model, ups, m):
            hooked = _logits(model, ids)
        with merged_updates(model, ups, m):
            merged = _logits(model, ids)
        torch.testing.assert_close(merged, hooked, atol=2e-5, rtol=1e-4)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n  # restored exactly


def test_merged_mode_refuses_a_clamped_residual_vector():
    model = tiny_model("llama")
    with (pytest.raises(MergeError, match="clamped vector .* cannot be merged exactly.*Use hook mode"),
          merged_updates(model, [ClampedVectorUpdate(Site(1, "residual"), 32, vector=_vector())], 1.0)):
        pass


# ------------------------------------------------------------------------------------------ hparams


def _hp(**kw):
    base = {"layers": [2], "lr": 0.05, "n_epochs": 2, "batch_size": 3, "gradient_accumulation_steps": 1,
            "neg_loss_weight": 0.5, "margin_penalty_weight": 4.0, "steering_factors": [0.5, 1.0], "seed": 3,
            "intervention_type": "clamping"}
    base.update(kw)
    return SplitHyperParams.from_dict(base)


def test_hparams_accept_clamping_for_vectors_only():
    assert _hp(intervention_type="Clamping").intervention_type == "clamping"
    for form in ("lora", "local_weight", "weight"):
        with pytest.raises(HParamsError, match="intervention_type' is 'clamping' with intervention_method.*no single "
                                               "direction"):
            _hp(intervention_method=form)
    with pytest.raises(HParamsError, match="intervention_type' is 'projection'; use one of addition, clamping"):
        _hp(intervention_type="projection")
    with pytest.raises(ValueError, match="only for a steering vector"):
        make_update("lora", Site(1, "mlp_down"), 48, 32, intervention_type="clamping")


# ------------------------------------------------------------------------------------------ training, file


def test_training_runs_through_the_clamp_and_the_file_round_trips(tmp_path):
    model, data = tiny_model("llama"), pairs(single=False)
    out = tmp_path / "clamp.safetensors"
    res = Trainer(model, TOK, _hp(n_epochs=6, lr=0.2)).train(data, progress=False, output_path=out)
    u = res.updates[0]
    assert isinstance(u, ClampedVectorUpdate)
    assert res.loss_history[-1] < res.loss_history[0]
    sc = PairScorer(model, [u], pad_token_id=0)

    meta = read_metadata(out)
    assert meta["format_version"] == "3"
    assert json.loads(meta["updates"])[0]["intervention_type"] == "clamping"
    loaded = load_updates(out, model).updates[0]
    assert isinstance(loaded, ClampedVectorUpdate)
    torch.testing.assert_close(loaded.vector.detach(), u.vector.detach())
    with torch.no_grad():
        sc2 = PairScorer(model, [loaded], pad_token_id=0)
        torch.testing.assert_close(sc2.score(sc2.prepare(data), 0.5).sum_p, sc.score(sc.prepare(data), 0.5).sum_p)


def _answer_nll_by_hand(model, layer, v, m, prompt, answer):
    """Mean NLL of ``answer`` after ``prompt`` with the clamp written out in a forward hook on block ``layer``."""
    def hook(module, args, out):
        h = out[0] if isinstance(out, tuple) else out
        new = _by_hand(h, v, m)
        return (new, *out[1:]) if isinstance(out, tuple) else new

    handle = model.model.layers[layer].register_forward_hook(hook)
    try:
        ids = torch.tensor([prompt + answer])
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    finally:
        handle.remove()
    targets = torch.tensor(answer)
    return -logp[len(prompt) - 1:-1].gather(-1, targets.unsqueeze(-1)).mean()


def test_the_trainers_forward_is_the_clamp():
    """The first step's loss (before any update) equals SPLIT's objective on answer losses computed with the
    clamp written out by hand: the trainer optimises the clamped model."""
    from easyedit_split.training.objectives import split_loss

    model, data = tiny_model("llama"), pairs(6, single=False)
    with torch.no_grad():  # a sharper output head, so that the answer losses react to the site (a random tiny
        model.lm_head.weight.mul_(40.0)  # model's are all ≈ log(vocab))
    hp = _hp(init_std=0.02, steering_factors=[1.5], preference_pairs=["orig_add"], batch_size=6, n_epochs=1)
    trainer = Trainer(model, TOK, hp)
    v0 = trainer.update.vector.detach().clone()
    assert float(v0.norm()) > 0
    res = trainer.train(data, progress=False)
    with torch.no_grad():
        L_win = torch.stack([_answer_nll_by_hand(model, 2, v0, 1.5, e.prompt_ids, e.positive_ids) for e in data])
        L_lose = torch.stack([_answer_nll_by_hand(model, 2, v0, 1.5, e.prompt_ids, e.negative_ids) for e in data])
    expected = split_loss(L_win, L_lose, hp.pos_loss_weight, hp.neg_loss_weight, hp.margin_penalty_weight,
                          hp.margin_threshold)
    assert res.loss_history[0] == pytest.approx(float(expected), rel=1e-4)
    # the same vector added instead gives another loss (the check can tell the two apart)
    with torch.no_grad():
        added = PairScorer(model, [VectorUpdate(Site(2, "residual"), 32, vector=v0)], pad_token_id=0)
        lp, ln = added.score(added.prepare(data), 1.5).losses("mean")
    assert float(split_loss(lp, ln, hp.pos_loss_weight, hp.neg_loss_weight, hp.margin_penalty_weight,
                            hp.margin_threshold)) != pytest.approx(float(expected), rel=1e-3)


def test_an_added_vector_file_stays_version_2(tmp_path):
    out = save_updates(tmp_path / "v.safetensors", [VectorUpdate(Site(1, "residual"), 32, vector=_vector())])
    meta = read_metadata(out)
    assert meta["format_version"] == "2" and "intervention_type" not in json.loads(meta["updates"])[0]


def _rewrite(path, out, change):
    """The file with its metadata changed and the checksum recomputed (a well-formed file with a bad value)."""
    from safetensors import safe_open

    from easyedit_split.base.atomic_io import atomic_save_safetensors
    from easyedit_split.core.serialization import file_checksum

    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    configs = json.loads(meta["updates"])
    change(configs[0])
    meta["updates"] = json.dumps(configs)
    meta["checksum"] = file_checksum(tensors, meta)
    atomic_save_safetensors(out, tensors, meta)
    return out


def test_the_intervention_type_is_checksummed_and_validated(tmp_path):
    model = tiny_model("llama")
    path = save_updates(tmp_path / "c.safetensors", [ClampedVectorUpdate(Site(1, "residual"), 32, vector=_vector())],
                        model=model)
    # edited without the checksum: refused
    from safetensors import safe_open

    from easyedit_split.base.atomic_io import atomic_save_safetensors

    with safe_open(str(path), framework="pt") as fh:
        meta, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    meta["updates"] = meta["updates"].replace('"clamping"', '"addition"')
    atomic_save_safetensors(tmp_path / "edited.safetensors", tensors, meta)
    with pytest.raises(UpdateFileError, match="do not match the checksum"):
        load_updates(tmp_path / "edited.safetensors")
    # well-formed but a bad value, or clamping on another form: refused naming the key
    bad = _rewrite(path, tmp_path / "bad.safetensors", lambda c: c.update(intervention_type="projection"))
    with pytest.raises(UpdateFileError, match="intervention_type 'projection' is not one of addition, clamping"):
        load_updates(bad)
    lora = _rewrite(path, tmp_path / "lora.safetensors", lambda c: c.update(form="lora"))
    with pytest.raises(UpdateFileError, match="clamping exists only for a vector"):
        load_updates(lora)


# ------------------------------------------------------------------------------------------ EasyEdit's .pt


def test_easyedit_pt_is_refused_and_train_layers_writes_none(tmp_path, caplog, tiny_tokenizer):
    from easyedit_split.data.pairs import PolarityPair
    from easyedit_split.training.api import train_layers

    with pytest.raises(AdapterError, match="clamping vector .* has no EasyEdit layer_.*would apply it as an addition"):
        to_easyedit_state(ClampedVectorUpdate(Site(1, "residual"), 32, vector=_vector()))
    model = tiny_model("llama")
    data = [PolarityPair(id=str(i), question=q, positive="yes", negative="no", source=f"t:{i}")
            for i, q in enumerate(["is it a b ?", "a b ?", "b a ?", "is a ?"])]
    hp = _hp(n_epochs=1, use_chat_template=False)
    with caplog.at_level(logging.WARNING):
        result = train_layers(hp, data, model, tiny_tokenizer, output_dir=tmp_path, progress=False)
    assert (tmp_path / "layer_2.safetensors").exists() and not (tmp_path / "layer_2.pt").exists()
    assert result.layers[0].easyedit_path is None
    assert any("no EasyEdit layer_L.pt is written" in r.getMessage() for r in caplog.records)
    assert isinstance(load_updates(tmp_path / "layer_2.safetensors", model).updates[0], ClampedVectorUpdate)


def test_the_easyedit_generate_entry_hands_on_the_update_itself(tmp_path, tiny_tokenizer):
    from easyedit_split.core.apply_hparams import ApplySplitHyperParams
    from easyedit_split.easyedit.entry_points import _updates_for, generate

    model = tiny_model("llama")
    records = [{"question": q, "matching": "yes", "not_matching": "no"} for q in ["is it a b ?", "a b ?", "b a ?"]]
    hp = _hp(n_epochs=1, use_chat_template=False, save_vectors=False)
    vectors = generate("split", hp, records, (model, tiny_tokenizer), progress=False)
    assert isinstance(vectors["layer_2"], ClampedVectorUpdate)
    apply_hp = ApplySplitHyperParams.from_dict({"layers": [2], "multipliers": [1.0]})
    [(layer, update)] = _updates_for(apply_hp, model, vectors)
    assert layer == 2 and update is vectors["layer_2"]


def test_mixed_steering_clamps_only_the_rows_that_select_the_clamped_vector():
    from easyedit_split.core.apply import apply_mixed_updates

    model, ids = tiny_model("llama"), tiny_inputs(batch=3)
    site, v, w = Site(1, "residual"), _vector(), _vector(seed=8)
    clamp, add = ClampedVectorUpdate(site, 32, vector=v), VectorUpdate(site, 32, vector=w)
    base = site_output(model, site, ids)
    for m in (0.0, 1.5):
        with apply_mixed_updates(model, [[clamp], [add]], [0, 1, -1], m):
            mixed = site_output(model, site, ids)
        torch.testing.assert_close(mixed[0], _by_hand(base[0], v, m), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mixed[1], base[1] + m * w, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(mixed[2], base[2])
