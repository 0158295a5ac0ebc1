import numpy as np
import pandas as pd
import torch

from easyedit_split.evaluation.api import evaluate_preference_utility
from easyedit_split.evaluation.manifold import manifold_distance
from easyedit_split.sites import Site
from easyedit_split.updates import VectorUpdate
from tests.test_core import random_update
from tests.test_scoring import make_pairs
from tests.tiny_models import tiny_model


def test_manifold_distance_zero_at_m0_and_grows():
    model = tiny_model("llama")
    u = random_update(model, "lora", Site(1, "mlp_down"))
    grid = [-4.0, -1.0, -1e-4, 0.0, 1e-4, 1.0, 4.0]
    r = manifold_distance(model, None, make_pairs(False, n=12), [u], grid, pad_token_id=0, positions="all", batch_size=5)
    t = r.table.set_index("m")["distance"]
    assert abs(t[0.0]) < 1e-9
    assert abs(t[1e-4]) < 1e-3 and abs(t[-1e-4]) < 1e-3
    assert t[1.0] > 10 * abs(t[1e-4]) and t[4.0] > t[1.0] > 0
    assert t[-4.0] > t[-1.0] > 0
    assert 1 <= r.n_components < 32 and r.explained_variance >= 0.9
    rng = np.random.default_rng(0)
    util = pd.Series(-np.abs(np.array(grid)) + rng.normal(0, 0.01, len(grid)), index=grid)
    r2 = manifold_distance(model, None, make_pairs(False, n=12), [u], grid, pad_token_id=0, util_by_m=util)
    assert r2.correlation["n"] == len(grid) and r2.correlation["pearson"] < 0


def test_evaluate_writes_report(tmp_path):
    model = tiny_model("llama")
    pairs = make_pairs(True, n=8)
    u = VectorUpdate(Site(2, "residual"), 32, vector=torch.randn(32, generator=torch.Generator().manual_seed(0)))
    grid = np.linspace(-3, 3, 9)
    res = evaluate_preference_utility(model, None, {"vec": u, "lora": random_update(model, "lora", Site(1, "mlp_down"))},
                                      pairs, grid, train_pairs=make_pairs(True, n=6, seed=1), output_dir=tmp_path,
                                      manifold=True, progress=False, n_boot=50)
    for name in ("report.md", "curves.png", "tradeoff.png", "manifold.png", "results.json", "sweep_vec.csv",
                 "sweep_train_lora.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    text = (tmp_path / "report.md").read_text()
    assert "![PrefOdds and UtilOdds against m](curves.png)" in text and "| vec | PrefOdds |" in text
    ev = res["vec"]
    assert set(ev.summary["m"]) == set(grid)
    assert ev.calibration is not None and ev.valid_region_means is not None
    assert set(ev.transfer_r2) == {"pref", "util", "pref_per_side", "util_per_side"}
