import math

import numpy as np
import pandas as pd
import pytest

from easyedit_split.evaluation.logodds import (
    accuracy,
    bootstrap_mean_ci,
    pref_odds,
    summarize,
    util_odds,
)


def naive_util(lp, ln):
    s = math.exp(-lp) + math.exp(-ln)
    return math.log(s / (1 - s))


@pytest.mark.parametrize("lp,ln", [(1.0, 2.0), (0.3, 5.0), (10.0, 12.0), (2.5, 2.5)])
def test_util_odds_matches_hand_computation(lp, ln):
    assert util_odds(lp, ln) == pytest.approx(naive_util(lp, ln), rel=1e-12)
    assert pref_odds(lp, ln) == pytest.approx(ln - lp)


def test_util_odds_hand_values():
    # s = 0.5 + 0.25 = 0.75 -> log(3)
    assert util_odds(math.log(2), math.log(4)) == pytest.approx(math.log(3), rel=1e-12)
    # s = 0.1 + 0.1 = 0.2 -> log(0.25)
    assert util_odds(-math.log(0.1), -math.log(0.1)) == pytest.approx(math.log(0.25), rel=1e-12)


def test_util_odds_mass_near_one_is_stable():
    # s = 1 - 1e-12: naive 1 - s loses most digits; the stable form gives log((1-1e-12)/1e-12)
    eps = 1e-12
    lp = -math.log(0.5)
    ln = -math.log(0.5 - eps)
    expected = math.log((1 - eps) / eps)
    assert util_odds(lp, ln) == pytest.approx(expected, rel=1e-3)
    # very large losses: the numerator underflows in exp(), logaddexp keeps it
    assert util_odds(800.0, 801.0) == pytest.approx(-800.0 + math.log1p(math.exp(-1.0)), rel=1e-9)


def test_util_odds_mass_at_or_above_one_is_inf():
    # s = 1 exactly (0.5 + 0.5) and s > 1 (per-token means are not probabilities)
    out = util_odds([math.log(2), 0.1, 1.0], [math.log(2), 0.2, 2.0])
    assert out[0] == np.inf and out[1] == np.inf
    assert np.isfinite(out[2])


def test_bootstrap_ci_is_seeded_and_skips_inf():
    rng = np.random.default_rng(3)
    v = rng.normal(1.0, 2.0, 200)
    a = bootstrap_mean_ci(v, seed=5)
    b = bootstrap_mean_ci(v, seed=5)
    assert a == b
    assert a.lo < a.mean < a.hi
    assert a.mean == pytest.approx(v.mean())
    # CI width ~ 2*1.96*sd/sqrt(n)
    assert (a.hi - a.lo) == pytest.approx(2 * 1.96 * v.std() / math.sqrt(v.size), rel=0.2)
    c = bootstrap_mean_ci(np.append(v, [np.inf, np.inf]), seed=5)
    assert c.n_infinite == 2 and c.n == 200 and c.mean == pytest.approx(v.mean())
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_mean_ci([1.0, np.nan])


def test_accuracy_and_summary():
    df = pd.DataFrame({"example_id": ["a", "b", "c", "a", "b", "c"], "m": [0, 0, 0, 1, 1, 1],
                       "L_p": [1.0, 3.0, 2.0, 0.5, 0.5, 0.5], "L_n": [2.0, 1.0, 3.0, 3.0, 3.0, 3.0]})
    df["L_p_mean"], df["L_n_mean"] = df["L_p"], df["L_n"]
    assert accuracy(df["L_p"][:3], df["L_n"][:3]) == pytest.approx(2 / 3)
    s = summarize(df, n_boot=200)
    assert list(s["m"]) == [0, 1]
    assert s.loc[0, "pref"] == pytest.approx(np.mean([1.0, -2.0, 1.0]))
    assert s.loc[1, "accuracy"] == 1.0
    assert s.loc[0, "util"] == pytest.approx(np.mean([naive_util(a, b) for a, b in [(1, 2), (3, 1), (2, 3)]]))
    with pytest.raises(ValueError, match="reduction"):
        summarize(df, reduction="max")
