"""Fluency: perplexity of generated text under the *unsteered* model, conditioned on its prompt.

Only the generated tokens are scored (the prompt is context). Batched, right-padded, masks from
lengths. Call it on the bare model — outside any ``apply_updates`` / ``merged_updates`` block —
so the score measures the text, not the steering.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from easyedit_split.base.progress import progress as progress_bar
from easyedit_split.core.generation import Generation
from easyedit_split.data.encoding import collate_sequences
from easyedit_split.data.logprobs import answer_nll
from easyedit_split.errors import InputError

__all__ = ["PerplexityResult", "perplexity"]


@dataclass
class PerplexityResult:
    """Per-text perplexity (NaN for an empty generation) and the token-weighted corpus perplexity."""

    per_text: list[float]
    mean_nll: list[float]
    corpus: float
    n_tokens: int

    @property
    def mean(self) -> float:
        """Mean of the per-text perplexities (empty texts skipped; NaN when all are empty)."""
        vals = [p for p in self.per_text if not math.isnan(p)]
        return sum(vals) / len(vals) if vals else float("nan")


def perplexity(
    model: nn.Module,
    generations: Sequence[Generation] | Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    pad_token_id: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> PerplexityResult:
    """``exp(mean NLL)`` of each generation's tokens given its prompt tokens.

    ``generations``: :class:`~easyedit_split.core.generation.Generation` objects (their ``prompt_ids`` and
    ``token_ids``) or ``(prompt_ids, generated_ids)`` pairs.
    """
    items: list[tuple[list[int], list[int]]] = []
    for i, g in enumerate(generations):
        if isinstance(g, Generation):
            prompt, gen = list(g.prompt_ids), list(g.token_ids)
        else:
            prompt, gen = list(g[0]), list(g[1])
        if not prompt:
            raise InputError(f"generation {i} has no prompt tokens; its first token would have no context")
        items.append((prompt, gen))
    n = len(items)
    mean_nll = [float("nan")] * n
    sums = [0.0] * n
    counts = [len(gen) for _, gen in items]
    scored = [i for i in range(n) if counts[i] > 0]
    device = next(model.parameters()).device
    batches = [scored[k : k + batch_size] for k in range(0, len(scored), batch_size)]
    with torch.no_grad():
        for rows in progress_bar(batches, desc="perplexity", unit="batch", enabled=progress):
            batch = collate_sequences([items[i] for i in rows], pad_token_id, "right").to(device)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            total, mean = answer_nll(logits, batch)
            for r, i in enumerate(rows):
                sums[i] = float(total[r])
                mean_nll[i] = float(mean[r])
    per_text = [math.exp(x) if not math.isnan(x) else float("nan") for x in mean_nll]
    n_tok = sum(counts)
    corpus = math.exp(sum(sums) / n_tok) if n_tok else float("nan")
    return PerplexityResult(per_text=per_text, mean_nll=mean_nll, corpus=corpus, n_tokens=n_tok)
