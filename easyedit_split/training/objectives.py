"""Training objectives as pure functions of per-row answer losses.

Every function takes per-row answer NLLs (``[R]`` tensors; per-token means or sequence sums,
see ``loss_reduction``) of the *winning* and the *losing* answer of each row and returns the mean
over rows. A row is one ``(pair, direction, m)``: in the ``orig_add`` direction the positive answer
wins under ``+m``, in ``orig_sub`` the negative answer wins under ``-m``.

* :func:`sft_loss` — likelihood of the winner only.
* :func:`split_loss` — SPLIT: ``λ_p·L_win + λ_n·L_lose + γ·ReLU(θ − (L_lose − L_win))``; ``θ`` may be
  a per-row tensor (the trainer's ``margin_scaling: factor`` passes ``θ·|m|``, a margin that grows
  with the steering factor, so that ``m`` acts as a dial rather than an on/off switch).
* :func:`reps_loss` — RePS, the scaled SimPO objective of EasyEdit's ``scaled_simpo`` loss type:
  ``−log σ(β·(L_lose − s·L_win) − γ)`` on length-normalised losses, with the winner's scale
  ``s = max(k·(L_win^ref − L_lose^ref), 1)`` when reference losses are given and ``s = 1``
  (reference-free) otherwise.
* :func:`dpo_loss` — DPO (BiPO when used in both directions), reference = the unsteered model.
* :func:`ref_violation_loss` — upstream's optional ``ref_loss_weight`` term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from easyedit_split.base.methods import METHODS
from easyedit_split.errors import InputError

__all__ = ["OBJECTIVES", "dpo_loss", "ref_violation_loss", "reps_loss", "sft_loss", "split_loss"]


def sft_loss(L_win: torch.Tensor) -> torch.Tensor:
    """Mean NLL of the winning answer."""
    return L_win.mean()


def split_loss(
    L_win: torch.Tensor,
    L_lose: torch.Tensor,
    lambda_p: float = 1.0,
    lambda_n: float = 0.5,
    gamma: float = 4.0,
    theta: float | torch.Tensor = 0.5,
) -> torch.Tensor:
    """SPLIT: utility on both answers plus a hinge on the preference log-odds ``L_lose − L_win``.

    ``theta``: one margin, or one per row (``[R]``).
    """
    utility = lambda_p * L_win + lambda_n * L_lose
    preference = gamma * F.relu(theta - (L_lose - L_win))
    return (utility + preference).mean()


def reps_loss(
    L_win: torch.Tensor,
    L_lose: torch.Tensor,
    ref_win: torch.Tensor | None = None,
    ref_lose: torch.Tensor | None = None,
    *,
    beta: float = 1.0,
    gamma: float = 0.0,
    scaler: float = 1.0,
) -> torch.Tensor:
    """Scaled SimPO (RePS). Pass length-normalised losses (per-token means) as SimPO does.

    ``ref_win``/``ref_lose`` (unsteered losses) switch on the reference scale of the winner's
    term, ``max(scaler·(ref_win − ref_lose), 1)``: rows the unsteered model gets wrong are pushed
    harder. Without them the objective is reference-free (scale 1).
    """
    if (ref_win is None) != (ref_lose is None):
        raise InputError("reps_loss: give both ref_win and ref_lose, or neither")
    if ref_win is None:
        scale = torch.ones_like(L_win)
    else:
        scale = torch.clamp_min(scaler * (ref_win - ref_lose), 1.0).detach()
    logits = beta * (L_lose - scale * L_win) - gamma
    return (-F.logsigmoid(logits)).mean()


def dpo_loss(
    L_win: torch.Tensor,
    L_lose: torch.Tensor,
    ref_win: torch.Tensor,
    ref_lose: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """DPO: ``−log σ(β·((ref_win − L_win) − (ref_lose − L_lose)))`` (log-ratios against the reference)."""
    logits = (ref_win - L_win) - (ref_lose - L_lose)
    return (-F.logsigmoid(beta * logits)).mean()


def ref_violation_loss(
    L_win: torch.Tensor, L_lose: torch.Tensor, ref_win: torch.Tensor, ref_lose: torch.Tensor
) -> torch.Tensor:
    """Upstream's reference constraint: ``ReLU(L_win − ref_win) + ReLU(L_lose − ref_lose)``, row mean."""
    return (F.relu(L_win - ref_win) + F.relu(L_lose - ref_lose)).mean()


#: objective name → whether it needs unsteered reference losses (from the method table)
OBJECTIVES = {m.objective: m.needs_reference for m in METHODS if m.objective is not None}
