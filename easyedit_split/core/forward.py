"""Forward passes that do only the work needed.

* :func:`capture_prefix` runs the model once and keeps the hidden state entering decoder layer
  ``start`` together with the exact arguments every later layer was called with (attention
  masks, rotary embeddings — per layer, so sliding-window layers keep their own mask). The layers
  below ``start`` do not depend on any update placed at or above it.
* :func:`run_suffix` replays only layers ``start..N-1`` from that cache (hooks fire as usual, so an
  update in hook mode applies), then the final norm. The capture checks that this norm (from the
  site table, or found by structure) is what the model itself applies after its layers, so a
  frozen-prefix loss can never silently differ from the full forward's.
* :func:`logits_at` applies the output head only at the positions whose logits are needed — the
  vocabulary projection is the most expensive matmul of a small model.

:func:`final_hidden` is the plain full-model path with the same output, so callers switch
between the two without other changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from easyedit_split.core.sites import SiteError, decoder_layers, final_norm, resolve_site
from easyedit_split.errors import InputError

__all__ = [
    "PrefixCache",
    "base_forward",
    "capture_prefix",
    "final_hidden",
    "logits_at",
    "output_head",
    "position_ids_from_mask",
    "run_suffix",
    "site_start_layer",
]


def _detach(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, tuple):
        return tuple(_detach(o) for o in obj)
    if isinstance(obj, list):
        return [_detach(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _detach(v) for k, v in obj.items()}
    return obj


@dataclass
class PrefixCache:
    """Hidden state entering layer ``start``, the recorded call arguments of layers ``start..``,
    and the final norm the model applies after its last layer (None: it applies none)."""

    start: int
    hidden: torch.Tensor  # [B, T, D]
    layer_args: list[tuple[tuple, dict]]  # one (args without hidden_states, kwargs) per layer >= start
    norm: nn.Module | None = None

    def select(self, rows: torch.Tensor | list[int]) -> PrefixCache:
        """The cache restricted to some batch rows (masks and embeddings with a batch dim follow)."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.hidden.device)
        B = self.hidden.shape[0]

        def pick(o: Any) -> Any:
            if isinstance(o, torch.Tensor) and o.dim() > 0 and o.shape[0] == B and B > 1:
                return o.index_select(0, idx.to(o.device))
            if isinstance(o, tuple):
                return tuple(pick(x) for x in o)
            if isinstance(o, dict):
                return {k: pick(v) for k, v in o.items()}
            return o

        return PrefixCache(self.start, self.hidden.index_select(0, idx), [(pick(a), pick(k)) for a, k in self.layer_args],
                           self.norm)

    def repeat(self, times: int) -> PrefixCache:
        """The cache tiled ``times`` along the batch (row ``i`` of copy ``k`` is row ``k*B + i``)."""
        B = self.hidden.shape[0]

        def tile(o: Any) -> Any:
            if isinstance(o, torch.Tensor) and o.dim() > 0 and o.shape[0] == B and B > 1:
                return o.repeat(times, *([1] * (o.dim() - 1)))
            if isinstance(o, torch.Tensor) and o.dim() > 0 and o.shape[0] == 1 and B == 1 and times > 1:
                return o.expand(times, *o.shape[1:])
            if isinstance(o, tuple):
                return tuple(tile(x) for x in o)
            if isinstance(o, dict):
                return {k: tile(v) for k, v in o.items()}
            return o

        return PrefixCache(
            self.start,
            self.hidden.repeat(times, *([1] * (self.hidden.dim() - 1))),
            [(tile(a), tile(k)) for a, k in self.layer_args],
            self.norm,
        )


def site_start_layer(model: nn.Module, sites) -> int:
    """The lowest decoder layer containing any of ``sites`` (everything below is frozen)."""
    layers_path, _ = decoder_layers(model)
    lows = []
    for site in sites:
        rs = resolve_site(model, site)
        path = rs.module_path
        rest = path[len(layers_path) + 1:] if path.startswith(layers_path + ".") else None
        if rest is None:
            return 0
        lows.append(int(rest.split(".")[0]))
    return min(lows) if lows else 0


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift absolute positions."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def _forward_kwargs(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> dict[str, Any]:
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if attention_mask is not None and not bool(attention_mask[:, 0].all()):
        kwargs["position_ids"] = position_ids_from_mask(attention_mask)  # left padding present
    return kwargs


def base_forward(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Any:
    """Run the transformer stack without the output head (``model.model``, ``model.transformer``…),
    without a KV cache, with positions counted over real tokens when there is left padding."""
    base = getattr(model, "base_model", None)
    stack = model if base is None else base
    return stack(**_forward_kwargs(input_ids, attention_mask))


def _last_hidden(out: Any) -> torch.Tensor:
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


@torch.no_grad()
def capture_prefix(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, start: int) -> PrefixCache:
    """Run layers ``0..start-1`` once and record what layers ``start..`` are called with.

    Raises :class:`~easyedit_split.core.sites.SiteError` when what the model does after its layers is
    not the final norm that :func:`run_suffix` would apply.
    """
    _, layers = decoder_layers(model)
    n = len(layers)
    if not 0 <= start < n:
        raise InputError(f"start layer {start} out of range 0..{n - 1}")
    records: dict[int, tuple[tuple, dict]] = {}
    hidden: dict[str, torch.Tensor] = {}
    handles = []

    def make_pre(i: int):
        def pre(module, args, kwargs):
            if args:
                h, rest = args[0], tuple(args[1:])
            else:
                kwargs = dict(kwargs)
                h = kwargs.pop("hidden_states")
                rest = ()
            if i == start:
                hidden["h"] = h.detach()
            records[i] = (_detach(rest), _detach({k: v for k, v in kwargs.items() if k != "hidden_states"}))
        return pre

    # Each layer's arguments (masks, rotary embeddings) are computed by the model before its layer
    # loop, so one pass with layers >= start made identities records them all at no layer cost;
    # the suffix itself is recomputed by run_suffix. The pass runs to the end: its logits at the
    # last position are the model's own top (final norm, head, logit scaling) applied to the hidden
    # state entering layer ``start``, which checks the norm and head that run_suffix / output_head use.
    # a layer's own instance forward (accelerate's offloading wrapper under a device_map) is put back after
    own_forward = {i: layers[i].__dict__.get("forward") for i in range(start, n)}
    try:
        for i in range(start, n):
            handles.append(layers[i].register_forward_pre_hook(make_pre(i), with_kwargs=True))
            layers[i].forward = _identity_forward  # type: ignore[method-assign]
        top = model(**_forward_kwargs(input_ids, attention_mask), logits_to_keep=1).logits[:, -1]
    finally:
        for h in handles:
            h.remove()
        for i in range(start, n):
            if own_forward[i] is None:
                layers[i].__dict__.pop("forward", None)  # back to the class's forward
            else:
                layers[i].forward = own_forward[i]  # type: ignore[method-assign]
    if "h" not in hidden or len(records) != n - start:
        raise RuntimeError("capture_prefix: the model did not call every decoder layer; cannot cache its prefix")
    norm = final_norm(model)
    _check_top(model, norm, hidden["h"], top)
    return PrefixCache(start, hidden["h"], [records[i] for i in range(start, n)], norm)


def _check_top(model: nn.Module, norm: nn.Module | None, h: torch.Tensor, top_logits: torch.Tensor) -> None:
    """``top_logits`` (the model's own logits at the last position) must be what the frozen-prefix
    path computes from the same hidden state: final norm, then :func:`output_head`."""
    last = h[:, -1]
    expected = output_head(model)(norm(last) if norm is not None else last).float()
    got = top_logits.float()
    scale = float(got.abs().max().clamp_min(1.0))
    if expected.shape != got.shape or not torch.allclose(expected, got, rtol=1e-4, atol=1e-5 * scale):
        what = f"final norm {type(norm).__name__}" if norm is not None else "no final norm"
        raise SiteError(
            f"the frozen-prefix path cannot reproduce this {type(model).__name__}: with {what} after the decoder layers "
            "and output_head's logit scaling its logits differ from the model's own; add an ArchSpec row with the final "
            "norm's path to easyedit_split.core.sites.ARCHITECTURES, or turn the prefix cache off (use_prefix_cache=False, "
            "hparams use_prefix_cache: false)"
        )


def _identity_forward(hidden_states, *args, **kwargs):
    return hidden_states


def run_suffix(model: nn.Module, cache: PrefixCache, hidden: torch.Tensor | None = None) -> torch.Tensor:
    """Layers ``cache.start..N-1`` from the cached input, then the final norm: ``[B, T, D]``."""
    _, layers = decoder_layers(model)
    h = cache.hidden if hidden is None else hidden
    for offset, (args, kwargs) in enumerate(cache.layer_args):
        out = layers[cache.start + offset](h, *args, **kwargs)
        h = out[0] if isinstance(out, (tuple, list)) else out
    return cache.norm(h) if cache.norm is not None else h


def final_hidden(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Full forward to the last hidden state after the final norm (no output head)."""
    return _last_hidden(base_forward(model, input_ids, attention_mask))


def output_head(model: nn.Module):
    """``hidden [.., D] -> logits [.., V]``, with the logit scaling the config declares: a
    multiplier (``logit_scale``), a divisor (``logits_scaling``) and a final soft-cap
    (``final_logit_softcapping``). :func:`capture_prefix` checks the result against the model."""
    head = model.get_output_embeddings()
    config = getattr(model, "config", None)
    text_config = getattr(config, "text_config", None)

    def setting(key: str) -> float | None:
        value = getattr(config, key, None)
        value = getattr(text_config, key, None) if value is None else value
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    scale, divisor, cap = setting("logit_scale"), setting("logits_scaling"), setting("final_logit_softcapping")

    def apply(h: torch.Tensor) -> torch.Tensor:
        logits = head(h)
        if scale is not None and scale != 1.0:
            logits = logits * scale
        if divisor is not None and divisor != 1.0:
            logits = logits / divisor
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    return apply


def logits_at(model: nn.Module, hidden: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Logits ``[K, V]`` at positions ``(rows[k], cols[k])`` of ``hidden [B, T, D]`` only."""
    return output_head(model)(hidden[rows, cols])
