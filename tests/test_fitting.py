import math
import time

import numpy as np
import pytest

from easyedit_split.evaluation.derived import calibrate, valid_region
from easyedit_split.evaluation.fitting import (
    CurveFit,
    fit_pref_odds,
    fit_util_odds,
    pref_curve,
    rq_decay,
    transfer_r2,
    util_curve,
)

M = np.linspace(-5, 5, 21)
PREF_TRUE = {"alpha": 2.0, "beta": 0.5, "b": -0.3, "m_pos": 0.3, "L_pos": 2.0, "p_pos": 0.8, "m_neg": 0.3, "L_neg": 2.0, "p_neg": 0.8}


def util_true():
    t = {"beta": 3.0, "b": -4.0, "m_pos": 0.2, "L_pos": 3.0, "p_pos": 1.0, "m_neg": -0.5, "L_neg": 5.0}
    t["p_neg"] = t["p_pos"] * math.log1p(t["m_pos"] ** 2 / t["L_pos"]) / math.log1p(t["m_neg"] ** 2 / t["L_neg"])
    return t


def test_decay_is_continuous_for_true_params():
    t = util_true()
    d = {k: t[k] for k in ("m_pos", "L_pos", "p_pos", "m_neg", "L_neg", "p_neg")}
    assert rq_decay(1e-12, **d) == pytest.approx(rq_decay(-1e-12, **d), abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_pref_fit_recovers_curve(seed):
    rng = np.random.default_rng(seed)
    truth = pref_curve(M, **PREF_TRUE)
    y = truth + rng.normal(0, 0.05, M.size)
    t0 = time.perf_counter()
    fit = fit_pref_odds(M, y)
    assert time.perf_counter() - t0 < 3.0  # < 1 s on an idle core (benchmarks/bench_sweep.py); slack for CI
    assert fit.r2 > 0.99
    assert fit.continuity_gap < 1e-6
    assert fit.params["L_pos"] > 0 and fit.params["p_neg"] > 0
    dense = np.linspace(-5, 5, 201)
    assert np.max(np.abs(fit.predict(dense) - pref_curve(dense, **PREF_TRUE))) < 0.15
    # well-identified features: value at 0 and the saturation levels at the ends
    assert fit.predict(0.0) == pytest.approx(pref_curve(0.0, **PREF_TRUE), abs=0.08)
    # held-out noisy draw of the same curve
    y2 = truth + np.random.default_rng(seed + 10).normal(0, 0.05, M.size)
    assert transfer_r2(fit, M, y2) > 0.99
    again = CurveFit.from_dict(fit.to_dict())
    np.testing.assert_allclose(again.predict(M), fit.predict(M))


def test_util_fit_recovers_parameters():
    t = util_true()
    y = util_curve(M, **t) + np.random.default_rng(0).normal(0, 0.05, M.size)
    fit = fit_util_odds(M, y)
    assert fit.r2 > 0.99
    assert fit.continuity_gap < 1e-6
    assert fit.params["b"] == pytest.approx(t["b"], abs=0.35)
    assert fit.params["beta"] == pytest.approx(t["beta"], abs=0.35)
    assert fit.params["m_pos"] == pytest.approx(t["m_pos"], abs=0.2)
    dense = np.linspace(-5, 5, 201)
    assert np.max(np.abs(fit.predict(dense) - util_curve(dense, **t))) < 0.15


def test_fit_rejects_too_few_points():
    with pytest.raises(ValueError, match="at least 4"):
        fit_util_odds([0, 1, 2], [1, 2, 3])


def test_valid_region_on_synthetic_util():
    # symmetric Cauchy-like bump: u(m) = 2/(1+m²/4) - 3 ; u(0) = -1, drop of 1 at m = ±2
    t = {"beta": 2.0, "b": -3.0, "m_pos": 0.0, "L_pos": 4.0, "p_pos": 1.0, "m_neg": 0.0, "L_neg": 4.0, "p_neg": 1.0}
    m = np.linspace(-6, 6, 25)
    fit = fit_util_odds(m, util_curve(m, **t))
    r = valid_region(m, fit=fit, delta=1.0)
    assert r.lo == pytest.approx(-2.0, abs=0.05) and r.hi == pytest.approx(2.0, abs=0.05)
    assert not r.lo_at_edge and not r.hi_at_edge
    r2 = valid_region(m, util_curve(m, **t), delta=1.0)
    assert r2.source == "means" and r2.lo == pytest.approx(-2.0, abs=0.1)
    wide = valid_region(m, util_curve(m, **t), delta=10.0)
    assert wide.lo_at_edge and wide.hi_at_edge and wide.hi == 6.0
    assert r.clip(5.0) == pytest.approx(r.hi)


def test_calibration_on_synthetic_curves():
    m = np.linspace(-6, 6, 49)
    pref = np.tanh(m / 2) * 3  # 0 at m=0, saturates at ±3
    util = -0.1 * m ** 2  # drop 0.9 at |m| = 3
    c = calibrate(m, pref=pref, util=util, target_pref=np.tanh(1.0) * 3, max_util_drop=1.0)
    assert c.multiplier == pytest.approx(2.0, abs=0.05)
    assert float(c) == pytest.approx(2.0, abs=0.05)
    neg = calibrate(m, pref=pref, util=util, target_pref=-np.tanh(1.0) * 3, max_util_drop=1.0)
    assert neg.multiplier == pytest.approx(-2.0, abs=0.05)
    blocked = calibrate(m, pref=pref, util=util, target_pref=2.9, max_util_drop=1.0)
    assert blocked.multiplier is None and "utility has dropped" in blocked.reason
    never = calibrate(m, pref=pref, util=util, target_pref=5.0, max_util_drop=100.0)
    assert never.multiplier is None and "never reaches" in never.reason
    with pytest.raises(ValueError, match="no calibrated multiplier"):
        float(never)
    acc = 0.5 + 0.5 * np.tanh(m / 2)
    ca = calibrate(m, accuracy=acc, util=util, target_accuracy=0.5 + 0.5 * np.tanh(1.0), max_util_drop=1.0)
    assert ca.multiplier == pytest.approx(2.0, abs=0.05)
    with pytest.raises(ValueError, match="exactly one"):
        calibrate(m, pref=pref, util=util)


def test_util_fit_recovers_a_peak_on_each_side_of_zero():
    """An update trained at ±m can raise utility on both sides (SmolLM2's trained vectors do)."""
    import numpy as np

    from easyedit_split.evaluation.fitting import fit_util_odds

    m = np.linspace(-6, 6, 25)
    centre = np.where(m >= 0, 1.5, -1.2)
    width = np.where(m >= 0, 1.0, 0.8)
    y = 9.0 * (1 + (m - centre) ** 2 / width) ** -1.5 - 8.0
    y = y + np.random.default_rng(0).normal(0, 0.05, m.size)
    fit = fit_util_odds(m, y)
    assert fit.r2 > 0.99
