import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from easyedit_split.evaluation.derived import calibrate, valid_region
from easyedit_split.evaluation.fit_bootstrap import bootstrap_fit
from easyedit_split.evaluation.fitting import (
    FORMS,
    CurveFit,
    curve_params,
    fit_curve,
    fit_pref_odds,
    fit_util_odds,
    n_free_params,
    pref_curve,
    pref_curve_per_side,
    rq_decay,
    transfer_r2,
    util_curve,
)

M = np.linspace(-5, 5, 21)
PREF_TRUE = {"alpha": 2.0, "beta": 0.5, "b": -0.3, "m_pos": 0.3, "L_pos": 2.0, "p_pos": 0.8, "m_neg": 0.3, "L_neg": 2.0, "p_neg": 0.8}
DECAY = ("m_pos", "L_pos", "p_pos", "m_neg", "L_neg", "p_neg")


def continuous(t):
    """Set ``p_neg`` so that the two decay pieces agree at m = 0."""
    t = dict(t)
    t["p_neg"] = t["p_pos"] * math.log1p(t["m_pos"] ** 2 / t["L_pos"]) / math.log1p(t["m_neg"] ** 2 / t["L_neg"])
    return t


def util_true():
    return continuous({"beta": 3.0, "b": -4.0, "m_pos": 0.2, "L_pos": 3.0, "p_pos": 1.0, "m_neg": -0.5, "L_neg": 5.0})


def two_humped():
    """Utility with a dip at 0 and a hump on each side (SmolLM2's trained vectors look like this)."""
    return continuous({"beta": 6.0, "b": -5.0, "m_pos": 1.5, "L_pos": 1.0, "p_pos": 1.5, "m_neg": -1.2, "L_neg": 0.8})


def test_parameter_counts_are_explicit():
    assert {(k, f): n_free_params(k, f) for k in ("pref", "util") for f in FORMS} == {
        ("pref", "design"): 8, ("util", "design"): 7, ("pref", "per_side"): 11, ("util", "per_side"): 9}
    assert curve_params("pref") == ("alpha", "beta", "b") + DECAY
    assert curve_params("util", "per_side") == ("beta_pos", "b_pos", "beta_neg", "b_neg") + DECAY
    with pytest.raises(ValueError, match="form"):
        n_free_params("pref", "shared")


def test_decay_is_continuous_for_true_params():
    t = util_true()
    d = {k: t[k] for k in DECAY}
    assert rq_decay(1e-12, **d) == pytest.approx(rq_decay(-1e-12, **d), abs=1e-9)


@pytest.mark.parametrize("form", FORMS)
def test_pref_fit_recovers_curve(form):
    rng = np.random.default_rng(0)
    truth = pref_curve(M, **PREF_TRUE)
    fit = fit_pref_odds(M, truth + rng.normal(0, 0.05, M.size), form=form)
    assert fit.status == "ok" and fit.success and fit.form == form
    assert fit.r2 > 0.99 and fit.r2_adj > 0.98
    assert fit.n_params == n_free_params("pref", form) and set(fit.params) == set(curve_params("pref", form))
    assert fit.continuity_gap < 1e-9
    assert fit.params["L_pos"] > 0 and fit.params["p_neg"] > 0
    dense = np.linspace(-5, 5, 201)
    assert np.max(np.abs(fit.predict(dense) - pref_curve(dense, **PREF_TRUE))) < 0.2
    y2 = truth + np.random.default_rng(10).normal(0, 0.05, M.size)
    assert transfer_r2(fit, M, y2) > 0.99
    again = CurveFit.from_dict(json.loads(json.dumps(fit.to_dict())))
    np.testing.assert_allclose(again.predict(M), fit.predict(M))
    assert again.success


def test_design_form_shares_only_what_the_design_states():
    """α, β, b shared; decay per side; a truth with different decay per side is recovered exactly."""
    t = continuous({"alpha": 1.0, "beta": 2.0, "b": 0.5, "m_pos": 0.8, "L_pos": 2.0, "p_pos": 1.2, "m_neg": -2.0,
                    "L_neg": 6.0})
    fit = fit_pref_odds(M, pref_curve(M, **t))
    assert fit.r2 > 1 - 1e-8
    np.testing.assert_allclose(fit.predict(np.linspace(-5, 5, 101)), pref_curve(np.linspace(-5, 5, 101), **t), atol=1e-4)


def test_util_fit_recovers_parameters():
    t = util_true()
    y = util_curve(M, **t) + np.random.default_rng(0).normal(0, 0.05, M.size)
    fit = fit_util_odds(M, y)
    assert fit.r2 > 0.99 and fit.continuity_gap < 1e-9
    assert fit.params["b"] == pytest.approx(t["b"], abs=0.35)
    assert fit.params["beta"] == pytest.approx(t["beta"], abs=0.35)
    dense = np.linspace(-5, 5, 201)
    assert np.max(np.abs(fit.predict(dense) - util_curve(dense, **t))) < 0.15


@pytest.mark.parametrize("form", FORMS)
def test_two_humped_utility(form):
    t = two_humped()
    m = np.linspace(-6, 6, 25)
    y = util_curve(m, **t) + np.random.default_rng(1).normal(0, 0.05, m.size)
    fit = fit_util_odds(m, y, form=form)
    assert fit.status == "ok" and fit.r2 > 0.99
    assert fit.params["m_pos"] == pytest.approx(1.5, abs=0.2) and fit.params["m_neg"] == pytest.approx(-1.2, abs=0.2)
    assert fit.continuity_gap < 1e-9


def test_util_peak_on_each_side_of_zero_with_different_heights():
    """A hump per side of different height and width: only the per-side form can follow it."""
    m = np.linspace(-6, 6, 25)
    at_zero = 9.0 * (1 + 1.5 ** 2 / 1.0) ** -1.5 - 8.0
    b_neg = at_zero - 5.0 * (1 + 1.2 ** 2 / 0.8) ** -1.0  # continuous at 0
    y = np.where(m >= 0, 9.0 * (1 + (m - 1.5) ** 2 / 1.0) ** -1.5 - 8.0, 5.0 * (1 + (m + 1.2) ** 2 / 0.8) ** -1.0 + b_neg)
    y = y + np.random.default_rng(0).normal(0, 0.05, m.size)
    per_side = fit_util_odds(m, y, form="per_side")
    design = fit_util_odds(m, y)
    assert per_side.status == design.status == "ok"
    assert per_side.r2 > 0.99 and per_side.r2 >= design.r2


@pytest.mark.parametrize("shape", ["sigmoid", "linear", "decreasing", "saturating_util"])
def test_smooth_monotone_data_converge(shape):
    """'no start converged' on smooth monotone data is gone: every form converges and fits well."""
    m = np.linspace(-8, 8, 17)
    y = {"sigmoid": 4 * np.tanh(m / 3), "linear": 0.7 * m - 1, "decreasing": -0.4 * m - 0.02 * m ** 2,
         "saturating_util": -3 + 2 / (1 + np.exp(-(m - 1)))}[shape]
    for kind in ("pref", "util"):
        for form in FORMS:
            fit = fit_curve(kind, m, y, form=form)
            assert fit.status == "ok", (kind, form, fit.message)
            assert fit.r2 > 0.97, (kind, form, fit.r2)


def test_too_few_points_are_not_fitted():
    rng = np.random.default_rng(3)
    m7 = np.linspace(-3, 3, 7)
    for kind in ("pref", "util"):
        for form in FORMS:
            fit = fit_curve(kind, m7, rng.normal(size=7), form=form)
            assert fit.status == "skipped" and not fit.success and math.isnan(fit.r2)
            assert "n_params + 3" in fit.message and fit.warnings
            with pytest.raises(ValueError, match="not fitted"):
                fit.predict(0.0)
    # the rule, exactly: n_points >= n_free + 3
    for n, expect in ((9, "skipped"), (10, "ok")):
        m = np.linspace(-4, 4, n)
        assert fit_util_odds(m, util_curve(m, **util_true())).status == expect
    one_sided = fit_util_odds(np.linspace(0, 5, 15), np.linspace(0, 1, 15))
    assert one_sided.status == "skipped" and "each side" in one_sided.message
    with pytest.raises(ValueError, match="multipliers"):
        fit_util_odds([0, 1, 2], [1, 2])


def test_pure_noise_is_not_a_confident_fit():
    m = np.linspace(-5, 5, 21)
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(30, m.size))  # 30 examples of pure noise
    fit = fit_util_odds(m, samples.mean(axis=0))
    fit = bootstrap_fit(fit, m, samples, n_boot=30, seed=0)
    assert fit.r2_adj < fit.r2
    lo, hi = fit.r2_ci
    assert hi - lo > 0.2  # the interval says the R² means little


def test_non_finite_points_are_recorded():
    m = np.linspace(-5, 5, 21)
    y = util_curve(m, **util_true())
    y[3] = np.nan
    fit = fit_util_odds(m, y)
    assert fit.n == 20 and fit.status == "ok"
    assert any("m = -3.5" in w for w in fit.warnings)


_DETERMINISM_SCRIPT = r"""
import importlib.util, json, sys
import numpy as np
import os, types
pkg = sys.modules["fitpkg"] = types.ModuleType("fitpkg")  # the fitting modules alone, as a package: no torch import
pkg.__path__ = [os.path.dirname(sys.argv[2])]
fitting = importlib.import_module("fitpkg.fitting")
bootstrap_fit = importlib.import_module("fitpkg.fit_bootstrap").bootstrap_fit
FORMS, fit_curve, util_curve = fitting.FORMS, fitting.fit_curve, fitting.util_curve
t = json.loads(sys.argv[1])
m = np.linspace(-6, 6, 25)
rng = np.random.default_rng(5)
samples = util_curve(m, **t) + rng.normal(0, 1.0, (20, m.size))
pref = np.tanh(m / 2)[None, :] * 3 + rng.normal(0, 1.0, (20, m.size))
out = {}
for kind, s in (("util", samples), ("pref", pref)):
    for form in FORMS:
        f = fit_curve(kind, m, s.mean(axis=0), form=form)
        f = bootstrap_fit(f, m, s, n_boot=3, seed=1)
        out[kind + form] = [repr(f.r2), {k: repr(v) for k, v in f.params.items()}, repr(f.r2_ci)]
print(json.dumps(out, sort_keys=True))
"""


def test_fits_are_identical_for_one_and_two_threads():
    from easyedit_split.evaluation import fitting

    outs = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        proc = subprocess.run([sys.executable, "-c", _DETERMINISM_SCRIPT, json.dumps(two_humped()), fitting.__file__],
                              env=env, capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout)
    assert outs[0] == outs[1]


def test_tiny_perturbation_does_not_change_the_optimum():
    """The issue's case: a 1e-9 change of the means flipped R² between two optima."""
    t = two_humped()
    m = np.linspace(-6, 6, 25)
    y = util_curve(m, **t) + np.random.default_rng(2).normal(0, 0.3, m.size)
    for form in FORMS:
        a = fit_util_odds(m, y, form=form)
        b = fit_util_odds(m, y + 1e-9 * np.random.default_rng(9).normal(size=m.size), form=form)
        assert abs(a.r2 - b.r2) < 1e-6, form
        for k in a.params:
            assert b.params[k] == pytest.approx(a.params[k], rel=1e-4, abs=1e-6), (form, k)


def test_bootstrap_is_seeded_and_brackets_the_fit():
    t = util_true()
    m = np.linspace(-5, 5, 21)
    samples = util_curve(m, **t) + np.random.default_rng(4).normal(0, 0.5, (25, m.size))
    samples[0, 0] = np.inf  # infinite entries are left out of the means, as in summarize
    means = np.array([c[np.isfinite(c)].mean() for c in samples.T])
    fit = fit_util_odds(m, means)
    a = bootstrap_fit(fit, m, samples, n_boot=20, seed=7)
    b = bootstrap_fit(fit, m, samples, n_boot=20, seed=7)
    assert a.r2_ci == b.r2_ci and a.param_ci == b.param_ci and a.n_boot == 20
    assert a.r2_ci[0] <= a.r2_ci[1] and set(a.param_ci) == set(fit.params)
    assert a.param_ci["b"][0] < fit.params["b"] < a.param_ci["b"][1]
    assert fit.r2_ci is None  # the input is left alone
    assert bootstrap_fit(fit, m, samples, n_boot=0) is fit
    with pytest.raises(ValueError, match="shape"):
        bootstrap_fit(fit, m, samples[:, :5], n_boot=5)


def test_per_side_pref_is_continuous_at_zero():
    p = {"alpha_pos": 1.0, "beta_pos": 2.0, "b_pos": 0.0, "alpha_neg": 3.0, "beta_neg": -1.0, "m_pos": 0.5,
         "L_pos": 1.0, "p_pos": 1.0, "m_neg": -0.5, "L_neg": 2.0, "p_neg": 0.5}
    p["b_neg"] = p["beta_pos"] * (1 + 0.25) ** -1 + p["b_pos"] - p["beta_neg"] * (1 + 0.125) ** -0.5
    y = pref_curve_per_side(M, **p) + np.random.default_rng(0).normal(0, 0.02, M.size)
    fit = fit_pref_odds(M, y, form="per_side")
    assert fit.r2 > 0.995 and fit.continuity_gap < 1e-9
    assert fit.predict(1e-12) == pytest.approx(fit.predict(-1e-12), abs=1e-9)


# ---------------------------------------------------------------------------------------------
# derived quantities


def test_valid_region_on_synthetic_util():
    # symmetric Cauchy-like bump: u(m) = 2/(1+m²/4) - 3 ; u(0) = -1, drop of 1 at m = ±2
    t = {"beta": 2.0, "b": -3.0, "m_pos": 0.0, "L_pos": 4.0, "p_pos": 1.0, "m_neg": 0.0, "L_neg": 4.0, "p_neg": 1.0}
    m = np.linspace(-6, 6, 25)
    u = util_curve(m, **t)
    fit = fit_util_odds(m, u)
    r = valid_region(m, u, fit=fit, delta=1.0)
    assert r.source == "fit" and r.lo == pytest.approx(-2.0, abs=0.05) and r.hi == pytest.approx(2.0, abs=0.05)
    assert not r.lo_at_edge and not r.hi_at_edge
    r2 = valid_region(m, u, delta=1.0)
    assert r2.source == "means" and r2.lo == pytest.approx(-2.0, abs=0.1)
    wide = valid_region(m, u, delta=10.0)
    assert wide.lo_at_edge and wide.hi_at_edge and wide.hi == 6.0
    assert r.clip(5.0) == pytest.approx(r.hi)


def test_derived_quantities_refuse_unconverged_fits_and_use_the_measured_reference():
    m = np.linspace(-6, 6, 25)
    u = util_curve(m, **two_humped())
    fit = fit_util_odds(m, u)
    for status in ("failed", "skipped"):
        bad = CurveFit.from_dict({**fit.to_dict(), "status": status, "message": "test"})
        with pytest.raises(ValueError, match=f"status '{status}'"):
            valid_region(m, u, fit=bad)
        with pytest.raises(ValueError, match=f"status '{status}'"):
            calibrate(m, pref=np.tanh(m), util=u, util_fit=bad, target_pref=0.5)
    shifted = CurveFit.from_dict({**fit.to_dict(), "params": {**fit.params, "b": fit.params["b"] + 0.5}})
    assert valid_region(m, u, fit=shifted).reference == pytest.approx(u[m == 0][0])


def test_nan_means_are_errors_or_flagged():
    m = np.linspace(-3, 3, 7)
    u = -(m ** 2) / 4
    at_zero = u.copy()
    at_zero[3] = np.nan
    with pytest.raises(ValueError, match="m = 0"):
        valid_region(m, at_zero)
    with pytest.raises(ValueError, match="m = 0"):
        valid_region(m, at_zero, skip_nan=True)
    elsewhere = u.copy()
    elsewhere[1] = np.nan
    with pytest.raises(ValueError, match="not finite at m = -2"):
        valid_region(m, elsewhere)
    r = valid_region(m, elsewhere, skip_nan=True)
    assert r.skipped_m == [-2.0]
    c = calibrate(m, pref=np.tanh(m), util=elsewhere, target_pref=0.5, skip_nan=True)
    assert c.skipped_m == [-2.0]


def test_calibration_on_synthetic_curves():
    m = np.linspace(-6, 6, 49)
    pref = np.tanh(m / 2) * 3  # 0 at m=0, saturates at ±3
    util = -0.1 * m ** 2  # drop 0.9 at |m| = 3
    c = calibrate(m, pref=pref, util=util, target_pref=np.tanh(1.0) * 3, max_util_drop=1.0)
    assert c.multiplier == pytest.approx(2.0, abs=0.05) and c.source == "means"
    assert float(c) == pytest.approx(2.0, abs=0.05)
    neg = calibrate(m, pref=pref, util=util, target_pref=-np.tanh(1.0) * 3, max_util_drop=1.0)
    assert neg.multiplier == pytest.approx(-2.0, abs=0.05)
    blocked = calibrate(m, pref=pref, util=util, target_pref=2.9, max_util_drop=1.0)
    assert blocked.multiplier is None and "UtilOdds falls to" in blocked.reason and "down" in blocked.reason
    never = calibrate(m, pref=pref, util=util, target_pref=5.0, max_util_drop=100.0)
    assert never.multiplier is None and "never reaches" in never.reason
    with pytest.raises(ValueError, match="no calibrated multiplier"):
        float(never)
    acc = 0.5 + 0.5 * np.tanh(m / 2)
    ca = calibrate(m, accuracy=acc, util=util, target_accuracy=0.5 + 0.5 * np.tanh(1.0), max_util_drop=1.0)
    assert ca.multiplier == pytest.approx(2.0, abs=0.05)
    with pytest.raises(ValueError, match="exactly one"):
        calibrate(m, pref=pref, util=util)


def test_calibration_when_utility_rises():
    """The issue's case: utility has a dip at 0 and rises with |m|; no 'utility dropped'."""
    m = np.linspace(-6, 6, 13)
    u = util_curve(m, **two_humped())
    acc = 0.5 + 0.45 * np.tanh(m / 2)
    c = calibrate(m, accuracy=acc, util=u, target_accuracy=0.2, max_util_drop=1.0)
    assert c.multiplier is not None and c.multiplier < 0
    assert c.util_drop < 0  # utility rose


def test_evaluation_flags_skipped_fits_and_uses_the_means(tmp_path):
    import torch

    from easyedit_split.core.sites import Site
    from easyedit_split.core.updates import VectorUpdate
    from easyedit_split.evaluation.api import evaluate_preference_utility
    from tests.test_scoring import make_pairs
    from tests.tiny_models import tiny_model

    model = tiny_model("llama")
    u = VectorUpdate(Site(2, "residual"), 32, vector=torch.randn(32, generator=torch.Generator().manual_seed(0)))
    grid = np.linspace(-3, 3, 7)
    res = evaluate_preference_utility(model, None, {"vec": u}, make_pairs(True, n=6), grid, output_dir=tmp_path,
                                      progress=False, n_boot=10, fit_boot=5, derived_from="fit")
    ev = res["vec"]
    assert set(ev.fits) == {"pref", "util", "pref_per_side", "util_per_side"}
    assert all(f.status == "skipped" for f in ev.fits.values())
    assert ev.valid_region.source == "means" and ev.calibration.source == "means"
    assert sum(n.startswith("evaluation pairs:") and "skipped" in n for n in ev.notes) == 4
    assert sum("use the measured" in n for n in ev.notes) == 2
    text = (tmp_path / "report.md").read_text()
    assert "## Flags" in text and text.count("fit skipped: 7 finite points") == 4
    assert "| vec | UtilOdds | per-side | skipped:" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["methods"]["vec"]["fits"]["util"]["status"] == "skipped"
