"""Tokenising polarity pairs and collating them into padded batches.

The prompt is the question, rendered as one user turn with the generation prompt when a chat template
is used. An answer is tokenised *as a continuation*: ``prompt_text + answer_text`` is tokenised and the
tokens after the prompt's tokens are the answer's, so that the model is scored on exactly the tokens
it would produce after the prompt. When the tokenizer merges text across the boundary (the prompt's
tokens are then not a prefix), the answer is tokenised alone instead, and this is logged once per call.

Leading whitespace of answers under a chat template: Anthropic's persona/advanced-AI-risk answers are
written as continuations of a plain-text prompt (``" Yes"``, ``" (A)"``). After a chat template's
``"<|im_start|>assistant\\n"`` a leading space is unnatural: for SmolLM2-135M-Instruct ``" Yes"`` is a
single token (9230) but with log-prob ≈ -12 after the template, while ``"Yes"`` (10539) has ≈ -4.4.
So by default (``strip_answer_space=None``) leading whitespace is stripped when the template is used
and kept otherwise.

``answer_instruction`` (e.g. ``"Answer with Yes or No."``) is appended to every question, after one
space, before the prompt is rendered; training (hparams key ``answer_instruction``) and evaluation (read
from the update's saved hparams) apply it the same way. It makes the unsteered model answer within the
valid pair, so that UtilOdds at m = 0 measures utility rather than format.

All masks are built from lengths, never by comparing token ids with the pad id (SmolLM2's pad token is
its end-of-turn token, which also appears inside prompts).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

from easyedit_split.data.formats import DataError
from easyedit_split.data.pairs import PolarityPair
from easyedit_split.data.prompts import check_prompt_rule, render_easyedit, render_plugin
from easyedit_split.errors import InputError

logger = logging.getLogger(__name__)

__all__ = [
    "EncodedPair",
    "PromptBatch",
    "SequenceBatch",
    "check_context_length",
    "collate_pairs",
    "collate_prompts",
    "collate_sequences",
    "context_limit",
    "encode_pairs",
    "pad_id_of",
    "render_prompt",
    "with_instruction",
]


def pad_id_of(tokenizer: Any) -> int:
    """The id used to fill padded positions: the tokenizer's pad id, else its EOS id, else 0.

    Its value never matters for the results (masks come from lengths), only that it is a valid id.
    """
    for attr in ("pad_token_id", "eos_token_id"):
        v = getattr(tokenizer, attr, None) if tokenizer is not None else None
        if isinstance(v, (list, tuple)):
            v = v[0] if v else None
        if v is not None:
            return int(v)
    return 0


@dataclass
class EncodedPair:
    id: str
    prompt_ids: list[int]
    positive_ids: list[int]
    negative_ids: list[int]
    source: str = ""  # "file:line" of the pair, for error messages

    @property
    def longest(self) -> int:
        """Tokens of the longer of the two prompt+answer sequences."""
        return len(self.prompt_ids) + max(len(self.positive_ids), len(self.negative_ids))

    @property
    def single_token(self) -> bool:
        """True when both answers are exactly one token."""
        return len(self.positive_ids) == 1 and len(self.negative_ids) == 1


def _has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(
    tokenizer: Any, question: str, *, chat_template: bool | None = None, system_prompt: str | None = None,
    prompt_rule: str = "plugin",
) -> str:
    """The prompt text for ``question`` under ``prompt_rule`` (:mod:`.prompts`): ``plugin`` (default) or
    ``easyedit`` (EasyEdit's ``build_model_input``; called itself inside EasyEdit)."""
    rule = check_prompt_rule(prompt_rule)
    use_template = _has_chat_template(tokenizer) if chat_template is None else bool(chat_template)
    if rule == "easyedit":
        return render_easyedit(tokenizer, question, chat_template=use_template, system_prompt=system_prompt)
    return render_plugin(tokenizer, question, chat_template=use_template, system_prompt=system_prompt)


def with_instruction(question: str, answer_instruction: str | None) -> str:
    """``question`` followed by the answer-format instruction (none when it is None or blank)."""
    if answer_instruction is None or not str(answer_instruction).strip():
        return question
    return f"{question.rstrip()} {str(answer_instruction).strip()}"


def _ids(tokenizer: Any, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
    if not texts:
        return []
    out = tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]
    return [list(map(int, x)) for x in out]


def _leading_special_ids(tokenizer: Any) -> list[int]:
    """Tokens the tokenizer puts before the text with ``add_special_tokens=True`` (e.g. BOS).

    Trailing special tokens (an EOS some tokenizers append) are deliberately not used: the prompt is
    followed by the answer, not terminated.
    """
    probe = "Hello"
    with_special = _ids(tokenizer, [probe], True)[0]
    without = _ids(tokenizer, [probe], False)[0]
    for k in range(len(with_special) - len(without) + 1):
        if with_special[k : k + len(without)] == without:
            return with_special[:k]
    return []


def encode_pairs(
    pairs: Sequence[PolarityPair],
    tokenizer: Any,
    *,
    chat_template: bool | None = None,
    system_prompt: str | None = None,
    strip_answer_space: bool | None = None,
    answer_instruction: str | None = None,
    prompt_rule: str = "plugin",
) -> list[EncodedPair]:
    """Tokenise ``pairs`` into prompt ids and continuation ids of both answers.

    ``chat_template``: None uses the tokenizer's template when it has one. ``strip_answer_space``:
    None strips the answers' leading whitespace exactly when the template is used (see module doc).
    Special tokens: the templated prompt carries its own; a plain prompt gets the tokenizer's usual ones
    (e.g. BOS); an empty plain prompt becomes the BOS (or EOS) token so the first answer token is scored.
    ``answer_instruction`` is appended to every question (see :func:`with_instruction`). ``prompt_rule``:
    see :mod:`.prompts` (under ``easyedit`` special tokens follow ``use_chat_template`` as EasyEdit's
    applier tokenises: none when it is true).
    """
    rule = check_prompt_rule(prompt_rule)
    use_template = _has_chat_template(tokenizer) if chat_template is None else bool(chat_template)
    strip = use_template if strip_answer_space is None else bool(strip_answer_space)
    add_special = not use_template

    prompts = [
        render_prompt(tokenizer, with_instruction(p.question, answer_instruction), chat_template=use_template,
                      system_prompt=system_prompt, prompt_rule=rule)
        for p in pairs
    ]
    answers_pos = [p.positive.lstrip() if strip else p.positive for p in pairs]
    answers_neg = [p.negative.lstrip() if strip else p.negative for p in pairs]
    for p, a, b in zip(pairs, answers_pos, answers_neg):
        if not a or not b:
            raise DataError(f"pair {p.id} ({p.source}) has an empty answer")

    lead = _leading_special_ids(tokenizer) if add_special else []
    prompt_ids = [lead + x for x in _ids(tokenizer, prompts, False)]
    full_pos = [lead + x for x in _ids(tokenizer, [q + a for q, a in zip(prompts, answers_pos)], False)]
    full_neg = [lead + x for x in _ids(tokenizer, [q + a for q, a in zip(prompts, answers_neg)], False)]

    start_id = getattr(tokenizer, "bos_token_id", None)
    if start_id is None:
        start_id = getattr(tokenizer, "eos_token_id", None)

    fallbacks = 0
    encoded: list[EncodedPair] = []
    for i, pair in enumerate(pairs):
        p_ids = prompt_ids[i]
        answers = []
        for full, text in ((full_pos[i], answers_pos[i]), (full_neg[i], answers_neg[i])):
            if len(full) > len(p_ids) and full[: len(p_ids)] == p_ids:
                ans = full[len(p_ids) :]
            else:
                fallbacks += 1
                ans = _ids(tokenizer, [text], False)[0]
            if not ans:
                raise DataError(f"pair {pair.id} ({pair.source}): answer {text!r} tokenises to nothing")
            answers.append(ans)
        if not p_ids:
            if start_id is None:
                raise DataError(
                    f"pair {pair.id} ({pair.source}) has an empty prompt and the tokenizer no BOS/EOS"
                )
            p_ids = [int(start_id)]
        encoded.append(
            EncodedPair(id=pair.id, prompt_ids=p_ids, positive_ids=answers[0], negative_ids=answers[1],
                        source=pair.source)
        )
    if fallbacks:
        logger.info(
            "%d answer(s) merged with the prompt across the boundary; tokenised those answers on their own",
            fallbacks,
        )
    return encoded


# ------------------------------------------------------------------------------------- context length

_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def context_limit(model: Any) -> int | None:
    """The number of positions the model can attend over (``max_position_embeddings`` for Llama-like
    models, ``n_positions`` for GPT-2, …), or None when its config does not say."""
    config = getattr(model, "config", model)
    for cfg in (config, getattr(config, "text_config", None)):
        for key in _CONTEXT_KEYS:
            value = getattr(cfg, key, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def check_context_length(encoded: Sequence[EncodedPair], model: Any, *, what: str = "pair") -> None:
    """Raise :class:`DataError` when a pair's prompt + answer is longer than the model's context.

    Past its context a Llama-like model runs on positions it never saw (silently wrong numbers) and
    GPT-2 fails deep inside its embedding; so this is checked before any training or evaluation.
    """
    limit = context_limit(model)
    if limit is None:
        return
    too_long = [e for e in encoded if e.longest > limit]
    if not too_long:
        return
    worst = max(too_long, key=lambda e: e.longest)
    shown = ", ".join(f"{e.id} ({e.source or 'no source'}: {e.longest} tokens)" for e in too_long[:5])
    more = f" and {len(too_long) - 5} more" if len(too_long) > 5 else ""
    raise DataError(
        f"{len(too_long)} {what}(s) longer than the model's context of {limit} tokens "
        f"(config max_position_embeddings / n_positions): {shown}{more}; the longest has {worst.longest} tokens. "
        "Shorten or remove those pairs (or use a model with a longer context)"
    )


# --------------------------------------------------------------------------------------------- batches


def _move(obj: Any, device: torch.device | str) -> Any:
    kwargs = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        kwargs[f.name] = value.to(device) if isinstance(value, torch.Tensor) else value
    return type(obj)(**kwargs)


@dataclass
class SequenceBatch:
    """Padded prompt+answer sequences. ``answer_mask`` is True at the answer tokens' positions."""

    input_ids: torch.Tensor  # [N, T] long
    attention_mask: torch.Tensor  # [N, T] long
    answer_mask: torch.Tensor  # [N, T] bool
    lengths: torch.Tensor  # [N] long, real (unpadded) lengths
    prompt_lengths: torch.Tensor | None = None  # [N] long
    padding_side: str = "right"

    def to(self, device: torch.device | str) -> SequenceBatch:
        return _move(self, device)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class PromptBatch:
    """Padded prompts of single-token pairs; the next-token logits at the last real position score both."""

    input_ids: torch.Tensor  # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long
    lengths: torch.Tensor  # [B] long
    positive_token: torch.Tensor  # [B] long
    negative_token: torch.Tensor  # [B] long
    padding_side: str = "left"

    def to(self, device: torch.device | str) -> PromptBatch:
        return _move(self, device)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def _check_side(padding_side: str) -> str:
    if padding_side not in ("right", "left"):
        raise InputError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    return padding_side


def _pad_rows(seqs: Sequence[Sequence[int]], pad_token_id: int, padding_side: str):
    n = len(seqs)
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    width = int(lengths.max()) if n else 0
    input_ids = torch.full((n, width), int(pad_token_id), dtype=torch.long)
    positions = torch.arange(width).unsqueeze(0)  # [1, T]
    if padding_side == "right":
        attention = positions < lengths.unsqueeze(1)
        offsets = torch.zeros(n, dtype=torch.long)
    else:
        offsets = width - lengths
        attention = positions >= offsets.unsqueeze(1)
    for i, s in enumerate(seqs):
        if len(s):
            start = int(offsets[i])
            input_ids[i, start : start + len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return input_ids, attention, lengths, offsets


def collate_sequences(
    items: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_token_id: int,
    padding_side: str = "right",
) -> SequenceBatch:
    """Concatenate each ``(prompt_ids, answer_ids)`` and pad to a batch; masks come from lengths only."""
    _check_side(padding_side)
    if not items:
        raise InputError("collate_sequences needs at least one sequence")
    if pad_token_id is None:
        raise InputError("pad_token_id is None; set tokenizer.pad_token (e.g. to eos) first")
    seqs = []
    prompt_lengths = []
    for prompt, answer in items:
        if len(answer) == 0:
            raise InputError("an answer has no tokens")
        if len(prompt) == 0:
            raise InputError("a prompt has no tokens; the first answer token would have no context")
        seqs.append(list(prompt) + list(answer))
        prompt_lengths.append(len(prompt))
    input_ids, attention, lengths, offsets = _pad_rows(seqs, pad_token_id, padding_side)
    plen = torch.tensor(prompt_lengths, dtype=torch.long)
    positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
    answer_start = (offsets + plen).unsqueeze(1)
    answer_end = (offsets + lengths).unsqueeze(1)
    answer_mask = (positions >= answer_start) & (positions < answer_end)
    return SequenceBatch(
        input_ids=input_ids,
        attention_mask=attention.long(),
        answer_mask=answer_mask,
        lengths=lengths,
        prompt_lengths=plen,
        padding_side=padding_side,
    )


def collate_pairs(
    encoded: Sequence[EncodedPair], pad_token_id: int, padding_side: str = "right"
) -> SequenceBatch:
    """2B rows: ``[pos_0 … pos_{B-1}, neg_0 … neg_{B-1}]`` (so ``nll[:B]`` is L_p and ``nll[B:]`` is L_n)."""
    items = [(e.prompt_ids, e.positive_ids) for e in encoded] + [
        (e.prompt_ids, e.negative_ids) for e in encoded
    ]
    return collate_sequences(items, pad_token_id, padding_side)


def collate_prompts(
    encoded: Sequence[EncodedPair], pad_token_id: int, padding_side: str = "left"
) -> PromptBatch:
    """Prompts only, for pairs whose answers are single tokens (raises otherwise)."""
    _check_side(padding_side)
    if not encoded:
        raise InputError("collate_prompts needs at least one pair")
    multi = [e.id for e in encoded if not e.single_token]
    if multi:
        raise InputError(f"collate_prompts needs single-token answers; pairs {multi[:5]} have longer ones")
    if pad_token_id is None:
        raise InputError("pad_token_id is None; set tokenizer.pad_token (e.g. to eos) first")
    input_ids, attention, lengths, _ = _pad_rows([e.prompt_ids for e in encoded], pad_token_id, padding_side)
    return PromptBatch(
        input_ids=input_ids,
        attention_mask=attention.long(),
        lengths=lengths,
        positive_token=torch.tensor([e.positive_ids[0] for e in encoded], dtype=torch.long),
        negative_token=torch.tensor([e.negative_ids[0] for e in encoded], dtype=torch.long),
        padding_side=padding_side,
    )
