"""SPLIT as an EasyEdit knowledge editor: ``alg_name: SPLIT`` in an editing YAML.

EasyEdit's ``BaseEditor`` looks its editor up in ``easyeditor.util.alg_dict.ALG_DICT`` by
``hparams.alg_name`` and calls, for every request (or batch of requests)::

    edited_model, weights_copy = apply_algo(model, tok, requests, hparams, copy=False,
                                            return_orig_weights=True, keep_original_weight=False, ...)

then scores ``edited_model`` and, for a non-sequential edit, restores the model by copying every
``weights_copy[name]`` back into the parameter ``name``. :func:`apply_split_to_model` follows that
contract:

1. each request ``{prompt, target_new, ground_truth}`` becomes a polarity pair (question = prompt,
   positive = ``target_new``, negative = ``ground_truth``, as continuations with a leading space);
2. a fresh update of ``intervention_method`` (``local_weight`` or ``lora``) at the MLP
   down-projection of ``layers[0]`` is trained on them by this package's
   :class:`~easyedit_split.training.Trainer` with the SPLIT objective
   ``λ_p·L_p + λ_n·L_n + γ·ReLU(θ − (L_n − L_p))`` (base model frozen);
3. the update is folded into the weights at ``m = edit_multiplier`` (merged mode, fp32
   accumulation, non-finite results refused), and the original tensors of the changed parameters
   are returned as ``weights_copy``; restoring them gives the base model bit for bit.

A local-weight update on a module without a bias (Llama's ``down_proj``) is trained as ``ΔW`` only:
a ``Δb`` would need a new bias parameter, which EasyEdit's restore-by-copy cannot remove again.
``copy=True`` edits a deep copy; ``keep_original_weight`` has no effect (every call trains a fresh
update on the weights it is given, so sequential edits stack).

:func:`register_editor` inserts the editor into ``ALG_DICT`` (EasyEdit's only editor table;
``BaseEditor`` takes the hparams object it is given, so no hparams table needs an entry).
"""

from __future__ import annotations

import copy as copy_module
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from easyedit_split.base.hparams_io import HParamsError
from easyedit_split.core.apply import merge_updates
from easyedit_split.core.sites import resolve_site
from easyedit_split.core.updates import LocalWeightUpdate, Update
from easyedit_split.data.pairs import PolarityPair
from easyedit_split.editing.requests import as_continuation, request_from_easyedit
from easyedit_split.errors import InputError
from easyedit_split.training.hparams import SplitHyperParams
from easyedit_split.training.trainer import Trainer, build_update

logger = logging.getLogger(__name__)

__all__ = ["ALG_NAME", "SplitEditHyperParams", "apply_split_to_model", "register_editor", "requests_to_pairs"]

#: the key in EasyEdit's ALG_DICT
ALG_NAME = "SPLIT"


@dataclass
class SplitEditHyperParams(SplitHyperParams):
    """Hyperparameters of the SPLIT editor: the SPLIT training keys plus EasyEdit's editor keys.

    EasyEdit's editor keys: ``model_name`` (a model folder; ``BaseEditor`` loads it and picks the
    tokenizer by a family name in the path — see :func:`~easyedit_split.editing.compare.easyedit_model_dir`),
    ``device``, ``model_parallel``, ``max_length`` (EasyEdit's evaluation truncation), ``fp16``,
    ``batch_size`` (must be 1: ``BaseEditor.edit`` edits one request at a time for non-batch editors).
    Ours: ``edit_multiplier`` (the ``m`` at which the trained update is folded in). ``n_epochs`` is
    the number of optimiser steps per request (one pair per request, batch 1).
    """

    ALG_NAMES: ClassVar[tuple[str, ...]] = ("split",)
    alg_name: str = ALG_NAME
    model_name: str = ""
    model_parallel: bool = False
    max_length: int = 40
    fp16: bool = False
    edit_multiplier: float = 1.0

    # editing defaults (a single request trained for a few dozen steps)
    intervention_method: str = "local_weight"
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    n_epochs: int = 20
    lr: float = 0.01
    dropout: float = 0.0
    steering_factors: list[float] = field(default_factory=lambda: [1.0])
    use_chat_template: bool = False
    pos_loss_weight: float = 1.0
    neg_loss_weight: float = 0.5
    margin_penalty_weight: float = 4.0
    margin_threshold: float = 2.0

    def validate(self, source: str) -> None:
        super().validate(source)
        self.alg_name = ALG_NAME  # BaseEditor looks the editor up by this exact key
        if not self.model_name:
            raise HParamsError(f"{source}: required key 'model_name' is missing (the model folder BaseEditor loads)")
        if len(self.layers) != 1:
            raise HParamsError(f"{source}: key 'layers' must name exactly one layer for the SPLIT editor, got {self.layers}")
        if self.batch_size != 1:
            raise HParamsError(f"{source}: key 'batch_size' must be 1 (EasyEdit's BaseEditor.edit edits one request "
                               f"at a time), got {self.batch_size}")
        if self.form == "vector":
            raise HParamsError(f"{source}: key 'intervention_method' must be local_weight or lora for the SPLIT editor "
                               "(an edit changes weights)")


def requests_to_pairs(requests: Sequence[dict]) -> list[PolarityPair]:
    """EasyEdit request dicts → polarity pairs (positive = target_new, negative = ground_truth)."""
    pairs = []
    for i, req in enumerate(requests):
        prompt, target_new, ground_truth = request_from_easyedit(req)
        pairs.append(PolarityPair(f"request-{req.get('case_id', i)}", prompt, as_continuation(target_new),
                                  as_continuation(ground_truth), "easyedit-request"))
    return pairs


class _WeightOnlyLocalUpdate(LocalWeightUpdate):
    """A local-weight update whose ``Δb`` is fixed at zero (for a module without a bias)."""

    def __init__(self, site, d_in: int, d_out: int) -> None:
        super().__init__(site, d_in, d_out)
        del self.bias
        self.register_buffer("bias", torch.zeros(d_out), persistent=False)

    def delta_bias(self) -> None:
        return None


def _fresh_update(model: nn.Module, hp: SplitEditHyperParams, layer: int) -> Update:
    update = build_update(model, hp, layer)
    if isinstance(update, LocalWeightUpdate) and getattr(resolve_site(model, update.site).module, "bias", None) is None:
        logger.info("SPLIT editor: %s has no bias; training ΔW only", update.site)
        restricted = _WeightOnlyLocalUpdate(update.site, update.d_in, update.d_out)
        return restricted.to(next(model.parameters()).device)
    return update


def apply_split_to_model(
    model: nn.Module,
    tok: Any,
    requests: Sequence[dict],
    hparams: SplitEditHyperParams,
    copy: bool = False,
    return_orig_weights: bool = False,
    keep_original_weight: bool = False,
    **kwargs: Any,
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """EasyEdit's editor entry point (see the module doc); returns ``(edited_model, weights_copy)``."""
    if copy:
        model = copy_module.deepcopy(model)
    pairs = requests_to_pairs(requests)
    if not pairs:
        raise InputError("apply_split_to_model: no requests")
    layer = int(hparams.layers[0])
    was_training = model.training
    model.eval()
    try:
        trainer = Trainer(model, tok, hparams, layer=layer, objective="split",
                          update=_fresh_update(model, hparams, layer))
        result = trainer.train(pairs, progress=False)
    finally:
        model.train(was_training)
    logger.info("SPLIT edit of %d request(s) at layer %d: loss %.4g -> %.4g in %d steps", len(pairs), layer,
                result.loss_history[0], result.loss_history[-1], result.steps)
    handle = merge_updates(model, result.updates, hparams.edit_multiplier, safe_merge=True)
    weights_copy: dict[str, torch.Tensor] = {}
    if return_orig_weights:
        for update in result.updates:
            rs = resolve_site(model, update.site)
            saved = handle.saved[id(rs.module)]
            weights_copy[f"{rs.module_path}.weight"] = saved.weight
            if saved.had_bias:
                weights_copy[f"{rs.module_path}.bias"] = saved.bias
    return model, weights_copy


def register_editor(path: str | os.PathLike | None = None, *, overwrite: bool = False) -> bool:
    """Insert ``SPLIT`` → :func:`apply_split_to_model` into EasyEdit's ``ALG_DICT``.

    ``path``: an EasyEdit checkout (default ``$EASYEDIT_PATH``, else an importable ``easyeditor``);
    ``easyeditor`` is imported through :func:`~easyedit_split.editing.import_easyeditor`. Returns
    True when the entry was inserted (False when EasyEdit already has a ``SPLIT`` entry and not
    ``overwrite``). Raises :class:`~easyedit_split.editing.EasyEditNotFound` when EasyEdit cannot
    be imported.
    """
    from easyedit_split.editing.easyeditor_import import import_easyeditor

    import_easyeditor(path)
    from easyeditor.util import alg_dict

    return insert_editor(alg_dict, overwrite=overwrite)


def insert_editor(alg_dict: Any, *, overwrite: bool = False) -> bool:
    """Insert ``SPLIT`` → :func:`apply_split_to_model` into an imported ``easyeditor.util.alg_dict``
    module's ``ALG_DICT``; False (and left alone) when it holds another ``SPLIT`` and not ``overwrite``."""
    if ALG_NAME in alg_dict.ALG_DICT and alg_dict.ALG_DICT[ALG_NAME] is not apply_split_to_model and not overwrite:
        logger.info("EasyEdit's ALG_DICT already has %r; keeping it", ALG_NAME)
        return False
    alg_dict.ALG_DICT[ALG_NAME] = apply_split_to_model
    _export_hparams_class()
    logger.info("registered the SPLIT editor in easyeditor.util.alg_dict.ALG_DICT")
    return True


def _export_hparams_class() -> None:
    """``from easyeditor import SplitEditHyperParams`` (where EasyEdit's scripts import FTHyperParams, ROMEHyperParams …)."""
    import sys

    package = sys.modules.get("easyeditor")
    if package is not None and getattr(package, "SplitEditHyperParams", None) is not SplitEditHyperParams:
        package.SplitEditHyperParams = SplitEditHyperParams
