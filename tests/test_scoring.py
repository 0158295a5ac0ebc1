import pytest
import torch

from easyedit_split.core.apply import apply_updates
from easyedit_split.core.scoring import PairScorer
from easyedit_split.core.sites import Site
from easyedit_split.data.encoding import EncodedPair, collate_pairs
from easyedit_split.data.logprobs import answer_nll
from tests.test_core import random_update
from tests.tiny_models import tiny_model


def make_pairs(single: bool, n: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        plen = int(torch.randint(2, 7, (1,), generator=g))
        prompt = torch.randint(1, 90, (plen,), generator=g).tolist()
        la, lb = (1, 1) if single else (int(torch.randint(1, 4, (1,), generator=g)), int(torch.randint(1, 4, (1,), generator=g)))
        pos = torch.randint(1, 90, (la,), generator=g).tolist()
        neg = torch.randint(1, 90, (lb,), generator=g).tolist()
        out.append(EncodedPair(f"p{i}", prompt, pos, neg))
    return out


def reference_losses(model, pairs, update, m):
    """Naive: full forward of both padded sequences, full logits, answer_nll."""
    batch = collate_pairs(pairs, pad_token_id=0)
    with torch.no_grad(), apply_updates(model, [update], m):
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    s, mean = answer_nll(logits, batch)
    B = len(pairs)
    return s[:B], s[B:], mean[:B], mean[B:]


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
@pytest.mark.parametrize("single", [True, False])
@pytest.mark.parametrize("use_cache", [True, False])
def test_scorer_matches_naive_full_forward(arch, single, use_cache):
    model = tiny_model(arch)
    pairs = make_pairs(single)
    u = random_update(model, "lora", Site(2, "mlp_down"))
    scorer = PairScorer(model, [u], pad_token_id=0, use_prefix_cache=use_cache)
    prepared = scorer.prepare(pairs)
    assert prepared.single_token == single
    assert (prepared.cache is not None) == use_cache
    grid = [-2.0, 0.0, 1.5]
    B = len(pairs)
    idx = torch.arange(B).repeat(len(grid))
    ms = torch.tensor(grid).repeat_interleave(B)
    with torch.no_grad():
        out = scorer.score(prepared, ms, idx)
    for k, m in enumerate(grid):
        sp, sn, mp, mn = reference_losses(model, pairs, u, m)
        sl = slice(k * B, (k + 1) * B)
        assert torch.allclose(out.sum_p[sl], sp, atol=1e-4)
        assert torch.allclose(out.sum_n[sl], sn, atol=1e-4)
        assert torch.allclose(out.mean_p[sl], mp, atol=1e-4)
        assert torch.allclose(out.mean_n[sl], mn, atol=1e-4)


def test_scorer_gradients_reach_only_the_update():
    model = tiny_model("llama")
    pairs = make_pairs(False)
    u = random_update(model, "vector", Site(1, "residual"))
    scorer = PairScorer(model, [u], pad_token_id=0)
    prepared = scorer.prepare(pairs)
    out = scorer.score(prepared, torch.ones(len(pairs)))
    (out.sum_p - out.sum_n).sum().backward()
    assert u.vector.grad is not None and u.vector.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
