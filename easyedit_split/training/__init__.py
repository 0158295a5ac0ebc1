"""SPLIT training and its baselines (SFT, RePS, DPO/BiPO, DiffMean) for every update form."""

from __future__ import annotations

from easyedit_split.training.diffmean import diffmean_update
from easyedit_split.training.hparams import (
    DiffMeanHyperParams,
    DPOHyperParams,
    RePSHyperParams,
    SFTHyperParams,
    SplitHyperParams,
    TrainHyperParams,
)
from easyedit_split.training.objectives import dpo_loss, reps_loss, sft_loss, split_loss
from easyedit_split.training.trainer import Trainer, TrainingError, TrainResult, select_pairs

__all__ = [
    "DPOHyperParams",
    "DiffMeanHyperParams",
    "RePSHyperParams",
    "SFTHyperParams",
    "SplitHyperParams",
    "TrainHyperParams",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "diffmean_update",
    "dpo_loss",
    "reps_loss",
    "select_pairs",
    "sft_loss",
    "split_loss",
]
