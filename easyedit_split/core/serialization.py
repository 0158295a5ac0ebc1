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
from easyedit_split.base.atomic_io import atomic_save_safetensors, encode_metadata, staged_files
from easyedit_split.base.safe_text import shown
from easyedit_split.core.sites import hidden_size, model_type
from easyedit_split.core.updates import INTERVENTION_TYPES, Update, update_class
from easyedit_split.errors import EasyEditSplitError, InputTypeError

logger = logging.getLogger(__name__)

__all__ = [
    "UpdateBundle",
    "UpdateFileError",
    "check_update_path",
    "check_updates_finite",
    "check_updates_nonzero",
    "file_checksum",
    "load_updates",
    "metadata_json",
    "model_signature",
    "read_metadata",
    "save_updates",
    "tensors_checksum",
]

FORMAT_NAME = "easyedit-split/updates"
#: 2: the checksum covers the metadata too (1: the tensors only; still read); 3: as 2, and an update may be
#: a clamped vector (``"intervention_type": "clamping"`` in its config). A file is written as 3 only when it
#: holds one, so that an older reader refuses it ("upgrade") instead of applying it as an added vector.
FORMAT_VERSION = 3
READ_VERSIONS = ("1", "2", "3")


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
    """Raise :class:`UpdateFileError` when any update holds NaN or infinite values, or values so large that
    their norm is not a finite float32 number (a diverged training run: applied, such an update overflows
    every activation it touches, so every pair would score the same)."""
    for i, u in enumerate(updates):
        for name, t in _tensors_of(u).items():
            if not torch.isfinite(t).all():
                n_bad = int((~torch.isfinite(t)).sum())
                raise UpdateFileError(
                    f"{source}: {_describe(i, u)} has {n_bad} non-finite value(s) (NaN/inf) in {name!r}; the file "
                    "is corrupt or training diverged — retrain it (lower lr or steering_factors) or use another file")
            norm = torch.linalg.vector_norm(t.detach().float())
            if not torch.isfinite(norm):
                raise UpdateFileError(
                    f"{source}: {_describe(i, u)} has values so large (max |x| = {float(t.abs().max()):.3g}) that the "
                    f"norm of {name!r} overflows; training diverged — retrain it (lower lr or steering_factors)")


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


def file_checksum(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """SHA-256 over the tensors (:func:`tensors_checksum`) and every metadata entry but ``checksum`` itself,
    as the header stores them (format version 2): a changed byte anywhere in the file is noticed."""
    h = hashlib.sha256(tensors_checksum(tensors).encode())
    h.update(json.dumps({k: v for k, v in metadata.items() if k != "checksum"}, sort_keys=True).encode())
    return h.hexdigest()


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


def check_update_path(path: str | os.PathLike) -> None:
    """An update is saved as ``<name>.safetensors`` (a ``.pt`` name would later be read as EasyEdit's format)."""
    if Path(path).suffix != ".safetensors":
        raise UpdateFileError(f"{path}: an update file is a .safetensors file (EasyEdit's .pt is written beside it "
                              "with easyedit_pt=...); name it <name>.safetensors")


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
    update)`` (e.g. :func:`~easyedit_split.core.easyedit_layout.write_easyedit_pt`). Both are written into a
    staging folder and then moved in, the ``.safetensors`` (which records the ``.pt``'s SHA-256) last: a
    failed write (a full disk) leaves neither, and a kill between the two moves leaves a ``.pt`` that no
    longer matches, which :func:`companion_update` then refuses instead of loading a mismatched pair.
    """
    check_update_path(path)
    if isinstance(updates, UpdateBundle):
        bundle = updates
    else:
        if isinstance(updates, (str, bytes)) or not isinstance(updates, (Update, Iterable)):
            raise InputTypeError(f"save_updates: updates must be an Update, a list of them or an UpdateBundle, got "
                                 f"{type(updates).__name__}")
        ups = [updates] if isinstance(updates, Update) else list(updates)
        bundle = UpdateBundle(ups)
    wrong = [f"{i}: {type(u).__name__}" for i, u in enumerate(bundle.updates) if not isinstance(u, Update)]
    if wrong:
        raise InputTypeError(f"save_updates: not Update objects at {', '.join(wrong[:5])}")
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
    if easyedit_pt is None:
        return atomic_save_safetensors(path, tensors, _file_metadata(bundle, tensors))
    # the .pt (and its sidecar) and the .safetensors are written all or nothing: into a staging folder
    # first, then moved in, the .safetensors last (a disk that fills up leaves no orphan .pt)
    from easyedit_split.core.easyedit_layout import sidecar_path

    dest = Path(path)
    with staged_files(dest.parent, last=(dest.name,), replaces=(sidecar_path(dest.with_suffix(".pt")).name,)) as stage:
        pt_stage = stage / dest.with_suffix(".pt").name
        easyedit_pt(pt_stage, bundle.updates[0])
        digest = hashlib.sha256(pt_stage.read_bytes()).hexdigest()
        bundle.extra = {**bundle.extra, "easyedit_pt": {"file": pt_stage.name, "sha256": digest}}
        atomic_save_safetensors(stage / dest.name, tensors, _file_metadata(bundle, tensors))
    return dest


def _file_metadata(bundle: UpdateBundle, tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    clamped = any(u.intervention_type != "addition" for u in bundle.updates)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION if clamped else 2),
        "library_version": __version__,
        "method": bundle.method,
        "model": bundle.model,
        "hparams": bundle.hparams,
        "updates": [u.config() for u in bundle.updates],
        "extra": bundle.extra,
    }
    encoded = encode_metadata(metadata)
    return {**encoded, "checksum": file_checksum(tensors, encoded)}


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
    from easyedit_split.core.sites import SiteError

    try:
        return cls.from_config(_Metadata(cfg), own)
    except KeyError as exc:
        raise UpdateFileError(f"tensor {prefix + str(exc.args[0])!r} missing for a {form} update") from None
    except SiteError as exc:
        raise UpdateFileError(f"metadata site: {exc}") from None


def load_updates(path: str | os.PathLike, model: nn.Module | None = None, *, strict_model: bool = True,
                 allow_zero: bool = False) -> UpdateBundle:
    """Read an update file; with ``model``, check it fits and move the updates to its device.

    Refused with an :class:`UpdateFileError` naming the file: a file that is not an easyedit-split
    update file, tensors or metadata that do not match the checksum recorded at save (a corrupted or
    edited file), metadata that is malformed or of the wrong type (checked like hyperparameters: a
    negative layer, ``use_chat_template: "maybe"``), non-finite values or norms, updates that are all
    zero (unless ``allow_zero``) and, with ``model``, a site the model does not have (a layer out of
    range) or of another size.
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
    version = raw_meta.get("format_version", "1")
    recorded = raw_meta.get("checksum")
    if recorded is not None:
        expected = tensors_checksum(tensors) if version == "1" else file_checksum(tensors, raw_meta)
        if recorded != expected:
            covered = "tensors" if version == "1" else "tensors or metadata"
            raise UpdateFileError(f"{p}: the {covered} do not match the checksum recorded when the file was saved; "
                                  "the file is corrupt or was modified — re-create it")
    if raw_meta.get("format") != FORMAT_NAME:
        raise UpdateFileError(f"{p} is not an easyedit-split update file (format={shown(raw_meta.get('format'))}); "
                              "give a file saved by easyedit-split (train, save_updates)")
    if version not in READ_VERSIONS:
        raise UpdateFileError(f"{p}: format_version {shown(version)} is not one this easyedit-split reads "
                              f"({', '.join(READ_VERSIONS)}); upgrade easyedit-split")
    meta: dict[str, Any] = dict(raw_meta)
    for key in ("model", "hparams", "updates", "extra"):
        if key in raw_meta:
            meta[key] = metadata_json(raw_meta[key], key, p)
    configs = meta.get("updates")
    if not isinstance(configs, list):
        raise UpdateFileError(f"{p}: metadata has no 'updates' list; the file is corrupt or was not written by "
                              "easyedit-split")
    _check_metadata(meta, p)
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
        check_sites(bundle.updates, model, source=str(p))
        device = next(model.parameters()).device
        for u in bundle.updates:
            u.to(device)
    return bundle


def _check_metadata(meta: dict[str, Any], path: Path) -> None:
    """Types and ranges of the metadata, checked like hyperparameters (the saved ``hparams`` through the
    method's hyperparameter class's field types, coerced in place); an :class:`UpdateFileError` naming the
    file and the key otherwise."""
    from easyedit_split.base.hparams_io import HParamsError, coerce_value

    for key in ("model", "hparams", "extra"):
        if not isinstance(meta.get(key, {}), dict):
            raise UpdateFileError(f"{path}: metadata {key!r} must be an object, got {shown(meta.get(key))}")
    if not isinstance(meta.get("method", ""), str):
        raise UpdateFileError(f"{path}: metadata 'method' must be a string, got {shown(meta.get('method'))}")
    for key in ("hidden_size", "num_hidden_layers"):
        value = (meta.get("model") or {}).get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UpdateFileError(f"{path}: metadata model.{key} must be a whole number >= 1, got {shown(value)}")
    for i, cfg in enumerate(meta["updates"]):
        if not isinstance(cfg, dict):
            raise UpdateFileError(f"{path}: update {i}: metadata is a {type(cfg).__name__}, not an object")
        site = cfg.get("site")
        layer = site.get("layer") if isinstance(site, dict) else None
        if isinstance(site, dict) and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 0):
            raise UpdateFileError(f"{path}: update {i}: metadata site.layer must be a whole number >= 0 (layers count "
                                  f"from 0), got {shown(layer)}; the file is corrupt or was edited")
        kind = cfg.get("intervention_type", "addition")
        if kind not in INTERVENTION_TYPES or (kind != "addition" and cfg.get("form") != "vector"):
            raise UpdateFileError(f"{path}: update {i}: metadata intervention_type {shown(kind)} is not one of "
                                  f"{', '.join(INTERVENTION_TYPES)} for a {shown(cfg.get('form'))} update (clamping "
                                  "exists only for a vector); the file is corrupt or was edited")
        for key in ("d_in", "d_out"):
            value = cfg.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UpdateFileError(f"{path}: update {i}: metadata {key} must be a whole number >= 1, got "
                                      f"{shown(value)}")
    hparams = meta.get("hparams") or {}
    hints = _hparams_hints(meta.get("method") or "")
    for key, value in list(hparams.items()):
        if key in hints:
            try:
                hparams[key] = coerce_value(value, hints[key], f"{path}: metadata hparams.{key}")
            except HParamsError as exc:
                raise UpdateFileError(f"{exc}; the file is corrupt or was edited") from None
    if "layers" in hparams and any(layer < 0 for layer in hparams["layers"]):
        raise UpdateFileError(f"{path}: metadata hparams.layers has a negative layer {hparams['layers']}")


def _hparams_hints(method: str) -> dict[str, Any]:
    """Field types of the hyperparameter class of ``method`` (of every training class when unknown)."""
    import typing

    from easyedit_split.base.methods import METHOD_NAMES, UnknownMethodError, hparams_class

    try:
        classes = [hparams_class(method, "train")]
    except (UnknownMethodError, KeyError, ValueError):  # another method's file: every training class's types
        classes = [hparams_class(name, "train") for name in METHOD_NAMES]
    hints: dict[str, Any] = {}
    for cls in classes:
        hints.update(typing.get_type_hints(cls))
    return {k: v for k, v in hints.items() if not str(v).startswith("typing.ClassVar")}


def check_sites(updates: Sequence[Update], model: nn.Module, *, source: str) -> None:
    """Raise :class:`UpdateFileError` when an update's site is not in ``model`` (a layer out of range, a
    module it lacks) or has another shape than the update."""
    from easyedit_split.core.sites import SiteError, resolve_site

    for i, u in enumerate(updates):
        try:
            rs = resolve_site(model, u.site)
        except SiteError as exc:
            raise UpdateFileError(f"{source}: {_describe(i, u)} does not fit this model: {exc}") from None
        if rs.d_out != u.d_out or (u.delta_weight_is_nonzero and rs.d_in != u.d_in):
            raise UpdateFileError(f"{source}: {_describe(i, u)} is {u.d_in}→{u.d_out}, but that site of this model is "
                                  f"{rs.d_in}→{rs.d_out}")


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
