"""Diversity and repetition of generated text: distinct-n and within-text repetition rate (pure).

Sequences are lists of hashable units — token ids, or words (``text.split()``).

* ``distinct_n(seqs, n)`` — unique n-grams / total n-grams over the whole set (Li et al., 2016).
* ``repetition_rate(seq, n)`` — share of a text's n-grams that repeat an earlier n-gram of the same
  text, ``1 − unique/total`` (seq-rep-n of Welleck et al., 2019); degenerate loops score near 1.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

from easyedit_split.errors import InputError

__all__ = ["distinct_n", "diversity_summary", "ngrams", "repetition_rate"]


def ngrams(seq: Sequence[Hashable], n: int) -> list[tuple]:
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}")
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def distinct_n(seqs: Sequence[Sequence[Hashable]], n: int) -> float:
    """Unique n-grams over all n-grams of ``seqs`` (NaN when no sequence is n long)."""
    total = 0
    unique: set[tuple] = set()
    for s in seqs:
        grams = ngrams(s, n)
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else float("nan")


def repetition_rate(seq: Sequence[Hashable], n: int = 4) -> float:
    """``1 − unique/total`` n-grams within one sequence (NaN when it is shorter than ``n``)."""
    grams = ngrams(seq, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else float("nan")


def _nanmean(xs: list[float]) -> float:
    vals = [x for x in xs if not math.isnan(x)]
    return sum(vals) / len(vals) if vals else float("nan")


def diversity_summary(seqs: Sequence[Sequence[Hashable]], *, repetition_n: int = 4) -> dict[str, float]:
    """``distinct_1/2/3`` over the set, mean per-text ``distinct_1/2/3`` and mean ``repetition_rate``."""
    out: dict[str, float] = {}
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = distinct_n(seqs, n)
        out[f"distinct_{n}_per_text"] = _nanmean([distinct_n([s], n) for s in seqs])
    out[f"repetition_{repetition_n}"] = _nanmean([repetition_rate(s, repetition_n) for s in seqs])
    return out
