"""What an evaluation returns: :class:`MethodEvaluation` (everything measured for one update) and
:class:`EvaluationResult` (all updates, the grid and the settings), as produced by
:func:`~easyedit_split.evaluation.api.evaluate_preference_utility` and read by the report
(:mod:`easyedit_split.evaluation.report`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from easyedit_split.errors import InputError
from easyedit_split.evaluation.derived import Calibration, ValidRegion
from easyedit_split.evaluation.fitting import CurveFit
from easyedit_split.evaluation.frontier import MatchedComparison
from easyedit_split.evaluation.manifold import ManifoldResult

__all__ = ["EvaluationResult", "MethodEvaluation", "fit_key"]


@dataclass
class MethodEvaluation:
    """Everything measured for one update (one method)."""

    name: str
    source: str
    kind: str
    table: pd.DataFrame  # per (example, m) on the evaluation pairs
    summary: pd.DataFrame  # per m means with CIs
    fits: dict[str, CurveFit | None]  # fitted on the evaluation pairs' means, keys in fit_key()
    train_summary: pd.DataFrame | None = None
    train_fits: dict[str, CurveFit | None] = field(default_factory=dict)
    transfer_r2: dict[str, float | None] = field(default_factory=dict)
    valid_region: ValidRegion | None = None
    valid_region_means: ValidRegion | None = None
    calibration: Calibration | None = None
    manifold: ManifoldResult | None = None
    util_infinite: int = 0
    notes: list[str] = field(default_factory=list)  # flags for the report: failed/skipped fits, NaN means, …
    frontier: pd.DataFrame | None = None  # m, accuracy, util, on_frontier (evaluation pairs)
    validation_table: pd.DataFrame | None = None  # per (example, m) on the validation pairs
    dose: Any = None  # doses.Dose when the update was rescaled before the evaluation

    def to_dict(self) -> dict[str, Any]:
        def fd(fs):
            return {k: (v.to_dict() if v is not None else None) for k, v in fs.items()}

        return {
            "name": self.name, "source": self.source, "kind": self.kind,
            "summary": self.summary.to_dict(orient="list"),
            "fits": fd(self.fits), "train_fits": fd(self.train_fits), "transfer_r2": self.transfer_r2,
            "valid_region": self.valid_region.to_dict() if self.valid_region else None,
            "valid_region_means": self.valid_region_means.to_dict() if self.valid_region_means else None,
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "manifold": self.manifold.to_dict() if self.manifold else None,
            "util_infinite": self.util_infinite, "notes": self.notes,
            "frontier": self.frontier.to_dict(orient="list") if self.frontier is not None else None,
            "dose": self.dose.to_dict() if self.dose is not None else None,
        }


@dataclass
class EvaluationResult:
    methods: dict[str, MethodEvaluation]
    multipliers: list[float]
    reduction: str
    settings: dict[str, Any]
    output_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)
    matched: list[MatchedComparison] = field(default_factory=list)  # one per target accuracy

    def __getitem__(self, name: str) -> MethodEvaluation:
        return self.methods[name]

    @property
    def only(self) -> MethodEvaluation:
        if len(self.methods) != 1:
            raise InputError(f"{len(self.methods)} methods evaluated; pick one by name")
        return next(iter(self.methods.values()))

    def to_dict(self) -> dict[str, Any]:
        return {"multipliers": self.multipliers, "reduction": self.reduction, "settings": self.settings,
                "files": self.files, "methods": {k: v.to_dict() for k, v in self.methods.items()},
                "matched_accuracy": [c.to_dict() for c in self.matched]}


def fit_key(kind: str, form: str) -> str:
    """Key of a fit in :attr:`MethodEvaluation.fits`: ``"pref"`` / ``"util"`` for the design form,
    ``"pref_per_side"`` / ``"util_per_side"`` for the per-side form."""
    return kind if form == "design" else f"{kind}_{form}"
