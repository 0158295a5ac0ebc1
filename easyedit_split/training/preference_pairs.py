"""EasyEdit's ``preference_pairs``: which prompt and which two answers each training row uses, and its sign.

Upstream builds the rows in ``steer/trainer/utils/data_utils.py`` (``make_preference_data_module``) from
the data's ``question``, ``matching``, ``not_matching`` and, for the steered pairs, the
``<steering_prompt_type>_steered_input`` / ``<steering_prompt_type>_steered_output`` fields
(``steering_prompt_type``: ``prepend`` or ``blend_in``); its trainers multiply by ``+m`` for a pair whose
name has ``_add`` and by ``−m`` (``0`` with ``substraction_type: null_it_out``) otherwise:

===============  =====================  ==================  ======================  ======
pair             prompt                 winning answer      losing answer           factor
===============  =====================  ==================  ======================  ======
``orig_add``     question               matching            not_matching            +m
``orig_sub``     question               not_matching        matching                −m
``steered_add``  <type>_steered_input   matching            not_matching            +m
``steered_sub``  <type>_steered_input   not_matching        <type>_steered_output   −m
===============  =====================  ==================  ======================  ======

Every row is held as an encoded pair ``(prompt, plus, minus)`` whose ``minus`` answer is always
``not_matching`` and whose ``plus`` answer wins under ``+m`` (``_add``) or loses under ``−m`` (``_sub``);
``orig_add`` and ``orig_sub`` share one. A pair of the data without a field a chosen row reads is a
:class:`~easyedit_split.data.formats.DataError` naming the field (upstream fails there with a
``TypeError``/``KeyError``).

The steered input is rendered as a prompt with the same rule as the question (``prompt_rule``,
``use_chat_template``, ``system_prompt``, ``answer_instruction``). Upstream's spilt/sft/reps
``prepare_groups`` applies the chat template to ``question`` only (its ``apply_input_template`` takes a
column name but is called for that one column), so under a chat template upstream would train on the raw
steered text; the plugin says so at WARNING level in that case. Without a template the rows are
upstream's, token for token (``tests/test_preference_pairs.py`` compares them with
``make_preference_data_module``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from easyedit_split.data.formats import DataError
from easyedit_split.data.pairs import PolarityPair
from easyedit_split.data.records import first_entry

logger = logging.getLogger(__name__)

__all__ = ["PREFERENCE_PAIRS", "STEERING_PROMPT_TYPES", "PairRule", "field_name", "needed_by", "slots_of",
           "uses_steered", "variant_pairs", "variants_of"]

#: upstream's steering prompt types: the prefix of the data's steered fields
STEERING_PROMPT_TYPES = ("prepend", "blend_in")


@dataclass(frozen=True)
class PairRule:
    """One ``preference_pairs`` value: the prompt field, the answer ``+m`` favours, and the sign."""

    name: str
    prompt: str  # "question" | "steered_input"
    plus: str  # "matching" | "steered_output" (the other answer is always not_matching)
    adds: bool  # True: factor +m and ``plus`` wins; False: factor −m (0 with null_it_out) and not_matching wins

    @property
    def variant(self) -> tuple[str, str]:
        """The encoded pair the row scores: ``(prompt field, plus field)``."""
        return (self.prompt, self.plus)


PREFERENCE_PAIRS: dict[str, PairRule] = {
    "orig_add": PairRule("orig_add", "question", "matching", True),
    "orig_sub": PairRule("orig_sub", "question", "matching", False),
    "steered_add": PairRule("steered_add", "steered_input", "matching", True),
    "steered_sub": PairRule("steered_sub", "steered_input", "steered_output", False),
}


def variants_of(preference_pairs: Sequence[str]) -> list[tuple[str, str]]:
    """The distinct encoded pairs the rows of ``preference_pairs`` need, in first-use order (``orig_add`` and
    ``orig_sub`` alone: one, the plain pair)."""
    out: list[tuple[str, str]] = []
    for name in preference_pairs:
        variant = PREFERENCE_PAIRS[name].variant
        if variant not in out:
            out.append(variant)
    return out


def slots_of(preference_pairs: Sequence[str]) -> list[int]:
    """For each value of ``preference_pairs``, the index of its encoded pair in :func:`variants_of`."""
    variants = variants_of(preference_pairs)
    return [variants.index(PREFERENCE_PAIRS[name].variant) for name in preference_pairs]


def field_name(kind: str, steering_prompt_type: str) -> str:
    """The data field of a steered kind (``steered_input`` → ``blend_in_steered_input``)."""
    return f"{steering_prompt_type}_{kind}"


def _steered_text(pair: PolarityPair, kind: str, steering_prompt_type: str, needed_by: str) -> str:
    name = field_name(kind, steering_prompt_type)
    value = first_entry(pair.meta.get(name))
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if missing or not isinstance(value, str) or (kind == "steered_output" and not value.strip()):
        what = "has no field" if missing else ("has an empty field" if isinstance(value, str) else
                                                f"has a {type(value).__name__} in field")
        raise DataError(
            f"pair {pair.id} ({pair.source or 'no source'}) {what} {name!r}, which preference pair {needed_by!r} "
            f"reads (steering_prompt_type: {steering_prompt_type}). Give every pair that field, use the other "
            f"steering_prompt_type if the data has its fields, or train with preference_pairs orig_add/orig_sub")
    return value


def variant_pairs(pairs: Sequence[PolarityPair], variant: tuple[str, str], steering_prompt_type: str,
                  needed_by: str) -> list[PolarityPair]:
    """``pairs`` with the prompt and the ``plus`` answer of ``variant`` taken from their steered fields
    (the plain pairs themselves for ``("question", "matching")``); a :class:`DataError` naming the first
    missing field."""
    prompt, plus = variant
    if variant == ("question", "matching"):
        return list(pairs)
    out = []
    for p in pairs:
        question = p.question if prompt == "question" else _steered_text(p, prompt, steering_prompt_type, needed_by)
        positive = p.positive if plus == "matching" else _steered_text(p, plus, steering_prompt_type, needed_by)
        out.append(PolarityPair(id=p.id, question=question, positive=positive, negative=p.negative, source=p.source,
                                meta=p.meta))
    return out


def needed_by(preference_pairs: Sequence[str], variant: tuple[str, str]) -> str:
    """The first value of ``preference_pairs`` that uses ``variant`` (for error messages)."""
    return next(name for name in preference_pairs if PREFERENCE_PAIRS[name].variant == variant)


def uses_steered(preference_pairs: Sequence[str]) -> bool:
    """True when a row of ``preference_pairs`` reads a steered field."""
    return any(PREFERENCE_PAIRS[name].variant != ("question", "matching") for name in preference_pairs)

