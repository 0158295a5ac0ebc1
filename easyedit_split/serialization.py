"""Saving and loading updates: safetensors for the tensors, JSON metadata in the header.

One file holds any number of updates (``u{i}.<param>`` keys) and a metadata record naming the
base model, its architecture and hidden size, each update's form and site, the method and its
hyperparameters and the library version. Loading checks the target model's architecture and
hidden size, so an update is never silently applied to a model it was not made for.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from ._io import atomic_save_safetensors
from .sites import hidden_size, model_type
from .updates import Update, update_class

logger = logging.getLogger(__name__)

__all__ = ["UpdateBundle", "UpdateFileError", "load_updates", "model_signature", "save_updates"]

FORMAT_NAME = "easyedit-split/updates"
FORMAT_VERSION = 1


class UpdateFileError(ValueError):
    """An update file is unreadable, or does not fit the model it is loaded onto."""


def model_signature(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    return {
        "base_model": str(getattr(config, "_name_or_path", "") or getattr(model, "name_or_path", "")),
        "model_type": model_type(model),
        "hidden_size": hidden_size(model),
        "num_hidden_layers": getattr(config, "num_hidden_layers", None) or getattr(getattr(config, "text_config", None), "num_hidden_layers", None),
    }


@dataclass
class UpdateBundle:
    """Updates with their provenance, as saved in one file."""

    updates: list[Update]
    method: str = "unknown"
    hparams: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    library_version: str = __version__

    def __iter__(self):
        return iter(self.updates)

    def __len__(self) -> int:
        return len(self.updates)


def _tensors_of(u: Update) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in u.named_parameters()}


def save_updates(
    path: str | os.PathLike,
    updates: Update | Iterable[Update] | UpdateBundle,
    *,
    model: nn.Module | None = None,
    method: str | None = None,
    hparams: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``updates`` atomically to ``path`` (``.safetensors``)."""
    if isinstance(updates, UpdateBundle):
        bundle = updates
    else:
        ups = [updates] if isinstance(updates, Update) else list(updates)
        bundle = UpdateBundle(ups)
    if method is not None:
        bundle.method = method
    if hparams is not None:
        bundle.hparams = dict(hparams)
    if extra:
        bundle.extra = {**bundle.extra, **extra}
    if model is not None:
        bundle.model = model_signature(model)
    tensors: dict[str, torch.Tensor] = {}
    for i, u in enumerate(bundle.updates):
        for name, t in _tensors_of(u).items():
            tensors[f"u{i}.{name}"] = t.float()
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "library_version": __version__,
        "method": bundle.method,
        "model": bundle.model,
        "hparams": bundle.hparams,
        "updates": [u.config() for u in bundle.updates],
        "extra": bundle.extra,
    }
    return atomic_save_safetensors(path, tensors, metadata)


def _update_from(cfg: dict[str, Any], tensors: dict[str, torch.Tensor], prefix: str) -> Update:
    form = cfg.get("form")
    try:
        cls = update_class(str(form))
    except ValueError:
        raise UpdateFileError(f"unknown update form {form!r}") from None
    own = {k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)}
    try:
        return cls.from_config(cfg, own)
    except KeyError as exc:
        raise UpdateFileError(f"tensor {prefix + str(exc.args[0])!r} missing for a {form} update") from None


def load_updates(path: str | os.PathLike, model: nn.Module | None = None, *, strict_model: bool = True) -> UpdateBundle:
    """Read an update file; with ``model``, check it fits and move the updates to its device."""
    from safetensors import safe_open

    p = Path(path)
    if not p.exists():
        raise UpdateFileError(f"update file {p} does not exist")
    try:
        with safe_open(str(p), framework="pt") as fh:
            raw_meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open is no dict
    except Exception as exc:  # safetensors raises several error types for corrupt files
        raise UpdateFileError(f"{p} is not a readable safetensors file: {exc}") from exc
    if raw_meta.get("format") != FORMAT_NAME:
        raise UpdateFileError(f"{p} is not an easyedit-split update file (format={raw_meta.get('format')!r})")
    meta = {k: (json.loads(v) if k in ("model", "hparams", "updates", "extra") else v) for k, v in raw_meta.items()}
    bundle = UpdateBundle(
        updates=[_update_from(cfg, tensors, f"u{i}.") for i, cfg in enumerate(meta["updates"])],
        method=meta.get("method", "unknown"),
        hparams=meta.get("hparams", {}),
        model=meta.get("model", {}),
        extra=meta.get("extra", {}),
        library_version=meta.get("library_version", "?"),
    )
    if model is not None:
        check_compatible(bundle, model, source=str(p), strict=strict_model)
        device = next(model.parameters()).device
        for u in bundle.updates:
            u.to(device)
    return bundle


def check_compatible(bundle: UpdateBundle, model: nn.Module, *, source: str = "updates", strict: bool = True) -> None:
    saved = bundle.model or {}
    sig = model_signature(model)
    if saved.get("hidden_size") is not None and int(saved["hidden_size"]) != sig["hidden_size"]:
        raise UpdateFileError(
            f"{source} was made for hidden size {saved['hidden_size']} ({saved.get('base_model') or saved.get('model_type')}), "
            f"but this model has hidden size {sig['hidden_size']}"
        )
    if strict and saved.get("model_type") and saved["model_type"] != sig["model_type"]:
        raise UpdateFileError(
            f"{source} was made for a {saved['model_type']!r} model ({saved.get('base_model')}), but this model is "
            f"{sig['model_type']!r}; pass strict_model=False to load it anyway"
        )
    if saved.get("base_model") and sig["base_model"] and saved["base_model"] != sig["base_model"]:
        logger.info("%s was trained on %s; applying it to %s", source, saved["base_model"], sig["base_model"])
