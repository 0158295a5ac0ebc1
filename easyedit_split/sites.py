"""Where an update can sit: a declarative table from architecture to module paths.

A *site* is an abstract location — the residual stream at a decoder layer's output, the MLP
down-projection, or the attention output projection — that :func:`resolve_site` turns into a
concrete module of a concrete model. Architectures differ only in the rows of
:data:`ARCHITECTURES`; no code path checks a model name.

Any model, known or not, can be addressed by an explicit module path
(``Site(layer=..., component="module", module_path="model.layers.3.mlp.down_proj")``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHITECTURES",
    "COMPONENT_ALIASES",
    "ArchSpec",
    "ResolvedSite",
    "Site",
    "SiteError",
    "arch_spec",
    "canonical_component",
    "decoder_layers",
    "final_norm",
    "model_type",
    "resolve_site",
    "site_for_module_path",
]


class SiteError(ValueError):
    """A site cannot be resolved on this model."""


@dataclass(frozen=True)
class ArchSpec:
    """Module paths of one architecture family.

    ``layers`` candidates are tried in order (multimodal wrappers nest the language model);
    ``mlp_down`` / ``attn_out`` / ``residual_writer`` are relative to one decoder layer.
    ``residual_writer`` is the module whose output is added *directly* to the residual stream at
    the layer output — a residual-stream vector folds exactly into its bias. ``None`` means a norm
    sits in between (Gemma-2/3's post-feed-forward norm), so no exact fold exists.
    """

    layers: tuple[str, ...]
    final_norm: tuple[str, ...]
    mlp_down: str
    attn_out: str
    residual_writer: str | None


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
    residual-style vector, any module whose first output is the hidden state) of any model.
    """

    layer: int
    component: str = "residual"
    module_path: str | None = None

    def __post_init__(self) -> None:
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


def _find_layers_generic(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """Fallback for unknown architectures: the longest ModuleList of identical blocks."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, mod in model.named_modules():
        uniform = isinstance(mod, nn.ModuleList) and len(mod) > 0 and len({type(m) for m in mod}) == 1
        if uniform and (best is None or len(mod) > len(best[1])):
            best = (name, mod)
    return best


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The path and ModuleList of the decoder layers."""
    spec = arch_spec(model)
    if spec is not None:
        for path in spec.layers:
            mod = _get(model, path)
            if isinstance(mod, nn.ModuleList):
                return path, mod
    found = _find_layers_generic(model)
    if found is None:
        raise SiteError(f"cannot find the decoder layers of a {type(model).__name__} (model_type {model_type(model)!r})")
    return found


def final_norm(model: nn.Module) -> nn.Module | None:
    spec = arch_spec(model)
    if spec is None:
        return None
    for path in spec.final_norm:
        mod = _get(model, path)
        if mod is not None:
            return mod
    return None


def _linear_shape(module: nn.Module) -> tuple[str, int, int] | None:
    if isinstance(module, nn.Linear):
        return "linear", module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and hasattr(module, "weight") and module.weight.dim() == 2:
        d_in, d_out = module.weight.shape  # transformers' Conv1D stores [in, out]
        return "conv1d", int(d_in), int(d_out)
    return None


def hidden_size(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    for cfg in (config, getattr(config, "text_config", None)):
        for key in ("hidden_size", "n_embd", "d_model"):
            value = getattr(cfg, key, None)
            if isinstance(value, int):
                return value
    raise SiteError(f"cannot read the hidden size from the config of {type(model).__name__}")


def resolve_site(model: nn.Module, site: Site) -> ResolvedSite:
    """Bind ``site`` to a module of ``model``."""
    layers_path, layers = decoder_layers(model)
    if site.component != "module" and not (-len(layers) <= site.layer < len(layers)):
        raise SiteError(f"layer {site.layer} is out of range: this model has {len(layers)} layers (0..{len(layers) - 1})")
    layer_idx = site.layer % len(layers) if site.component != "module" else site.layer
    if site.component == "residual":
        d = hidden_size(model)
        return ResolvedSite(site, layers[layer_idx], f"{layers_path}.{layer_idx}", "block", d, d)
    if site.component == "module":
        path = site.module_path or ""
        module = _get(model, path)
        if module is None:
            raise SiteError(f"module path {path!r} does not exist in this {type(model).__name__}")
    else:
        spec = arch_spec(model)
        if spec is None:
            raise SiteError(
                f"architecture {model_type(model)!r} is not in easyedit_split.sites.ARCHITECTURES, so component "
                f"{site.component!r} cannot be resolved. Name the module explicitly: "
                f"Site(layer={site.layer}, component='module', module_path='{layers_path}.{layer_idx}.<path to the linear>') "
                "(see `easyedit-split info --model ...` for module names), or add an ArchSpec row."
            )
        rel = spec.mlp_down if site.component == "mlp_down" else spec.attn_out
        path = f"{layers_path}.{layer_idx}.{rel}"
        module = _get(model, path)
        if module is None:
            raise SiteError(f"expected module {path!r} for {site} in a {model_type(model)} model, but it does not exist")
    shape = _linear_shape(module)
    if shape is None:
        d = hidden_size(model)
        return ResolvedSite(site, module, path, "block", d, d)
    kind, d_in, d_out = shape
    return ResolvedSite(site, module, path, kind, d_in, d_out)


def residual_writer(model: nn.Module, layer: int) -> ResolvedSite | None:
    """The linear module whose output is added straight into the residual stream at ``layer``'s
    output, or None where a norm sits in between (no exact fold of a residual vector exists)."""
    spec = arch_spec(model)
    if spec is None or spec.residual_writer is None:
        return None
    layers_path, layers = decoder_layers(model)
    idx = layer % len(layers)
    path = f"{layers_path}.{idx}.{spec.residual_writer}"
    module = _get(model, path)
    shape = _linear_shape(module) if module is not None else None
    if shape is None:
        return None
    kind, d_in, d_out = shape
    return ResolvedSite(Site(layer=idx, component="module", module_path=path), module, path, kind, d_in, d_out)


def site_for_module_path(model: nn.Module, path: str) -> Site:
    """The most specific :class:`Site` for a module path (used by adapters for peft / edited weights)."""
    layers_path, _ = decoder_layers(model)
    prefix = layers_path + "."
    if not path.startswith(prefix):
        raise SiteError(f"module {path!r} is not inside a decoder layer ({layers_path}.N...); only layer modules can carry updates")
    rest = path[len(prefix):]
    idx_str, _, rel = rest.partition(".")
    layer = int(idx_str)
    spec = arch_spec(model)
    if spec is not None and rel == spec.mlp_down:
        return Site(layer, "mlp_down")
    if spec is not None and rel == spec.attn_out:
        return Site(layer, "attn_out")
    return Site(layer, "module", module_path=path)


def describe_sites(model: nn.Module) -> list[dict[str, Any]]:
    """One row per layer with the resolved module path of each component (for ``info``)."""
    _, layers = decoder_layers(model)
    rows = []
    for i in range(len(layers)):
        row: dict[str, Any] = {"layer": i}
        for comp in ("residual", "mlp_down", "attn_out"):
            try:
                rs = resolve_site(model, Site(i, comp))
                row[comp] = f"{rs.module_path} [{rs.kind} {rs.d_in}->{rs.d_out}]"
            except SiteError as exc:
                row[comp] = f"unresolved: {exc}"
        rw = residual_writer(model, i)
        row["residual_merge_target"] = rw.module_path if rw else None
        rows.append(row)
    return rows


def module_dtype_device(module: nn.Module) -> tuple[torch.dtype, torch.device]:
    for p in module.parameters():
        return p.dtype, p.device
    return torch.float32, torch.device("cpu")
