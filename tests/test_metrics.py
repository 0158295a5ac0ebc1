"""Offline generation-quality metrics: distinct-n / repetition, perplexity, linear-probe concept score."""

from __future__ import annotations

import math

import pytest
import torch

from easyedit_split.core.generation import Generation
from easyedit_split.data.pairs import PolarityPair
from easyedit_split.metrics import (
    distinct_n,
    diversity_summary,
    fit_concept_probe,
    perplexity,
    pooled_hidden_states,
    repetition_rate,
)
from tests.tiny_models import tiny_model

# ---------------------------------------------------------------------------------------- diversity


def test_distinct_n_and_repetition_by_hand():
    seqs = [[1, 2, 3, 1, 2], [1, 2, 4]]
    # unigrams: 1,2,3,1,2,1,2,4 -> 4 unique of 8
    assert distinct_n(seqs, 1) == pytest.approx(4 / 8)
    # bigrams: (1,2)(2,3)(3,1)(1,2) + (1,2)(2,4) -> unique {(1,2),(2,3),(3,1),(2,4)} = 4 of 6
    assert distinct_n(seqs, 2) == pytest.approx(4 / 6)
    assert distinct_n(seqs, 3) == pytest.approx(4 / 4)
    assert repetition_rate([7, 7, 7, 7, 7], 2) == pytest.approx(1 - 1 / 4)
    assert repetition_rate([1, 2, 3, 4, 5], 2) == 0.0
    assert math.isnan(repetition_rate([1, 2], 4)) and math.isnan(distinct_n([[1]], 2))
    s = diversity_summary([[5, 5, 5, 5, 5, 5], [1, 2, 3, 4, 5, 6]], repetition_n=2)
    assert s["repetition_2"] == pytest.approx((1 - 1 / 5 + 0) / 2)
    assert s["distinct_1_per_text"] == pytest.approx((1 / 6 + 1) / 2)
    with pytest.raises(ValueError):
        distinct_n(seqs, 0)


# --------------------------------------------------------------------------------------- perplexity


def _manual_ppl(model, prompt, gen):
    ids = torch.tensor([prompt + gen])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    nll = [-logp[len(prompt) + k - 1, t].item() for k, t in enumerate(gen)]
    return math.exp(sum(nll) / len(nll)), sum(nll)


def test_perplexity_matches_manual_and_is_batch_invariant():
    model = tiny_model("llama")
    items = [
        ([1, 5, 6, 7], [8, 9, 10]),
        ([1, 11], [12, 13, 14, 15, 16]),
        ([1, 5], []),
        ([2, 3, 4, 5, 6, 7], [9]),
    ]
    gens = [Generation(prompt="p", text="t", token_ids=g, multiplier=1.0, prompt_ids=p) for p, g in items]
    res = perplexity(model, gens, batch_size=2, progress=False)
    one = perplexity(model, items, batch_size=1, progress=False)
    total = 0.0
    for i, (p, g) in enumerate(items):
        if not g:
            assert math.isnan(res.per_text[i])
            continue
        ppl, s = _manual_ppl(model, p, g)
        total += s
        assert res.per_text[i] == pytest.approx(ppl, rel=1e-4)
        assert one.per_text[i] == pytest.approx(ppl, rel=1e-4)
    assert res.n_tokens == 9
    assert res.corpus == pytest.approx(math.exp(total / 9), rel=1e-4)
    assert res.mean == pytest.approx(sum(x for x in res.per_text if not math.isnan(x)) / 3)
    # a repetitive text the model finds unlikely scores differently from another: not a constant
    assert len({round(x, 3) for x in res.per_text if not math.isnan(x)}) == 3


def test_perplexity_needs_a_prompt():
    with pytest.raises(ValueError, match="no prompt tokens"):
        perplexity(tiny_model("llama"), [([], [3, 4])], progress=False)


# ------------------------------------------------------------------------------------------- probe


def _pairs(n=24):
    qs = [
        "is this film great ?",
        "write a review of the food",
        "i like this place",
        "the pizza was",
        "answer : a or b",
        "review of elm street",
    ]
    return [
        PolarityPair(
            id=str(i),
            question=qs[i % len(qs)] + " " * (i // len(qs)),
            positive="great",
            negative="awful",
            source=f"mem:{i}",
        )
        for i in range(n)
    ]


def test_pooled_hidden_states_are_mean_over_answer_tokens():
    model = tiny_model("llama")
    items = [([1, 5, 6], [7, 8]), ([1, 9, 10, 11, 12], [13])]
    feats = pooled_hidden_states(model, items, 2, pooling="answer")
    for i, (p, a) in enumerate(items):
        with torch.no_grad():
            hs = model(input_ids=torch.tensor([p + a]), output_hidden_states=True).hidden_states[3][0]
        assert torch.allclose(feats[i], hs[len(p) :].mean(0), atol=1e-5)
    allf = pooled_hidden_states(model, items, 2, pooling="all")
    assert not torch.allclose(allf, feats)


def test_probe_separates_concept_and_scores_generations(tiny_tokenizer):
    model = tiny_model("llama")
    probe = fit_concept_probe(
        model, tiny_tokenizer, _pairs(), layer=2, test_size=0.25, seed=0, progress=False
    )
    assert probe.n_test_pairs == 6 and probe.n_train_pairs == 18
    assert probe.test_accuracy == 1.0 and probe.train_accuracy == 1.0
    tok = tiny_tokenizer
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "is the food great ?"}], tokenize=False, add_generation_prompt=True
    )
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    great = tok("great", add_special_tokens=False)["input_ids"]
    awful = tok("awful", add_special_tokens=False)["input_ids"]
    scores = probe.score(model, [(p_ids, great), (p_ids, awful), (p_ids, [])], progress=False)
    assert scores[0] > 0.9 and scores[1] < 0.1 and math.isnan(scores[2])
    assert probe.summary()["layer"] == 2


def test_probe_with_uninformative_labels_is_near_chance(tiny_tokenizer):
    # positive and negative answers identical: nothing to learn, held-out accuracy cannot be high
    pairs = [
        PolarityPair(id=p.id, question=p.question, positive="great", negative="great", source=p.source)
        for p in _pairs()
    ]
    probe = fit_concept_probe(tiny_model("llama"), tiny_tokenizer, pairs, layer=2, progress=False)
    assert probe.test_accuracy <= 0.6


def test_probe_rejects_tiny_data(tiny_tokenizer):
    with pytest.raises(ValueError, match="at least 4 pairs"):
        fit_concept_probe(tiny_model("llama"), tiny_tokenizer, _pairs(3), layer=1)
