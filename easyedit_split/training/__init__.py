"""SPLIT training and its baselines (SFT, RePS, DPO/BiPO, DiffMean) for every update form."""

from __future__ import annotations

from .diffmean import diffmean_update
from .hparams import (
    DiffMeanHyperParams,
    DPOHyperParams,
    RePSHyperParams,
    SFTHyperParams,
    SplitHyperParams,
    TrainHyperParams,
)
from .objectives import dpo_loss, reps_loss, sft_loss, split_loss
from .trainer import Trainer, TrainingError, TrainResult, select_pairs

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
