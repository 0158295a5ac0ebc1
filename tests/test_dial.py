"""The dial options: a SPLIT margin that scales with the steering factor, and the answer-format instruction."""


import pytest
import torch

from easyedit_split.adapters.artefacts import LoadedUpdates
from easyedit_split.base.hparams_io import HParamsError
from easyedit_split.data.encoding import encode_pairs, with_instruction
from easyedit_split.data.pairs import PolarityPair
from easyedit_split.training.hparams import SFTHyperParams, SplitHyperParams
from easyedit_split.training.objectives import split_loss
from easyedit_split.training.trainer import Trainer, compute_objective, encode_for
from tests.test_training import TOK, hp, pairs, params
from tests.tiny_models import tiny_model

W = torch.tensor([1.0, 2.0, 0.5, 1.0])
L = torch.tensor([3.0, 1.0, 0.7, 1.5])


def test_split_loss_accepts_one_margin_per_row():
    lp, ln, g = 1.0, 0.5, 4.0
    theta = torch.tensor([0.5, 2.0, 1.0, 0.25])
    rows = [lp * w + ln * lo + g * max(0.0, th - (lo - w))
            for w, lo, th in zip(W.tolist(), L.tolist(), theta.tolist())]
    assert split_loss(W, L, lp, ln, g, theta).item() == pytest.approx(sum(rows) / 4, rel=1e-6)


def test_factor_margin_is_theta_times_abs_m():
    factors = torch.tensor([0.5, -2.0, 1.0, -1.5])
    h = SplitHyperParams.from_dict({"margin_scaling": "factor", "margin_threshold": 2.0, "margin_penalty_weight": 3.0,
                                    "neg_loss_weight": 0.4})
    got = compute_objective("split", h, W, L, factors=factors)
    want = split_loss(W, L, 1.0, 0.4, 3.0, 2.0 * factors.abs())
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    # the constant margin (the default) ignores the factors and differs here
    const = SplitHyperParams.from_dict({"margin_threshold": 2.0, "margin_penalty_weight": 3.0, "neg_loss_weight": 0.4})
    assert compute_objective("split", const, W, L, factors=factors).item() == pytest.approx(
        split_loss(W, L, 1.0, 0.4, 3.0, 2.0).item(), rel=1e-6)
    assert const.margin_scaling == "constant"
    with pytest.raises(ValueError, match="steering factors"):
        compute_objective("split", h, W, L)


def test_margin_scaling_is_validated():
    with pytest.raises(HParamsError, match="margin_scaling"):
        SplitHyperParams.from_dict({"margin_scaling": "quadratic"})


def test_trainer_passes_the_rows_factors_to_the_margin():
    model, data = tiny_model("llama"), pairs()
    # |m| = 1 for every row: the scaled margin equals the constant one, so training is identical
    a = Trainer(model, TOK, hp(steering_factors=[1.0], margin_threshold=1.0)).train(data, progress=False)
    b = Trainer(model, TOK, hp(steering_factors=[1.0], margin_threshold=1.0, margin_scaling="factor")).train(
        data, progress=False)
    assert all(torch.equal(p, params(b.updates[0])[n]) for n, p in params(a.updates[0]).items())
    # other factors: the margins differ, and so does the trained update
    c = Trainer(model, TOK, hp(steering_factors=[0.5, 2.0], margin_threshold=1.0)).train(data, progress=False)
    d = Trainer(model, TOK, hp(steering_factors=[0.5, 2.0], margin_threshold=1.0, margin_scaling="factor")).train(
        data, progress=False)
    assert not all(torch.equal(p, params(d.updates[0])[n]) for n, p in params(c.updates[0]).items())


def test_with_instruction():
    assert with_instruction("Is it blue?", "Answer with Yes or No.") == "Is it blue? Answer with Yes or No."
    assert with_instruction("Is it blue?\n", " Answer yes. ") == "Is it blue? Answer yes."
    assert with_instruction("Is it blue?", None) == "Is it blue?"
    assert with_instruction("Is it blue?", "  ") == "Is it blue?"


def test_instruction_is_in_training_and_evaluation_prompts(tiny_tokenizer):
    pair = PolarityPair(id="q1", question="is the sky blue ?", positive=" yes", negative=" no", source="t", meta={})
    plain = encode_pairs([pair], tiny_tokenizer)[0]
    told = encode_pairs([pair], tiny_tokenizer, answer_instruction="answer yes or no")[0]
    reference = encode_pairs([PolarityPair("q1", "is the sky blue ? answer yes or no", " yes", " no", "t", {})],
                             tiny_tokenizer)[0]
    assert told.prompt_ids == reference.prompt_ids != plain.prompt_ids
    assert (told.positive_ids, told.negative_ids) == (plain.positive_ids, plain.negative_ids)
    # training renders it from the hparams key (DiffMean's hparams too, through the same function) ...
    h = SFTHyperParams.from_dict({"answer_instruction": "answer yes or no"})
    assert encode_for(h, [pair], tiny_tokenizer)[0].prompt_ids == told.prompt_ids
    # ... and evaluation reads it back from the update's saved hparams
    loaded = LoadedUpdates([], "in-memory", info={"hparams": h.to_dict()})
    settings = loaded.rendering()
    assert settings["answer_instruction"] == "answer yes or no"
    assert encode_pairs([pair], tiny_tokenizer, **settings)[0].prompt_ids == told.prompt_ids
    assert "answer_instruction" not in LoadedUpdates([], "in-memory", info={"hparams": {"system_prompt": ""}}).rendering()
