"""What is this artefact? The one place that turns anything an update can come from into updates.

:func:`load_artefact` dispatches on what ``spec`` is and opens a file once:

* ``Update`` / list of updates / :class:`~easyedit_split.core.serialization.UpdateBundle` /
  :class:`LoadedUpdates` — as is;
* ``diffmean@L`` (or ``diffmean@L:component``) — a DiffMean vector computed from ``train_pairs``
  (:func:`~easyedit_split.training.diffmean.diffmean_update`, rendered with the shipped
  ``diffmean.yaml``'s settings, which are recorded in ``info["hparams"]``);
* ``*.safetensors`` in this package's format — :func:`~easyedit_split.core.serialization.load_updates`
  (trained updates, saved DiffMean vectors); any other ``*.safetensors`` file is read as edited
  weights (a knowledge edit, ``ΔW = W_edited − W_base``);
* ``*.pt`` — an EasyEdit ``layer_{L}.pt`` intervention (:func:`~easyedit_split.adapters.builders.from_easyedit_pt`);
* a folder with ``adapter_config.json`` — a peft LoRA adapter; with ``layer_*.pt`` files — EasyEdit
  interventions (all of them); with ``*.safetensors`` — an edited checkpoint;
* an ``nn.Module`` — a live ``PeftModel`` or an edited model.

:meth:`LoadedUpdates.rendering` gives the prompt rendering (chat template, system prompt) recorded
with the updates, so that they are evaluated on prompts rendered as they were trained.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from easyedit_split.adapters import builders
from easyedit_split.base.safe_text import shown
from easyedit_split.core.serialization import (
    FORMAT_NAME,
    UpdateBundle,
    check_updates_finite,
    check_updates_nonzero,
    load_updates,
    metadata_json,
    read_metadata,
)
from easyedit_split.core.updates import Update
from easyedit_split.errors import EasyEditSplitError, InputTypeError

logger = logging.getLogger(__name__)

__all__ = ["ArtefactError", "LoadedUpdates", "MissingArtefactError", "check_spec", "is_diffmean_spec", "is_pt_spec", "load_artefact",
           "recorded_training_pairs"]

_DIFFMEAN_SPEC = re.compile(r"^diffmean@(\d+)(?::(\w+))?$")


class ArtefactError(EasyEditSplitError, ValueError):
    """An artefact cannot be recognised or turned into updates."""


class MissingArtefactError(ArtefactError, FileNotFoundError):
    """An update path does not exist (also a ``FileNotFoundError``, as before)."""


@dataclass
class LoadedUpdates:
    """Updates with where they came from: ``kind`` is easyedit-split | diffmean | easyedit-pt | peft |
    edited-weights | in-memory; ``info`` holds the saved ``hparams`` and ``extra`` when there are any."""

    updates: list[Update]
    kind: str
    method: str = "unknown"
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):
        return iter(self.updates)

    def __len__(self) -> int:
        return len(self.updates)

    def rendering(self) -> dict[str, Any]:
        """``chat_template`` / ``system_prompt`` / ``prompt_rule`` / ``answer_instruction`` recorded in the saved hparams
        (empty when none)."""
        hp = self.info.get("hparams") or {}
        out: dict[str, Any] = {}
        if "use_chat_template" in hp:
            out["chat_template"] = hp["use_chat_template"]
        if "system_prompt" in hp:
            out["system_prompt"] = hp["system_prompt"]
        if hp.get("prompt_rule"):
            out["prompt_rule"] = hp["prompt_rule"]
        if hp.get("answer_instruction"):
            out["answer_instruction"] = hp["answer_instruction"]
        return out


def is_diffmean_spec(spec: Any) -> bool:
    """True for the string ``diffmean@L`` / ``diffmean@L:component``."""
    return isinstance(spec, str) and _DIFFMEAN_SPEC.match(spec.strip()) is not None


def is_pt_spec(spec: Any) -> bool:
    """True for a path ending in ``.pt`` (an EasyEdit artefact, whose layer ``--layer`` may give)."""
    return isinstance(spec, (str, os.PathLike)) and Path(spec).suffix.lower() == ".pt"


def check_spec(spec: Any, *, what: str = "update") -> None:
    """Check, before any model is loaded, that a string or path ``spec`` names something :func:`load_artefact`
    can read: a well-formed ``diffmean@LAYER[:component]``, or a path that exists (a file or a folder).
    Raises :class:`ArtefactError` saying what is wrong; objects are left to :func:`load_artefact`."""
    if not isinstance(spec, (str, os.PathLike)):
        return
    text = os.fspath(spec)
    if isinstance(spec, str) and text.strip().lower().startswith("diffmean@"):
        if not is_diffmean_spec(text):
            raise ArtefactError(f"{what}: {shown(text)} is not diffmean@LAYER or diffmean@LAYER:component (LAYER a whole "
                                "number >= 0, e.g. diffmean@3 or diffmean@3:attn_out)")
        return
    p = Path(text)
    try:
        p.stat()
    except FileNotFoundError:
        raise MissingArtefactError(f"{what}: update path {p} does not exist") from None
    except OSError as exc:  # a symlink loop, a name too long, no permission
        raise ArtefactError(f"{what}: update path {p} cannot be read ({exc.strerror or exc})") from None
    if p.is_file() and p.suffix.lower() not in (".safetensors", ".pt"):
        raise ArtefactError(f"{what}: {p} has the unknown update file type {p.suffix!r}; give a .safetensors or .pt "
                            "file, a peft adapter folder, an EasyEdit folder of layer_N.pt files or an edited checkpoint")


def _json_field(meta: Mapping[str, str], key: str, path: Path) -> dict[str, Any]:
    value = metadata_json(meta.get(key) or "{}", key, path)
    return value if isinstance(value, dict) else {}


def _training_digests(hparams: Mapping[str, Any], extra: Mapping[str, Any], source: str) -> set[str] | None:
    """The recorded digests of the training pairs; for files saved without them, the pairs re-selected
    from the recorded ``steer_train_dataset`` / ``test_size`` / ``seed`` / ``max_num_of_examples``."""
    digests = extra.get("train_pair_digests")
    if isinstance(digests, list):
        return {str(d) for d in digests}
    dataset = hparams.get("steer_train_dataset")
    if not dataset:
        logger.warning("%s records neither its training pairs nor its training dataset: held-out pairs cannot be "
                       "checked against them", source)
        return None
    from easyedit_split.data.pairs import load_pairs, pair_digests
    from easyedit_split.training.trainer import select_pairs

    try:
        pairs = load_pairs(dataset)
    except (EasyEditSplitError, OSError) as exc:
        logger.warning("%s: its training data %r cannot be read (%s): held-out pairs cannot be checked against "
                       "its training pairs", source, dataset, exc)
        return None
    split = SimpleNamespace(test_size=hparams.get("test_size"), seed=int(hparams.get("seed") or 0),
                            max_num_of_examples=hparams.get("max_num_of_examples"))
    return set(pair_digests(select_pairs(split, pairs)))


def recorded_training_pairs(spec: Any) -> set[str] | None:
    """Digests (:func:`~easyedit_split.data.pairs.pair_digests`) of the pairs an artefact was trained on,
    read from its metadata without loading its tensors; None when it records nothing usable (external
    formats, ``diffmean@L``, in-memory updates). An EasyEdit ``.pt`` is read through the ``.safetensors``
    written with it; a folder through its ``layer_*.safetensors`` files."""
    if isinstance(spec, LoadedUpdates):
        if spec.kind != "easyedit-split":
            return None
        return _training_digests(spec.info.get("hparams") or {}, spec.info.get("extra") or {}, spec.source or "update")
    if isinstance(spec, UpdateBundle):
        return _training_digests(spec.hparams or {}, spec.extra or {}, "update bundle")
    if not isinstance(spec, (str, os.PathLike)) or is_diffmean_spec(spec):
        return None
    p = Path(spec)
    if p.is_dir():
        files = sorted(p.glob("layer_*.safetensors"))
    else:
        files = [p.with_suffix(".safetensors")] if p.suffix.lower() in (".pt", ".safetensors") else []
    found: set[str] | None = None
    for f in files:
        if not f.is_file():
            continue
        meta = read_metadata(f)
        if meta.get("format") != FORMAT_NAME:
            continue
        extra = _json_field(meta, "extra", f)
        if p.suffix.lower() == ".pt" and (extra.get("easyedit_pt") or {}).get("file") != p.name:
            continue  # a .safetensors not written together with this .pt
        digests = _training_digests(_json_field(meta, "hparams", f), extra, str(f))
        if digests is not None:
            found = (found or set()) | digests
    return found


def _on(updates: Sequence[Update], device: torch.device) -> list[Update]:
    return [u.to(device) for u in updates]


def _diffmean(spec: str, model: nn.Module, tokenizer: Any, train_pairs: Sequence | None,
              module_path: str | None) -> LoadedUpdates:
    from easyedit_split.training.diffmean import default_diffmean_hparams, diffmean_update

    m = _DIFFMEAN_SPEC.match(spec.strip())
    assert m is not None
    if not train_pairs:
        raise ArtefactError(f"{spec}: building a DiffMean vector needs training pairs")
    if tokenizer is None:
        raise ArtefactError(f"{spec}: building a DiffMean vector needs the tokenizer")
    hp = default_diffmean_hparams(int(m.group(1)), m.group(2), module_path)
    update = diffmean_update(model, tokenizer, train_pairs, hp)
    return LoadedUpdates([update], "diffmean", "diffmean", spec,
                         {"hparams": hp.to_dict(), "extra": {"n_train_pairs": len(train_pairs)}})


def load_artefact(
    spec: Any,
    model: nn.Module,
    *,
    layer: int | None = None,
    tokenizer: Any = None,
    train_pairs: Sequence | None = None,
    module_path: str | None = None,
    steer_values: Sequence[float] | None = None,
) -> LoadedUpdates:
    """Updates from any supported artefact (see the module doc), on ``model``'s device.

    ``layer`` is for a ``.pt`` file not named ``layer_N.pt``; ``tokenizer``, ``train_pairs`` and
    ``module_path`` (the module the vector is read from and sits on) are for ``diffmean@L``;
    ``steer_values`` (EasyEdit's apply-time values, one per steer) for an lm_steer checkpoint.

    Whatever the source, updates with NaN/inf values or that are all zero are refused
    (:class:`~easyedit_split.core.serialization.UpdateFileError` naming the source).
    """
    loaded = _load(spec, model, layer=layer, tokenizer=tokenizer, train_pairs=train_pairs, module_path=module_path,
                   steer_values=steer_values)
    where = loaded.source or f"the given {loaded.kind} update"
    check_updates_finite(loaded.updates, where)
    check_updates_nonzero(loaded.updates, where)
    return loaded


def _load(spec: Any, model: nn.Module, *, layer: int | None, tokenizer: Any, train_pairs: Sequence | None,
          module_path: str | None, steer_values: Sequence[float] | None = None) -> LoadedUpdates:
    if isinstance(spec, LoadedUpdates):
        return spec
    if isinstance(spec, Update):
        return LoadedUpdates([spec], "in-memory")
    if isinstance(spec, UpdateBundle):
        return LoadedUpdates(list(spec.updates), "easyedit-split", spec.method,
                             info={"hparams": spec.hparams, "extra": spec.extra})
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(u, Update) for u in spec):
        return LoadedUpdates(list(spec), "in-memory")
    if isinstance(spec, nn.Module):
        if any(hasattr(mod, "lora_A") for mod in spec.modules()):
            return LoadedUpdates(builders.from_peft(spec, model), "peft", "lora")
        return LoadedUpdates(builders.from_edited_weights(model, spec), "edited-weights", "edit")
    if is_diffmean_spec(spec):
        return _diffmean(spec, model, tokenizer, train_pairs, module_path)
    if not isinstance(spec, (str, os.PathLike)):
        raise InputTypeError(f"cannot load updates from {shown(spec)} (a {type(spec).__name__}): give a path, diffmean@LAYER "
                             "or loaded updates")
    check_spec(spec)
    p = Path(spec)
    device = next(model.parameters()).device
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".safetensors":
            meta = read_metadata(p)
            if "trainer_state" in meta:
                raise ArtefactError(f"{p} is a training checkpoint, not an update; give the trained "
                                    "layer_N.safetensors (or resume training from the checkpoint with --resume)")
            if meta.get("format") == FORMAT_NAME:
                bundle = load_updates(p, model)
                return LoadedUpdates(list(bundle.updates), "easyedit-split", bundle.method, str(p),
                                     {"hparams": bundle.hparams, "extra": bundle.extra})
            return LoadedUpdates(_on(builders.from_edited_weights(model, p), device), "edited-weights", "edit", str(p))
        if suffix == ".pt":
            u = builders.from_easyedit_pt(p, model, layer=layer, steer_values=steer_values)
            return LoadedUpdates(_on([u], device), "easyedit-pt", u.form, str(p))
        raise ArtefactError(f"{p}: unknown update file type {suffix!r} (expected .safetensors or .pt, or a folder)")
    if (p / "adapter_config.json").exists():
        return LoadedUpdates(_on(builders.from_peft(p, model), device), "peft", "lora", str(p))
    pts = sorted(p.glob("layer_*.pt"))
    if pts:
        ups = [builders.from_easyedit_pt(f, model, steer_values=steer_values) for f in pts]
        return LoadedUpdates(_on(ups, device), "easyedit-pt", ups[0].form, str(p))
    if list(p.glob("*.safetensors")):
        return LoadedUpdates(_on(builders.from_edited_weights(model, p), device), "edited-weights", "edit", str(p))
    raise ArtefactError(f"{p}: folder holds no adapter_config.json, layer_*.pt or *.safetensors")
