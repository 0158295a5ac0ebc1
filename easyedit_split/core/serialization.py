"""Saving and loading updates: safetensors for the tensors, JSON metadata in the header.

One file holds any number of updates (``u{i}.<param>`` keys) and a metadata record naming the
base model, its architecture and hidden size, each update's form and site, the method and its
hyperparameters and the library version. Loading checks the target model's architecture and
hidden size, so an update is never silently applied to a model it was not made for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from easyedit_split import __version__
from easyedit_split.base.atomic_io import atomic_save_safetensors
from easyedit_split.core.sites import hidden_size, model_type
from easyedit_split.core.updates import Update, update_class
from easyedit_split.errors import EasyEditSplitError

logger = logging.getLogger(__name__)

__all__ = [
    "UpdateBundle",
    "UpdateFileError",
    "check_updates_finite",
    "check_updates_nonzero",
    "load_updates",
    "metadata_json",
    "model_signature",
    "read_metadata",
    "save_updates",
    "tensors_checksum",
]

FORMAT_NAME = "easyedit-split/updates"
FORMAT_VERSION = 1


class UpdateFileError(EasyEditSplitError, ValueError):
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


def _describe(i: int, u: Update) -> str:
    return f"update {i} ({u.form} at {u.site})"


def check_updates_finite(updates: Iterable[Update], source: str) -> None:
    """Raise :class:`UpdateFileError` when any update holds NaN or infinite values."""
    for i, u in enumerate(updates):
        for name, t in _tensors_of(u).items():
            if not torch.isfinite(t).all():
                n_bad = int((~torch.isfinite(t)).sum())
                raise UpdateFileError(
                    f"{source}: {_describe(i, u)} has {n_bad} non-finite value(s) (NaN/inf) in {name!r}; the file "
                    "is corrupt or training diverged — retrain it (lower lr or steering_factors) or use another file")


def check_updates_nonzero(updates: Sequence[Update], source: str) -> None:
    """Raise :class:`UpdateFileError` when there are no updates, or every one of them changes nothing."""
    if not updates:
        raise UpdateFileError(f"{source}: holds no updates")
    for u in updates:
        dw, db = u.delta_weight(), u.delta_bias()
        if (dw is not None and bool(dw.detach().abs().max() > 0)) or (db is not None and bool(db.detach().abs().max() > 0)):
            return
    raise UpdateFileError(f"{source}: every update is exactly zero (it changes nothing, so any evaluation of it "
                          "would be flat); it was saved before training or training did not move it")


def tensors_checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The header metadata of a safetensors file (no tensor is read); an :class:`UpdateFileError` naming
    the file when it is not a readable safetensors file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises several error types for corrupt files
        raise UpdateFileError(f"{path} is not a readable safetensors file: {exc}") from exc


def metadata_json(text: str, key: str, path: str | os.PathLike) -> Any:
    """The JSON ``text`` of metadata ``key`` parsed; an :class:`UpdateFileError` naming the file and the key
    when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UpdateFileError(f"{path}: metadata {key!r} is not valid JSON ({exc.msg}); the file is corrupt") from None


def save_updates(
    path: str | os.PathLike,
    updates: Update | Iterable[Update] | UpdateBundle,
    *,
    model: nn.Module | None = None,
    method: str | None = None,
    hparams: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    easyedit_pt: Any = None,
) -> Path:
    """Write ``updates`` atomically to ``path`` (``.safetensors``), with a checksum of the tensors.

    Non-finite values and an all-zero set of updates are refused (:class:`UpdateFileError`): such a file
    would load and evaluate as if it were a real update.

    ``easyedit_pt``: also write EasyEdit's ``<stem>.pt`` beside it with this function of ``(pt_path,
    update)`` (e.g. :func:`~easyedit_split.core.easyedit_layout.write_easyedit_pt`). The ``.pt`` is written first and its SHA-256 recorded in the
    safetensors header, which is written last: a kill between the two leaves a ``.pt`` that no longer
    matches, which :func:`companion_update` then refuses instead of loading a mismatched pair.
    """
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
    check_updates_finite(bundle.updates, f"not saving {path}")
    check_updates_nonzero(bundle.updates, f"not saving {path}")
    tensors: dict[str, torch.Tensor] = {}
    for i, u in enumerate(bundle.updates):
        for name, t in _tensors_of(u).items():
            tensors[f"u{i}.{name}"] = t.float()
    if easyedit_pt is not None:
        pt_path = Path(path).with_suffix(".pt")
        easyedit_pt(pt_path, bundle.updates[0])
        digest = hashlib.sha256(pt_path.read_bytes()).hexdigest()
        bundle.extra = {**bundle.extra, "easyedit_pt": {"file": pt_path.name, "sha256": digest}}
    metadata = {
        "checksum": tensors_checksum(tensors),
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


class _Metadata(dict):
    """An update's saved config: a missing key is an :class:`UpdateFileError` naming it (a ``KeyError``
    from ``from_config`` then always means a missing tensor)."""

    def __missing__(self, key: str) -> Any:
        raise UpdateFileError(f"metadata has no {key!r}")


def _update_from(cfg: dict[str, Any], tensors: dict[str, torch.Tensor], prefix: str) -> Update:
    if not isinstance(cfg, dict):
        raise UpdateFileError(f"metadata is a {type(cfg).__name__}, not an object")
    form = cfg.get("form")
    try:
        cls = update_class(str(form))
    except ValueError:
        raise UpdateFileError(f"unknown update form {form!r}") from None
    own = {k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)}
    try:
        return cls.from_config(_Metadata(cfg), own)
    except KeyError as exc:
        raise UpdateFileError(f"tensor {prefix + str(exc.args[0])!r} missing for a {form} update") from None


def load_updates(path: str | os.PathLike, model: nn.Module | None = None, *, strict_model: bool = True,
                 allow_zero: bool = False) -> UpdateBundle:
    """Read an update file; with ``model``, check it fits and move the updates to its device.

    Refused with an :class:`UpdateFileError` naming the file: a file that is not an easyedit-split
    update file, malformed metadata, tensors that do not match the checksum recorded at save (a
    corrupted or edited file), non-finite values, and updates that are all zero (unless ``allow_zero``).
    """
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
    meta: dict[str, Any] = dict(raw_meta)
    for key in ("model", "hparams", "updates", "extra"):
        if key in raw_meta:
            meta[key] = metadata_json(raw_meta[key], key, p)
    configs = meta.get("updates")
    if not isinstance(configs, list):
        raise UpdateFileError(f"{p}: metadata has no 'updates' list; the file is corrupt or was not written by "
                              "easyedit-split")
    recorded = raw_meta.get("checksum")
    if recorded is not None and recorded != tensors_checksum(tensors):
        raise UpdateFileError(f"{p}: the tensors do not match the checksum recorded when the file was saved; the file "
                              "is corrupt or was modified — re-create it")
    updates = []
    for i, cfg in enumerate(configs):
        try:
            updates.append(_update_from(cfg, tensors, f"u{i}."))
        except UpdateFileError as exc:
            raise UpdateFileError(f"{p}: update {i}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise UpdateFileError(f"{p}: metadata of update {i} is malformed ({type(exc).__name__}: {exc}); the file "
                                  "is corrupt") from None
    check_updates_finite(updates, str(p))
    if not allow_zero:
        check_updates_nonzero(updates, str(p))
    bundle = UpdateBundle(
        updates=updates,
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


def companion_update(pt_path: str | os.PathLike, model: nn.Module | None = None) -> Update | None:
    """The update of the ``.safetensors`` written together with EasyEdit's ``pt_path``, or None.

    That file records the site (an ``attn_out`` vector's ``.pt`` alone would be read at the residual
    site) and the ``.pt``'s SHA-256; a ``.pt`` whose bytes differ (an interrupted or mixed write) is an
    :class:`UpdateFileError`. None when there is no such companion (a plain EasyEdit file).
    """
    pt = Path(pt_path)
    sibling = pt.with_suffix(".safetensors")
    if not sibling.is_file():
        return None
    try:
        raw = read_metadata(sibling)
        record = metadata_json(raw.get("extra", "{}"), "extra", sibling).get("easyedit_pt")
    except (UpdateFileError, AttributeError):
        return None  # unreadable, or metadata not ours: treat the .pt as a plain EasyEdit file
    if raw.get("format") != FORMAT_NAME or not isinstance(record, dict) or record.get("file") != pt.name:
        return None  # not ours, or written before pairs were tied together
    if hashlib.sha256(pt.read_bytes()).hexdigest() != record.get("sha256"):
        raise UpdateFileError(
            f"{pt} does not match {sibling} written with it (an interrupted or mixed write); load "
            f"{sibling.name} or train again")
    bundle = load_updates(sibling, model)
    if len(bundle.updates) != 1:
        return None
    return bundle.updates[0]


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
    check_base_model(saved.get("base_model"), model, source=source)


def _model_key(name: str) -> str:
    """``"HuggingFaceTB/SmolLM2-135M-Instruct"`` and ``"/cache/smollm2-135m-instruct"`` → the same key."""
    base = Path(str(name).rstrip("/\\")).name.lower()
    for suffix in (".gguf", "-gguf", "_gguf"):
        base = base.removesuffix(suffix)
    return base


def check_base_model(recorded: str | None, model: nn.Module, *, source: str) -> bool:
    """Warn (naming both) when ``recorded`` — the base model an update or adapter was made for — is not
    ``model``; True when they agree or either is unknown. Shapes are checked separately (a mismatch there
    is an error); this catches an update applied to another model of the same shape."""
    current = model_signature(model)["base_model"]
    if not recorded or not current or _model_key(recorded) == _model_key(current):
        return True
    logger.warning("%s was made for the base model %s, but it is applied to %s; results may be meaningless "
                   "unless the two share weights", source, recorded, current)
    return False
