"""Every picture says what it claims: the frontier shows every matched target (and who misses it), every point
its m; the trade-off its direction; the curves' legend covers no data and says 95 %; the report explains its
'†' and its 'not reached'."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from easyedit_split.evaluation import plots
from easyedit_split.evaluation.frontier import (
    curve_points,
    format_matched_table,
    matched_accuracy,
    per_example,
)
from easyedit_split.evaluation.report import param_with_interval
from tests.test_frontier import synthetic_table


@pytest.fixture()
def captured(monkeypatch, tmp_path):
    figures = []

    def keep(fig, path):
        figures.append(fig)
        return tmp_path / "x.png"

    monkeypatch.setattr(plots, "save_figure", keep)
    return figures


def _texts(fig):
    out = [t.get_text() for ax in fig.axes for t in ax.texts]
    out += [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    out += [ax.get_title() for ax in fig.axes]
    return out


def _two_methods():
    thresholds = np.linspace(0.0, 2.0, 40, endpoint=False)
    fast = per_example(synthetic_table(thresholds / 2, lambda m: -abs(m)))  # reaches 0.9 below m = 1
    slow = per_example(synthetic_table(thresholds + 1.0, lambda m: 1.0 - abs(m)))  # only ~0.5 at m = 2
    return {"split": fast, "sft": slow}


def test_frontier_draws_every_target_names_who_misses_it_and_labels_every_m(captured):
    data = _two_methods()
    points = {name: curve_points(d) for name, d in data.items()}
    comparisons = [matched_accuracy(data, target, reference="split", n_boot=50) for target in (0.5, 0.9)]
    plots.plot_frontier(points, "frontier.png", matched=comparisons)
    fig = captured[-1]
    texts = _texts(fig)
    assert "target 0.5" in texts and "target 0.9" in texts
    assert any(t.startswith("split at matched accuracy 0.5") for t in texts)
    assert any(t.startswith("split at matched accuracy 0.9") for t in texts)  # the last target is not the only one
    assert any("sft does not reach 0.9" in t for t in texts)
    for m in (-2, -1, 0, 0.5, 1, 1.5, 2):
        assert texts.count(f"{m:g}") >= 2, m  # each method's point at that m carries its label
    assert "95% CI" in fig.axes[0].get_title()


def test_a_one_point_frontier_is_visible(captured):
    p = pd.DataFrame({"m": [0.0, 1.0, 2.0], "accuracy": [0.5, 0.9, 0.8], "util": [1.0, 2.0, 0.0],
                      "on_frontier": [False, True, False]})
    plots.plot_frontier({"sft": p}, "frontier.png")
    line = next(ln for ln in captured[-1].axes[0].lines if ln.get_label() == "sft frontier (1 point)")
    assert line.get_marker() == "o" and line.get_markersize() >= 6


def test_tradeoff_shows_direction_and_m(captured):
    s = pd.DataFrame({"m": [1.0, -1.0, 0.0, 2.0], "pref": [1.0, -1.0, 0.0, 1.5], "util": [0.0, 0.0, 1.0, -1.0]})
    plots.plot_tradeoff({"split": s}, "tradeoff.png")
    ax = captured[-1].axes[0]
    arrows = [a for a in ax.texts if getattr(a, "arrow_patch", None) is not None]
    assert len(arrows) == 3  # one per step of increasing m
    starts = [a.xyann if hasattr(a, "xyann") else a.xytext for a in arrows]
    assert [x for x, _ in starts] == [-1.0, 0.0, 1.0]  # in m order: -1 -> 0 -> 1 -> 2
    assert {t.get_text() for t in ax.texts} >= {"-1", "0", "1", "2"}
    assert "increasing m" in ax.get_title()


def test_curves_legend_is_outside_both_panels_and_says_95_percent(captured):
    s = pd.DataFrame({"m": [-1.0, 0.0, 1.0], "pref": [0.0, 0.1, 0.2], "pref_lo": [-0.1, 0.0, 0.1],
                      "pref_hi": [0.1, 0.2, 0.3], "util": [0.0, 1.0, 0.0], "util_lo": [-0.1, 0.9, -0.1],
                      "util_hi": [0.1, 1.1, 0.1]})
    plots.plot_curves({"split": s}, None, "curves.png")
    fig = captured[-1]
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    assert any("95% CI" in t for t in _texts(fig))


def test_matched_table_says_not_reached_and_why():
    data = _two_methods()
    lines = format_matched_table(matched_accuracy(data, 0.9, reference="split", n_boot=20))
    assert "| sft | not reached |" in "\n".join(lines)
    assert lines[-1].startswith("Not reached: ") and "below 0.9 on the evaluation pairs" in lines[-1]


def test_parameter_intervals_show_enough_digits_and_flag_points_outside():
    assert param_with_interval(3.6e5, (3.6e5 + 10, 3.6e5 + 20)) == "3.6e+05 [3.6001e+05, 3.6002e+05]†"
    assert param_with_interval(1.5, (1.0, 2.0)) == "1.5 [1, 2]"
    assert param_with_interval(0.7, (0.7, 0.7)) == "0.7 [0.7, 0.7] (every resample alike)"
    assert param_with_interval(100.000000001, (5.8, 100.0)) == "100 [5.8, 100]"  # equal at 6 digits: inside
