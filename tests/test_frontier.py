import numpy as np
import pandas as pd
import pytest

from easyedit_split.evaluation.frontier import (
    curve_points,
    first_crossing,
    format_matched_table,
    matched_accuracy,
    per_example,
    upper_right_frontier,
)
from easyedit_split.evaluation.logodds import add_log_odds

GRID = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 1.5, 2.0])


def synthetic_table(thresholds, util_fn, grid=GRID, seed=0, noise=0.0):
    """Example i is correct exactly when m > thresholds[i]; its UtilOdds is util_fn(m) (+ noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, t in enumerate(thresholds):
        e = rng.normal(0, noise)
        for m in grid:
            lp, ln = (1.0, 2.0) if m > t else (2.0, 1.0)
            rows.append({"example_id": f"ex{i:03d}", "m": m, "L_p": lp, "L_n": ln, "L_p_mean": lp, "L_n_mean": ln,
                         "_u": util_fn(m) + e})
    df = add_log_odds(pd.DataFrame(rows))
    df["util_odds"] = df.pop("_u")  # the utility is set directly, independent of the losses
    return df


def test_first_crossing():
    m = [-1, 0, 1, 2]
    assert first_crossing(m, [0.9, 0.2, 0.6, 1.0], 0.4) == pytest.approx(0.5)
    assert first_crossing(m, [0.0, 0.5, 0.6, 1.0], 0.4) == 0.0
    assert first_crossing(m, [1.0, 0.1, 0.2, 0.3], 0.4) is None  # the negative side is never searched
    assert first_crossing([2, 0, 1], [1.0, 0.0, 0.5], 0.75) == pytest.approx(1.5)  # unsorted grid
    with pytest.raises(ValueError, match="contain 0"):
        first_crossing([1, 2], [0.1, 0.2], 0.5)


def test_upper_right_frontier():
    acc = [0.5, 0.6, 0.7, 0.6, 0.9, np.nan]
    util = [1.0, 0.5, 0.8, 0.9, -1.0, 5.0]
    assert upper_right_frontier(acc, util).tolist() == [True, False, True, True, True, False]
    # a duplicate point dominates nothing and is not dominated
    assert upper_right_frontier([0.5, 0.5], [1.0, 1.0]).tolist() == [True, True]


def test_per_example_and_curve_points():
    t = synthetic_table(np.linspace(-0.05, 1.95, 5), lambda m: -m * m)
    d = per_example(t)
    assert d.correct.shape == (5, GRID.size) and d.ids == sorted(d.ids)
    pts = curve_points(d)
    assert pts["accuracy"].tolist() == [0.0, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    np.testing.assert_allclose(pts["util"], -GRID**2)
    assert pts.loc[pts["m"] == 0, "on_frontier"].item()  # best utility
    assert pts.loc[pts["m"] == 2.0, "on_frontier"].item()  # best accuracy
    assert not pts.loc[pts["m"] == -1.0, "on_frontier"].item()  # dominated by m = 0
    with pytest.raises(ValueError, match="full"):
        per_example(t.iloc[1:])
    with pytest.raises(ValueError, match="lacks"):
        per_example(t.drop(columns=["util_odds"]))


def test_matched_accuracy_values_and_determinism():
    n = 200
    thresholds = np.linspace(0.0, 2.0, n, endpoint=False)  # accuracy(m) = m/2 on [0, 2)
    a = per_example(synthetic_table(thresholds, lambda m: 1.0 - m, noise=0.5, seed=1))
    b = per_example(synthetic_table(thresholds, lambda m: 3.0 - m, noise=0.5, seed=1))  # same noise, +2 utility
    res = matched_accuracy({"a": a, "b": b}, 0.5, reference="a", n_boot=300, seed=3)
    ra, rb = res.row("a"), res.row("b")
    # accuracy at the grid is 0.5 exactly at m = 1 (thresholds < 1 are half of them)
    assert ra.m_star == pytest.approx(1.0) and rb.m_star == pytest.approx(1.0)
    assert ra.accuracy == pytest.approx(0.5)
    noise_mean = np.mean(a.util[:, 0] - (1.0 - GRID[0]))
    assert ra.util == pytest.approx(0.0 + noise_mean)
    assert rb.util == pytest.approx(2.0 + noise_mean)
    assert ra.util_lo < ra.util < ra.util_hi
    # paired: the shared noise cancels in the difference, so its interval is far tighter than either's
    assert rb.diff == pytest.approx(2.0)
    assert rb.diff_hi - rb.diff_lo < 0.2 * (rb.util_hi - rb.util_lo)
    assert ra.reached_fraction == 1.0
    again = matched_accuracy({"a": a, "b": b}, 0.5, reference="a", n_boot=300, seed=3)
    assert again.to_dict() == res.to_dict()
    lines = format_matched_table(res)
    assert lines[0].endswith("Δ UtilOdds vs a [CI] |") and len(lines) == 4


def test_matched_accuracy_interpolates_between_grid_points():
    thresholds = np.linspace(0.0, 2.0, 100, endpoint=False)
    d = per_example(synthetic_table(thresholds, lambda m: 2.0 * m))
    r = matched_accuracy({"x": d}, 0.625, n_boot=50).row("x")
    # accuracy 0.5 at m=1 and 0.75 at m=1.5 -> m* = 1.25; UtilOdds linear in m -> 2.5
    assert r.m_star == pytest.approx(1.25) and r.util == pytest.approx(2.5)


def test_matched_accuracy_with_validation_fixes_m_star():
    thresholds = np.linspace(0.0, 2.0, 100, endpoint=False)
    test = per_example(synthetic_table(thresholds, lambda m: -m))
    val = per_example(synthetic_table(thresholds + 0.5, lambda m: -m))  # validation reaches 0.5 only at m = 1.5
    r = matched_accuracy({"x": test}, 0.5, validation={"x": val}, n_boot=50).row("x")
    assert r.m_source == "validation" and r.m_star == pytest.approx(1.5)
    assert r.accuracy == pytest.approx(0.75)  # the test accuracy at the validation's m*
    assert r.util == pytest.approx(-1.5)
    unreached = matched_accuracy({"x": test}, 0.99, validation={"x": val}, n_boot=20).row("x")
    assert unreached.m_star is None and unreached.util is None and unreached.reached_fraction == 0.0


def test_matched_accuracy_rejects_bad_input():
    d = per_example(synthetic_table(np.linspace(0, 2, 10), lambda m: m))
    other = per_example(synthetic_table(np.linspace(0, 2, 11), lambda m: m))
    with pytest.raises(ValueError, match="same evaluation pairs"):
        matched_accuracy({"a": d, "b": other}, 0.5)
    with pytest.raises(ValueError, match="reference"):
        matched_accuracy({"a": d}, 0.5, reference="z")
    with pytest.raises(ValueError, match="target accuracy"):
        matched_accuracy({"a": d}, 1.5)
