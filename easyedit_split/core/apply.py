"""Running a model under updates: hook mode and merged mode, both as context managers.

Hook mode (:func:`apply_updates`) adds ``m·(ΔW h_in + Δb)`` to a site's output with a forward
hook (a clamped vector also adds its m-independent part, ``−(h·v̂)v̂``, at the steered positions,
:meth:`~easyedit_split.core.updates.Update.fixed_delta`; its hooks stay on at ``m = 0``). The multiplier ``m`` is set at run time, as a scalar or as a per-row tensor of shape
``[batch]`` so that one batched forward evaluates several multipliers. It is padding-aware (pad
positions, read from the ``attention_mask`` the model is called with, are not steered) and can be
restricted to prompt or generated positions.

Merged mode (:func:`merged_updates`) folds ``m·ΔW`` and ``m·Δb`` into the module weights,
accumulating in fp32, and restores the exact original tensors on exit. A residual-stream vector
folds into the bias of the module that writes the residual stream; where no such module exists
(a norm after the MLP as in OLMo-2 and Gemma-2/3, a mixture-of-experts MLP, a scaled residual
branch) it raises, naming that reason, instead of merging approximately. A clamped vector on a
linear module's output merges exactly as ``W' = (I − v̂v̂ᵀ)·W``, ``b' = (I − v̂v̂ᵀ)·b + m·v``; on the
residual stream it is refused (the projection acts on the whole stream, which no module computes).

Both restore the model on exit, exceptions included.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from easyedit_split.core.sites import (
    ResolvedSite,
    SiteError,
    layer_sites,
    model_type,
    residual_writer,
    resolve_site,
)
from easyedit_split.core.updates import Update
from easyedit_split.errors import EasyEditSplitError, InputError, InputTypeError

logger = logging.getLogger(__name__)

__all__ = ["MergeError", "MergeHandle", "Steering", "apply_mixed_updates", "apply_updates", "as_update_groups",
           "merge_updates", "merged_updates", "site_device", "steer"]

POSITION_MODES = ("all", "prompt", "generated")


class MergeError(EasyEditSplitError, ValueError):
    """An update cannot be folded exactly into the model's weights."""


def check_multiplier(m: Any) -> None:
    """A multiplier is a finite number (or a tensor of them): NaN or inf would steer every position to
    NaN/inf without an error."""
    if isinstance(m, torch.Tensor):
        if m.is_floating_point() and not bool(torch.isfinite(m).all()):
            raise InputError(f"multiplier {m.tolist() if m.numel() <= 8 else tuple(m.shape)} is not finite; give finite "
                             "numbers")
        return
    if isinstance(m, bool) or not isinstance(m, (int, float)):
        raise InputTypeError(f"multiplier must be a number, a list of numbers or a tensor, got {type(m).__name__}")
    if not math.isfinite(m):
        raise InputError(f"multiplier {m} is not finite; give a finite number")


def _as_list(updates: Update | Iterable[Update]) -> list[Update]:
    if isinstance(updates, Update):
        return [updates]
    out = list(updates)
    for u in out:
        if not isinstance(u, Update):
            raise InputTypeError(f"expected Update objects, got {type(u).__name__}")
    return out


@dataclass
class Steering:
    """Live state of a hook-mode context: change the multiplier or position mask between forwards."""

    multiplier: float | torch.Tensor = 1.0
    positions: str = "all"
    selection: torch.Tensor | None = None  # mixed mode: per row, the index of its update group (-1: none)
    position_mask: torch.Tensor | None = None
    #: False turns every hook of the context off (the base model), whatever the updates; a multiplier of 0
    #: is not that for a clamped vector
    active: bool = True
    handles: list = field(default_factory=list, repr=False)
    _calls: int = field(default=0, repr=False)
    _prompt_len: int = field(default=0, repr=False)
    _attention_mask: torch.Tensor | None = field(default=None, repr=False)

    def remove_hooks(self) -> None:
        """Remove every hook the context registered (its ``finally``)."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def set_multiplier(self, m: float | torch.Tensor | Sequence[float]) -> None:
        """A scalar, or one value per batch row (shape ``[batch]``)."""
        if isinstance(m, (list, tuple)):
            m = torch.tensor(m, dtype=torch.float32)
        if isinstance(m, torch.Tensor) and m.dim() == 0:
            m = float(m)
        if isinstance(m, torch.Tensor) and m.dim() != 1:
            raise InputError(f"a per-row multiplier must have shape [batch], got {tuple(m.shape)}")
        check_multiplier(m)
        self.multiplier = m

    def set_selection(self, selection: torch.Tensor | Sequence[int]) -> None:
        """Mixed mode (:func:`apply_mixed_updates`): per batch row, the index of the update group it is
        steered by (``-1``: none), shape ``[batch]``."""
        sel = torch.as_tensor(selection, dtype=torch.long)
        if sel.dim() != 1:
            raise InputError(f"a selection must have shape [batch], got {tuple(sel.shape)}")
        self.selection = sel

    def set_position_mask(self, mask: torch.Tensor | None) -> None:
        """An explicit ``[batch, seq]`` mask of positions to steer (overrides ``positions``)."""
        self.position_mask = mask

    def reset(self) -> None:
        """Forget the prompt/generated bookkeeping (call between two ``generate`` calls)."""
        self._calls = 0
        self._prompt_len = 0
        self._attention_mask = None

    # -- internal ---------------------------------------------------------------------------
    def _is_zero(self) -> bool:
        return not isinstance(self.multiplier, torch.Tensor) and self.multiplier == 0.0

    def _weight(self, h: torch.Tensor) -> torch.Tensor | bool | None:
        """Which positions of ``h`` ([B, T, D] or [B, D]) are steered: None = all, False = none, else a
        ``[B, T, 1]`` 0/1 tensor."""
        mask = self._mask_for(h) if h.dim() == 3 else None
        if mask is None or mask is False:
            return mask
        return mask.to(device=h.device, dtype=h.dtype).unsqueeze(-1)

    def _scale(self, h: torch.Tensor) -> torch.Tensor | float | None:
        """The factor multiplying Δh at each position of ``h`` ([B, T, D] or [B, D]); None = nothing."""
        m = self.multiplier
        if isinstance(m, torch.Tensor):
            if m.shape[0] != h.shape[0]:
                raise InputError(f"per-row multiplier has {m.shape[0]} rows but the batch has {h.shape[0]}")
            scale: torch.Tensor | float = m.to(device=h.device, dtype=h.dtype).view(-1, *([1] * (h.dim() - 1)))
        else:
            scale = float(m)
        weight = self._weight(h)
        if weight is None:
            return scale
        if weight is False:
            return None
        return scale * weight

    def _mask_for(self, h: torch.Tensor):
        T = h.shape[1]
        if self.position_mask is not None:
            pm = self.position_mask
            if pm.shape[-1] != T:
                pm = pm[..., -T:]
            return pm
        mask = None
        am = self._attention_mask
        if am is not None and am.dim() == 2 and am.shape[0] == h.shape[0] and am.shape[1] >= T:
            am_cur = am[:, -T:]
            if not bool(am_cur.all()):
                mask = am_cur.bool()
        if self.positions == "all" or self._calls == 0:
            return mask
        # positions of this call: a cached decoding step covers only new tokens (all generated);
        # a full re-run covers prompt and generated tokens.
        first_call = self._calls == 1
        if self.positions == "prompt":
            if first_call:
                return mask
            if T <= self._prompt_len:
                return False
            pos = torch.arange(T, device=h.device) < self._prompt_len
        else:  # generated
            if first_call:
                return False
            if T <= self._prompt_len:
                return mask
            pos = torch.arange(T, device=h.device) >= self._prompt_len
        pos = pos.unsqueeze(0).expand(h.shape[0], T)
        return pos if mask is None else (pos & mask)


def _model_pre_hook(state: Steering):
    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        emb = kwargs.get("inputs_embeds")
        length = ids.shape[1] if isinstance(ids, torch.Tensor) else (emb.shape[1] if isinstance(emb, torch.Tensor) else 0)
        state._calls += 1
        if state._calls == 1:
            state._prompt_len = int(length)
        state._attention_mask = kwargs.get("attention_mask")
    return hook


def _model_post_hook(state: Steering):
    def hook(module, args, output):
        state._attention_mask = None  # never leaks into a later call of the layers alone
    return hook


def _site_hook(update: Update, rs: ResolvedSite, state: Steering):
    use_output_as_input = rs.kind == "block"

    def hook(module, args, output):
        if not state.active:
            return None
        m_is_zero = state._is_zero()
        if m_is_zero and not update.acts_at_zero:
            return None
        h = output[0] if isinstance(output, tuple) else output
        scale = state._scale(h)
        if scale is None:
            return None
        new_h = h
        if not m_is_zero:
            if update.needs_input:
                x = h if use_output_as_input else args[0]
                delta = update.delta(_to_device(x, _param_device(update)))
            else:
                delta = update.delta(None)
            new_h = h + scale * delta.to(device=h.device, dtype=h.dtype)
        fixed = update.fixed_delta(h)  # the m-independent part (clamping), from the unsteered output
        if fixed is not None:
            weight = state._weight(h)
            new_h = new_h + (fixed if weight is None else weight * fixed)
        if isinstance(output, tuple):
            return (new_h,) + tuple(output[1:])
        return new_h

    return hook


def _to_device(x: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return x if x is None or x.device == device else x.to(device)


def _param_device(update: Update) -> torch.device:
    return next(update.parameters()).device


def site_device(model: nn.Module, rs: ResolvedSite) -> torch.device | None:
    """Where the site's module computes: its parameters' device, or — when accelerate offloads it (its
    weights sit on the ``meta`` device between forwards) — the execution device of the accelerate hook
    on it or on its nearest ancestor. None when neither is known."""
    for p in rs.module.parameters():
        if p.device.type != "meta":
            return p.device
    parts = rs.module_path.split(".")
    for i in range(len(parts), -1, -1):
        try:
            m = model.get_submodule(".".join(parts[:i])) if i else model
        except AttributeError:
            continue
        dev = getattr(getattr(m, "_hf_hook", None), "execution_device", None)
        if dev is not None:
            return torch.device("cuda", dev) if isinstance(dev, int) else torch.device(dev)
    return None


def _place(update: Update, model: nn.Module, rs: ResolvedSite) -> None:
    """Put the update where its site computes (inputs and outputs are moved in the hook if they differ)."""
    device = site_device(model, rs)
    if device is not None and _param_device(update) != device:
        update.to(device)


def _mixed_site_hook(choices: list[tuple[int, Update]], rs: ResolvedSite, state: Steering):
    """One hook for every update group with an update at this module: row ``r`` gets
    ``scale[r]·delta_k(x[r])`` of the group ``k = selection[r]`` that it selects, nothing otherwise.

    Vectors are gathered per row (one ``[K, D]`` table); LoRA and local weights are computed on each
    group's rows only and scattered back, so every row sees exactly its own update's math.
    """
    use_output_as_input = rs.kind == "block"
    vector_choices = [(k, u) for k, u in choices if not u.needs_input]
    input_choices = [(k, u) for k, u in choices if u.needs_input]
    clamp_choices = [(k, u) for k, u in choices if u.acts_at_zero]  # their rows also get −(h·v̂)v̂, at any m

    def hook(module, args, output):
        if not state.active or (state._is_zero() and not clamp_choices):
            return None
        h = output[0] if isinstance(output, tuple) else output
        sel = state.selection
        if sel is None:
            raise InputError("mixed steering needs a per-row selection (Steering.set_selection)")
        if sel.shape[0] != h.shape[0]:
            raise InputError(f"the selection has {sel.shape[0]} rows but the batch has {h.shape[0]}")
        scale = state._scale(h)
        if scale is None:
            return None
        sel = sel.to(h.device)
        B = h.shape[0]
        row_scale = scale if isinstance(scale, torch.Tensor) else torch.full((B,) + (1,) * (h.dim() - 1), scale,
                                                                               dtype=h.dtype, device=h.device)
        if row_scale.shape[0] != B:
            row_scale = row_scale.expand(B, *row_scale.shape[1:])
        delta = torch.zeros_like(h)
        if vector_choices:
            K = max(k for k, _ in vector_choices) + 2  # one zero row for "no vector here" (index -1 → last)
            table = torch.zeros(K, h.shape[-1], dtype=torch.float32, device=h.device)
            table = table.index_copy(0, torch.tensor([k for k, _ in vector_choices], device=h.device),
                                     torch.stack([u.delta(None).float().to(h.device) for _, u in vector_choices]))
            pick = torch.where((sel >= 0) & (sel < K - 1), sel, torch.full_like(sel, K - 1))
            rows_vec = table.index_select(0, pick).to(h.dtype)  # [B, D]
            delta = delta + row_scale * rows_vec.view(B, *([1] * (h.dim() - 2)), -1)
        x_all = (h if use_output_as_input else args[0]) if input_choices else None
        for k, u in input_choices:
            rows = (sel == k).nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            d = u.delta(_to_device(x_all.index_select(0, rows), _param_device(u))).to(device=h.device, dtype=h.dtype)
            delta = delta.index_copy(0, rows, delta.index_select(0, rows) + row_scale.index_select(0, rows) * d)
        weight = state._weight(h) if clamp_choices else None
        for k, u in clamp_choices:
            rows = (sel == k).nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            fixed = u.fixed_delta(h.index_select(0, rows))
            if weight is not None:
                fixed = fixed * weight.index_select(0, rows)
            delta = delta.index_copy(0, rows, delta.index_select(0, rows) + fixed)
        new_h = h + delta
        if isinstance(output, tuple):
            return (new_h,) + tuple(output[1:])
        return new_h

    return hook


def as_update_groups(groups: Sequence[Update | Iterable[Update]]) -> list[list[Update]]:
    """Update groups as lists (a single :class:`Update` is a group of one); at least one group."""
    out = [_as_list(g) for g in groups]
    if not out:
        raise InputError("mixed steering needs at least one update group")
    return out


@contextlib.contextmanager
def apply_mixed_updates(
    model: nn.Module,
    groups: Sequence[Update | Iterable[Update]],
    selection: torch.Tensor | Sequence[int],
    multiplier: float | torch.Tensor | Sequence[float] = 1.0,
    *,
    positions: str = "all",
) -> Iterator[Steering]:
    """Hook mode with a different update per batch row: row ``r`` is steered by ``groups[selection[r]]``
    (``-1``: by none) at multiplier ``multiplier[r]``.

    Each group is a list of updates (a method's updates at one or several sites). Rows of different
    concepts or methods so share one forward; each row equals its own separate run (per-row math). Merged
    mode cannot mix updates: fold one group at a time with :func:`merged_updates`. Yields a
    :class:`Steering` whose multiplier and selection (:meth:`Steering.set_selection`) may be changed
    between forwards.
    """
    if positions not in POSITION_MODES:
        raise InputError(f"positions must be one of {POSITION_MODES}, got {positions!r}")
    ups = as_update_groups(groups)
    state = Steering(positions=positions)
    state.set_multiplier(multiplier)
    state.set_selection(selection)
    sel = state.selection
    if sel.numel() and (int(sel.max()) >= len(ups) or int(sel.min()) < -1):
        raise InputError(f"selection values must lie in -1..{len(ups) - 1} ({len(ups)} update groups)")
    by_module: dict[int, tuple[ResolvedSite, list[tuple[int, Update]]]] = {}
    for k, group in enumerate(ups):
        for u in group:
            rs = resolve_site(model, u.site)
            _check_dims(u, rs)
            _place(u, model, rs)
            by_module.setdefault(id(rs.module), (rs, []))[1].append((k, u))
    try:
        state.handles.append(model.register_forward_pre_hook(_model_pre_hook(state), with_kwargs=True))
        state.handles.append(model.register_forward_hook(_model_post_hook(state)))
        for rs, choices in by_module.values():
            # a group with two updates at one module contributes both: one hook per (module, slot)
            slots: list[list[tuple[int, Update]]] = []
            for k, u in choices:
                for slot in slots:
                    if all(kk != k for kk, _ in slot):
                        slot.append((k, u))
                        break
                else:
                    slots.append([(k, u)])
            for slot in slots:
                state.handles.append(rs.module.register_forward_hook(_mixed_site_hook(slot, rs, state)))
        yield state
    finally:
        state.remove_hooks()


def _check_dims(update: Update, rs: ResolvedSite) -> None:
    if update.d_out != rs.d_out or (update.needs_input and update.d_in != rs.d_in):
        raise SiteError(
            f"{update.form} update for {update.site} has shape [{update.d_out}, {update.d_in}] but the model's "
            f"{rs.module_path} is [{rs.d_out}, {rs.d_in}] — was it made for another model?"
        )


@contextlib.contextmanager
def apply_updates(
    model: nn.Module,
    updates: Update | Iterable[Update],
    multiplier: float | torch.Tensor | Sequence[float] = 1.0,
    *,
    positions: str = "all",
) -> Iterator[Steering]:
    """Hook mode: steer ``model`` with ``updates`` inside the ``with`` block.

    ``positions``: ``"all"`` | ``"prompt"`` (the first forward of a generate call, and the prompt
    part of any later full re-run) | ``"generated"`` (everything after). Yields a
    :class:`Steering` handle whose multiplier may be changed between forwards.
    """
    if positions not in POSITION_MODES:
        raise InputError(f"positions must be one of {POSITION_MODES}, got {positions!r}")
    ups = _as_list(updates)
    state = Steering(positions=positions)
    state.set_multiplier(multiplier)
    try:
        state.handles.append(model.register_forward_pre_hook(_model_pre_hook(state), with_kwargs=True))
        state.handles.append(model.register_forward_hook(_model_post_hook(state)))
        for u in ups:
            rs = resolve_site(model, u.site)
            _check_dims(u, rs)
            _place(u, model, rs)
            state.handles.append(rs.module.register_forward_hook(_site_hook(u, rs, state)))
        yield state
    finally:
        state.remove_hooks()


def _dtype_device(module: nn.Module) -> tuple[torch.dtype, torch.device]:
    for p in module.parameters():
        return p.dtype, p.device
    return torch.float32, torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# merged mode
# ---------------------------------------------------------------------------------------------


@dataclass
class _Saved:
    module: nn.Module
    weight: torch.Tensor
    bias: torch.Tensor | None
    had_bias: bool


@dataclass
class MergeHandle:
    """Original tensors of every module touched by a merge; :meth:`unmerge` restores them exactly."""

    saved: dict[int, _Saved] = field(default_factory=dict)

    @property
    def merged(self) -> bool:
        return bool(self.saved)

    def unmerge(self) -> None:
        for s in self.saved.values():
            with torch.no_grad():
                s.module.weight.data = s.weight
                if s.had_bias:
                    s.module.bias.data = s.bias
                else:
                    s.module.bias = None
        self.saved.clear()


def _merge_target(model: nn.Module, update: Update) -> ResolvedSite:
    rs = resolve_site(model, update.site)
    _check_dims(update, rs)
    if rs.kind in ("linear", "conv1d"):
        return rs
    if update.acts_at_zero:
        raise MergeError(
            f"a clamped vector at {update.site} cannot be merged exactly: it replaces the component of the whole "
            f"{update.site.component} output ({rs.module_path}) along its direction, and no single linear module "
            "computes that output (the residual stream sums every earlier layer). Use hook mode, or train the "
            "clamped vector on a linear site (mlp_down, attn_out), whose merge W' = (I − v̂v̂ᵀ)W is exact."
        )
    if update.delta_weight() is not None:
        raise MergeError(
            f"{update.form} update at {update.site} has a ΔW on the residual stream; no linear module computes the "
            "residual stream, so it cannot be merged. Use hook mode, or place it on a linear site (mlp_down, attn_out)."
        )
    if update.site.component != "residual":
        raise MergeError(
            f"{rs.module_path} ({type(rs.module).__name__}) is not a Linear/Conv1D, so an update on its output cannot be "
            "folded into weights. Use hook mode (apply_updates), or name a linear module."
        )
    writer = residual_writer(model, rs.site.layer)
    if writer is None:
        parts = layer_sites(model, rs.site.layer)
        reason = parts.missing.get("residual_writer", "no linear module writes the residual stream")
        alternative = ("train the vector on the mlp_down site, which merges exactly" if parts.mlp_down is not None
                       else "place the update on a linear site (e.g. with module_path)")
        raise MergeError(
            f"cannot merge a residual-stream vector at {update.site} exactly into this {model_type(model)} model "
            f"({parts.path}): "
            f"{reason}. Use hook mode (apply_updates), or {alternative}."
        )
    return writer


def _project_output(u: Update, rs: ResolvedSite, weight: torch.Tensor, bias: torch.Tensor | None):
    """``(I − v̂v̂ᵀ)·W`` and ``(I − v̂v̂ᵀ)·b`` (in fp32, back to the module's dtype) for a clamped vector
    on a Linear (``W: [d_out, d_in]``) or Conv1D (``W: [d_in, d_out]``, the projection acts on the right)."""
    proj = u.projection().float().to(weight.device)  # −v̂v̂ᵀ
    w = weight.float()
    w_new = w + (proj @ w if rs.kind != "conv1d" else w @ proj)
    b_new = None if bias is None else (bias.float() + proj @ bias.float()).to(weight.dtype)
    return w_new.to(weight.dtype), b_new


def merge_updates(
    model: nn.Module,
    updates: Update | Iterable[Update],
    multiplier: float = 1.0,
    *,
    safe_merge: bool = False,
    handle: MergeHandle | None = None,
) -> MergeHandle:
    """Fold ``multiplier·ΔW`` and ``multiplier·Δb`` into the weights; returns a handle to unmerge.

    All targets are resolved (and the merged tensors computed, and with ``safe_merge`` checked
    for NaN/inf) before any weight changes, so a failure leaves the model untouched.
    """
    if isinstance(multiplier, torch.Tensor) and multiplier.numel() != 1:
        raise MergeError("merged mode takes one scalar multiplier; use hook mode for per-row multipliers")
    check_multiplier(multiplier)
    m = float(multiplier)
    ups = _as_list(updates)
    handle = handle or MergeHandle()
    plan: list[tuple[ResolvedSite, torch.Tensor | None, torch.Tensor | None]] = []
    pending: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for u in ups:
        rs = _merge_target(model, u)
        module = rs.module
        key = id(module)
        w_cur, b_cur = pending.get(key, (module.weight.detach(), None if module.bias is None else module.bias.detach()))
        with torch.no_grad():
            if u.acts_at_zero:  # clamping: the output (W x + b) is projected first, then m·v is added
                w_cur, b_cur = _project_output(u, rs, w_cur, b_cur)
            w_new = w_cur
            dw = u.delta_weight()
            if dw is not None:  # _merge_target refused a ΔW on the residual stream
                dw = dw.detach().float().to(module.weight.device)
                if rs.kind == "conv1d":
                    dw = dw.t()
                w_new = (w_cur.float() + m * dw).to(module.weight.dtype)
            db = u.delta_bias()
            b_new = b_cur
            if db is not None:
                db = db.detach().float().to(module.weight.device)
                base_b = b_cur.float() if b_cur is not None else torch.zeros_like(db)
                b_new = (base_b + m * db).to(module.weight.dtype)
        if safe_merge:
            for name, t in (("weight", w_new), ("bias", b_new)):
                if t is not None and not torch.isfinite(t).all():
                    raise MergeError(f"safe_merge: merging {u.form} update at {u.site} gives non-finite {name} in {rs.module_path}")
        pending[key] = (w_new, b_new)
        plan.append((rs, w_new, b_new))
    for rs, _, _ in plan:
        module = rs.module
        key = id(module)
        if key not in handle.saved:
            handle.saved[key] = _Saved(
                module, module.weight.data, None if module.bias is None else module.bias.data, module.bias is not None
            )
    done: set[int] = set()
    for rs, _, _ in plan:
        module = rs.module
        key = id(module)
        if key in done:
            continue
        done.add(key)
        w_new, b_new = pending[key]
        with torch.no_grad():
            module.weight.data = w_new
            if b_new is not None:
                if module.bias is None:
                    module.bias = nn.Parameter(b_new, requires_grad=False)
                else:
                    module.bias.data = b_new
    return handle


@contextlib.contextmanager
def merged_updates(
    model: nn.Module, updates: Update | Iterable[Update], multiplier: float = 1.0, *, safe_merge: bool = False
) -> Iterator[MergeHandle]:
    """Merged mode inside a ``with`` block; the original weights are restored on exit."""
    handle = MergeHandle()
    try:
        merge_updates(model, updates, multiplier, safe_merge=safe_merge, handle=handle)
        yield handle
    finally:
        handle.unmerge()


@contextlib.contextmanager
def steer(model: nn.Module, updates: Update | Iterable[Update], multiplier: float | torch.Tensor = 1.0, *,
          mode: str = "hook", positions: str = "all", safe_merge: bool = False,
          selection: torch.Tensor | Sequence[int] | None = None):
    """One entry point for both modes: ``mode="hook"`` or ``mode="merged"``.

    With ``selection`` (one group index per row), ``updates`` is a list of update groups steered per row
    (:func:`apply_mixed_updates`); only hook mode can do that.
    """
    if selection is not None:
        if mode == "merged":
            raise MergeError("merged mode folds one update into the weights for the whole batch and cannot give rows "
                             "different updates; use mode='hook' for mixed-update batches, or merge one group at a time")
        if mode != "hook":
            raise InputError(f"mode must be 'hook' or 'merged', got {mode!r}")
        with apply_mixed_updates(model, updates, selection, multiplier, positions=positions) as state:  # type: ignore[arg-type]
            yield state
        return
    if mode == "hook":
        with apply_updates(model, updates, multiplier, positions=positions) as state:
            yield state
    elif mode == "merged":
        if positions != "all":
            raise MergeError("merged mode steers every position; use hook mode for positions='prompt'/'generated'")
        with merged_updates(model, updates, multiplier, safe_merge=safe_merge) as handle:
            yield handle
    else:
        raise InputError(f"mode must be 'hook' or 'merged', got {mode!r}")
