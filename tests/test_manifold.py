import numpy as np
import pytest
import torch

from easyedit_split.core.sites import Site
from easyedit_split.core.updates import VectorUpdate
from easyedit_split.data.encoding import EncodedPair
from easyedit_split.evaluation.api import evaluate_preference_utility
from easyedit_split.evaluation.manifold import (
    correlate_with_utility,
    dedup_positions,
    manifold_distance,
    split_fit_score,
)
from tests.test_core import random_update
from tests.test_scoring import make_pairs
from tests.tiny_models import tiny_model


def test_dedup_positions():
    rows = [[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 4], [1, 2, 7]]
    sel = [[True] * len(r) for r in rows]
    picks, keys = dedup_positions(rows, sel, skip_prefix=2)
    # prefix (1,2,3) once; (1,2,3,4) once although two rows have it; (1,2,3,5); (1,2,7)
    assert picks == [(0, 2), (0, 3), (1, 3), (3, 2)]
    assert (1, 2, 3, 4) in keys and len(keys) == 4
    picks2, _ = dedup_positions(rows, sel, skip_prefix=2, exclude={(1, 2, 3)})
    assert (0, 2) not in picks2 and (0, 3) in picks2
    sel[1][3] = False
    assert (1, 3) not in dedup_positions(rows, sel, skip_prefix=0)[0]


def test_split_fit_score():
    ids = [f"p{i}" for i in range(9)]
    fit, score = split_fit_score(ids, 0.5, seed=3)
    assert set(fit).isdisjoint(score) and sorted(fit + score) == list(range(9)) and fit and score
    assert split_fit_score(ids, 0.5, seed=3) == (fit, score)
    with pytest.raises(ValueError, match="at least 2"):
        split_fit_score(["a"], 0.5, 0)


def _expected_scored_prefixes(pairs, fit, score, skip):
    def prefixes(idx):
        out = set()
        for i in idx:
            p = pairs[i]
            for ans in (p.positive_ids, p.negative_ids):
                seq = list(p.prompt_ids) + list(ans)
                out |= {tuple(seq[: t + 1]) for t in range(skip, len(seq))}
        return out

    return prefixes(score) - prefixes(fit)


def test_manifold_downstream_dedup_and_held_out():
    model = tiny_model("llama")
    pairs = make_pairs(False, n=12)
    shared = [5, 6, 7]  # a common opening (like a chat template's) on every prompt
    pairs = [EncodedPair(p.id, shared + list(p.prompt_ids), p.positive_ids, p.negative_ids) for p in pairs]
    u = random_update(model, "lora", Site(1, "mlp_down"))
    grid = [-2.0, 0.0, 1e-4, 2.0]
    r = manifold_distance(model, None, pairs, [u], grid, pad_token_id=0, batch_size=5, seed=1)
    assert r.layers == [2, 3]  # downstream of layer 1: midway and last
    fit, score = split_fit_score([p.id for p in pairs], 0.5, 1)
    assert (r.n_fit_pairs, r.n_score_pairs) == (len(fit), len(score))
    expected = _expected_scored_prefixes(pairs, fit, score, skip=3)
    for layer in r.layers:
        t = r.layer_table(layer).set_index("m")
        assert (t["n_states"] == len(expected)).all()
        assert t.loc[0.0, "distance"] == 0.0
        assert abs(t.loc[1e-4, "distance"]) < 1e-3
        assert t.loc[2.0, "distance"] != 0.0
    scored_ids = set(r.per_pair["example_id"])
    assert scored_ids <= {pairs[i].id for i in score} and scored_ids.isdisjoint({pairs[i].id for i in fit})
    info = r.pca[3]
    assert info["n_components"] <= info["n_fit_states"] // 4 and info["dim"] == 32
    assert info["n_fit_states"] < 64 and r.warnings  # fewer states than 2·D: warned
    with pytest.raises(ValueError, match="downstream"):
        manifold_distance(model, None, pairs, [u], grid, pad_token_id=0, layers=[1])
    with pytest.raises(ValueError, match="no layer lies downstream"):
        manifold_distance(model, None, pairs, [random_update(model, "vector", Site(3, "residual"))], grid,
                          pad_token_id=0)


def test_manifold_correlation_with_bootstrap_interval():
    model = tiny_model("llama")
    pairs = make_pairs(False, n=16)
    u = random_update(model, "vector", Site(0, "residual"))
    grid = [-3.0, -1.5, 0.0, 1.5, 3.0]
    r = manifold_distance(model, None, pairs, [u], grid, pad_token_id=0, layers=[3], n_boot=0)
    pp = r.per_pair
    # utility falls exactly as each pair's own off-manifold residual grows: a strong negative correlation
    util = pp.assign(util_odds=-(pp["r_sum"] - pp["r0_sum"]) / pp["n"])[["example_id", "m", "util_odds"]]
    c = correlate_with_utility(r, util, n_boot=200, seed=0)
    assert c["n_m"] == len(grid) and c["n_pairs"] == r.n_score_pairs
    assert c["pearson"] < -0.9 and c["spearman"] < -0.9
    lo, hi = c["pearson_ci"]
    assert -1.0 <= lo <= c["pearson"] + 1e-9 and hi <= 1.0
    assert correlate_with_utility(r, util, n_boot=200, seed=0) == c  # seeded: identical
    noise = util.assign(util_odds=np.random.default_rng(0).normal(size=len(util)))
    wide = correlate_with_utility(r, noise, n_boot=200, seed=0)
    assert wide["pearson_ci"][1] - wide["pearson_ci"][0] > hi - lo
    with pytest.raises(ValueError, match="lacks some"):
        correlate_with_utility(r, util.iloc[1:], n_boot=10)


def test_evaluate_writes_report(tmp_path):
    model = tiny_model("llama")
    pairs = make_pairs(True, n=8)
    u = VectorUpdate(Site(2, "residual"), 32, vector=torch.randn(32, generator=torch.Generator().manual_seed(0)))
    grid = np.linspace(-3, 3, 9)
    res = evaluate_preference_utility(model, None, {"vec": u, "lora": random_update(model, "lora", Site(1, "mlp_down"))},
                                      pairs, grid, train_pairs=make_pairs(True, n=6, seed=1), output_dir=tmp_path,
                                      manifold=True, progress=False, n_boot=50, validation_pairs=make_pairs(True, n=6, seed=2),
                                      reference="vec")
    for name in ("report.md", "curves.png", "tradeoff.png", "manifold.png", "frontier.png", "results.json",
                 "sweep_vec.csv",
                 "sweep_train_lora.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    text = (tmp_path / "report.md").read_text()
    assert "![PrefOdds and UtilOdds against m](curves.png)" in text and "| vec | PrefOdds |" in text
    ev = res["vec"]
    assert set(ev.summary["m"]) == set(grid)
    assert ev.calibration is not None and ev.valid_region_means is not None
    assert set(ev.transfer_r2) == {"pref", "util", "pref_per_side", "util_per_side"}
    assert list(ev.frontier["m"]) == sorted(grid) and ev.frontier["on_frontier"].any()
    assert [c.target_accuracy for c in res.matched] == [0.75, 0.9]
    assert all(r.m_source == "validation" for c in res.matched for r in c.rows)
    assert "## Accuracy–utility frontier and matched accuracy" in text and "Δ UtilOdds vs vec" in text
    assert "## Activation manifold" in text and "| vec | 3 |" in text
