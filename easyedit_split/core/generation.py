"""Steered text generation: batched, left-padded, in hook mode or merged mode.

:func:`generate` renders each prompt (the tokenizer's chat template when it has one), pads a batch on
the left with the tokenizer's own attention mask, and calls ``model.generate`` once per batch under the
updates. In hook mode each row may carry its own multiplier (a per-row tensor handed to
:class:`~easyedit_split.core.apply.Steering`), so prompts at different multipliers share one batched call;
merged mode folds the updates into the weights, so it groups rows by multiplier (one merge per
distinct value).

Generated text is cut at the first end-of-sequence token. Masks always come from the tokenizer, never
from comparing ids with the pad id (SmolLM2's pad token is its end-of-turn token).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from easyedit_split.base.checks import check_seed
from easyedit_split.base.progress import progress as progress_bar
from easyedit_split.core.apply import (
    MergeError,
    apply_mixed_updates,
    apply_updates,
    as_update_groups,
    merged_updates,
)
from easyedit_split.core.updates import Update
from easyedit_split.data.encoding import pad_id_of, render_prompt
from easyedit_split.errors import InputError, InputTypeError

logger = logging.getLogger(__name__)

__all__ = ["Generation", "eos_token_ids", "generate", "left_padded_batch", "render_prompts"]

MODES = ("hook", "merged")


@dataclass
class Generation:
    """One completion. ``token_ids`` are the generated tokens up to (not including) the first EOS."""

    prompt: str
    text: str
    token_ids: list[int]
    multiplier: float
    prompt_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"  # "eos" | "length"
    index: int = 0  # position of the prompt in the input list
    update_index: int | None = None  # with per-prompt updates: the group that steered it (-1: none)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def render_prompts(
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    chat_template: bool | None = None,
    system_prompt: str | None = None,
    prompt_rule: str = "plugin",
) -> tuple[list[str], bool]:
    """The text fed to the model for each prompt, and whether the chat template was used."""
    use_template = (
        bool(getattr(tokenizer, "chat_template", None)) if chat_template is None else bool(chat_template)
    )
    rendered = [
        render_prompt(tokenizer, p, chat_template=use_template, system_prompt=system_prompt, prompt_rule=prompt_rule)
        for p in prompts
    ]
    return rendered, use_template


def eos_token_ids(model: nn.Module, tokenizer: Any) -> set[int]:
    """Every id that ends a generation: the generation config's EOS id(s) and the tokenizer's."""
    ids: set[int] = set()
    gen_cfg = getattr(model, "generation_config", None)
    for value in (getattr(gen_cfg, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
        else:
            ids.add(int(value))
    return ids


@contextlib.contextmanager
def _padding_setup(tokenizer: Any) -> Iterator[None]:
    """Left padding and a pad token (EOS when missing) for the duration; both restored afterwards."""
    old_side = tokenizer.padding_side
    added_pad = False
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise InputError("the tokenizer has neither a pad token nor an EOS token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
        added_pad = True
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        tokenizer.padding_side = old_side
        if added_pad:
            tokenizer.pad_token = None


def left_padded_batch(tokenizer: Any, texts: Sequence[str], *, add_special_tokens: bool, device) -> dict:
    """Tokenise ``texts`` with left padding; ``input_ids`` and the tokenizer's ``attention_mask``."""
    with _padding_setup(tokenizer):
        enc = tokenizer(list(texts), padding=True, add_special_tokens=add_special_tokens, return_tensors="pt")
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


def _multipliers(multiplier: float | Sequence[float] | torch.Tensor, n: int) -> list[float]:
    if isinstance(multiplier, torch.Tensor):
        multiplier = multiplier.reshape(-1).tolist() if multiplier.dim() else float(multiplier)
    if isinstance(multiplier, (int, float)):
        multiplier = [float(multiplier)] * n
    values = [float(m) for m in multiplier]
    if len(values) != n:
        raise InputError(f"got {len(values)} multipliers for {n} prompts; give one scalar or one per prompt")
    bad = [m for m in values if not math.isfinite(m)]
    if bad:
        raise InputError(f"multipliers must be finite numbers, got {bad[0]!r}")
    return values


def _as_updates(updates: Update | Iterable[Update] | None) -> list[Update]:
    if updates is None:
        return []
    from easyedit_split.core.serialization import check_updates_finite

    ups = [updates] if isinstance(updates, Update) else list(updates)
    check_updates_finite(ups, "the updates to generate with")
    return ups


def _cut_at_eos(ids: list[int], eos: set[int]) -> tuple[list[int], str]:
    for k, t in enumerate(ids):
        if t in eos:
            return ids[:k], "eos"
    return ids, "length"


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: str | Sequence[str],
    updates: Update | Iterable[Update] | None = (),
    multiplier: float | Sequence[float] | torch.Tensor = 1.0,
    *,
    mode: str = "hook",
    positions: str = "all",
    chat_template: bool | None = None,
    system_prompt: str | None = None,
    prompt_rule: str = "plugin",
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
    batch_size: int = 16,
    num_return_sequences: int = 1,
    sort_by_length: bool = True,
    progress: bool = True,
    on_batch: Callable[[list[Generation]], None] | None = None,
    update_index: Sequence[int] | None = None,
    **generate_kwargs: Any,
) -> list[Generation]:
    """Generate completions of ``prompts`` under ``updates`` at ``multiplier``.

    ``multiplier``: a scalar, or one value per prompt. Hook mode runs rows with different
    multipliers in the same batched call (per-row multiplier); merged mode merges once per distinct
    multiplier. ``positions`` (hook mode only): ``"all"`` | ``"prompt"`` | ``"generated"``.
    ``chat_template``: None uses the tokenizer's template when it has one; ``prompt_rule``: ``plugin`` or
    ``easyedit`` (:mod:`easyedit_split.data.prompts`). Sampling
    (``do_sample=True``) uses ``temperature``, ``top_p``, ``top_k`` (0 = off) and, with ``seed``, is
    reproducible: each batch is seeded from ``seed`` and its index, inside a forked RNG so the
    caller's global random state is untouched. ``num_return_sequences`` > 1 (sampling) returns that many
    completions per prompt, consecutive in the result; per-row multipliers are repeated to match.
    Extra keyword arguments go to ``model.generate`` (e.g. ``min_new_tokens``, ``repetition_penalty``).

    ``update_index`` (one int per prompt): a different update per prompt. ``updates`` is then a list of
    update groups (each an :class:`Update` or a list of them) and prompt ``i`` is steered by
    ``updates[update_index[i]]`` (``-1``: by none) at its own multiplier; hook mode runs prompts of
    different updates in one batched call (:func:`~easyedit_split.core.apply.apply_mixed_updates`), merged
    mode batches them by (update, multiplier), one merge each.

    ``on_batch`` is called with each batch's generations as soon as the batch is done (to save partial
    results of a long run).

    Returns one :class:`Generation` per prompt (× ``num_return_sequences``), in input order.
    """
    from easyedit_split.core.models import check_tokenizer_fits

    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    check_tokenizer_fits(model, tokenizer, source="generate()")
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        return []
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise InputTypeError(f"prompt {i} is a {type(p).__name__}, expected str")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if num_return_sequences < 1:
        raise InputError(f"num_return_sequences must be >= 1, got {num_return_sequences}")
    if do_sample:
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise InputError(f"temperature must be a finite number > 0 for sampling, got {temperature!r} (greedy "
                             "decoding: do_sample=False)")
        if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
            raise InputError(f"top_p must be in (0, 1], got {top_p!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise InputError(f"top_k must be a whole number >= 0 (0: off), got {top_k!r}")
    if seed is not None:
        check_seed(seed, "seed")
    if num_return_sequences > 1 and not do_sample:
        raise InputError(
            "num_return_sequences > 1 needs do_sample=True (greedy decoding gives identical copies)"
        )
    if update_index is not None:
        groups = [_as_updates(g) for g in as_update_groups(list(updates or []))]
        sel = [int(k) for k in update_index]
        if len(sel) != len(prompts):
            raise InputError(f"got {len(sel)} update indices for {len(prompts)} prompts; give one per prompt")
        bad_k = [k for k in sel if not -1 <= k < len(groups)]
        if bad_k:
            raise InputError(f"update index {bad_k[0]} out of range: {len(groups)} update groups (-1: unsteered)")
        ups = [u for g in groups for u in g]
    else:
        groups, sel = None, None
        ups = _as_updates(updates)
    mults = _multipliers(multiplier, len(prompts))
    if mode == "merged" and positions != "all":
        raise MergeError(
            "merged mode steers every position; use mode='hook' for positions='prompt'/'generated'"
        )

    rendered, use_template = render_prompts(
        tokenizer, prompts, chat_template=chat_template, system_prompt=system_prompt, prompt_rule=prompt_rule
    )
    _check_generation_length(model, tokenizer, rendered, prompts, not use_template, int(max_new_tokens))
    device = _model_device(model)
    eos = eos_token_ids(model, tokenizer)
    pad_id = pad_id_of(tokenizer)

    gen_args: dict[str, Any] = {
        "max_new_tokens": int(max_new_tokens),
        "pad_token_id": pad_id,
        "num_return_sequences": int(num_return_sequences),
    }
    if do_sample:
        gen_args.update(do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=int(top_k))
    else:
        gen_args.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    gen_args.update(generate_kwargs)

    # batches: rows sorted by rendered length (less padding); merged mode also groups by (update,) multiplier
    order = list(range(len(prompts)))
    if sort_by_length:
        lengths = [len(r) for r in rendered]
        order.sort(key=lambda i: lengths[i])
    row_groups: list[list[int]]
    if mode == "merged" and ups:
        by_m: dict[tuple[int, float], list[int]] = {}
        for i in order:
            by_m.setdefault((sel[i] if sel is not None else 0, mults[i]), []).append(i)
        row_groups = list(by_m.values())
    else:
        row_groups = [order]
    batches = [g[k : k + batch_size] for g in row_groups for k in range(0, len(g), batch_size)]

    results: list[Generation | None] = [None] * (len(prompts) * num_return_sequences)
    was_training = model.training
    model.eval()
    try:
        for b_idx, rows in enumerate(progress_bar(batches, desc="generate", unit="batch", enabled=progress)):
            enc = left_padded_batch(
                tokenizer, [rendered[i] for i in rows], add_special_tokens=not use_template, device=device
            )
            row_m = [mults[i] for i in rows]
            if groups is not None:
                steering = _mixed_steering(model, groups, [sel[i] for i in rows], row_m, mode, positions,
                                           num_return_sequences)
            else:
                steering = _steering(model, ups, row_m, mode, positions, num_return_sequences)
            with steering, _seeded(seed, b_idx, device), torch.no_grad():
                out = model.generate(**enc, **gen_args)
            width = enc["input_ids"].shape[1]
            new = out[:, width:].tolist()
            for r, i in enumerate(rows):
                prompt_ids = enc["input_ids"][r][enc["attention_mask"][r].bool()].tolist()
                for k in range(num_return_sequences):
                    ids, reason = _cut_at_eos(new[r * num_return_sequences + k], eos)
                    text = tokenizer.decode(ids, skip_special_tokens=True)
                    results[i * num_return_sequences + k] = Generation(
                        prompt=prompts[i],
                        text=text,
                        token_ids=ids,
                        multiplier=mults[i],
                        prompt_ids=prompt_ids,
                        finish_reason=reason,
                        index=i,
                        update_index=sel[i] if sel is not None else None,
                    )
            if on_batch is not None:
                on_batch([results[i * num_return_sequences + k] for i in rows for k in range(num_return_sequences)])
    finally:
        if was_training:
            model.train()
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def _check_generation_length(model, tokenizer, rendered, prompts, add_special_tokens: bool, max_new_tokens: int):
    """Prompt + ``max_new_tokens`` must fit the model's context (an :class:`InputError` otherwise)."""
    from easyedit_split.data.encoding import context_limit

    limit = context_limit(model)
    if limit is None:
        return
    lengths = [len(ids) for ids in tokenizer(list(rendered), add_special_tokens=add_special_tokens)["input_ids"]]
    worst = max(range(len(lengths)), key=lengths.__getitem__)
    if lengths[worst] + max_new_tokens > limit:
        raise InputError(
            f"prompt {worst} ({prompts[worst][:40]!r}…) has {lengths[worst]} tokens; with max_new_tokens="
            f"{max_new_tokens} that exceeds the model's context of {limit} tokens. Shorten the prompt or lower "
            "--max-new-tokens")


@contextlib.contextmanager
def _steering(model, ups: list[Update], row_m: list[float], mode: str, positions: str, n_return: int):
    if not ups:
        yield
        return
    if mode == "merged":
        assert len(set(row_m)) == 1
        with merged_updates(model, ups, row_m[0], safe_merge=True):
            yield
        return
    if len(set(row_m)) == 1:
        m: float | torch.Tensor = row_m[0]
    else:
        # generate() repeats each row num_return_sequences times, consecutively (repeat_interleave)
        m = torch.tensor(row_m, dtype=torch.float32).repeat_interleave(n_return)
    with apply_updates(model, ups, m, positions=positions):
        yield


@contextlib.contextmanager
def _mixed_steering(model, groups: list[list[Update]], row_k: list[int], row_m: list[float], mode: str,
                    positions: str, n_return: int):
    """Per-prompt updates: one mixed hook context (hook mode), or the batch's single group merged."""
    if mode == "merged":
        assert len(set(row_k)) == 1 and len(set(row_m)) == 1
        if row_k[0] < 0 or not groups[row_k[0]]:
            yield
            return
        with merged_updates(model, groups[row_k[0]], row_m[0], safe_merge=True):
            yield
        return
    m = torch.tensor(row_m, dtype=torch.float32).repeat_interleave(n_return)
    k = torch.tensor(row_k, dtype=torch.long).repeat_interleave(n_return)
    with apply_mixed_updates(model, groups, k, m, positions=positions):
        yield


@contextlib.contextmanager
def _seeded(seed: int | None, batch_index: int, device: torch.device):
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed) * 1_000_003 + batch_index)
        if device.type == "cuda":
            torch.cuda.manual_seed(int(seed) * 1_000_003 + batch_index)
        yield
