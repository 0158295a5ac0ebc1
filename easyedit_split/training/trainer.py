"""One trainer for every objective (SFT, SPLIT, RePS, DPO/BiPO) and every update form.

Built on :class:`~easyedit_split.core.scoring.PairScorer`:

* the training pairs are shuffled once with the seed and cut into fixed minibatches; each
  minibatch is prepared once (padding, and the frozen prefix: hidden states entering the steered
  layer, computed once without gradients and reused across epochs and steering factors). The
  *composition* of the minibatches is therefore fixed for the whole run; only their *order* is
  reshuffled every epoch (seeded by ``seed`` and the epoch);
* a step builds its rows — every pair once per direction in ``preference_pairs`` (``orig_add``:
  the positive answer wins under ``+m``; ``orig_sub``: the negative answer wins under ``−m``, or
  ``m = 0`` with ``substraction_type: null_it_out``), ``m`` drawn per row from
  ``steering_factors`` — and scores all of them in ONE ``scorer.score`` call, then applies the
  objective and back-propagates into the update only (the base model is frozen; asserted);
* unsteered reference losses are computed once per pair, only for objectives that need them
  (DPO, RePS with ``reps_reference_scale``, or ``ref_loss_weight > 0``), and cached;
* AdamW, linear schedule with optional warm-up, gradient clipping, gradient accumulation;
* checkpoints every ``checkpoint_every`` optimizer steps (update, optimizer, scheduler, RNG states
  and step, as safetensors with a JSON pointer, written atomically); ``resume=True`` continues from
  the latest one and ends with exactly the parameters of an uninterrupted run;
* a NaN/inf loss stops the run with :class:`TrainingError`, leaving the last good checkpoint intact; an
  update whose values overflow is never saved (:func:`~easyedit_split.core.serialization.check_updates_finite`),
  and one whose loss or size exploded is saved with a warning, recorded in the file's
  ``extra["training_health"]`` (:func:`training_health`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from easyedit_split.base.atomic_io import atomic_save_safetensors, atomic_write_json
from easyedit_split.base.progress import progress as progress_bar
from easyedit_split.base.safe_text import shown
from easyedit_split.core.distributed import DistContext, current, shard_bounds
from easyedit_split.core.scoring import PairScorer, PreparedPairs
from easyedit_split.core.serialization import save_updates
from easyedit_split.core.sites import Site, resolve_site
from easyedit_split.core.updates import Update, make_update
from easyedit_split.data.encoding import EncodedPair, check_context_length, encode_pairs, pad_id_of
from easyedit_split.data.pairs import PolarityPair, check_pairs, pair_digests, train_test_split
from easyedit_split.data.prompts import template_in_use, upstream_training_differs
from easyedit_split.errors import EasyEditSplitError, InputError
from easyedit_split.training.hparams import TrainHyperParams
from easyedit_split.training.objectives import (
    OBJECTIVES,
    dpo_loss,
    ref_violation_loss,
    reps_loss,
    sft_loss,
    split_loss,
)
from easyedit_split.training.preference_pairs import (
    PREFERENCE_PAIRS,
    field_name,
    needed_by,
    slots_of,
    uses_steered,
    variant_pairs,
    variants_of,
)

logger = logging.getLogger(__name__)

__all__ = [
    "TrainResult",
    "Trainer",
    "TrainingError",
    "build_update",
    "compute_objective",
    "encode_examples",
    "encode_for",
    "linear_schedule",
    "make_minibatches",
    "sample_rows",
    "select_pairs",
    "training_health",
]


class TrainingError(EasyEditSplitError, RuntimeError):
    """Training cannot go on (non-finite loss, inconsistent checkpoint …)."""


@dataclass
class TrainResult:
    updates: list[Update]
    loss_history: list[float]  # mean objective of every optimizer step
    output_path: Path | None
    method: str
    objective: str
    layer: int
    steps: int
    seconds: float
    pairs_seen: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pairs_per_second(self) -> float:
        return self.pairs_seen / self.seconds if self.seconds > 0 else float("nan")


# ------------------------------------------------------------------------------------------ helpers


#: an update with a value above this (in absolute terms) exploded: activations of language models are
#: at most a few thousand, so such a step moves the site far off anything the model has seen
EXPLODED_VALUE = 1e4
#: a final loss this many times the first one (and above it) means the loss exploded
EXPLODED_LOSS_RATIO = 10.0


def training_health(loss_history: Sequence[float], update: Update) -> dict[str, Any]:
    """What a finished run looked like: first/final/min loss, the update's norm and largest value, and
    ``warnings`` naming what exploded (the loss grew ``EXPLODED_LOSS_RATIO``-fold, or a value exceeds
    ``EXPLODED_VALUE``); recorded in the saved file and logged at WARNING."""
    with torch.no_grad():
        values = torch.cat([p.detach().float().reshape(-1) for p in update.parameters()])
        norm, max_abs = float(torch.linalg.vector_norm(values.double())), float(values.abs().max())
    health: dict[str, Any] = {"update_norm": norm, "max_abs_value": max_abs, "warnings": []}
    if loss_history:
        first, final = float(loss_history[0]), float(loss_history[-1])
        health.update(first_loss=first, final_loss=final, min_loss=float(min(loss_history)))
        if final > first and final > EXPLODED_LOSS_RATIO * max(abs(first), 1e-3):
            health["warnings"].append(f"the loss exploded ({first:.4g} at the first step, {final:.4g} at the last)")
    if max_abs > EXPLODED_VALUE:
        health["warnings"].append(f"the update exploded (largest value {max_abs:.3g}, norm {norm:.3g})")
    return health


def check_site(model: nn.Module, hp: Any, layer: int):
    """The site ``hp`` trains at ``layer`` on ``model``, resolved (and a LoRA rank checked against it):
    :func:`~easyedit_split.training.api.train_layers` checks every layer's site before it trains the first,
    so a bad layer or module path never leaves a half set of layer files."""
    site = Site(int(layer), hp.component, hp.intervention_module_path)
    rs = resolve_site(model, site)
    if hp.form == "lora" and hp.low_rank_dimension > min(rs.d_in, rs.d_out):
        from easyedit_split.base.hparams_io import HParamsError

        raise HParamsError(f"key 'low_rank_dimension' is {hp.low_rank_dimension}, but {site} is {rs.d_in}→{rs.d_out}: "
                           f"a rank above {min(rs.d_in, rs.d_out)} adds nothing; lower it")
    return site, rs


def build_update(model: nn.Module, hp: TrainHyperParams, layer: int) -> Update:
    site, rs = check_site(model, hp, layer)
    update = make_update(hp.form, site, rs.d_in, rs.d_out, rank=hp.low_rank_dimension, scale=hp.lora_scale(),
                         init_std=getattr(hp, "init_std", 0.0),
                         intervention_type=getattr(hp, "intervention_type", "addition"))
    from easyedit_split.core.apply import site_device

    device = site_device(model, rs)  # with a device_map: the device of the steered layer
    return update.to(device if device is not None else next(model.parameters()).device)


def select_pairs(hp: Any, pairs: Sequence[PolarityPair]) -> list[PolarityPair]:
    """The training part: the seeded split's train part when ``test_size`` is set, then ``max_num_of_examples``."""
    out = check_pairs(pairs, "training pairs")
    if hp.test_size:
        size: int | float = int(hp.test_size) if hp.test_size >= 1 else float(hp.test_size)
        out, _ = train_test_split(out, size, seed=hp.seed)
    if hp.max_num_of_examples:
        out = out[: int(hp.max_num_of_examples)]
    if not out:
        raise TrainingError("no training pairs left after test_size / max_num_of_examples")
    return out


def encode_for(hp: Any, pairs: Sequence[PolarityPair], tokenizer: Any) -> list[EncodedPair]:
    rule = getattr(hp, "prompt_rule", "plugin")
    if rule == "easyedit" and upstream_training_differs(tokenizer, hp.use_chat_template, hp.system_prompt):
        logger.warning("use_chat_template is false (or the tokenizer has no template) and system_prompt is %r: "
                       "upstream EasyEdit's spilt/sft/reps trainer would drop the system prompt from training "
                       "prompts; the plugin trains on the prompt EasyEdit's applier generates with "
                       "('<system_prompt> <question>')", hp.system_prompt)
    return encode_pairs(pairs, tokenizer, chat_template=hp.use_chat_template, system_prompt=hp.system_prompt,
                        answer_instruction=getattr(hp, "answer_instruction", None), prompt_rule=rule)


#: one training example: its encoded pairs, one per variant of :func:`~.preference_pairs.variants_of`
Example = tuple[EncodedPair, ...]


def encode_examples(hp: Any, pairs: Sequence[PolarityPair], tokenizer: Any) -> list[Example]:
    """Each pair's encoded pairs, one per variant its ``preference_pairs`` rows score (the plain pair alone
    for ``orig_add``/``orig_sub``; the steered prompt and answers of ``steered_*``, read from the pair's
    ``<steering_prompt_type>_steered_input``/``_output`` fields — a :class:`DataError` names a missing one)."""
    preference = list(hp.preference_pairs)
    spt = getattr(hp, "steering_prompt_type", "blend_in")
    if uses_steered(preference) and template_in_use(tokenizer, hp.use_chat_template, getattr(hp, "prompt_rule", "plugin")):
        logger.warning("preference_pairs %s: the steered inputs (%s) are rendered with the chat template like the "
                       "questions; upstream EasyEdit's spilt/sft/reps trainer applies the template to the question "
                       "only and would train on the raw steered text", preference, field_name("steered_input", spt))
    columns = [encode_for(hp, variant_pairs(pairs, variant, spt, needed_by(preference, variant)), tokenizer)
               for variant in variants_of(preference)]
    return list(zip(*columns))


def make_minibatches(encoded: Sequence[Any], batch_size: int, seed: int) -> list[list[Any]]:
    """Shuffle once with ``seed`` and cut into minibatches (the composition stays fixed)."""
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(encoded), generator=g).tolist()
    shuffled = [encoded[i] for i in order]
    return [shuffled[i:i + batch_size] for i in range(0, len(shuffled), batch_size)]


def sample_rows(
    n_pairs: int,
    preference_pairs: Sequence[str],
    factors: Sequence[float],
    generator: torch.Generator,
    null_it_out: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of one step: ``(pair_index [R], multipliers [R], positive_wins [R] bool)``.

    One row per pair and direction, in the order of ``preference_pairs`` (the table
    :data:`~.preference_pairs.PREFERENCE_PAIRS`); ``m`` is drawn per row. ``pair_index`` points into the
    rows ``[variant 0 of every pair, variant 1 of every pair, …]`` (:func:`encode_examples`): pair
    ``pair_index % n_pairs``, variant ``pair_index // n_pairs``.
    """
    fac = torch.tensor([float(f) for f in factors], dtype=torch.float32)
    unknown = [d for d in preference_pairs if d not in PREFERENCE_PAIRS]
    if unknown:
        raise InputError(f"unsupported preference pair(s) {unknown}; known: {', '.join(PREFERENCE_PAIRS)}")
    idx, ms, wins = [], [], []
    for direction, slot in zip(preference_pairs, slots_of(preference_pairs)):
        draw = fac[torch.randint(len(fac), (n_pairs,), generator=generator)]
        if PREFERENCE_PAIRS[direction].adds:
            m, pos_wins = draw, True
        else:
            m, pos_wins = (torch.zeros_like(draw) if null_it_out else -draw), False
        idx.append(torch.arange(n_pairs) + slot * n_pairs)
        ms.append(m)
        wins.append(torch.full((n_pairs,), pos_wins))
    return torch.cat(idx), torch.cat(ms), torch.cat(wins)


def _sft_objective(hp, L_win, L_lose, ref_win, ref_lose, factors):
    return hp.pos_loss_weight * sft_loss(L_win)


def _split_objective(hp, L_win, L_lose, ref_win, ref_lose, factors):
    theta: float | torch.Tensor = hp.margin_threshold
    if getattr(hp, "margin_scaling", "constant") == "factor":
        if factors is None:
            raise InputError("margin_scaling: factor needs the rows' steering factors")
        theta = hp.margin_threshold * factors.abs().to(L_win)
    return split_loss(L_win, L_lose, hp.pos_loss_weight, hp.neg_loss_weight, hp.margin_penalty_weight, theta)


def _reps_uses_reference(hp) -> bool:
    """RePS scales by the unsteered model's losses only when asked (``reps_reference_scale``) and only
    for ``scaled_simpo`` (``loss_type`` is case-insensitive)."""
    return bool(hp.reps_reference_scale) and (hp.loss_type or "scaled_simpo").lower() == "scaled_simpo"


def _reps_objective(hp, L_win, L_lose, ref_win, ref_lose, factors):
    use_ref = _reps_uses_reference(hp)
    return reps_loss(L_win, L_lose, ref_win if use_ref else None, ref_lose if use_ref else None,
                     beta=hp.beta, gamma=hp.gemma, scaler=hp.simpo_scaler)


def _dpo_objective(hp, L_win, L_lose, ref_win, ref_lose, factors):
    if ref_win is None or ref_lose is None:
        raise InputError("the DPO objective needs reference losses")
    return dpo_loss(L_win, L_lose, ref_win, ref_lose, beta=hp.beta)


#: objective name (``methods.MethodSpec.objective``) → its loss on rows of winning/losing answer losses
OBJECTIVE_LOSSES = {"sft": _sft_objective, "split": _split_objective, "reps": _reps_objective, "dpo": _dpo_objective}


def compute_objective(
    objective: str,
    hp: TrainHyperParams,
    L_win: torch.Tensor,
    L_lose: torch.Tensor,
    ref_win: torch.Tensor | None = None,
    ref_lose: torch.Tensor | None = None,
    factors: torch.Tensor | None = None,
) -> torch.Tensor:
    """The objective's value for rows of winning/losing losses (plus upstream's optional ref term).

    ``factors``: each row's steering factor ``m``; SPLIT's margin is ``θ·|m|`` when
    ``hp.margin_scaling == "factor"`` (then they are required).
    """
    if objective not in OBJECTIVE_LOSSES:
        raise InputError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVE_LOSSES)}")
    loss = OBJECTIVE_LOSSES[objective](hp, L_win, L_lose, ref_win, ref_lose, factors)
    if hp.ref_loss_weight and objective != "dpo":
        if ref_win is None or ref_lose is None:
            raise InputError("ref_loss_weight > 0 needs reference losses")
        loss = loss + hp.ref_loss_weight * ref_violation_loss(L_win, L_lose, ref_win, ref_lose)
    return loss


def linear_schedule(total_steps: int, warmup_steps: int):
    """``lr`` factor at optimizer step ``s``: linear warm-up, then linear decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return float(step + 1) / float(warmup_steps + 1)
        return max(0.0, float(total_steps - step) / float(max(1, total_steps - warmup_steps)))

    return factor


def needs_reference(objective: str, hp: TrainHyperParams) -> bool:
    """Whether training needs the unsteered model's losses: the objective needs them (method table), or an
    opt-in term does (``ref_loss_weight``; RePS's ``reps_reference_scale``, off by default: RePS is
    reference-free)."""
    if OBJECTIVES[objective] or hp.ref_loss_weight:
        return True
    return objective == "reps" and _reps_uses_reference(hp)


def data_fingerprint(encoded: Sequence[EncodedPair]) -> str:
    """SHA-256 of the training data's content: every pair's id and the tokens of its prompt and of both
    answers, in order (so a changed text, a flipped polarity or a reordering all change it)."""
    h = hashlib.sha256()
    for e in encoded:
        h.update(json.dumps([e.id, e.prompt_ids, e.positive_ids, e.negative_ids]).encode())
    return h.hexdigest()


def _fingerprint_parts(hp: TrainHyperParams, encoded: Sequence[EncodedPair], layer: int) -> dict[str, Any]:
    """What a checkpoint must have been trained with to be resumed (recorded in it, so that a refusal can
    say what changed)."""
    keep = {k: v for k, v in hp.to_dict().items()
            if k not in ("checkpoint_every", "checkpoint_dir", "steer_vector_output_dir", "save_vectors", "device")}
    return json.loads(json.dumps({"hp": keep, "n_pairs": len(encoded), "data": data_fingerprint(encoded),
                                  "layer": layer}, default=str))


def _fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def describe_fingerprint_change(old: Any, new: dict[str, Any]) -> str:
    """``"lr 0.05 -> 0.2; the training data (24 -> 20 pairs)"``: what differs between two fingerprint parts
    (empty when the checkpoint predates recording them)."""
    if not isinstance(old, dict):
        return ""
    changes = []
    old_hp, new_hp = old.get("hp") or {}, new.get("hp") or {}
    for key in sorted(set(old_hp) | set(new_hp)):
        if old_hp.get(key) != new_hp.get(key):
            changes.append(f"{key} {shown(old_hp.get(key))} -> {shown(new_hp.get(key))}")
    if old.get("layer") != new.get("layer"):
        changes.append(f"layer {old.get('layer')} -> {new.get('layer')}")
    if old.get("data") != new.get("data") or old.get("n_pairs") != new.get("n_pairs"):
        changes.append(f"the training data ({old.get('n_pairs')} -> {new.get('n_pairs')} pairs"
                       + (", other content" if old.get("n_pairs") == new.get("n_pairs") else "") + ")")
    return "; ".join(changes)


# ------------------------------------------------------------------------------------------ trainer


@dataclass
class _Batch:
    """One minibatch of ``n_pairs`` pairs; under torchrun this rank holds pairs ``[start, stop)`` of it
    (``prepared`` is None when that block is empty). ``prepared``'s rows: variant 0 of every held pair, then
    variant 1 of every held pair, … (:func:`encode_examples`)."""

    prepared: PreparedPairs | None
    n_pairs: int
    start: int = 0
    stop: int = 0
    ref_p: torch.Tensor | None = None
    ref_n: torch.Tensor | None = None


class Trainer:
    """Trains one update (``hp.intervention_method`` at ``layer``) of a frozen ``model``."""

    def __init__(self, model: nn.Module, tokenizer: Any, hp: TrainHyperParams, *, layer: int | None = None,
                 objective: str | None = None, update: Update | None = None,
                 dist: DistContext | None = None) -> None:
        from easyedit_split.core.models import check_tokenizer_fits

        check_tokenizer_fits(model, tokenizer, source="Trainer")
        self.model = model
        self.dist = dist  # None: the torchrun process group when one is initialised (resolved in train)
        self.tokenizer = tokenizer
        self._pair_digests: list[str] | None = None  # of the pairs being trained on (recorded when saved)
        self.hp = hp
        if layer is None:
            if len(hp.layers) != 1:
                raise InputError(f"hparams list layers {hp.layers}; pass layer= to train one of them")
            layer = hp.layers[0]
        self.layer = int(layer)
        self.objective = objective or hp.objective
        torch.manual_seed(hp.seed)  # LoRA's A is initialised from the global generator
        self.update = update if update is not None else build_update(model, hp, self.layer)
        self.scorer = PairScorer(model, [self.update], pad_token_id=pad_id_of(tokenizer), use_prefix_cache=hp.use_prefix_cache,
                                 single_token_sharing=hp.single_token_sharing)

    # -- data ----------------------------------------------------------------------------------
    def _dist(self) -> DistContext:
        return self.dist if self.dist is not None else current()

    def prepare(self, examples: Sequence[Example], *, progress: bool = True) -> list[_Batch]:
        """Frozen-prefix states (and reference losses where the objective needs them) of the fixed minibatches;
        under torchrun each rank prepares only its contiguous block of every minibatch's pairs (the global
        batch is the same as in one process)."""
        batches = []
        need_ref = needs_reference(self.objective, self.hp)
        dist = self._dist()
        chunks = make_minibatches(examples, self.hp.batch_size, self.hp.seed)
        what = "prefix states" + (" and reference losses" if need_ref else "")
        with torch.no_grad():
            for chunk in progress_bar(chunks, desc=f"{self.objective} L{self.layer}: preparing {what}", unit="batch",
                                      enabled=progress and dist.is_main):
                start, stop = shard_bounds(len(chunk), dist.rank, dist.world_size)
                local = chunk[start:stop]
                rows = [ex[slot] for slot in range(len(chunk[0])) for ex in local]
                prepared = self.scorer.prepare(rows) if local else None
                b = _Batch(prepared, len(chunk), start, stop)
                if need_ref and prepared is not None:
                    # the base model (for a clamped vector m = 0 is not that)
                    L_p, L_n = self.scorer.score(prepared, 0.0, unsteered=True).losses(self.hp.loss_reduction)
                    b.ref_p, b.ref_n = L_p.detach(), L_n.detach()
                batches.append(b)
        return batches

    # -- one minibatch -------------------------------------------------------------------------
    def minibatch_loss(self, batch: _Batch, generator: torch.Generator) -> torch.Tensor | None:
        """The minibatch's objective (the mean over its rows). Under torchrun: this rank's share of it,
        ``Σ_(its rows) / R`` (None when it holds no row), so that the shares sum to the mean over ranks."""
        hp = self.hp
        idx, ms, pos_wins = sample_rows(batch.n_pairs, hp.preference_pairs, hp.steering_factors, generator,
                                        null_it_out=hp.substraction_type == "null_it_out")
        n_rows = idx.numel()
        share = 1.0
        if batch.start != 0 or batch.stop != batch.n_pairs:  # a block of the pairs: keep their rows
            pair, slot = idx % batch.n_pairs, idx // batch.n_pairs
            keep = (pair >= batch.start) & (pair < batch.stop)
            if not bool(keep.any()):
                return None
            held = batch.stop - batch.start
            idx = slot[keep] * held + pair[keep] - batch.start  # into this rank's prepared rows
            ms, pos_wins = ms[keep], pos_wins[keep]
            share = idx.numel() / n_rows
        L_p, L_n = self.scorer.score(batch.prepared, ms, idx).losses(hp.loss_reduction)
        pw = pos_wins.to(L_p.device)
        L_win, L_lose = torch.where(pw, L_p, L_n), torch.where(pw, L_n, L_p)
        ref_win = ref_lose = None
        if batch.ref_p is not None:
            rp, rn = batch.ref_p[idx.to(L_p.device)], batch.ref_n[idx.to(L_p.device)]
            ref_win, ref_lose = torch.where(pw, rp, rn), torch.where(pw, rn, rp)
        loss = compute_objective(self.objective, hp, L_win, L_lose, ref_win, ref_lose, factors=ms)
        return loss if share == 1.0 else loss * share

    # -- main loop -----------------------------------------------------------------------------
    def train(
        self,
        pairs: Sequence[PolarityPair] | Sequence[EncodedPair],
        *,
        output_path: str | Path | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
        max_steps: int | None = None,
        easyedit_pt: Any = None,
    ) -> TrainResult:
        """Train on ``pairs`` (already selected; see :func:`select_pairs`).

        ``max_steps`` stops after that many optimizer steps (the schedule still spans the whole
        run), which is how an interruption is simulated in the tests. ``easyedit_pt``: also write
        EasyEdit's ``.pt`` beside ``output_path`` (see :func:`~easyedit_split.core.serialization.save_updates`).
        The saved file records a digest of every training pair (``extra["train_pair_digests"]``, when
        ``pairs`` are not already encoded), so that evaluation can keep them out of its held-out pairs.
        """
        hp = self.hp
        if output_path is not None:
            from easyedit_split.core.serialization import check_update_path

            check_update_path(output_path)  # before training, not after it
        pairs = check_pairs(pairs, "Trainer.train", encoded_ok=True)
        if pairs and isinstance(pairs[0], EncodedPair):
            if uses_steered(hp.preference_pairs):
                raise TrainingError(f"preference_pairs {hp.preference_pairs} read the pairs' steered fields; pass "
                                    "PolarityPair objects (data read from a file or records), not encoded pairs")
            examples, self._pair_digests = [(e,) for e in pairs], None
        else:
            examples, self._pair_digests = encode_examples(hp, pairs, self.tokenizer), pair_digests(pairs)
        if not examples:
            raise TrainingError("no training pairs")
        check_context_length([e for ex in examples for e in ex], self.model, what="training pair")
        frozen_restore = [p for p in self.model.parameters() if p.requires_grad]
        for p in frozen_restore:
            p.requires_grad_(False)
        try:
            return self._train(examples, output_path, checkpoint_dir, resume, progress, max_steps, easyedit_pt)
        finally:
            for p in frozen_restore:
                p.requires_grad_(True)

    def _train(self, examples, output_path, checkpoint_dir, resume, progress, max_steps, easyedit_pt) -> TrainResult:
        hp = self.hp
        t0 = time.perf_counter()
        batches = self.prepare(examples, progress=progress)
        n_mb = len(batches)
        accum = hp.gradient_accumulation_steps
        steps_per_epoch = math.ceil(n_mb / accum)
        total_steps = steps_per_epoch * hp.n_epochs
        warmup = math.ceil(hp.warmup_ratio * total_steps)

        params = [p for p in self.update.parameters()]
        for p in params:
            p.requires_grad_(True)
        model_param_ids = {id(p) for p in self.model.parameters()}
        assert not any(id(p) in model_param_ids for p in params), "update parameters must not be model parameters"
        assert not any(p.requires_grad for p in self.model.parameters()), "the base model must be frozen"
        optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(total_steps, warmup))
        factor_gen = torch.Generator().manual_seed(int(hp.seed) + 1)

        parts = _fingerprint_parts(hp, [e for ex in examples for e in ex], self.layer)
        ckpt = _Checkpointer(checkpoint_dir or hp.checkpoint_dir, _fingerprint(parts), parts)
        step, history = 0, []
        if resume:
            state = ckpt.load(self.update, optimizer, scheduler, factor_gen)
            if state is not None:
                step, history = state["step"], state["loss_history"]
                logger.info("resumed from %s at step %d/%d", state["file"], step, total_steps)
        stop_at = total_steps if max_steps is None else min(total_steps, max_steps)

        dist = self._dist()
        bar = progress_bar(total=total_steps, initial=step, desc=f"{self.objective} {hp.form} L{self.layer}", unit="step",
                           enabled=progress and dist.is_main)
        pairs_seen = 0
        checked_frozen = False
        t_loop = time.perf_counter()
        try:
            while step < stop_at:
                epoch, in_epoch = divmod(step, steps_per_epoch)
                order = torch.randperm(n_mb, generator=torch.Generator().manual_seed(int(hp.seed) * 1_000_003 + epoch))
                group = order[in_epoch * accum:(in_epoch + 1) * accum].tolist()
                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                bad: str | None = None
                had_rows = False
                for mb in group:
                    loss = self.minibatch_loss(batches[mb], factor_gen)
                    pairs_seen += batches[mb].n_pairs
                    if loss is None:  # under torchrun: this rank holds no pair of this minibatch
                        continue
                    had_rows = True
                    if not torch.isfinite(loss):
                        bad = (f"non-finite loss ({loss.item()}) at step {step + 1} (epoch {epoch + 1}, minibatch {mb}); "
                               f"last good checkpoint: {ckpt.latest_file() or 'none'} — lower lr or steering_factors")
                        if not dist.enabled:
                            raise TrainingError(bad)
                        break  # the other ranks must still reach the all-reduce
                    (loss / len(group)).backward()
                    step_loss += loss.item() / len(group)
                if not checked_frozen:
                    leaked = [n for n, p in self.model.named_parameters() if p.grad is not None]
                    assert not leaked, f"gradients reached base-model parameters: {leaked[:3]}"
                    if had_rows and bad is None:
                        assert all(p.grad is not None for p in params), "some update parameters got no gradient"
                        checked_frozen = True
                if dist.enabled:  # sum the update's gradients (only: the base model is frozen) over ranks
                    for p in params:
                        if p.grad is None:
                            p.grad = torch.zeros_like(p)
                    dist.all_reduce_sum_([p.grad for p in params])
                    stats = torch.tensor([step_loss, 0.0 if bad is None else 1.0], dtype=torch.float64,
                                         device=params[0].device)
                    dist.all_reduce_sum_([stats])
                    step_loss = float(stats[0])
                    if stats[1] > 0:
                        raise TrainingError(bad or f"non-finite loss on another rank at step {step + 1} (epoch "
                                                   f"{epoch + 1}); last good checkpoint: {ckpt.latest_file() or 'none'}")
                if hp.max_grad_norm is not None and hp.max_grad_norm > 0:  # null/<=0: no clipping
                    torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
                optimizer.step()
                scheduler.step()
                step += 1
                history.append(step_loss)
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{scheduler.get_last_lr()[0]:.3g}")
                if hp.checkpoint_every and ckpt.enabled and step % hp.checkpoint_every == 0 and step < total_steps:
                    if dist.is_main:  # every rank holds the same state; one writes it
                        ckpt.save(step, self.update, optimizer, scheduler, factor_gen, history)
                    dist.barrier()
        finally:
            bar.close()
        train_seconds = time.perf_counter() - t_loop
        for p in params:
            p.requires_grad_(False)
            p.grad = None

        out = None
        health = training_health(history, self.update)
        for warning in health["warnings"]:
            logger.warning("%s %s layer %d: %s; lower lr or steering_factors (recorded in the saved file's "
                           "training_health)", hp.method, hp.form, self.layer, warning)
        if output_path is not None and step >= total_steps and not dist.is_main:
            dist.barrier()  # rank 0 writes the result
            out = Path(output_path)
        elif output_path is not None and step >= total_steps:
            out = save_updates(output_path, [self.update], model=self.model, method=hp.method, hparams=hp.to_dict(),
                               extra={"layer": self.layer, "objective": self.objective, "steps": step,
                                      "loss_history": history, "n_train_pairs": len(examples),
                                      "training_health": health,
                                      **({"train_pair_digests": self._pair_digests} if self._pair_digests else {})},
                               easyedit_pt=easyedit_pt)
            logger.info("saved %s update of layer %d to %s", hp.form, self.layer, out)
            dist.barrier()
        return TrainResult(updates=[self.update], loss_history=history, output_path=out, method=hp.method,
                           objective=self.objective, layer=self.layer, steps=step,
                           seconds=time.perf_counter() - t0, pairs_seen=pairs_seen,
                           extra={"train_seconds": train_seconds, "total_steps": total_steps,
                                  "n_minibatches": n_mb, "training_health": health})


# ------------------------------------------------------------------------------------------ checkpoints


class _Checkpointer:
    """``step_NNNNNN.safetensors`` (tensors + JSON header) and ``latest.json`` pointing at the newest."""

    KEEP = 2

    def __init__(self, folder: str | Path | None, fingerprint: str, parts: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder) if folder else None
        self.fingerprint = fingerprint
        self.parts = parts

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def latest_file(self) -> str | None:
        if self.folder is None:
            return None
        try:
            return str(self.folder / json.loads((self.folder / "latest.json").read_text())["file"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, step, update, optimizer, scheduler, factor_gen, history) -> Path:
        assert self.folder is not None
        tensors: dict[str, torch.Tensor] = {f"update.{n}": p.detach() for n, p in update.named_parameters()}
        opt = optimizer.state_dict()
        for pid, st in opt["state"].items():
            for k, v in st.items():
                tensors[f"optim.{pid}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
        tensors["rng.factors"] = factor_gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {"trainer_state": json.dumps({
            "step": step,
            "fingerprint": self.fingerprint,
            "fingerprint_parts": self.parts,
            "param_groups": opt["param_groups"],
            "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"},
            "loss_history": history,
        })}
        name = f"step_{step:06d}.safetensors"
        path = atomic_save_safetensors(self.folder / name, tensors, meta)
        atomic_write_json(self.folder / "latest.json", {"file": name, "step": step, "fingerprint": self.fingerprint})
        for old in sorted(self.folder.glob("step_*.safetensors"))[:-self.KEEP]:
            old.unlink(missing_ok=True)
        logger.info("checkpoint %s", path)
        return path

    def _candidates(self) -> list[Path]:
        """Checkpoint files to try, best first: the one ``latest.json`` names, then every ``step_*`` newest first."""
        assert self.folder is not None
        out: list[Path] = []
        pointer = self.folder / "latest.json"
        if pointer.exists():
            try:
                out.append(self.folder / str(json.loads(pointer.read_text())["file"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("resume: %s is unreadable (%s); using the newest intact checkpoint instead", pointer, exc)
        for f in sorted(self.folder.glob("step_*.safetensors"), reverse=True):
            if f not in out:
                out.append(f)
        return out

    @staticmethod
    def _read(file: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as fh:
            raw = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not iterable)
        meta = json.loads(raw["trainer_state"])
        for key in ("step", "fingerprint", "param_groups", "scheduler", "loss_history"):
            if key not in meta:
                raise KeyError(f"trainer_state has no {key!r}")
        return meta, tensors

    def load(self, update, optimizer, scheduler, factor_gen) -> dict[str, Any] | None:
        """Restore the newest intact checkpoint (a corrupt ``latest.json`` or a truncated newest file falls
        back to the older one, with a warning); None when the folder holds none."""
        if self.folder is None:
            raise TrainingError("resume needs a checkpoint folder (checkpoint_dir, or checkpoint_every > 0)")
        candidates = self._candidates()
        if not candidates:
            logger.warning("resume: no checkpoint in %s; starting from scratch", self.folder)
            return None
        tried = []
        for file in candidates:
            try:
                meta, tensors = self._read(file)
            except Exception as exc:  # noqa: BLE001 - missing, truncated or foreign files all mean "not usable"
                tried.append(f"{file.name}: {type(exc).__name__}")
                logger.warning("resume: checkpoint %s is unusable (%s); trying an older one", file, exc)
                continue
            if meta["fingerprint"] != self.fingerprint:
                changed = describe_fingerprint_change(meta.get("fingerprint_parts"), self.parts or {})
                raise TrainingError(
                    f"{file} was written by a run with different hparams or training data ("
                    f"{changed or 'fingerprint ' + meta['fingerprint'] + ' != ' + self.fingerprint}); not resuming. Delete {self.folder} (or use "
                    "another checkpoint_dir) to train from scratch, or rerun with the original settings and data")
            self._restore(meta, tensors, update, optimizer, scheduler, factor_gen)
            return {"step": int(meta["step"]), "loss_history": list(meta["loss_history"]), "file": str(file)}
        raise TrainingError(f"resume: no intact checkpoint in {self.folder} ({'; '.join(tried)}); delete the folder "
                            "to train from scratch, or run without --resume")

    @staticmethod
    def _restore(meta, tensors, update, optimizer, scheduler, factor_gen) -> None:
        with torch.no_grad():
            for n, p in update.named_parameters():
                p.copy_(tensors[f"update.{n}"])
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, t in tensors.items():
            if key.startswith("optim."):
                _, pid, k = key.split(".", 2)
                state.setdefault(int(pid), {})[k] = t
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        sched = scheduler.state_dict()
        sched.update(meta["scheduler"])
        scheduler.load_state_dict(sched)
        factor_gen.set_state(tensors["rng.factors"])
        torch.set_rng_state(tensors["rng.torch"])
