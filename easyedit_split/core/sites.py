"""Where an update can sit: a declarative table from architecture to module paths, and structure
for the rest.

A *site* is an abstract location — the residual stream at a decoder layer's output, the MLP
down-projection, or the attention output projection — that :func:`resolve_site` turns into a
concrete module of a concrete model. Known architectures differ only in the rows of
:data:`ARCHITECTURES`; an architecture without a row (or a row whose path is missing) is read by
conventional module names and shapes (:mod:`easyedit_split.core.structure`), and :func:`describe_model`
says which parts were found that way. No code path checks a model name.

Any module of any model can be addressed by an explicit path
(``Site(layer=..., component="module", module_path="model.layers.3.mlp.down_proj")``; a
``{layer}`` in the path is replaced by the layer, so one template serves several layers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from easyedit_split.core.structure import (
    find_final_norm,
    find_layer_lists,
    find_layer_parts,
    linear_shape,
    post_mlp_norm_reason,
)
from easyedit_split.errors import EasyEditSplitError

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHITECTURES",
    "COMPONENT_ALIASES",
    "ArchSpec",
    "LayerSites",
    "ResolvedSite",
    "Site",
    "SiteError",
    "arch_spec",
    "canonical_component",
    "decoder_layers",
    "describe_model",
    "describe_sites",
    "final_norm",
    "hidden_size",
    "layer_sites",
    "model_type",
    "residual_writer",
    "resolve_site",
    "site_for_module_path",
]

MODULE_PATH_HINT = (
    "name the module explicitly: Site(layer, component='module', module_path=...) in Python, the hparams key "
    "intervention_module_path, or --module-path on the command line ('{layer}' in the path stands for the layer; "
    "`easyedit-split info --model ...` lists the resolved sites)"
)


class SiteError(EasyEditSplitError, ValueError):
    """A site cannot be resolved on this model."""


@dataclass(frozen=True)
class ArchSpec:
    """Module paths of one architecture family.

    ``layers`` / ``final_norm`` candidates are tried in order (multimodal wrappers nest the
    language model); ``mlp_down`` / ``attn_out`` / ``residual_writer`` are relative to one decoder
    layer. ``residual_writer`` is the module whose output is added *directly* to the residual
    stream at the layer output — a residual-stream vector folds exactly into its bias. ``None``
    means a norm (``post_mlp_norm``) sits in between, so no exact fold exists.
    """

    layers: tuple[str, ...]
    final_norm: tuple[str, ...]
    mlp_down: str
    attn_out: str
    residual_writer: str | None
    post_mlp_norm: str | None = None


_LLAMA_LIKE = ArchSpec(
    layers=("model.layers", "model.language_model.layers", "language_model.model.layers"),
    final_norm=("model.norm", "model.language_model.norm", "language_model.model.norm"),
    mlp_down="mlp.down_proj",
    attn_out="self_attn.o_proj",
    residual_writer="mlp.down_proj",
)
_GEMMA_POSTNORM = ArchSpec(
    layers=_LLAMA_LIKE.layers,
    final_norm=_LLAMA_LIKE.final_norm,
    mlp_down="mlp.down_proj",
    attn_out="self_attn.o_proj",
    residual_writer=None,
    post_mlp_norm="post_feedforward_layernorm",
)

#: model_type (``config.model_type``) → module paths.
ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "olmo": _LLAMA_LIKE,
    "gemma2": _GEMMA_POSTNORM,
    "gemma3": _GEMMA_POSTNORM,
    "gemma3_text": _GEMMA_POSTNORM,
    "gpt2": ArchSpec(
        layers=("transformer.h",),
        final_norm=("transformer.ln_f",),
        mlp_down="mlp.c_proj",
        attn_out="attn.c_proj",
        residual_writer="mlp.c_proj",
    ),
    "gpt_neox": ArchSpec(
        layers=("gpt_neox.layers",),
        final_norm=("gpt_neox.final_layer_norm",),
        mlp_down="mlp.dense_4h_to_h",
        attn_out="attention.dense",
        residual_writer="mlp.dense_4h_to_h",
    ),
}

#: user-facing component names (EasyEdit's included) → canonical name.
COMPONENT_ALIASES: dict[str, str] = {
    "residual": "residual",
    "block": "residual",
    "block_output": "residual",
    "resid_post": "residual",
    "layer_output": "residual",
    "mlp_down": "mlp_down",
    "mlp_mid": "mlp_down",
    "mlp": "mlp_down",
    "down_proj": "mlp_down",
    "attn_out": "attn_out",
    "attn": "attn_out",
    "attention": "attn_out",
    "o_proj": "attn_out",
    "module": "module",
}

#: the parts of one decoder layer a site or a merge can name.
LAYER_PARTS = ("mlp_down", "attn_out", "residual_writer")


def canonical_component(name: str) -> str:
    key = str(name).strip().lower()
    if key not in COMPONENT_ALIASES:
        raise SiteError(
            f"unknown site component {name!r}; use one of {sorted(set(COMPONENT_ALIASES))} "
            "or component='module' with an explicit module_path"
        )
    return COMPONENT_ALIASES[key]


@dataclass(frozen=True)
class Site:
    """An abstract intervention point: ``component`` of decoder layer ``layer``.

    ``component="module"`` with ``module_path`` names any ``nn.Linear``/``Conv1D`` (or, for a
    residual-style vector, any module whose first output is the hidden state) of any model;
    ``{layer}`` in ``module_path`` is replaced by ``layer``. A ``module_path`` given with another
    component makes the site a module site.
    """

    layer: int
    component: str = "residual"
    module_path: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.layer, bool) or int(self.layer) != self.layer or self.layer < 0:
            raise SiteError(f"layer {self.layer!r}: layers count from 0 (a negative layer would name a different "
                            "layer on a model of another depth)")
        object.__setattr__(self, "layer", int(self.layer))
        if self.module_path:
            object.__setattr__(self, "module_path", str(self.module_path).replace("{layer}", str(self.layer)))
            object.__setattr__(self, "component", "module")
        else:
            object.__setattr__(self, "module_path", None)
        object.__setattr__(self, "component", canonical_component(self.component))
        if self.component == "module" and not self.module_path:
            raise SiteError("Site(component='module') needs module_path, e.g. 'model.layers.3.mlp.down_proj'")

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "component": self.component, "module_path": self.module_path}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Site:
        return cls(layer=int(d["layer"]), component=d.get("component", "residual"), module_path=d.get("module_path"))

    def __str__(self) -> str:
        if self.component == "module":
            return f"layer {self.layer} {self.module_path}"
        return f"layer {self.layer} {self.component}"


@dataclass
class ResolvedSite:
    """A site bound to a model: the module to hook and the shape of its affine map."""

    site: Site
    module: nn.Module
    module_path: str
    kind: str  # "linear" | "conv1d" | "block"
    d_in: int
    d_out: int

    @property
    def weight_param(self) -> nn.Parameter | None:
        return getattr(self.module, "weight", None) if self.kind in ("linear", "conv1d") else None


@dataclass(frozen=True)
class LayerSites:
    """The parts of one decoder layer: absolute module paths, why a part is absent, and which
    parts were found by structure rather than by the table."""

    layer: int
    path: str
    mlp_down: str | None
    attn_out: str | None
    residual_writer: str | None
    missing: dict[str, str] = field(default_factory=dict)
    inferred: tuple[str, ...] = ()

    def get(self, part: str) -> str | None:
        return getattr(self, part)


def _config_value(model: nn.Module, *keys: str) -> Any:
    config = getattr(model, "config", None)
    for cfg in (config, getattr(config, "text_config", None)):
        for key in keys:
            value = getattr(cfg, key, None)
            if value is not None:
                return value
    return None


def model_type(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    mt = getattr(config, "model_type", None)
    text_config = getattr(config, "text_config", None)
    if mt not in ARCHITECTURES and text_config is not None:
        mt = getattr(text_config, "model_type", mt)
    return str(mt) if mt is not None else "unknown"


def arch_spec(model: nn.Module) -> ArchSpec | None:
    return ARCHITECTURES.get(model_type(model))


def _get(root: nn.Module, path: str) -> nn.Module | None:
    """``root.get_submodule(path)``, seeing through transparent wrapper modules.

    A host framework may wrap a model's modules in place (EasyEdit wraps each decoder layer as
    ``BlockOutputWrapper(block=...)`` and its MLP as ``MLPWrapper(mlp=...)``, so ``layers.3.mlp.down_proj``
    lives at ``layers.3.block.mlp.mlp.down_proj``). Where a path segment is not an attribute of the
    current module, the one child module that has it is stepped into.
    """
    try:
        return root.get_submodule(path)
    except AttributeError:
        pass
    mod: nn.Module = root
    for name in path.split(".") if path else []:
        child = getattr(mod, name, None)
        while not isinstance(child, nn.Module):
            holders = [c for c in mod.children() if isinstance(getattr(c, name, None), nn.Module)]
            if len(holders) != 1:
                return None
            mod = holders[0]
            child = getattr(mod, name)
        mod = child
    return mod


def hidden_size(model: nn.Module) -> int:
    value = _config_value(model, "hidden_size", "n_embd", "d_model")
    if not isinstance(value, int):
        raise SiteError(f"cannot read the hidden size from the config of {type(model).__name__}")
    return value


def _layers_with_origin(model: nn.Module) -> tuple[str, nn.ModuleList, bool]:
    """``(path, layers, inferred)``: the table's path where it exists, else found by structure."""
    spec = arch_spec(model)
    for path in spec.layers if spec is not None else ():
        mod = _get(model, path)
        if isinstance(mod, nn.ModuleList):
            return path, mod, False
    n_layers = _config_value(model, "num_hidden_layers", "n_layer", "num_layers")
    found = find_layer_lists(model, n_layers if isinstance(n_layers, int) else None)
    if not found:
        raise SiteError(
            f"cannot find the decoder layers of a {type(model).__name__} (model_type {model_type(model)!r}): "
            f"no nn.ModuleList of identical blocks; {MODULE_PATH_HINT}"
        )
    return found[0][0], found[0][1], True


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The path and ModuleList of the decoder layers."""
    path, layers, _ = _layers_with_origin(model)
    return path, layers


def _final_norm_with_origin(model: nn.Module) -> tuple[str | None, bool]:
    spec = arch_spec(model)
    for path in spec.final_norm if spec is not None else ():
        if _get(model, path) is not None:
            return path, False
    layers_path, _ = decoder_layers(model)
    return find_final_norm(model, layers_path), True


def final_norm(model: nn.Module) -> nn.Module | None:
    """The norm applied after the last decoder layer (None when the model has none)."""
    path, _ = _final_norm_with_origin(model)
    return None if path is None else _get(model, path)


def _layer_index(layers: nn.ModuleList, layer: int) -> int:
    if not 0 <= layer < len(layers):
        raise SiteError(f"layer {layer} is out of range: this model has {len(layers)} layers (0..{len(layers) - 1})")
    return layer


def layer_sites(model: nn.Module, layer: int) -> LayerSites:
    """The MLP down-projection, attention output projection and residual writer of ``layer``."""
    layers_path, layers = decoder_layers(model)
    idx = _layer_index(layers, layer)
    block = layers[idx]
    spec = arch_spec(model)
    structural = None
    paths: dict[str, str | None] = {}
    missing: dict[str, str] = {}
    inferred: list[str] = []
    for part in LAYER_PARTS:
        rel = getattr(spec, part) if spec is not None else None
        if rel is not None and _get(block, rel) is not None:
            paths[part] = rel
            continue
        if spec is not None and part == "residual_writer" and rel is None and spec.post_mlp_norm is not None:
            paths[part] = None
            missing[part] = post_mlp_norm_reason(spec.post_mlp_norm)
            continue
        if structural is None:
            structural = find_layer_parts(block, hidden_size(model), _config_value(model, "residual_multiplier"))
        paths[part] = getattr(structural, part)
        if paths[part] is None:
            missing[part] = structural.missing[part]
        else:
            inferred.append(part)
    prefix = f"{layers_path}.{idx}"
    return LayerSites(
        layer=idx, path=prefix, missing=missing, inferred=tuple(inferred),
        **{part: None if rel is None else f"{prefix}.{rel}" for part, rel in paths.items()},
    )


def _bind(site: Site, module: nn.Module, path: str, model: nn.Module) -> ResolvedSite:
    shape = linear_shape(module)
    if shape is None:
        d = hidden_size(model)
        return ResolvedSite(site, module, path, "block", d, d)
    kind, d_in, d_out = shape
    return ResolvedSite(site, module, path, kind, d_in, d_out)


def _check_module_layer(model: nn.Module, site: Site, path: str) -> None:
    """A module path inside decoder layer k must belong to a site of layer k."""
    try:
        layers_path, layers = decoder_layers(model)
    except SiteError:
        return
    head, sep, rest = path.partition(layers_path + ".")
    idx = rest.split(".")[0]
    if head == "" and sep and idx.isdigit() and int(idx) != site.layer % len(layers):
        raise SiteError(
            f"module_path {path!r} is in decoder layer {idx} but the site is for layer {site.layer}; "
            "write '{layer}' in the path where the layer number goes (e.g. 'model.layers.{layer}.mlp.up_proj')"
        )


def resolve_site(model: nn.Module, site: Site) -> ResolvedSite:
    """Bind ``site`` to a module of ``model``."""
    if site.component == "module":
        path = site.module_path or ""
        module = _get(model, path)
        if module is None:
            raise SiteError(f"module path {path!r} does not exist in this {type(model).__name__}")
        _check_module_layer(model, site, path)
        return _bind(site, module, path, model)
    layers_path, layers = decoder_layers(model)
    idx = _layer_index(layers, site.layer)
    if site.component == "residual":
        d = hidden_size(model)
        return ResolvedSite(site, layers[idx], f"{layers_path}.{idx}", "block", d, d)
    parts = layer_sites(model, idx)
    path = parts.get(site.component)
    if path is None:
        raise SiteError(
            f"{site} cannot be resolved in this {model_type(model)} model ({parts.path}): "
            f"{parts.missing[site.component]}; {MODULE_PATH_HINT}"
        )
    return _bind(site, _get(model, path), path, model)


def residual_writer(model: nn.Module, layer: int) -> ResolvedSite | None:
    """The linear module whose output is added straight into the residual stream at ``layer``'s
    output, or None (``layer_sites(model, layer).missing['residual_writer']`` says why)."""
    path = layer_sites(model, layer).residual_writer
    if path is None:
        return None
    rs = _bind(Site(layer, "module", module_path=path), _get(model, path), path, model)
    return rs if rs.kind != "block" else None


def site_for_module_path(model: nn.Module, path: str) -> Site:
    """The most specific :class:`Site` for a module path (used by adapters for peft / edited weights)."""
    layers_path, _ = decoder_layers(model)
    prefix = layers_path + "."
    if not path.startswith(prefix):
        raise SiteError(f"module {path!r} is not inside a decoder layer ({layers_path}.N...); only layer modules can carry updates")
    layer = int(path[len(prefix):].partition(".")[0])
    parts = layer_sites(model, layer)
    for component in ("mlp_down", "attn_out"):
        if path == parts.get(component):
            return Site(layer, component)
    return Site(layer, "module", module_path=path)


def describe_model(model: nn.Module) -> dict[str, Any]:
    """Where the decoder layers and final norm are, and which parts were found by structure."""
    layers_path, layers, layers_inferred = _layers_with_origin(model)
    norm_path, norm_inferred = _final_norm_with_origin(model)
    inferred_parts = sorted({p for i in range(len(layers)) for p in layer_sites(model, i).inferred})
    inferred = (["layers"] if layers_inferred else []) + (["final_norm"] if norm_inferred else []) + inferred_parts
    return {
        "model_type": model_type(model),
        "table_row": arch_spec(model) is not None,
        "layers": layers_path,
        "num_layers": len(layers),
        "final_norm": norm_path,
        "inferred": inferred,
    }


def describe_sites(model: nn.Module) -> list[dict[str, Any]]:
    """One row per layer with the resolved module path of each component (for ``info``)."""
    _, layers = decoder_layers(model)
    rows = []
    for i in range(len(layers)):
        parts = layer_sites(model, i)
        row: dict[str, Any] = {"layer": i}
        for comp in ("residual", "mlp_down", "attn_out"):
            try:
                rs = resolve_site(model, Site(i, comp))
                row[comp] = f"{rs.module_path} [{rs.kind} {rs.d_in}->{rs.d_out}]"
            except SiteError:
                row[comp] = f"not applicable: {parts.missing[comp]}"
        row["residual_merge_target"] = parts.residual_writer
        row["residual_merge_blocked_by"] = parts.missing.get("residual_writer")
        row["inferred"] = list(parts.inferred)
        rows.append(row)
    return rows
