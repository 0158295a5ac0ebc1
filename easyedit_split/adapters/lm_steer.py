"""EasyEdit's lm_steer (LM-Steer, Han et al. 2024) as an update of the output embedding.

lm_steer replaces the model's ``lm_head`` by an adaptor that transforms the final hidden state ``h``
before the output embedding ``W`` (``[V, D]``) is applied. With steer values ``s`` (one per steer,
set at apply time) and ``ε`` (``epsilon``), the three adaptor classes are:

=============  ===========================================  ======================================
class          upstream logits                              update of ``lm_head`` (m = 1)
=============  ===========================================  ======================================
``multiply``   ``W (I + ε Σ_i s_i P1_i P2_iᵀ)ᵀ h``           ``ΔW = ε·W·Σ_i s_i P2_i P1_iᵀ`` (LoRA)
``add``        ``W (h + ε Σ_i s_i a_i)``                    ``Δb = ε·W·Σ_i s_i a_i`` (vector)
``offset``     ``W h + ε Σ_i s_i o_i``                      ``Δb = ε·Σ_i s_i o_i`` (vector)
=============  ===========================================  ======================================

So every lm_steer checkpoint is exactly an update ``(ΔW, Δb)`` of the output layer, and ``m``
scales ``ε·s`` (the steer values) linearly. ``multiply`` becomes a LoRA of rank ``k·r`` when that
is below ``D`` (``B = ε·W·[s_1 P2_1 … s_k P2_k]``, ``A = [P1_1 … P1_k]ᵀ``), else of rank ``D``
(``B = ε·W``, ``A = Σ_i s_i P2_i P1_iᵀ``). Two differences from upstream, both outside the
transform: upstream's adaptor computes ``h·Wᵀ`` without the output layer's bias (no bias on the
models it supports; on one with a bias, the update keeps it and upstream drops it), and the update
acts in hook mode on ``lm_head`` — merging it into a model whose ``lm_head`` weight is tied to the
input embedding would change the input embedding too, so steer such models in hook mode.

The checkpoint (``lm_steer_vector.pt``) is a pickled ``[hparams, state_dict, step]`` list. It is
read with ``torch.load(weights_only=True)``: the only global allowed beyond tensors is the
hyperparameter dataclass, which is bound to an inert record class that receives its fields as a
dict (no code from the file runs); anything else in the file is refused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from easyedit_split.core.easyedit_layout import AdapterError
from easyedit_split.core.sites import Site, decoder_layers
from easyedit_split.core.updates import LoRAUpdate, Update, VectorUpdate

logger = logging.getLogger(__name__)

__all__ = ["LM_STEER_FILE", "LmSteerCheckpoint", "from_lm_steer", "lm_steer_update", "read_lm_steer_checkpoint"]

LM_STEER_FILE = "lm_steer_vector.pt"
#: class names of EasyEdit's lm_steer hyperparameter dataclasses (the last component of the pickled global)
_HPARAM_CLASS_NAMES = ("LmSteerHyperParams", "ApplyLmSteerHyperParams")
#: upstream's default ``epsilon`` (ApplyLmSteerHyperParams)
DEFAULT_EPSILON = 1e-3


class LmSteerCheckpoint:
    """Inert stand-in for EasyEdit's lm_steer hyperparameters: the unpickler fills ``__dict__``
    with the saved fields (plain values); it has no behaviour."""

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)


def read_lm_steer_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(training hparams as a dict, adaptor state dict)`` of an lm_steer checkpoint, read without
    executing code from the file."""
    p = Path(path)
    if not p.exists():
        raise AdapterError(f"lm_steer checkpoint {p} does not exist")
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(p))
    except Exception as exc:
        raise AdapterError(f"{p} is not a torch checkpoint: {exc}") from exc
    allowed = [g for g in unsafe if g.rsplit(".", 1)[-1] in _HPARAM_CLASS_NAMES]
    refused = sorted(set(unsafe) - set(allowed))
    if refused:
        raise AdapterError(f"{p}: refusing to unpickle {refused}; an lm_steer checkpoint holds only tensors, "
                           "plain values and its hyperparameter dataclass")
    try:
        with torch.serialization.safe_globals([(LmSteerCheckpoint, name) for name in allowed]):
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise AdapterError(f"{p} could not be read with torch.load(weights_only=True): {exc}") from exc
    if not (isinstance(obj, (list, tuple)) and len(obj) == 3 and isinstance(obj[1], Mapping)):
        raise AdapterError(f"{p}: expected lm_steer's [hparams, state_dict, step], got {type(obj).__name__}")
    hp = dict(vars(obj[0])) if isinstance(obj[0], LmSteerCheckpoint) else {}
    return hp, dict(obj[1])


def _stacked(state: Mapping[str, Any], key: str, source: str) -> torch.Tensor:
    t = state.get(key)
    if not isinstance(t, torch.Tensor) or not torch.is_floating_point(t):
        raise AdapterError(f"{source}: {key!r} is missing or not a float tensor (keys: {sorted(state)})")
    if not bool(torch.isfinite(t).all()):
        raise AdapterError(f"{source}: {key!r} has NaN/infinite values")
    return t.detach().double()


def _output_layer(model: nn.Module, source: str) -> tuple[str, nn.Linear]:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, nn.Linear):
        raise AdapterError(f"{source}: the model has no linear output embedding (lm_head) for lm_steer to act on")
    for name, module in model.named_modules():
        if module is head:
            return name, head
    raise AdapterError(f"{source}: the output embedding is not a submodule of the model")


def lm_steer_update(state: Mapping[str, Any], model: nn.Module, steer_values: Sequence[float], *,
                    epsilon: float = DEFAULT_EPSILON, source: str = "lm_steer state") -> Update:
    """The update of ``lm_head`` equal to an lm_steer adaptor ``state`` at ``steer_values`` and ``epsilon``."""
    path, head = _output_layer(model, source)
    n_layers = len(decoder_layers(model)[1])
    site = Site(n_layers, "module", module_path=path)  # after the last decoder layer
    W = head.weight.detach().double().cpu()  # [V, D]
    V, D = W.shape
    s = torch.as_tensor([float(v) for v in steer_values], dtype=torch.float64)
    eps = float(epsilon)
    if "projector1" in state:
        P1, P2 = _stacked(state, "projector1", source), _stacked(state, "projector2", source)  # [k, D, r]
        if P1.dim() != 3 or P1.shape != P2.shape or P1.shape[1] != D:
            raise AdapterError(f"{source}: projectors {tuple(P1.shape)}/{tuple(P2.shape)} do not fit hidden size {D}")
        k, _, r = P1.shape
        _check_steers(s, k, source)
        keep = [i for i in range(k) if s[i] != 0]
        if k * r < D:
            A = torch.cat([P1[i].t() for i in keep], 0) if keep else torch.zeros(1, D, dtype=torch.float64)
            B = eps * W @ torch.cat([s[i] * P2[i] for i in keep], 1) if keep else torch.zeros(V, 1, dtype=torch.float64)
        else:
            A = sum((s[i] * P2[i] @ P1[i].t() for i in keep), torch.zeros(D, D, dtype=torch.float64))
            B = eps * W
        return LoRAUpdate(site, D, V, rank=A.shape[0], scale=1.0, A=A.float(), B=B.float())
    if "add_vec" in state:
        a = _stacked(state, "add_vec", source)  # [k, D]
        _check_steers(s, a.shape[0], source)
        return VectorUpdate(site, V, vector=(eps * W @ (s @ a)).float())
    if "offset_vec" in state:
        o = _stacked(state, "offset_vec", source)  # [k, V]
        _check_steers(s, o.shape[0], source)
        if o.shape[1] != V:
            raise AdapterError(f"{source}: offset_vec has {o.shape[1]} columns, the vocabulary has {V}")
        return VectorUpdate(site, V, vector=(eps * (s @ o)).float())
    raise AdapterError(f"{source}: keys {sorted(state)} match no lm_steer adaptor (projector1/2 | add_vec | offset_vec)")


def _check_steers(s: torch.Tensor, k: int, source: str) -> None:
    if s.numel() != k:
        raise AdapterError(f"{source}: {s.numel()} steer_values given, the adaptor has {k} steers (num_steers)")


def from_lm_steer(path: str | os.PathLike, model: nn.Module, steer_values: Sequence[float], *,
                  epsilon: float | None = None) -> Update:
    """An lm_steer checkpoint as an update of ``lm_head``; ``epsilon`` defaults to the checkpoint's
    (EasyEdit's applier takes it from its apply hparams, default 1e-3)."""
    hp, state = read_lm_steer_checkpoint(path)
    if epsilon is None:
        epsilon = float(hp.get("epsilon", DEFAULT_EPSILON))
        logger.info("%s: epsilon %g from the checkpoint", path, epsilon)
    return lm_steer_update(state, model, steer_values, epsilon=epsilon, source=str(path))
