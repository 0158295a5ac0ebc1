"""Teacher-forced answer log-likelihoods (pure, differentiable functions).

Conventions: the logits at position ``t-1`` predict the token at position ``t``; log-softmax runs in
float32 and only on the rows that predict answer tokens (never over every position of the batch).
"""

from __future__ import annotations

import torch

from easyedit_split.data.encoding import SequenceBatch
from easyedit_split.errors import InputError

__all__ = ["answer_nll", "last_token_logits", "prompt_answer_nll", "split_pairs"]


def answer_nll(logits: torch.Tensor, batch: SequenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum, mean)`` over answer tokens of ``-log p(token | previous tokens)``, each ``[N]``, float32.

    ``logits`` is ``[N, T, V]`` for ``batch.input_ids`` (``[N, T]``); padding side does not matter.
    """
    if logits.dim() != 3 or logits.shape[:2] != batch.input_ids.shape:
        raise InputError(
            f"logits {tuple(logits.shape)} do not match input_ids {tuple(batch.input_ids.shape)}"
        )
    answer_mask = batch.answer_mask.to(device=logits.device, dtype=torch.bool)
    if bool(answer_mask[:, 0].any()):
        raise InputError("an answer token sits at position 0, where nothing predicts it (empty prompt)")
    target_mask = answer_mask[:, 1:]  # [N, T-1]: is token t (t>=1) an answer token
    rows = target_mask.nonzero(as_tuple=True)[0]  # [K]
    selected = logits[:, :-1][target_mask]  # [K, V]: logits at t-1 for answer tokens t
    targets = batch.input_ids.to(logits.device)[:, 1:][target_mask]  # [K]
    token_lp = torch.log_softmax(selected.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    n = logits.shape[0]
    total = torch.zeros(n, dtype=torch.float32, device=logits.device).index_add(0, rows, -token_lp)
    counts = target_mask.sum(dim=1)
    if bool((counts == 0).any()):
        raise InputError("a row has no answer tokens")
    return total, total / counts.to(torch.float32)


def last_token_logits(
    logits: torch.Tensor, lengths: torch.Tensor, padding_side: str = "left"
) -> torch.Tensor:
    """Logits ``[N, V]`` at each row's last real position (``lengths - 1`` right-padded, ``-1`` left)."""
    if padding_side == "left":
        return logits[:, -1]
    if padding_side != "right":
        raise InputError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    idx = lengths.to(device=logits.device, dtype=torch.long) - 1
    return logits[torch.arange(logits.shape[0], device=logits.device), idx]


def prompt_answer_nll(
    logits_last: torch.Tensor, positive_token: torch.Tensor, negative_token: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_p, L_n)``, each ``[B]`` float32, for single-token answers from next-token logits ``[B, V]``."""
    logp = torch.log_softmax(logits_last.float(), dim=-1)
    pos = positive_token.to(logp.device, torch.long).unsqueeze(-1)
    neg = negative_token.to(logp.device, torch.long).unsqueeze(-1)
    return -logp.gather(-1, pos).squeeze(-1), -logp.gather(-1, neg).squeeze(-1)


def split_pairs(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a ``[2B, ...]`` result of :func:`collate_pairs` rows into ``(positive [B], negative [B])``."""
    if values.shape[0] % 2:
        raise InputError(f"expected an even number of rows, got {values.shape[0]}")
    half = values.shape[0] // 2
    return values[:half], values[half:]
