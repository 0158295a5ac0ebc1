import json
import types

import pytest
import torch

from easyedit_split.core.scoring import PairScorer
from easyedit_split.core.serialization import load_updates
from easyedit_split.data.encoding import EncodedPair
from easyedit_split.training.hparams import DPOHyperParams, RePSHyperParams, SFTHyperParams, SplitHyperParams
from easyedit_split.training.trainer import Trainer, TrainingError, make_minibatches, sample_rows
from tests.tiny_models import tiny_model

TOK = types.SimpleNamespace(pad_token_id=0, eos_token_id=1)


def pairs(n=12, seed=0, single=True):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        prompt = torch.randint(2, 90, (int(torch.randint(3, 7, (1,), generator=g)),), generator=g).tolist()
        if single:
            pos, neg = [5 + (i % 2)], [6 - (i % 2)]  # two answer tokens whose roles alternate, like Yes/No
        else:
            # a learnable "concept": positive answers use the lower half of the vocabulary
            pos = torch.randint(2, 45, (int(torch.randint(1, 4, (1,), generator=g)),), generator=g).tolist()
            neg = torch.randint(45, 90, (int(torch.randint(1, 4, (1,), generator=g)),), generator=g).tolist()
        out.append(EncodedPair(f"p{i}", prompt, pos, neg))
    return out


def hp(cls=SplitHyperParams, **kw):
    base = {"layers": [2], "lr": 0.05, "n_epochs": 2, "batch_size": 3, "gradient_accumulation_steps": 1, "neg_loss_weight": 0.5,
                "margin_penalty_weight": 4.0, "steering_factors": [0.5, 1.0, 1.5], "seed": 3}
    if cls is not SplitHyperParams:
        base.pop("neg_loss_weight")
        base.pop("margin_penalty_weight")
    base.update(kw)
    return cls.from_dict(base)


def params(update):
    return {n: p.detach().clone() for n, p in update.named_parameters()}


def pref_odds(model, update, data, m):
    sc = PairScorer(model, [update], pad_token_id=0)
    with torch.no_grad():
        lp, ln = sc.score(sc.prepare(data), m).losses("sum")
    return (ln - lp).mean().item()


def test_sample_rows_directions_and_signs():
    g = torch.Generator().manual_seed(0)
    idx, m, pos_wins = sample_rows(3, ["orig_add", "orig_sub"], [2.0, 4.0], g)
    assert idx.tolist() == [0, 1, 2, 0, 1, 2]
    assert pos_wins.tolist() == [True] * 3 + [False] * 3
    assert all(v in (2.0, 4.0) for v in m[:3].tolist()) and all(v in (-2.0, -4.0) for v in m[3:].tolist())
    _, m0, _ = sample_rows(3, ["orig_add", "orig_sub"], [2.0], g, null_it_out=True)
    assert m0.tolist() == [2.0] * 3 + [0.0] * 3


def test_minibatch_composition_is_seeded_and_complete():
    data = pairs(10)
    a, b = make_minibatches(data, 3, seed=1), make_minibatches(data, 3, seed=1)
    assert [[e.id for e in mb] for mb in a] == [[e.id for e in mb] for mb in b]
    assert sorted(e.id for mb in a for e in mb) == sorted(e.id for e in data)
    assert [len(mb) for mb in a] == [3, 3, 3, 1]


@pytest.mark.parametrize("form", ["vector", "lora", "local_weight"])
@pytest.mark.parametrize("single", [True, False])
def test_split_with_zero_neg_and_margin_equals_sft(form, single):
    data = pairs(single=single)
    model = tiny_model("llama")
    a = Trainer(model, TOK, hp(intervention_method=form, neg_loss_weight=0.0, margin_penalty_weight=0.0)).train(
        data, progress=False)
    b = Trainer(model, TOK, hp(SFTHyperParams, intervention_method=form)).train(data, progress=False)
    assert a.objective == "split" and b.objective == "sft"
    for n, p in params(a.updates[0]).items():
        assert torch.allclose(p, params(b.updates[0])[n], atol=1e-6), n
    assert a.loss_history == pytest.approx(b.loss_history, rel=1e-5)


@pytest.mark.parametrize("form", ["vector", "lora", "local_weight"])
def test_gradients_reach_only_the_update_and_model_is_untouched(form):
    model = tiny_model("gemma2")
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    model.model.layers[0].mlp.up_proj.weight.requires_grad_(True)  # a caller's trainable flag is restored
    res = Trainer(model, TOK, hp(intervention_method=form, n_epochs=1)).train(pairs(single=False), progress=False)
    assert model.model.layers[0].mlp.up_proj.weight.requires_grad
    model.model.layers[0].mlp.up_proj.weight.requires_grad_(False)
    assert all(p.grad is None for p in model.parameters())
    for n, t in model.state_dict().items():
        assert torch.equal(t, before[n]), n
    assert any(p.abs().sum() > 0 for p in res.updates[0].parameters())


def test_same_seed_same_params_other_seed_differs():
    model, data = tiny_model("llama"), pairs()
    a = Trainer(model, TOK, hp(intervention_method="lora")).train(data, progress=False)
    b = Trainer(model, TOK, hp(intervention_method="lora")).train(data, progress=False)
    c = Trainer(model, TOK, hp(intervention_method="lora", seed=4)).train(data, progress=False)
    pa, pb, pc = params(a.updates[0]), params(b.updates[0]), params(c.updates[0])
    assert all(torch.equal(pa[n], pb[n]) for n in pa)
    assert not all(torch.equal(pa[n], pc[n]) for n in pa)


@pytest.mark.parametrize("objective_cls", [SplitHyperParams, DPOHyperParams])
@pytest.mark.parametrize("form", ["vector", "lora"])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, objective_cls, form):
    model, data = tiny_model("llama"), pairs(single=False)
    kw = {"intervention_method": form, "n_epochs": 3, "gradient_accumulation_steps": 2, "warmup_ratio": 0.2, "checkpoint_every": 2}
    full = Trainer(model, TOK, hp(objective_cls, **kw)).train(data, progress=False)
    assert full.steps == 6  # 4 minibatches / accumulation 2 = 2 steps per epoch
    ck = tmp_path / "ck"
    part = Trainer(model, TOK, hp(objective_cls, **kw)).train(data, progress=False, checkpoint_dir=ck, max_steps=3)
    assert part.steps == 3 and json.loads((ck / "latest.json").read_text())["step"] == 2
    resumed = Trainer(model, TOK, hp(objective_cls, **kw)).train(data, progress=False, checkpoint_dir=ck, resume=True,
                                                                 output_path=tmp_path / "out.safetensors")
    assert resumed.steps == 6
    pf, pr = params(full.updates[0]), params(resumed.updates[0])
    assert all(torch.equal(pf[n], pr[n]) for n in pf)
    assert resumed.loss_history == full.loss_history
    assert (tmp_path / "out.safetensors").exists()


def test_resume_refuses_other_hparams(tmp_path):
    model, data = tiny_model("llama"), pairs()
    Trainer(model, TOK, hp(checkpoint_every=1)).train(data, progress=False, checkpoint_dir=tmp_path, max_steps=2)
    with pytest.raises(TrainingError, match="different hparams"):
        Trainer(model, TOK, hp(checkpoint_every=1, lr=0.5)).train(data, progress=False, checkpoint_dir=tmp_path,
                                                                   resume=True)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, data = tiny_model("llama"), pairs()
    tr = Trainer(model, TOK, hp(checkpoint_every=2))
    calls = {"n": 0}
    real = tr.minibatch_loss

    def poisoned(batch, gen):
        calls["n"] += 1
        loss = real(batch, gen)
        return loss * float("nan") if calls["n"] == 4 else loss

    tr.minibatch_loss = poisoned
    with pytest.raises(TrainingError, match="non-finite loss.*step 4.*step_000002"):
        tr.train(data, progress=False, checkpoint_dir=tmp_path, output_path=tmp_path / "out.safetensors")
    assert (tmp_path / "step_000002.safetensors").exists()
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 2
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("cls", [SplitHyperParams, SFTHyperParams, RePSHyperParams, DPOHyperParams])
def test_training_a_vector_raises_pref_odds_on_training_pairs(cls):
    model, data = tiny_model("llama"), pairs(single=False)
    kw = {"n_epochs": 10, "lr": 0.3, "steering_factors": [1.0]}
    if cls is DPOHyperParams:
        kw["beta"] = 1.0
    res = Trainer(model, TOK, hp(cls, **kw)).train(data, progress=False)
    u = res.updates[0]
    before = pref_odds(model, u, data, 0.0)
    after = pref_odds(model, u, data, 1.0)
    assert after > before + 0.2, (cls.__name__, before, after)
    # bidirectional: the negative direction lowers it
    assert pref_odds(model, u, data, -1.0) < before


def test_reference_passes_only_for_objectives_that_need_them(monkeypatch):
    model, data = tiny_model("llama"), pairs()
    counts = {}
    real = PairScorer.score

    def counting(self, prepared, multipliers=0.0, pair_index=None, **kw):
        key = "ref" if kw.get("unsteered") else "train"
        counts[key] = counts.get(key, 0) + 1
        return real(self, prepared, multipliers, pair_index, **kw)

    monkeypatch.setattr(PairScorer, "score", counting)
    Trainer(model, TOK, hp(n_epochs=3)).train(data, progress=False)
    assert counts == {"train": 12}  # 4 minibatches x 3 epochs, one scorer call each
    counts.clear()
    Trainer(model, TOK, hp(DPOHyperParams, n_epochs=3)).train(data, progress=False)
    assert counts == {"train": 12, "ref": 4}  # references once per minibatch, cached across epochs


def test_result_file_has_method_and_hparams(tmp_path):
    model, data = tiny_model("llama"), pairs()
    res = Trainer(model, TOK, hp(RePSHyperParams, intervention_method="local_weight")).train(
        data, progress=False, output_path=tmp_path / "r.safetensors")
    bundle = load_updates(res.output_path, model)
    assert bundle.method == "reps" and bundle.hparams["lr"] == 0.05
    assert bundle.extra["loss_history"] == pytest.approx(res.loss_history)
    assert torch.equal(bundle.updates[0].weight, res.updates[0].weight.detach())
    assert bundle.updates[0].site.component == "mlp_down"


def test_easyedit_api_generate_and_apply_roundtrip(tmp_path, tiny_tokenizer):
    from easyedit_split.adapters.builders import from_easyedit_pt
    from easyedit_split.core.apply_hparams import ApplySplitHyperParams
    from easyedit_split.easyedit.entry_points import (
        apply_split,
        generate_diffmean,
        generate_split,
        remove_steering,
    )

    model = tiny_model("llama")
    data = [{"question": f"write a short review of the {w}", "answer_matching_behavior": "great food",
             "answer_not_matching_behavior": "awful food"} for w in ("film", "pizza", "place", "food")]
    out = generate_split({"alg_name": "spilt", "layers": [1], "intervention_method": "lora", "n_epochs": 2,
                          "lr": 0.05, "steer_vector_output_dir": str(tmp_path), "gradient_accumulation_steps": 1},
                         data, model=(model, tiny_tokenizer))
    state = out["layer_1"]
    assert {"lora_A", "lora_B", "r", "alpha", "intervention_components"} <= set(state)
    folder = tmp_path / "spilt_lora"  # upstream's spelling, where EasyEdit's apply configs look
    u_pt = from_easyedit_pt(folder / "layer_1.pt", model)
    u_ours = load_updates(folder / "layer_1.safetensors", model).updates[0]
    assert torch.allclose(u_pt.delta_weight(), u_ours.delta_weight(), atol=1e-6)

    wrapper = types.SimpleNamespace(model=model, tokenizer=tiny_tokenizer, device=torch.device("cpu"))
    ids = torch.tensor([[2, 9, 10, 11, 12]])
    base = model(input_ids=ids).logits
    for load_dir in (folder, None):
        hp = ApplySplitHyperParams.from_dict({"alg_name": "split", "layers": [1], "multipliers": [2.0],
                                              "intervention_method": "lora", "steer_vector_load_dir": str(load_dir)})
        apply_split(hp, wrapper, vector=None if load_dir else out)
        steered = model(input_ids=ids).logits
        assert not torch.allclose(steered, base)
        assert remove_steering(wrapper)
        assert torch.allclose(model(input_ids=ids).logits, base)

    dm = generate_diffmean({"alg_name": "caa", "layers": [2], "steer_vector_output_dir": str(tmp_path)}, data,
                           model=(model, tiny_tokenizer))
    assert dm["layer_2"].shape == (32,) and dm["layer_2"].abs().sum() > 0
    assert torch.equal(torch.load(tmp_path / "caa_vector" / "layer_2.pt", weights_only=True), dm["layer_2"])


def test_train_command_writes_and_prints(tmp_path, tiny_tokenizer, capsys):
    from easyedit_split.cli import main

    model = tiny_model("llama")
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    data = tmp_path / "d.jsonl"
    rows = [{"question": f"is the {w} great ?", "answer_matching_behavior": "yes", "answer_not_matching_behavior": "no"}
            for w in ("film", "food", "pizza", "place", "review")]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    rc = main(["train", "--hparams", "hparams/smollm2/split_vector.yaml", "--model", str(folder), "--data", str(data),
               "--output", str(tmp_path / "out"), "--no-progress", "layers=[1]", "test_size=null",
               "max_num_of_examples=null"])
    assert rc == 0
    printed = capsys.readouterr().out
    target = tmp_path / "out" / "split_vector" / "layer_1.safetensors"
    assert str(target) in printed and target.exists()
    assert load_updates(target).method == "split"


def test_train_layers_returns_every_layer_and_writes_both_formats(tmp_path, tiny_tokenizer):
    import inspect

    from easyedit_split.adapters.builders import from_easyedit_pt
    from easyedit_split.cli import train as train_command
    from easyedit_split.data import PolarityPair
    from easyedit_split.training.api import train_layers

    model = tiny_model("llama")
    pairs = [PolarityPair(f"p{i}", f"is the {w} great ?", "yes", "no", "t") for i, w in enumerate(("film", "food", "pizza"))]
    hp = SplitHyperParams.from_dict({"alg_name": "split", "layers": [1, 2], "n_epochs": 1, "gradient_accumulation_steps": 1})
    res = train_layers(hp, pairs, model, tiny_tokenizer, output_dir=tmp_path, progress=False)
    assert [r.layer for r in res.layers] == [1, 2] and res.n_pairs == 3 and set(res.updates) == {1, 2}
    for r in res.layers:
        assert r.final_loss is not None
        assert torch.equal(load_updates(r.path).updates[0].vector, r.update.vector.detach())
        assert torch.equal(from_easyedit_pt(r.easyedit_path, model).vector, r.update.vector.detach())
    assert "entry_points" not in inspect.getsource(train_command)  # the native command trains natively


@pytest.mark.parametrize("loss_type", ["scaled_simpo", "Scaled_SimPO", None])
def test_reps_reference_scale_asks_for_reference_losses_whatever_the_case_of_loss_type(loss_type):
    from easyedit_split.training.trainer import needs_reference

    on = hp(RePSHyperParams, reps_reference_scale=True, loss_type=loss_type)
    off = hp(RePSHyperParams, reps_reference_scale=False, loss_type=loss_type)
    assert needs_reference("reps", on) and not needs_reference("reps", off)
