import numpy as np
import pytest
import torch

from easyedit_split.core.record import site_output
from easyedit_split.core.sites import Site, resolve_site
from easyedit_split.core.updates import VectorUpdate
from easyedit_split.data.encoding import EncodedPair, collate_sequences
from easyedit_split.evaluation.doses import dose_updates, measure_site_norms
from easyedit_split.evaluation.logodds import summarize
from easyedit_split.evaluation.sweep import sweep
from tests.test_core import random_update
from tests.test_scoring import make_pairs
from tests.tiny_models import tiny_model


@pytest.mark.parametrize("form", ["vector", "lora", "local_weight"])
def test_scaled_update_scales_delta(form):
    model = tiny_model("llama")
    site = Site(1, "mlp_down")
    u = random_update(model, form, site)
    x = torch.randn(3, 5, resolve_site(model, site).d_in, generator=torch.Generator().manual_seed(2))
    s = u.scaled(-2.5)
    assert type(s) is type(u) and s.site == u.site
    torch.testing.assert_close(s.delta(x), -2.5 * u.delta(x))
    # the original is untouched
    torch.testing.assert_close(u.delta(x), random_update(model, form, site).delta(x))


def test_site_norms_of_a_vector():
    model = tiny_model("llama")
    pairs = make_pairs(False, n=7)
    v = torch.randn(32, generator=torch.Generator().manual_seed(3))
    u = VectorUpdate(Site(2, "residual"), 32, vector=v)
    norms = measure_site_norms(model, None, pairs, [u], pad_token_id=0, batch_size=3)
    assert norms.delta_norm == pytest.approx(float(v.norm()), rel=1e-5)  # Δh = v at every token
    # hand-computed mean norm over every token but the first of each (prompt + positive answer) sequence
    batch = collate_sequences([(p.prompt_ids, p.positive_ids) for p in pairs], 0, "right")
    h = site_output(model, Site(2, "residual"), batch.input_ids, batch.attention_mask).float()
    sel = batch.attention_mask.bool().clone()
    sel[:, 0] = False
    assert norms.n_tokens == int(sel.sum())
    assert norms.activation_norm == pytest.approx(float(h[sel].norm(dim=-1).mean()), rel=1e-5)


@pytest.mark.parametrize("form", ["vector", "lora"])
def test_norm_dose_makes_delta_equal_activation_norm(form):
    model = tiny_model("llama")
    pairs = make_pairs(False, n=6)
    u = random_update(model, form, Site(1, "mlp_down") if form == "lora" else Site(1, "residual"))
    dosed, dose = dose_updates(model, None, [u], "norm", norm_pairs=pairs)
    assert dose.mode == "norm" and dose.factor > 0
    assert dose.factor == pytest.approx(dose.activation_norm / dose.delta_norm)
    after = measure_site_norms(model, None, pairs, dosed, pad_token_id=0)
    assert after.delta_norm == pytest.approx(after.activation_norm, rel=1e-4)
    assert dose.relative_norm == pytest.approx(1.0)
    raw, rdose = dose_updates(model, None, [u], "raw", norm_pairs=pairs)
    assert raw == [u] and rdose.factor == 1.0 and rdose.delta_norm == pytest.approx(dose.delta_norm)
    with pytest.raises(ValueError, match="dose must be one of"):
        dose_updates(model, None, [u], "bogus", norm_pairs=pairs)
    with pytest.raises(ValueError, match="validation pairs"):
        dose_updates(model, None, [u], "accuracy", norm_pairs=pairs)


def _answer_pairs(n, seed, pos=5, neg=6):
    g = torch.Generator().manual_seed(seed)
    return [EncodedPair(f"v{seed}_{i}", torch.randint(7, 90, (4,), generator=g).tolist(), [pos], [neg])
            for i in range(n)]


def test_accuracy_dose_reaches_target_on_validation():
    model = tiny_model("llama")
    last = Site(3, "residual")
    W = model.lm_head.weight.detach()
    direction = W[5] - W[6]  # pushes the answer token 5 over 6
    u = VectorUpdate(last, 32, vector=direction / direction.norm())
    val = _answer_pairs(16, seed=1)
    grid = (0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
    dosed, dose = dose_updates(model, None, [u], "accuracy", norm_pairs=_answer_pairs(8, seed=2),
                               validation_pairs=val, target_accuracy=0.9, probe_grid=grid)
    assert dose.reached and dose.n_validation_pairs == 16
    norm_factor = dose.activation_norm / dose.delta_norm
    assert dose.factor == pytest.approx(norm_factor * dose.norm_m_at_target)
    # on the norm-dose grid the target is crossed exactly between the bracketing points of m*
    normed = [u.scaled(norm_factor)]
    acc = summarize(sweep(model, None, val, normed, grid, progress=False, pad_token_id=0),
                    n_boot=0).set_index("m")["accuracy"]
    j = int(np.searchsorted(grid, dose.norm_m_at_target))
    assert acc[grid[j - 1]] < 0.9 <= acc[grid[j]]
    # dose m = 2 (beyond the target point) is at least as accurate as the upper bracket
    acc2 = summarize(sweep(model, None, val, dosed, [0.0, 2.0 * grid[j] / dose.norm_m_at_target], progress=False,
                           pad_token_id=0), n_boot=0)["accuracy"].iloc[-1]
    assert acc2 >= 0.9
    # the opposite direction never gets there: flagged, not silently used
    _, bad = dose_updates(model, None, [u.scaled(-1.0)], "accuracy", norm_pairs=val, validation_pairs=val,
                          target_accuracy=0.9, probe_grid=grid)
    assert bad.reached is False


def test_dose_refuses_a_null_update():
    model = tiny_model("llama")
    u = VectorUpdate(Site(1, "residual"), 32)
    with pytest.raises(ValueError, match="changes nothing"):
        dose_updates(model, None, [u], "norm", norm_pairs=make_pairs(False, n=3))
