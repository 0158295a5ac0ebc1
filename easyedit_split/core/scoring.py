"""Answer losses of polarity pairs under per-row multipliers — the engine of training and sweeps.

:class:`PairScorer` turns encoded pairs into :class:`PreparedPairs` once (padding, and — when the
updates sit at layer ``s > 0`` — the frozen prefix: hidden states entering layer ``s`` computed
once, without gradients). :meth:`PairScorer.score` then evaluates any list of ``(pair, m)`` rows
in one batched pass over layers ``s..N-1`` with per-row multipliers, applying the output head
only where a logit is needed:

* single-token answers (both ``A_p`` and ``A_n`` one token, e.g. persona " Yes"/" No"): one
  prompt row per ``(pair, m)`` gives both ``L_p`` and ``L_n`` from the next-token distribution;
* otherwise the positive and the negative sequence of each row run side by side.

Gradients flow to the updates' parameters when called under ``torch.enable_grad()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from easyedit_split.core.apply import apply_mixed_updates, apply_updates, as_update_groups
from easyedit_split.core.forward import (
    PrefixCache,
    capture_prefix,
    final_hidden,
    output_head,
    run_suffix,
    site_start_layer,
)
from easyedit_split.core.updates import Update
from easyedit_split.data.encoding import (
    EncodedPair,
    PromptBatch,
    SequenceBatch,
    collate_pairs,
    collate_prompts,
)
from easyedit_split.errors import InputError

__all__ = ["PairLosses", "PairScorer", "PreparedPairs"]


@dataclass
class PairLosses:
    """Per-row answer NLLs (float32, ``[R]``): sequence sums and per-token means."""

    sum_p: torch.Tensor
    sum_n: torch.Tensor
    mean_p: torch.Tensor
    mean_n: torch.Tensor

    def losses(self, reduction: str = "sum") -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_p, L_n)`` as sequence sums (``"sum"``) or per-token means (``"mean"``)."""
        if reduction == "sum":
            return self.sum_p, self.sum_n
        if reduction == "mean":
            return self.mean_p, self.mean_n
        raise InputError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


@dataclass
class PreparedPairs:
    ids: list[str]
    single_token: bool
    batch: SequenceBatch | PromptBatch
    cache: PrefixCache | None

    @property
    def n_pairs(self) -> int:
        return len(self.ids)


def _input_device(model: nn.Module) -> torch.device:
    """Where the model takes its inputs: the input embedding's device (the first of a model spread over
    devices by ``device_map``; its execution device when accelerate offloads it)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is not None:
        hook = getattr(emb, "_hf_hook", None)
        dev = getattr(hook, "execution_device", None)
        if dev is not None:
            return torch.device(dev) if not isinstance(dev, int) else torch.device("cuda", dev)
        for p in emb.parameters():
            if p.device.type != "meta":
                return p.device
    for p in model.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


class PairScorer:
    """Scores polarity pairs under ``updates`` with per-row multipliers.

    ``use_prefix_cache`` (default on) caches the hidden states entering the lowest updated layer;
    with no updates, or a site at layer 0, every call runs the full model.

    ``groups`` (instead of ``updates``): several update groups (e.g. one per concept or method) of
    which each row selects one (:meth:`score`'s ``selection``), so that rows of different updates
    share one forward (:func:`~easyedit_split.core.apply.apply_mixed_updates`).
    """

    def __init__(
        self,
        model: nn.Module,
        updates: Sequence[Update] = (),
        *,
        pad_token_id: int,
        use_prefix_cache: bool = True,
        single_token_sharing: bool = True,
        max_head_rows: int = 4096,
        groups: Sequence[Sequence[Update]] | None = None,
    ) -> None:
        self.model = model
        if groups is not None and updates:
            raise InputError("give updates or groups, not both")
        self.groups = as_update_groups(groups) if groups is not None else None
        self.updates = [u for g in self.groups for u in g] if self.groups is not None else list(updates)
        self.pad_token_id = int(pad_token_id)
        self.single_token_sharing = single_token_sharing
        self.max_head_rows = max_head_rows
        start = site_start_layer(model, [u.site for u in self.updates]) if self.updates else 0
        self.start_layer = start if (use_prefix_cache and start > 0) else None
        self.device = _input_device(model)
        self._head = output_head(model)

    # -- preparation ---------------------------------------------------------------------------
    def prepare(self, encoded: Sequence[EncodedPair]) -> PreparedPairs:
        if not encoded:
            raise InputError("no pairs to prepare")
        single = self.single_token_sharing and all(e.single_token for e in encoded)
        if single:
            batch: SequenceBatch | PromptBatch = collate_prompts(encoded, self.pad_token_id, padding_side="left")
        else:
            batch = collate_pairs(encoded, self.pad_token_id, padding_side="right")
        batch = batch.to(self.device)
        cache = None
        if self.start_layer is not None:
            cache = capture_prefix(self.model, batch.input_ids, batch.attention_mask, self.start_layer)
        return PreparedPairs([e.id for e in encoded], single, batch, cache)

    # -- scoring -------------------------------------------------------------------------------
    def score(
        self,
        prepared: PreparedPairs,
        multipliers: torch.Tensor | float | Sequence[float] = 0.0,
        pair_index: torch.Tensor | Sequence[int] | None = None,
        selection: torch.Tensor | Sequence[int] | None = None,
        *,
        unsteered: bool = False,
    ) -> PairLosses:
        """Losses of rows ``(pair_index[r], multipliers[r])``.

        ``pair_index`` defaults to every pair once; a scalar multiplier applies to every row.
        ``selection`` (a scorer made with ``groups``): per row, the update group steering it (-1: none).
        ``unsteered``: the base model, without the updates (``m = 0`` is not that for a clamped vector).
        """
        B = prepared.n_pairs
        idx = torch.arange(B) if pair_index is None else torch.as_tensor(pair_index, dtype=torch.long)
        R = idx.numel()
        if isinstance(multipliers, (int, float)):
            m_rows = torch.full((R,), float(multipliers))
        else:
            m_rows = torch.as_tensor(multipliers, dtype=torch.float32).reshape(-1)
            if m_rows.numel() == 1:
                m_rows = m_rows.expand(R).clone()
        if m_rows.numel() != R:
            raise InputError(f"{m_rows.numel()} multipliers for {R} rows")
        sel: torch.Tensor | None = None
        if self.groups is not None:
            if selection is None:
                raise InputError("a scorer with update groups needs a per-row selection")
            sel = torch.as_tensor(selection, dtype=torch.long).reshape(-1)
            if sel.numel() != R:
                raise InputError(f"{sel.numel()} selections for {R} rows")
        elif selection is not None:
            raise InputError("selection needs a scorer made with groups=[...]")
        steer_m = None if unsteered else m_rows
        if prepared.single_token:
            return self._score_single(prepared, idx, steer_m, sel)
        return self._score_sequences(prepared, idx, steer_m, sel)

    def _steering(self, m_rows: torch.Tensor | None, sel: torch.Tensor | None = None):
        """The hooks for rows at ``m_rows`` (None: the base model, no hooks)."""
        if m_rows is None or not self.updates:
            return contextlib.nullcontext()
        if bool((m_rows == 0).all()) and not any(u.acts_at_zero for u in self.updates):
            return contextlib.nullcontext()  # m = 0 everywhere is the base model: no hooks needed
        if self.groups is not None:
            return apply_mixed_updates(self.model, self.groups, sel, m_rows)
        return apply_updates(self.model, self.updates, m_rows.to(self.device))

    def _hidden(self, prepared: PreparedPairs, rows: torch.Tensor, m_rows: torch.Tensor | None,
                sel: torch.Tensor | None = None) -> torch.Tensor:
        n_batch = prepared.batch.input_ids.shape[0]
        identity = rows.numel() == n_batch and bool((rows == torch.arange(n_batch)).all())
        with self._steering(m_rows, sel):
            if prepared.cache is not None:
                cache = prepared.cache if identity else prepared.cache.select(rows)
                return run_suffix(self.model, cache)
            ids = prepared.batch.input_ids if identity else prepared.batch.input_ids[rows.to(self.device)]
            am = prepared.batch.attention_mask if identity else prepared.batch.attention_mask[rows.to(self.device)]
            return final_hidden(self.model, ids, am)

    def _score_single(self, prepared: PreparedPairs, idx: torch.Tensor, m_rows: torch.Tensor | None,
                      sel: torch.Tensor | None = None) -> PairLosses:
        batch: PromptBatch = prepared.batch  # type: ignore[assignment]
        h = self._hidden(prepared, idx, m_rows, sel)[:, -1]  # left padding: last column is the last token
        logp = torch.log_softmax(self._head(h).float(), dim=-1)
        dev_idx = idx.to(logp.device)
        lp = -logp.gather(-1, batch.positive_token.to(logp.device)[dev_idx].unsqueeze(-1)).squeeze(-1)
        ln = -logp.gather(-1, batch.negative_token.to(logp.device)[dev_idx].unsqueeze(-1)).squeeze(-1)
        return PairLosses(lp, ln, lp, ln)

    def _score_sequences(self, prepared: PreparedPairs, idx: torch.Tensor, m_rows: torch.Tensor | None,
                         sel: torch.Tensor | None = None) -> PairLosses:
        batch: SequenceBatch = prepared.batch  # type: ignore[assignment]
        B = prepared.n_pairs
        R = idx.numel()
        rows = torch.cat([idx, idx + B])  # positive rows then negative rows
        h = self._hidden(prepared, rows, None if m_rows is None else torch.cat([m_rows, m_rows]),
                         None if sel is None else torch.cat([sel, sel]))
        dev_rows = rows.to(h.device)
        answer_mask = batch.answer_mask.to(h.device)[dev_rows]
        target_mask = answer_mask[:, 1:]
        seq_rows = target_mask.nonzero(as_tuple=True)[0]
        h_pred = h[:, :-1][target_mask]  # hidden at t-1 for each answer token t
        targets = batch.input_ids.to(h.device)[dev_rows][:, 1:][target_mask]
        token_nll = torch.cat([
            -torch.log_softmax(self._head(h_pred[s:s + self.max_head_rows]).float(), dim=-1)
            .gather(-1, targets[s:s + self.max_head_rows].unsqueeze(-1)).squeeze(-1)
            for s in range(0, h_pred.shape[0], self.max_head_rows)
        ])
        sums = torch.zeros(2 * R, dtype=torch.float32, device=h.device).index_add(0, seq_rows, token_nll)
        counts = target_mask.sum(1).to(torch.float32)
        means = sums / counts
        return PairLosses(sums[:R], sums[R:], means[:R], means[R:])
