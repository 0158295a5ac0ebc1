"""Finding a decoder's parts by module names and shapes, for architectures without a table row.

:mod:`easyedit_split.core.sites` keeps a declarative table from ``model_type`` to module paths. A model
whose ``model_type`` has no row (Phi-3, Mixtral, OLMo-2, Cohere, StarCoder2, DeepSeek, …), or
whose row names a path that is missing, is read here by the conventions that transformers' decoders
share:

* **decoder layers**: the ``nn.ModuleList`` of identical blocks whose length is the config's
  layer count (else the longest such list);
* **final norm**: the norm module registered after the layers in the module that holds them;
* **MLP down-projection**: in the layer's MLP-like child (``mlp``, ``feed_forward``, ``ffn``…),
  the ``Linear``/``Conv1D`` whose output is the hidden size (by conventional name where the shapes
  leave several: ``down_proj``, ``c_proj``, ``dense_4h_to_h``, ``fc2``, ``w2``…); none where the
  MLP is a mixture of experts (no single module computes its output);
* **attention output projection**: in the attention-like child (``self_attn``, ``attn``,
  ``attention``…), the hidden-size ``Linear``/``Conv1D`` named ``o_proj``, ``out_proj``,
  ``dense``, ``c_proj``, ``wo``…;
* **residual writer**: the MLP down-projection, unless a norm sits between the MLP output and the
  residual add (a ``post…feedforward``/``post…mlp`` norm, as in OLMo-2 and Gemma-2/3), the MLP is
  a mixture of experts, or the config scales the residual branch (``residual_multiplier``).

Each finder returns a path or the reason it found none; nothing here checks a model name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

__all__ = [
    "LayerParts",
    "find_final_norm",
    "find_layer_lists",
    "find_layer_parts",
    "is_norm",
    "linear_shape",
    "post_mlp_norm_reason",
]

MLP_CHILD_HINTS = ("mlp", "feed_forward", "feedforward", "ffn", "ff", "moe")
ATTN_CHILD_HINTS = ("attn", "attention")
MLP_DOWN_NAMES = ("down_proj", "c_proj", "dense_4h_to_h", "fc2", "w2", "fc_out", "wo", "out_proj", "proj_out")
ATTN_OUT_NAMES = ("o_proj", "out_proj", "dense", "c_proj", "wo", "o", "out", "proj_out")
FINAL_NORM_NAMES = ("norm", "final_layer_norm", "final_layernorm", "ln_f", "norm_f", "final_norm")
POST_MLP_NORM_HINTS = ("feedforward", "feed_forward", "ffn", "ff", "mlp")
EXPERT_HINT = "expert"


def linear_shape(module: nn.Module) -> tuple[str, int, int] | None:
    """``(kind, d_in, d_out)`` of an ``nn.Linear`` or transformers ``Conv1D``; None for anything else."""
    if isinstance(module, nn.Linear):
        return "linear", module.in_features, module.out_features
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and weight is not None and weight.dim() == 2:
        d_in, d_out = weight.shape  # transformers' Conv1D stores [in, out]
        return "conv1d", int(d_in), int(d_out)
    return None


def is_norm(module: nn.Module) -> bool:
    """A normalisation layer (LayerNorm, RMSNorm and the models' own ``…Norm`` classes)."""
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)) or "norm" in type(module).__name__.lower()


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def find_layer_lists(model: nn.Module, num_layers: int | None) -> list[tuple[str, nn.ModuleList]]:
    """Candidate decoder-layer lists, best first: lists of identical blocks, those of the config's
    layer count before the others, longer before shorter, in module order."""
    found = [
        (name, mod) for name, mod in model.named_modules()
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and len({type(m) for m in mod}) == 1
        and _has_parameters(mod[0])
    ]
    return sorted(found, key=lambda item: (len(item[1]) != num_layers, -len(item[1])))


def _parent_path(path: str) -> str:
    return path.rpartition(".")[0]


def find_final_norm(model: nn.Module, layers_path: str) -> str | None:
    """Path of the norm applied after the last decoder layer: in the module that holds the layers,
    the first norm registered after them, else a child with a conventional final-norm name."""
    parent_path = _parent_path(layers_path)
    parent = model.get_submodule(parent_path) if parent_path else model
    layers_name = layers_path.rpartition(".")[2]
    children = list(parent.named_children())
    names = [n for n, _ in children]
    after = children[names.index(layers_name) + 1:] if layers_name in names else []
    chosen = next((n for n, m in after if is_norm(m)), None)
    if chosen is None:
        chosen = next((n for n, m in children if n in FINAL_NORM_NAMES and is_norm(m)), None)
    if chosen is None:
        return None
    return f"{parent_path}.{chosen}" if parent_path else chosen


@dataclass
class LayerParts:
    """Paths (relative to one decoder layer) found by structure, and why a part is absent."""

    mlp_down: str | None = None
    attn_out: str | None = None
    residual_writer: str | None = None
    post_mlp_norm: str | None = None  # a norm between the MLP output and the residual add
    missing: dict[str, str] = field(default_factory=dict)  # part -> reason it was not found


def _hinted_children(layer: nn.Module, hints: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    """Children whose name carries a hint and that hold parameters (not norms or dropouts)."""
    return [
        (name, child) for name, child in layer.named_children()
        if any(h in name.lower() for h in hints) and not is_norm(child) and _has_parameters(child)
    ]


def _projections(root: nn.Module, d_model: int) -> list[tuple[str, str, int, int]]:
    """``(relative path, kind, d_in, d_out)`` of the Linear/Conv1D modules under ``root`` writing ``d_model``."""
    out = []
    for name, mod in root.named_modules():
        shape = linear_shape(mod)
        if shape is not None and shape[2] == d_model and name:
            out.append((name, *shape))
    return out


def _pick(candidates: list[tuple[str, str, int, int]], names: tuple[str, ...], *, by_shape: bool) -> str | list[str]:
    """The one candidate (by shape alone if allowed, else by conventional name); a list when ambiguous."""
    if by_shape and len(candidates) == 1:
        return candidates[0][0]
    named = [c for c in candidates if c[0].rpartition(".")[2] in names]
    if len(named) == 1:
        return named[0][0]
    return [c[0] for c in (named or candidates)]


def _is_mixture_of_experts(mlp: nn.Module) -> bool:
    return any(EXPERT_HINT in name.lower() for name, _ in mlp.named_modules()) or any(
        EXPERT_HINT in name.lower() for name, _ in mlp.named_parameters()
    )


def _find_mlp_down(layer: nn.Module, d_model: int, parts: LayerParts) -> bool:
    """Fill ``parts.mlp_down``; True when the MLP is a mixture of experts."""
    mlps = _hinted_children(layer, MLP_CHILD_HINTS)
    if len(mlps) != 1:
        what = "no MLP-like child" if not mlps else f"several MLP-like children ({', '.join(n for n, _ in mlps)})"
        parts.missing["mlp_down"] = f"{what} (looked for a child named like {', '.join(MLP_CHILD_HINTS)})"
        return False
    mlp_name, mlp = mlps[0]
    if _is_mixture_of_experts(mlp):
        parts.missing["mlp_down"] = (
            f"'{mlp_name}' is a mixture of experts: no single module computes the MLP output "
            "(use the residual or attn_out site, or name a Linear inside it with module_path)"
        )
        return True
    picked = _pick(_projections(mlp, d_model), MLP_DOWN_NAMES, by_shape=True)
    if isinstance(picked, str):
        parts.mlp_down = f"{mlp_name}.{picked}"
    elif not picked:
        parts.missing["mlp_down"] = f"no Linear/Conv1D under '{mlp_name}' outputs the hidden size {d_model}"
    else:
        parts.missing["mlp_down"] = f"several Linear/Conv1D under '{mlp_name}' output the hidden size: {picked}"
    return False


def _find_attn_out(layer: nn.Module, d_model: int, parts: LayerParts) -> None:
    attns = _hinted_children(layer, ATTN_CHILD_HINTS)
    if len(attns) != 1:
        what = "no attention-like child" if not attns else f"several attention-like children ({', '.join(n for n, _ in attns)})"
        parts.missing["attn_out"] = f"{what} (looked for a child named like {', '.join(ATTN_CHILD_HINTS)})"
        return
    attn_name, attn = attns[0]
    picked = _pick(_projections(attn, d_model), ATTN_OUT_NAMES, by_shape=False)
    if isinstance(picked, str):
        parts.attn_out = f"{attn_name}.{picked}"
    else:
        parts.missing["attn_out"] = (
            f"no single hidden-size Linear/Conv1D under '{attn_name}' is named like an output projection "
            f"({', '.join(ATTN_OUT_NAMES)}); candidates: {picked or 'none'}"
        )


def _post_mlp_norm(layer: nn.Module) -> str | None:
    for name, child in layer.named_children():
        low = name.lower()
        if is_norm(child) and "post" in low and any(h in low for h in POST_MLP_NORM_HINTS):
            return name
    return None


def post_mlp_norm_reason(norm: str) -> str:
    """Why a layer has no residual writer when the norm ``norm`` follows its MLP."""
    return f"a norm ('{norm}') sits between the MLP output and the residual add"


def find_layer_parts(layer: nn.Module, d_model: int, residual_multiplier: float | None = None) -> LayerParts:
    """The MLP down-projection, attention output projection and residual writer of one decoder layer."""
    parts = LayerParts()
    moe = _find_mlp_down(layer, d_model, parts)
    _find_attn_out(layer, d_model, parts)
    parts.post_mlp_norm = _post_mlp_norm(layer)
    if parts.post_mlp_norm is not None:
        parts.missing["residual_writer"] = post_mlp_norm_reason(parts.post_mlp_norm)
    elif moe:
        parts.missing["residual_writer"] = "the MLP is a mixture of experts: no single linear module writes the residual stream"
    elif residual_multiplier not in (None, 1, 1.0):
        parts.missing["residual_writer"] = (
            f"the config's residual_multiplier ({residual_multiplier}) scales the MLP output before the residual add"
        )
    elif parts.mlp_down is None:
        parts.missing["residual_writer"] = f"no MLP down-projection was found ({parts.missing['mlp_down']})"
    else:
        parts.residual_writer = parts.mlp_down
    return parts
