"""Hyperparameters for applying saved updates to a model, with EasyEdit's apply-config key names.

Training hyperparameters live in :mod:`easyedit_split.training.hparams`; the method table
(:mod:`easyedit_split.base.methods`) names one apply class per method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from easyedit_split.base.hparams_io import HParamsError, HyperParams, check_layers
from easyedit_split.base.methods import canonical_form, method_spec

__all__ = [
    "ApplyDPOHyperParams",
    "ApplyDiffMeanHyperParams",
    "ApplyHyperParams",
    "ApplyRePSHyperParams",
    "ApplySFTHyperParams",
    "ApplySplitHyperParams",
]


@dataclass
class ApplyHyperParams(HyperParams):
    """Applying saved updates to a model (EasyEdit's apply config keys)."""

    IGNORED_KEYS: ClassVar[tuple[str, ...]] = ("max_concepts", "concept_id", "steering_prompt_type",
                                               "intervention_type", "use_cache", "generation_data")
    alg_name: str = "split"
    layers: list[int] = field(default_factory=lambda: [15])
    multipliers: list[float] = field(default_factory=lambda: [1.0])
    steer_vector_load_dir: str | None = None
    intervention_method: str = "vector"
    intervention_components: str | None = None
    intervention_positions: str = "all"  # all | prompt | generated
    low_rank_dimension: int | None = None
    lora_alpha: float | None = None
    model_name_or_path: str | None = None
    device: str = "cpu"
    torch_dtype: str = "float32"
    mode: str = "hook"  # ours: hook | merged

    def validate(self, source: str) -> None:
        canonical_form(self.intervention_method, source)
        check_layers(source, self.layers)
        if self.multipliers and len(self.multipliers) not in (1, len(self.layers)):
            raise HParamsError(f"{source}: key 'multipliers' has {len(self.multipliers)} values for "
                               f"{len(self.layers)} layers (give one, or one per layer)")
        if self.intervention_positions not in ("all", "prompt", "generated"):
            raise HParamsError(f"{source}: key 'intervention_positions' must be all, prompt or generated")
        if self.mode not in ("hook", "merged"):
            raise HParamsError(f"{source}: key 'mode' must be hook or merged")

    def multiplier_for(self, i: int) -> float:
        if not self.multipliers:
            return 1.0
        return float(self.multipliers[0] if len(self.multipliers) == 1 else self.multipliers[i])


@dataclass
class ApplySplitHyperParams(ApplyHyperParams):
    ALG_NAMES: ClassVar[tuple[str, ...]] = method_spec("split").alg_names()
    alg_name: str = "split"


@dataclass
class ApplySFTHyperParams(ApplyHyperParams):
    ALG_NAMES: ClassVar[tuple[str, ...]] = method_spec("sft").alg_names()
    alg_name: str = "sft"


@dataclass
class ApplyRePSHyperParams(ApplyHyperParams):
    ALG_NAMES: ClassVar[tuple[str, ...]] = method_spec("reps").alg_names()
    alg_name: str = "reps"


@dataclass
class ApplyDPOHyperParams(ApplyHyperParams):
    ALG_NAMES: ClassVar[tuple[str, ...]] = method_spec("dpo").alg_names()
    alg_name: str = "dpo"


@dataclass
class ApplyDiffMeanHyperParams(ApplyHyperParams):
    ALG_NAMES: ClassVar[tuple[str, ...]] = method_spec("diffmean").alg_names()
    alg_name: str = "diffmean"
