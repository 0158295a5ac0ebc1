"""EasyEdit's ``layer_{L}.pt`` layouts, both directions (files and memory), in one place.

EasyEdit's steering generators save one file per layer. The layouts this module reads and writes:

==================  ==============================================================  ===========
form                content                                                          site
==================  ==============================================================  ===========
vector              a tensor ``[d]`` (or ``[n_concepts, d]``; legacy ``{"proj.weight":  layer output
                    [1, d]}``) added as ``m·v`` to the decoder block's output         (residual)
LoRA                ``{"lora_A": [d_in, r], "lora_B": [r, d_out], "r", "alpha",       see below
                    "intervention_components", "concept_id"}``; ``Δh = m·x·(A·B)``
local weight        ``{"weight": [d_in, d_out], "bias": [d_out],                      see below
                    "intervention_components", "concept_id"}``; ``Δh = m·(x·W + b)``
==================  ==============================================================  ===========

LoRA and local weight read the activation named by ``intervention_components`` and add their
output to the block output. ``mlp_mid`` (the generators' default) is the MLP's intermediate
activation, i.e. the input of the down-projection, so the update is one of the ``mlp_down`` site —
exact wherever the down-projection writes straight into the residual stream (Llama, Qwen, Mistral,
GPT-2, GPT-NeoX; not Gemma-2/3, whose post-feed-forward norm sits in between, where our update on
the module itself is the well-defined one). Upstream's other components (``mlp``, ``attn``,
``block``: the MLP, attention or block *input*, added at the block output) are maps that no module
of the model computes, so they are refused with an error rather than approximated. Upstream's
``LoraIntervention`` records ``alpha`` but does not apply it (``Δh = x·A·B``); reading follows the
applier, writing folds our LoRA scale into ``lora_B`` and records ``alpha = r``.

Files this plugin writes carry where they act: a LoRA/local-weight dict names its site in
``intervention_components`` (``mlp_mid`` for ``mlp_down``, which EasyEdit's own applier reads;
``attn_out`` or ``module`` + ``module_path`` otherwise, which upstream's applier rejects instead of
misreading); a bare vector tensor cannot hold extra keys, so a vector anywhere but the layer output
gets a sidecar ``layer_{L}.pt.site.json`` written together with it (and a stale one is removed
when a residual vector replaces it). Reading honours both, so an ``attn_out`` vector never reloads
at the residual site.

A clamped vector (``intervention_type: clamping``) has no layout: EasyEdit's appliers would add it, so
writing one is refused (:func:`easyedit_layout_refusal`).

Everything is read with ``torch.load(weights_only=True)``; a NaN or infinite tensor is refused with
the file's name and the likely cause.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from easyedit_split.base.atomic_io import atomic_path
from easyedit_split.core.sites import Site, SiteError, canonical_component, resolve_site
from easyedit_split.core.updates import LocalWeightUpdate, LoRAUpdate, Update, VectorUpdate
from easyedit_split.errors import EasyEditSplitError, InputError, InputTypeError

logger = logging.getLogger(__name__)

__all__ = [
    "EASYEDIT_COMPONENTS",
    "SIDECAR_SUFFIX",
    "AdapterError",
    "easyedit_layout_refusal",
    "from_easyedit_state",
    "layer_from_filename",
    "read_easyedit_pt",
    "to_easyedit_state",
    "write_easyedit_pt",
]


class AdapterError(EasyEditSplitError, ValueError):
    """An external artefact cannot be expressed as an update."""


#: EasyEdit ``intervention_components`` (what a LoRA/local weight reads) → this package's site
#: component, or None where no module of the model computes that map (with what it reads).
EASYEDIT_COMPONENTS: dict[str, str | None] = {
    "mlp_mid": "mlp_down",
    "mlp_down": "mlp_down",
    "attn_out": "attn_out",
    "module": "module",
    "mlp": None,
    "attn": None,
    "block": None,
}
_UPSTREAM_INPUTS = {"mlp": "the MLP input", "attn": "the attention input", "block": "the decoder block input"}
#: what the generators use when a file does not say
DEFAULT_EASYEDIT_COMPONENT = "mlp_mid"
_WRITE_COMPONENT = {"mlp_down": "mlp_mid", "attn_out": "attn_out", "module": "module"}

SIDECAR_SUFFIX = ".site.json"
_SIDECAR_FORMAT = "easyedit_split.site/1"

# layer_{L}.pt (caa, vector_prompt, sae_feature, reps/sft/spilt), layer_{L}_merged_vector.pt
# (merge_vector), layer_{L}_{mode}_trim{t}.pt (sta)
_LAYER_NAME = re.compile(r"^layer_(\d+)(?:_merged_vector|_[a-z_]+_trim[0-9.eE+-]+)?\.pt$")

_NAN_HINT = (
    "EasyEdit writes such a vector when it averages over zero answer tokens — vector_prompt data "
    "without `input`/`output` fields, or caa rows with an empty answer; regenerate it from complete data"
)


def layer_from_filename(path: str | os.PathLike) -> int | None:
    """The layer an EasyEdit artefact's file name states, or None."""
    m = _LAYER_NAME.match(Path(path).name)
    return int(m.group(1)) if m else None


def sidecar_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


# ------------------------------------------------------------------------------------------ reading


def _check_finite(t: torch.Tensor, what: str, source: str) -> torch.Tensor:
    if not torch.is_floating_point(t):
        raise AdapterError(f"{source}: {what} has dtype {t.dtype}, expected a floating-point tensor")
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise AdapterError(f"{source}: {what} has {int(bad.sum())} NaN/infinite values of {t.numel()}. {_NAN_HINT}")
    return t.float()


def _tensor(state: Mapping[str, Any], key: str, source: str) -> torch.Tensor:
    t = state.get(key)
    if not isinstance(t, torch.Tensor):
        raise AdapterError(f"{source}: field {key!r} is missing or not a tensor (keys: {sorted(map(str, state))})")
    return _check_finite(t, key, source)


def _select_concept(state: Any, concept_id: int | None, source: str) -> Any:
    """One concept of a multi-concept artefact (``[n, d]`` vectors or ``{concept_id: dict}``)."""
    if isinstance(state, torch.Tensor) and state.dim() == 2 and state.shape[0] > 1:
        if concept_id is None:
            raise AdapterError(f"{source}: holds {state.shape[0]} concept vectors; pass concept_id= "
                               "(EasyEdit's apply hparam) to choose one")
        if not 0 <= concept_id < state.shape[0]:
            raise AdapterError(f"{source}: concept_id {concept_id} out of range 0..{state.shape[0] - 1}")
        return state[concept_id]
    if isinstance(state, Mapping) and state and all(isinstance(v, Mapping) for v in state.values()):
        if concept_id is None:
            if len(state) != 1:
                raise AdapterError(f"{source}: holds concepts {sorted(state)}; pass concept_id= to choose one")
            return next(iter(state.values()))
        if concept_id not in state:
            raise AdapterError(f"{source}: concept_id {concept_id} not in {sorted(state)}")
        return state[concept_id]
    return state


def _site_of_component(state: Mapping[str, Any], layer: int, component: str | None, source: str) -> Site:
    """The site a LoRA / local-weight state acts on: ``component`` (this package's vocabulary) if
    given, else the file's ``intervention_components`` (EasyEdit's vocabulary)."""
    if component is not None:
        comp = canonical_component(component)
        if comp == "residual":
            raise AdapterError(f"{source}: a LoRA/local weight cannot sit on the residual stream; use mlp_down or attn_out")
        return Site(layer, comp, module_path=state.get("module_path") if comp == "module" else None)
    name = str(state.get("intervention_components") or DEFAULT_EASYEDIT_COMPONENT)
    if name not in EASYEDIT_COMPONENTS:
        raise AdapterError(f"{source}: unknown intervention_components {name!r}; known: {sorted(EASYEDIT_COMPONENTS)}")
    comp = EASYEDIT_COMPONENTS[name]
    if comp is None:
        raise AdapterError(
            f"{source}: intervention_components {name!r} reads {_UPSTREAM_INPUTS[name]} and adds its output at "
            "the block output; no module of the model computes that map, so it is not an update (ΔW, Δb) of "
            "one affine map. Steer it with EasyEdit's own applier, or train it on mlp_mid."
        )
    if comp == "module":
        if not state.get("module_path"):
            raise AdapterError(f"{source}: intervention_components 'module' without module_path")
        return Site(layer, "module", module_path=str(state["module_path"]))
    return Site(layer, comp)


def _vector(t: torch.Tensor, model: nn.Module, site: Site, source: str) -> VectorUpdate:
    t = _check_finite(t, "the steering vector", source)
    if t.dim() == 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 1:
        raise AdapterError(f"{source}: a steering vector must be [d] or [1, d], got {tuple(t.shape)}")
    rs = _resolve(model, site, source)
    if t.numel() != rs.d_out:
        raise AdapterError(f"{source}: vector has {t.numel()} elements but {rs.module_path} outputs {rs.d_out}")
    return VectorUpdate(site, rs.d_out, vector=t)


def _resolve(model: nn.Module, site: Site, source: str):
    try:
        return resolve_site(model, site)
    except SiteError as exc:
        raise AdapterError(f"{source}: {exc}") from exc


def from_easyedit_state(state: Any, model: nn.Module, layer: int, form: str | None = None,
                        component: str | None = None, *, source: str | None = None,
                        vector_site: Site | None = None, concept_id: int | None = None) -> Update:
    """An :class:`Update` from one layer's EasyEdit state (a ``generate_*`` dict value, or a file's content).

    ``component`` (this package's names) overrides where a LoRA/local weight acts, or moves a
    vector off the layer output; ``vector_site`` is where a bare vector acts (default: the layer
    output). ``form`` is accepted for EasyEdit's call signature; the layout decides the form.
    """
    del form
    src = source or f"layer_{layer}"
    if isinstance(state, Update):
        return state
    state = _select_concept(state, concept_id, src)
    if isinstance(state, torch.Tensor):
        site = Site(layer, component) if component is not None else (vector_site or Site(layer, "residual"))
        return _vector(state, model, site, src)
    if not isinstance(state, Mapping):
        raise AdapterError(f"{src}: unexpected content of type {type(state).__name__}")
    if "proj.weight" in state:
        bias = state.get("proj.bias")
        if isinstance(bias, torch.Tensor) and bool(bias.abs().max() > 0):
            logger.warning("%s: proj.bias=%s is a constant offset upstream adds unscaled; it is not part of m·Δb "
                           "and is ignored", src, bias.tolist())
        site = Site(layer, component) if component is not None else (vector_site or Site(layer, "residual"))
        return _vector(state["proj.weight"], model, site, src)
    if "lora_A" in state or "lora_B" in state:
        A_ee, B_ee = _tensor(state, "lora_A", src), _tensor(state, "lora_B", src)  # [d_in, r], [r, d_out]
        site = _site_of_component(state, layer, component, src)
        rs = _resolve(model, site, src)
        if A_ee.dim() != 2 or B_ee.dim() != 2 or A_ee.shape[1] != B_ee.shape[0]:
            raise AdapterError(f"{src}: lora_A {tuple(A_ee.shape)} and lora_B {tuple(B_ee.shape)} are not [d_in, r], [r, d_out]")
        if A_ee.shape[0] != rs.d_in or B_ee.shape[1] != rs.d_out:
            raise AdapterError(f"{src}: LoRA is [{A_ee.shape[0]} -> {B_ee.shape[1]}] but {rs.module_path} is "
                               f"[{rs.d_in} -> {rs.d_out}]")
        return LoRAUpdate(site, rs.d_in, rs.d_out, rank=A_ee.shape[1], scale=1.0,
                          A=A_ee.t().contiguous(), B=B_ee.t().contiguous())
    if "weight" in state:
        W_ee = _tensor(state, "weight", src)  # [d_in, d_out]
        b = _tensor(state, "bias", src) if state.get("bias") is not None else None
        site = _site_of_component(state, layer, component, src)
        rs = _resolve(model, site, src)
        if tuple(W_ee.shape) != (rs.d_in, rs.d_out):
            raise AdapterError(f"{src}: weight is {tuple(W_ee.shape)} but {rs.module_path} needs [d_in, d_out] = "
                               f"[{rs.d_in}, {rs.d_out}]")
        return LocalWeightUpdate(site, rs.d_in, rs.d_out, weight=W_ee.t().contiguous(), bias=b)
    raise AdapterError(f"{src}: keys {sorted(map(str, state))} match no EasyEdit layout "
                       "(a tensor | proj.weight | lora_A/lora_B | weight/bias)")


def _read_sidecar(path: Path) -> Site | None:
    side = sidecar_path(path)
    if not side.exists():
        return None
    try:
        info = json.loads(side.read_text(encoding="utf-8"))
        if info.get("format") != _SIDECAR_FORMAT:
            raise InputError(f"format {info.get('format')!r}, expected {_SIDECAR_FORMAT!r}")
        return Site.from_dict(info["site"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AdapterError(f"{side}: not a readable site record ({exc})") from exc


def load_pt(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` with the file named in any error."""
    p = Path(path)
    if not p.exists():
        raise AdapterError(f"EasyEdit artefact {p} does not exist")
    if p.is_dir():
        raise AdapterError(f"EasyEdit artefact {p} is a folder, not a .pt file")
    with open(p, "rb") as fh:
        head = fh.read(16)
    if not head:
        raise AdapterError(f"{p} is empty (0 bytes): an interrupted or failed write; re-create it")
    if is_safetensors_header(head):
        raise AdapterError(f"{p} is a safetensors file named .pt; rename it to {p.with_suffix('.safetensors').name} "
                           "(it is then read as one)")
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for files it cannot read
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc):  # torch's advice (weights_only=False) would run code from the file
            reason = "it holds objects other than tensors and plain values, which are not unpickled"
        raise AdapterError(f"{p} is not a readable EasyEdit .pt artefact ({reason}); give a layer_N.pt written by "
                           "EasyEdit or easyedit-split") from None


def is_safetensors_header(head: bytes) -> bool:
    """Whether the first bytes of a file look like safetensors (an 8-byte header length, then ``{``)."""
    return len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 100_000_000


def read_easyedit_pt(path: str | os.PathLike, model: nn.Module, *, layer: int | None = None,
                     component: str | None = None, concept_id: int | None = None) -> Update:
    """An EasyEdit per-layer artefact as an update; the layer comes from the file name
    (``layer_{L}.pt``, ``layer_{L}_merged_vector.pt``, ``layer_{L}_{mode}_trim{t}.pt``) unless given."""
    p = Path(path)
    obj = load_pt(p)
    if layer is None:
        layer = layer_from_filename(p)
        if layer is None:
            raise AdapterError(f"cannot infer the layer from the file name {p.name!r}; pass layer=")
    vector_site = _read_sidecar(p)
    if vector_site is not None and vector_site.layer != layer:
        vector_site = Site(layer, vector_site.component, vector_site.module_path)
    return from_easyedit_state(obj, model, layer, component=component, source=str(p), vector_site=vector_site,
                               concept_id=concept_id)


# ------------------------------------------------------------------------------------------ writing


def easyedit_layout_refusal(update: Update) -> str | None:
    """Why ``update`` has no EasyEdit ``layer_{L}.pt`` (None when it has one): EasyEdit's appliers only add
    (a bare vector tensor is applied as ``h + m·v``), so a clamped vector written there would be applied as
    an added one, silently another intervention."""
    if update.intervention_type != "addition":
        return (f"a {update.intervention_type} vector at {update.site} has no EasyEdit layer_{{L}}.pt: EasyEdit's "
                "appliers only add vectors (h + m·v) and would apply it as an addition. Keep the .safetensors "
                "(the plugin's apply, generate and sweep read it)")
    return None


def to_easyedit_state(update: Update) -> torch.Tensor | dict[str, Any]:
    """EasyEdit's ``layer_{L}.pt`` content for an update (tensors, ints and strings only).

    A vector is a bare tensor (its site, if not the layer output, goes in the sidecar that
    :func:`write_easyedit_pt` writes); LoRA and local weight carry the keys EasyEdit's own
    reps/sft/spilt appliers read (``r``, ``alpha``, ``intervention_components``, ``concept_id``).
    """
    reason = easyedit_layout_refusal(update)
    if reason is not None:
        raise AdapterError(reason)
    if isinstance(update, VectorUpdate):
        return update.vector.detach().float().cpu().clone()
    if not isinstance(update, (LoRAUpdate, LocalWeightUpdate)):
        raise InputTypeError(f"no EasyEdit layout for {type(update).__name__}")
    comp = update.site.component
    if comp not in _WRITE_COMPONENT:
        raise AdapterError(f"a {update.form} update at {update.site} has no EasyEdit layout (LoRA/local weight act on a module)")
    where: dict[str, Any] = {"intervention_components": _WRITE_COMPONENT[comp], "concept_id": 0}
    if comp == "module":
        where["module_path"] = update.site.module_path
    if isinstance(update, LoRAUpdate):
        return {"lora_A": update.A.detach().float().t().contiguous().cpu(),
                "lora_B": (update.B.detach().float() * update.scale).t().contiguous().cpu(),
                "r": update.rank, "alpha": update.rank, **where}
    return {"weight": update.weight.detach().float().t().contiguous().cpu(),
            "bias": update.bias.detach().float().cpu().clone(), **where}


def write_easyedit_pt(path: str | os.PathLike, update: Update) -> Path:
    """Write ``update`` as an EasyEdit ``layer_{L}.pt`` (atomically), plus the sidecar site record a
    vector off the layer output needs; a stale sidecar is removed when a residual vector replaces it."""
    dest = Path(path)
    state = to_easyedit_state(update)
    side = sidecar_path(dest)
    needs_sidecar = isinstance(update, VectorUpdate) and update.site.component != "residual"
    with contextlib.ExitStack() as stack:
        tmp_pt = stack.enter_context(atomic_path(dest, suffix=".pt"))
        buffer = io.BytesIO()  # torch.save reports a failed file write as a bare RuntimeError
        torch.save(state, buffer)
        tmp_pt.write_bytes(buffer.getvalue())
        if needs_sidecar:
            tmp_side = stack.enter_context(atomic_path(side))
            record = {"format": _SIDECAR_FORMAT, "site": update.site.to_dict(), "form": update.form,
                      "note": "written by easyedit-split: this vector acts at this site, not at the layer output"}
            tmp_side.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if not needs_sidecar:
        with contextlib.suppress(FileNotFoundError):
            side.unlink()
    return dest
