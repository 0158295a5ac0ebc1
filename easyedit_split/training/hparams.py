"""Hyperparameters of the training methods, with EasyEdit's key names (applying: :mod:`easyedit_split.core.apply_hparams`).

Defaults follow upstream EasyEdit's ``SpiltHyperParams`` where the key exists there; keys marked
"ours" are this plugin's additions. Upstream keys that have no meaning here are listed in
``IGNORED_KEYS`` and are accepted silently; any other unknown key is warned about by name.

Upstream quirks handled:

* upstream spells SPLIT ``spilt``; ``alg_name`` is matched case-insensitively against the method
  table's names (:mod:`easyedit_split.base.methods`);
* upstream's SPLIT experiment files ("our" configs) say ``alg_name: sft`` — SPLIT is EasyEdit's SFT
  trainer with ``neg_loss_weight``/``margin_penalty_weight`` switched on — so
  :class:`SplitHyperParams` accepts ``sft`` too, and :class:`SFTHyperParams` with a non-zero
  ``neg_loss_weight`` or ``margin_penalty_weight`` trains that same objective (with a warning);
* ``intervention_method: weight`` means ``local_weight`` (the form table, :mod:`easyedit_split.base.methods`);
* ``loss_type`` of RePS files: ``scaled_simpo`` (default) or ``simpo``; ``dpo`` selects the DPO
  objective.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

from easyedit_split.base.checks import MAX_SEED
from easyedit_split.base.hparams_io import HParamsError, HyperParams, check_layers, check_range
from easyedit_split.base.methods import INTERVENTION_TYPE_NAMES, canonical_form, method_spec
from easyedit_split.data.formats import DataError
from easyedit_split.data.prompts import check_prompt_rule
from easyedit_split.training.preference_pairs import PREFERENCE_PAIRS, STEERING_PROMPT_TYPES

logger = logging.getLogger(__name__)

#: the largest LoRA rank accepted before a model is loaded (the site's size bounds it further, at training)
MAX_RANK = 65_536

__all__ = [
    "DPOHyperParams",
    "DiffMeanHyperParams",
    "RePSHyperParams",
    "SFTHyperParams",
    "SplitHyperParams",
    "TrainHyperParams",
]

_UPSTREAM_IGNORED = (
    "use_cache", "all_labels", "train_on_negative",
    "label_smoothing", "reference_free", "temperature_start", "temperature_end", "use_synergy",
    "use_dpo_loss", "concept_id", "hf_path", "generation_data", "generation_data_size",
    "generation_output_dir", "num_responses", "steer_from_end_position", "generate_orig_output",
)


@dataclass
class _ModelDataKeys(HyperParams):
    """Model, prompt and data keys shared by the trained methods and DiffMean."""

    # === Basic Config ===
    layers: list[int] = field(default_factory=lambda: [15])
    model_name_or_path: str | None = None
    device: str = "cpu"
    torch_dtype: str = "float32"
    seed: int = 42
    save_vectors: bool = True
    steer_vector_output_dir: str = "steer_vectors"
    use_chat_template: bool = True
    system_prompt: str | None = None
    # ours: the module the update sits on, overriding intervention_components ('{layer}' = the layer)
    intervention_module_path: str | None = None
    answer_instruction: str | None = None  # ours: appended to every question (e.g. "Answer with Yes or No.")
    # ours: how question + system prompt become the prompt text (data/prompts.py): plugin | easyedit
    prompt_rule: str = "plugin"

    # === Dataset Config ===
    steer_train_dataset: str | None = None
    exclude_bos: bool = True
    max_num_of_examples: int | None = None
    test_size: float | None = None  # ours: hold out pairs (count if >= 1, fraction if < 1)
    train_split: str | None = None  # ours: "train" keeps the seeded train part when test_size is set

    def validate(self, source: str) -> None:
        """Layers, seed, data sizes (sentinels: ``max_num_of_examples: null`` = all pairs, ``test_size:
        null`` or 0 = no hold-out)."""
        check_layers(source, self.layers)
        try:
            self.prompt_rule = check_prompt_rule(self.prompt_rule, f"{source}: key 'prompt_rule'")
        except DataError as exc:
            raise HParamsError(str(exc)) from None
        if len(set(self.layers)) != len(self.layers):
            raise HParamsError(f"{source}: key 'layers' lists a layer twice: {self.layers}")
        check_range(source, "seed", self.seed, minimum=0, maximum=MAX_SEED)
        if self.max_num_of_examples is not None and self.max_num_of_examples < 1:
            raise HParamsError(f"{source}: key 'max_num_of_examples' must be >= 1, or null for all pairs; got "
                               f"{self.max_num_of_examples}")
        if self.test_size and (self.test_size < 0 or (self.test_size > 1 and not float(self.test_size).is_integer())):
            raise HParamsError(f"{source}: key 'test_size' must be a fraction in (0, 1), a whole count >= 1, or "
                               f"null/0 for no hold-out; got {self.test_size}")


@dataclass
class TrainHyperParams(_ModelDataKeys):
    """Keys shared by every trained method."""

    IGNORED_KEYS: ClassVar[tuple[str, ...]] = _UPSTREAM_IGNORED
    #: objective trained by this class ("split", "sft", "reps", "dpo"; "diffmean" is train-free)
    OBJECTIVE: ClassVar[str] = "split"

    alg_name: str = "split"
    preference_pairs: list[str] = field(default_factory=lambda: ["orig_add", "orig_sub"])

    # === Training Config ===
    batch_size: int = 2
    dropout: float = 0.0  # not implemented: a non-zero value is warned about (upstream default 0.1)
    gradient_accumulation_steps: int = 6
    lr: float = 0.08
    n_epochs: int = 12
    weight_decay: float = 0.0
    pos_loss_weight: float = 1.0
    neg_loss_weight: float = 0.0
    margin_penalty_weight: float = 0.0
    ref_loss_weight: float = 0.0
    margin_threshold: float = 0.5
    margin_scaling: str = "constant"  # ours: constant (θ) | factor (θ·|m| per row: the margin grows with m)

    # === Intervention Config ===
    intervention_components: str | None = None  # None: residual for vector, mlp_mid (= mlp_down) otherwise
    intervention_method: str = "vector"
    intervention_positions: str = "all"
    low_rank_dimension: int = 4
    lora_alpha: float | None = None  # None: scale 1 (ΔW = B·A); else ΔW = (alpha/r)·B·A

    # === Steering Config ===
    steering_factors: list[float] = field(default_factory=lambda: [2.0, 4.0, 6.0, 8.0, 10.0])
    substraction_type: str = "normal"  # normal | null_it_out

    # === upstream spilt/sft/reps trainer keys (see UPSTREAM_TRAINER_KEYS) ===
    intervention_type: str = "addition"  # addition (h + m·v) | clamping (h − (h·v̂)v̂ + m·v; vector form only)
    steering_prompt_type: str = "blend_in"  # prepend | blend_in: the <type>_steered_input/_output fields steered_* read
    intervention_positions_dropout: float = 0.0
    output_length: int | None = None
    max_concepts: int | None = None
    loss_output_dir: str | None = None
    inference: bool = False

    # === Preference objectives (RePS / DPO) ===
    loss_type: str | None = None
    beta: float = 1.0
    gemma: float = 0.0  # SimPO margin (upstream's name)
    simpo_scaler: float = 1.0
    reps_reference_scale: bool = False  # ours: True scales the winner by the unsteered log-ratio (upstream)

    # === ours ===
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None
    loss_reduction: str = "mean"  # mean (per-token, upstream) | sum (sequence NLL)
    use_prefix_cache: bool = True
    single_token_sharing: bool = True
    init_std: float = 0.0

    # ------------------------------------------------------------------------------------------
    @property
    def form(self) -> str:
        return canonical_form(self.intervention_method)

    @property
    def component(self) -> str:
        """The site component of the update (EasyEdit's ``mlp_mid`` is the down-projection)."""
        comp = self.intervention_components
        if self.form == "vector":
            if comp is None or str(comp).lower() in ("mlp_mid", "block"):
                return "residual"  # upstream's vector sits on the block output whatever the component
            return str(comp)
        return "mlp_down" if comp is None or str(comp).lower() == "mlp_mid" else str(comp)

    @property
    def objective(self) -> str:
        return self.OBJECTIVE

    @property
    def method(self) -> str:
        """Canonical method name used in outputs (split, sft, reps, dpo, diffmean)."""
        return type(self).OBJECTIVE

    def apply_sentinels(self, source: str) -> None:
        # documented sentinel: null, 0 or a negative value (-1) turns gradient clipping off
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            self.max_grad_norm = None

    def validate(self, source: str) -> None:
        super().validate(source)
        canonical_form(self.intervention_method, source)
        check_range(source, "lr", self.lr, minimum=0, exclusive_min=True)
        check_range(source, "weight_decay", self.weight_decay, minimum=0)
        check_range(source, "dropout", self.dropout, minimum=0, maximum=1, exclusive_max=True)
        for key in ("pos_loss_weight", "neg_loss_weight", "margin_penalty_weight", "ref_loss_weight"):
            check_range(source, key, getattr(self, key), minimum=0,
                        hint=" (a negative weight would train that term in reverse)")
        check_range(source, "beta", self.beta, minimum=0, exclusive_min=True)
        check_range(source, "simpo_scaler", self.simpo_scaler, minimum=0, exclusive_min=True)
        check_range(source, "init_std", self.init_std, minimum=0)
        check_range(source, "checkpoint_every", self.checkpoint_every, minimum=0)
        check_range(source, "lora_alpha", self.lora_alpha, minimum=0, exclusive_min=True)
        if all(f == 0 for f in self.steering_factors) and self.steering_factors:
            raise HParamsError(f"{source}: key 'steering_factors' is all zero ({self.steering_factors}); the update "
                               "would get no gradient — give non-zero multipliers, e.g. [1.0]")
        if self.batch_size < 1:
            raise HParamsError(f"{source}: key 'batch_size' must be >= 1, got {self.batch_size}")
        if self.gradient_accumulation_steps < 1:
            raise HParamsError(f"{source}: key 'gradient_accumulation_steps' must be >= 1")
        if self.n_epochs < 1:
            raise HParamsError(f"{source}: key 'n_epochs' must be >= 1, got {self.n_epochs}")
        if self.margin_scaling not in ("constant", "factor"):
            raise HParamsError(f"{source}: key 'margin_scaling' must be constant or factor, got {self.margin_scaling!r}")
        if self.loss_reduction not in ("mean", "sum"):
            raise HParamsError(f"{source}: key 'loss_reduction' must be mean or sum, got {self.loss_reduction!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise HParamsError(f"{source}: key 'warmup_ratio' must be in [0, 1), got {self.warmup_ratio}")
        if not self.steering_factors:
            raise HParamsError(f"{source}: key 'steering_factors' must not be empty")
        bad = [p for p in self.preference_pairs if p not in PREFERENCE_PAIRS]
        if bad:
            raise HParamsError(f"{source}: key 'preference_pairs' has {bad}; supported: {', '.join(PREFERENCE_PAIRS)} "
                               "(steered_add/steered_sub read the data's '<steering_prompt_type>_steered_input' and "
                               "'_steered_output' fields)")
        self.check_upstream_trainer_keys(source)
        if not self.preference_pairs:
            raise HParamsError(f"{source}: key 'preference_pairs' must not be empty")
        if self.substraction_type not in ("normal", "norm", "null_it_out"):
            raise HParamsError(f"{source}: key 'substraction_type' must be normal or null_it_out, "
                               f"got {self.substraction_type!r}")
        if self.intervention_positions not in ("all",):
            raise HParamsError(f"{source}: key 'intervention_positions' {self.intervention_positions!r} is not "
                               "supported; training steers all positions ('all')")
        if self.form == "lora":
            check_range(source, "low_rank_dimension", self.low_rank_dimension, minimum=1, maximum=MAX_RANK,
                        hint=" (the rank is at most the site's smaller dimension)")

    def check_upstream_trainer_keys(self, source: str) -> None:
        """Upstream's spilt/sft/reps trainer keys: refuse what would change the update and cannot be done,
        warn (WARNING, naming the key) for what the plugin does not implement."""
        kind = str(self.intervention_type).strip().lower()
        if kind not in INTERVENTION_TYPE_NAMES:
            raise HParamsError(f"{source}: key 'intervention_type' is {self.intervention_type!r}; use one of "
                               f"{', '.join(INTERVENTION_TYPE_NAMES)} (EasyEdit's values)")
        if kind != "addition" and self.form != "vector":
            raise HParamsError(
                f"{source}: key 'intervention_type' is {kind!r} with intervention_method {self.intervention_method!r}; "
                "clamping replaces the hidden state's component along a steering vector's direction "
                "(h − (h·v̂)v̂ + m·v), and a lora/local_weight update has no single direction to clamp along. Use "
                "intervention_method: vector, or intervention_type: addition")
        self.intervention_type = kind
        if str(self.steering_prompt_type) not in STEERING_PROMPT_TYPES:
            raise HParamsError(f"{source}: key 'steering_prompt_type' must be prepend or blend_in (the prefix of the "
                               f"data's steered fields), got {self.steering_prompt_type!r}")
        if self.inference:
            raise HParamsError(f"{source}: key 'inference' is true (upstream: build vectors without training); "
                               "the plugin always trains. Set inference: false")
        # max_concepts limits upstream's multi-concept datasets; on the one concept the plugin trains any value
        # >= 1 (or null/0, upstream's "no limit") changes nothing, as upstream
        if self.max_concepts is not None and self.max_concepts < 0:
            raise HParamsError(f"{source}: key 'max_concepts' must be >= 0 (0 or null: no limit), got {self.max_concepts}")
        check_range(source, "intervention_positions_dropout", self.intervention_positions_dropout, minimum=0,
                    maximum=1, exclusive_max=True)
        for key, value, why in (
            ("intervention_positions_dropout", self.intervention_positions_dropout or None,
             "steering positions are never dropped during training (upstream zeroes each position's factor "
             "with this probability)"),
            ("dropout", self.dropout or None, "updates are trained without dropout"),
            ("output_length", self.output_length, "sequences are not truncated to it (upstream sets the "
             "tokenizer's model_max_length)"),
            ("loss_output_dir", self.loss_output_dir, "no train_losses.csv is written there (the plugin logs "
             "losses in its training log and the artefact's metadata)"),
        ):
            if value is not None:
                logger.warning("%s: key '%s' = %r is not implemented by the plugin: %s", source, key, value, why)

    def lora_scale(self) -> float:
        return 1.0 if self.lora_alpha is None else float(self.lora_alpha) / float(self.low_rank_dimension)


@dataclass
class SplitHyperParams(TrainHyperParams):
    """SPLIT (upstream ``spilt``); upstream's SPLIT experiment files say ``alg_name: sft``."""

    ALG_NAMES: ClassVar[tuple[str, ...]] = method_spec("split").alg_names()
    OBJECTIVE: ClassVar[str] = "split"
    alg_name: str = "split"


@dataclass
class SFTHyperParams(TrainHyperParams):
    ALG_NAMES: ClassVar[tuple[str, ...]] = method_spec("sft").alg_names()
    OBJECTIVE: ClassVar[str] = "sft"
    alg_name: str = "sft"

    @property
    def objective(self) -> str:
        if self.neg_loss_weight != 0.0 or self.margin_penalty_weight != 0.0:
            return "split"
        return "sft"

    def validate(self, source: str) -> None:
        super().validate(source)
        if self.objective == "split":
            logger.warning("%s: alg_name sft with neg_loss_weight=%s / margin_penalty_weight=%s trains the SPLIT "
                           "objective (as upstream's SFT trainer does)", source, self.neg_loss_weight,
                           self.margin_penalty_weight)


@dataclass
class RePSHyperParams(TrainHyperParams):
    ALG_NAMES: ClassVar[tuple[str, ...]] = method_spec("reps").alg_names()
    OBJECTIVE: ClassVar[str] = "reps"
    alg_name: str = "reps"
    batch_size: int = 6
    gradient_accumulation_steps: int = 1
    n_epochs: int = 18
    steering_factors: list[float] = field(default_factory=lambda: [2.0])
    loss_type: str | None = "scaled_simpo"

    @property
    def objective(self) -> str:
        return "dpo" if (self.loss_type or "").lower() == "dpo" else "reps"

    def validate(self, source: str) -> None:
        super().validate(source)
        if (self.loss_type or "scaled_simpo").lower() not in ("scaled_simpo", "simpo", "dpo"):
            raise HParamsError(f"{source}: key 'loss_type' is {self.loss_type!r}; use scaled_simpo, simpo or dpo")


@dataclass
class DPOHyperParams(TrainHyperParams):
    """DPO applied in both directions (BiPO); the reference is the unsteered model."""

    ALG_NAMES: ClassVar[tuple[str, ...]] = method_spec("dpo").alg_names()
    OBJECTIVE: ClassVar[str] = "dpo"
    alg_name: str = "dpo"
    beta: float = 0.1
    loss_type: str | None = "dpo"


@dataclass
class DiffMeanHyperParams(_ModelDataKeys):
    """DiffMean / CAA: train-free mean difference of site activations over answer tokens."""

    ALG_NAMES: ClassVar[tuple[str, ...]] = method_spec("diffmean").alg_names()
    IGNORED_KEYS: ClassVar[tuple[str, ...]] = _UPSTREAM_IGNORED + ("lr", "n_epochs", "steering_factors",
                                                                    "preference_pairs", "substraction_type")
    OBJECTIVE: ClassVar[str] = "diffmean"

    alg_name: str = "diffmean"
    intervention_method: str = "vector"
    intervention_components: str | None = None
    batch_size: int = 16
    normalize: bool = False

    @property
    def form(self) -> str:
        return "vector"

    @property
    def component(self) -> str:
        comp = self.intervention_components
        return "residual" if comp is None or str(comp).lower() in ("mlp_mid", "block") else str(comp)

    @property
    def objective(self) -> str:
        return "diffmean"

    @property
    def method(self) -> str:
        return "diffmean"

    def validate(self, source: str) -> None:
        super().validate(source)
        if canonical_form(self.intervention_method, source) != "vector":
            raise HParamsError(f"{source}: key 'intervention_method' must be vector for DiffMean (it is train-free)")
        check_range(source, "batch_size", self.batch_size, minimum=1)
