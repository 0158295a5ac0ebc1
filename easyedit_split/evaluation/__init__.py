"""Preference–utility evaluation: log-odds, multiplier sweeps, fitted curves, derived quantities,
the activation-manifold measure, plots and reports (docs/design.md §2–3)."""

from __future__ import annotations

from easyedit_split.evaluation.api import EvaluationResult, MethodEvaluation, evaluate_preference_utility
from easyedit_split.evaluation.curves import CurveFit, pref_curve, rq_decay, transfer_r2, util_curve
from easyedit_split.evaluation.derived import Calibration, ValidRegion, calibrate, valid_region
from easyedit_split.evaluation.fit_bootstrap import bootstrap_fit
from easyedit_split.evaluation.fitting import fit_curve, fit_pref_odds, fit_util_odds
from easyedit_split.evaluation.logodds import (
    MeanCI,
    accuracy,
    bootstrap_mean_ci,
    pref_odds,
    summarize,
    util_odds,
)
from easyedit_split.evaluation.manifold import ManifoldResult, correlate_with_utility, manifold_distance
from easyedit_split.evaluation.sweep import read_table, sweep, write_table

__all__ = [
    "Calibration", "CurveFit", "EvaluationResult", "ManifoldResult", "MeanCI", "MethodEvaluation",
    "ValidRegion", "accuracy", "bootstrap_fit", "bootstrap_mean_ci", "calibrate", "correlate_with_utility",
    "evaluate_preference_utility", "fit_curve", "fit_pref_odds", "fit_util_odds", "manifold_distance",
    "pref_curve", "pref_odds", "read_table", "rq_decay", "summarize", "sweep", "transfer_r2", "util_curve",
    "util_odds", "valid_region", "write_table",
]
