"""The unified dynamic weight update: ``h_out = (W + m·ΔW) h_in + (b + m·Δb)``.

Every control method is an :class:`Update` bound to a :class:`~easyedit_split.core.sites.Site`:

=======================  ===========================  ==========================
form                     update                       trainable size
=======================  ===========================  ==========================
``VectorUpdate``         Δb only (ΔW = 0)             d_out
``ClampedVectorUpdate``  see below                    d_out
``LoRAUpdate``           ΔW = scale · B·A (rank r)    r·(d_in + d_out)
``LocalWeight``          full ΔW and Δb               d_in·d_out + d_out
=======================  ===========================  ==========================

Updates are ``nn.Module``s so that their parameters train with any optimiser; the math that
applies them is the pure :meth:`Update.delta` (``Δh`` for unit multiplier). Weight convention is
``nn.Linear``'s: ``ΔW`` has shape ``[d_out, d_in]``.

Clamping (EasyEdit's ``intervention_type: clamping``, the clamping intervention of AxBench/RePS) is a
steering vector that *replaces* the hidden state's component along its direction ``v̂ = v/‖v‖``
instead of adding to it: ``h' = h − (h·v̂)v̂ + m·v``, so that ``h'·v̂ = m·‖v‖`` whatever ``h·v̂`` was.
In the unified view it is the affine map ``h' = (I − v̂v̂ᵀ)·h + m·v`` on the site's output: a ``ΔW``
part ``−v̂v̂ᵀ`` that is **not** scaled by ``m`` (:meth:`Update.fixed_delta`) and ``Δb = m·v``. So
``m = 0`` is *not* the base model: it removes the concept direction (``h·v̂`` becomes 0).
Upstream's ``intervention_type: addition`` is :class:`VectorUpdate` (``h' = h + m·v``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from easyedit_split.base.methods import FORMS as FORM_SPECS
from easyedit_split.base.methods import INTERVENTION_TYPE_NAMES, canonical_form, resolve
from easyedit_split.core.sites import Site
from easyedit_split.errors import InputError

__all__ = ["FORMS", "INTERVENTION_TYPES", "ClampedVectorUpdate", "LoRAUpdate", "LocalWeightUpdate", "Update",
           "VectorUpdate", "make_update", "update_class"]

#: a vector shorter than this has no direction: its clamping projection is taken as zero (no NaN gradients)
DIRECTION_EPS = 1e-12


class Update(nn.Module):
    """Base class: an update of one site. Subclasses define :meth:`delta_weight`, :meth:`delta_bias`."""

    form: ClassVar[str] = "base"

    def __init__(self, site: Site, d_in: int, d_out: int) -> None:
        super().__init__()
        self.site = site
        self.d_in = int(d_in)
        self.d_out = int(d_out)

    # -- the affine update -------------------------------------------------------------------
    def delta_weight(self) -> torch.Tensor | None:
        """``ΔW`` as a dense ``[d_out, d_in]`` tensor, or None when it is zero."""
        return None

    def delta_bias(self) -> torch.Tensor | None:
        """``Δb`` as a ``[d_out]`` tensor, or None when it is zero."""
        return None

    def delta(self, h_in: torch.Tensor | None) -> torch.Tensor:
        """``ΔW h_in + Δb`` for unit multiplier (broadcastable against the site's output)."""
        raise NotImplementedError

    def fixed_delta(self, h: torch.Tensor) -> torch.Tensor | None:
        """The part of ``Δh`` at a steered position that does not scale with ``m``, from the site's output
        ``h`` (None: the update changes nothing at ``m = 0``, the case of every additive update)."""
        return None

    @property
    def acts_at_zero(self) -> bool:
        """True when ``m = 0`` is not the base model (a clamped vector); hooks then stay on at ``m = 0``."""
        return False

    @property
    def intervention_type(self) -> str:
        """EasyEdit's ``intervention_type`` of the update: ``addition`` (``Δh = m·(ΔW h_in + Δb)``)."""
        return "addition"

    @property
    def form_key(self) -> str:
        """The form, with the intervention type when it is not addition (``vector:clamping``): what tells two
        updates with the same tensors apart (run keys, listings)."""
        return self.form if self.intervention_type == "addition" else f"{self.form}:{self.intervention_type}"

    @property
    def needs_input(self) -> bool:
        return self.delta_weight_is_nonzero

    @property
    def delta_weight_is_nonzero(self) -> bool:
        return True

    def scaled(self, factor: float) -> Update:
        """A new update whose ``Δh`` is ``factor`` times this one's, for every input (a dose change)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be rescaled")

    def config(self) -> dict[str, Any]:
        """JSON-able description used in saved metadata."""
        return {"form": self.form, "site": self.site.to_dict(), "d_in": self.d_in, "d_out": self.d_out}

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Update:
        """Rebuild an update from its :meth:`config` and its parameters by name (``KeyError`` names a
        missing tensor)."""
        raise NotImplementedError

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"site={self.site}, d_in={self.d_in}, d_out={self.d_out}"


class VectorUpdate(Update):
    """A steering vector: ``Δh = m · v`` (a bias change of the module that writes the site)."""

    form = "vector"

    def __init__(self, site: Site, d_out: int, vector: torch.Tensor | None = None, init_std: float = 0.0) -> None:
        super().__init__(site, d_out, d_out)
        if vector is None:
            vector = torch.randn(d_out) * init_std if init_std > 0 else torch.zeros(d_out)
        vector = torch.as_tensor(vector).reshape(-1)
        if vector.numel() != d_out:
            raise InputError(f"vector has {vector.numel()} elements, site {site} needs {d_out}")
        self.vector = nn.Parameter(vector.detach().clone().float())

    def delta_bias(self) -> torch.Tensor:
        return self.vector

    def delta(self, h_in: torch.Tensor | None) -> torch.Tensor:
        return self.vector

    def scaled(self, factor: float) -> VectorUpdate:
        return VectorUpdate(self.site, self.d_out, vector=self.vector.detach() * float(factor))

    @property
    def delta_weight_is_nonzero(self) -> bool:
        return False

    def moved_to(self, site: Site) -> VectorUpdate:
        """The same vector (and intervention type) at another site of the same size."""
        return type(self)(site, self.d_out, vector=self.vector.detach().clone())

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> VectorUpdate:
        kind = config.get("intervention_type", "addition")
        if kind not in INTERVENTION_TYPES:
            raise InputError(f"intervention_type {kind!r} is not one of {', '.join(INTERVENTION_TYPES)}")
        return INTERVENTION_TYPES[kind](Site.from_dict(config["site"]), int(config["d_out"]), vector=tensors["vector"])


class ClampedVectorUpdate(VectorUpdate):
    """Clamping (EasyEdit's ``intervention_type: clamping``): ``h' = h − (h·v̂)v̂ + m·v`` at the steered
    positions, ``v̂ = v/‖v‖`` (see the module doc: ``m = 0`` removes the direction, it is not the base model).

    With ``init_std = 0`` (and no ``vector``) the vector starts as a random direction of norm ≈ 1 drawn from
    torch's global generator (seeded by the trainer): a zero vector has no direction to clamp along.
    """

    def __init__(self, site: Site, d_out: int, vector: torch.Tensor | None = None, init_std: float = 0.0) -> None:
        if vector is None:
            vector = torch.randn(d_out) * (init_std if init_std > 0 else 1.0 / math.sqrt(d_out))
        super().__init__(site, d_out, vector=vector)

    @property
    def intervention_type(self) -> str:
        return "clamping"

    @property
    def acts_at_zero(self) -> bool:
        return True

    def direction(self) -> torch.Tensor:
        """``v̂ = v/‖v‖`` (differentiable; ``v/ε`` — a vanishing projection — for a vector shorter than ε)."""
        v = self.vector.float()
        return v / torch.linalg.vector_norm(v).clamp_min(DIRECTION_EPS)

    def fixed_delta(self, h: torch.Tensor) -> torch.Tensor:
        """``−(h·v̂)v̂``: the component of ``h`` along the direction, removed (computed in float32)."""
        d = self.direction().to(h.device)
        return (-(h.float() @ d).unsqueeze(-1) * d).to(h.dtype)

    def projection(self) -> torch.Tensor:
        """``−v̂v̂ᵀ`` (``[d_out, d_out]``): the m-independent ``ΔW`` acting on the site's output."""
        d = self.direction().detach()
        return -torch.outer(d, d)

    def scaled(self, factor: float) -> ClampedVectorUpdate:
        """``m·v`` scaled by ``factor``; the direction (and so the projection) is unchanged (``v̂v̂ᵀ`` is
        the same for ``−v``). A zero factor is refused: the direction would be lost."""
        f = float(factor)
        if f == 0.0:
            raise InputError("a clamped vector cannot be scaled by 0: its direction would be lost")
        return ClampedVectorUpdate(self.site, self.d_out, vector=self.vector.detach() * f)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "intervention_type": self.intervention_type}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, intervention_type=clamping"


#: EasyEdit's ``intervention_type`` values (upstream's key and spellings) → the steering-vector class
INTERVENTION_TYPES: dict[str, type[VectorUpdate]] = {"addition": VectorUpdate, "clamping": ClampedVectorUpdate}
assert tuple(INTERVENTION_TYPES) == INTERVENTION_TYPE_NAMES, "the table must name base.methods' values"


class LoRAUpdate(Update):
    """Low rank: ``ΔW = scale · B A`` with ``A: [r, d_in]``, ``B: [d_out, r]``; no ``Δb``."""

    form = "lora"

    def __init__(
        self,
        site: Site,
        d_in: int,
        d_out: int,
        rank: int,
        scale: float = 1.0,
        A: torch.Tensor | None = None,
        B: torch.Tensor | None = None,
    ) -> None:
        super().__init__(site, d_in, d_out)
        if rank < 1:
            raise InputError(f"LoRA rank must be >= 1, got {rank}")
        self.rank = int(rank)
        self.scale = float(scale)
        if A is None:
            A = torch.empty(rank, d_in)
            nn.init.kaiming_uniform_(A, a=math.sqrt(5))
        if B is None:
            B = torch.zeros(d_out, rank)
        if tuple(A.shape) != (rank, d_in) or tuple(B.shape) != (d_out, rank):
            raise InputError(f"LoRA shapes A{tuple(A.shape)} B{tuple(B.shape)} do not match rank {rank}, d_in {d_in}, d_out {d_out}")
        self.A = nn.Parameter(A.detach().clone().float())
        self.B = nn.Parameter(B.detach().clone().float())

    def delta_weight(self) -> torch.Tensor:
        return (self.B.float() @ self.A.float()) * self.scale

    def delta(self, h_in: torch.Tensor | None) -> torch.Tensor:
        assert h_in is not None
        x = h_in.to(self.A.dtype)
        out = (x @ self.A.t()) @ self.B.t()
        return out * self.scale if self.scale != 1.0 else out

    def scaled(self, factor: float) -> LoRAUpdate:
        return LoRAUpdate(self.site, self.d_in, self.d_out, self.rank, scale=self.scale * float(factor),
                          A=self.A.detach(), B=self.B.detach())

    def config(self) -> dict[str, Any]:
        return {**super().config(), "rank": self.rank, "scale": self.scale}

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> LoRAUpdate:
        return cls(Site.from_dict(config["site"]), int(config["d_in"]), int(config["d_out"]), rank=int(config["rank"]),
                   scale=float(config.get("scale", 1.0)), A=tensors["A"], B=tensors["B"])


class LocalWeightUpdate(Update):
    """A full local weight update: ``ΔW: [d_out, d_in]`` and ``Δb: [d_out]``."""

    form = "local_weight"

    def __init__(
        self,
        site: Site,
        d_in: int,
        d_out: int,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> None:
        super().__init__(site, d_in, d_out)
        weight = torch.zeros(d_out, d_in) if weight is None else torch.as_tensor(weight)
        bias = torch.zeros(d_out) if bias is None else torch.as_tensor(bias).reshape(-1)
        if tuple(weight.shape) != (d_out, d_in) or bias.numel() != d_out:
            raise InputError(f"local weight shapes W{tuple(weight.shape)} b{tuple(bias.shape)} do not match [{d_out}, {d_in}]")
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.bias = nn.Parameter(bias.detach().clone().float())

    def delta_weight(self) -> torch.Tensor:
        return self.weight

    def delta_bias(self) -> torch.Tensor:
        return self.bias

    def delta(self, h_in: torch.Tensor | None) -> torch.Tensor:
        assert h_in is not None
        return torch.nn.functional.linear(h_in.to(self.weight.dtype), self.weight, self.bias)

    def scaled(self, factor: float) -> LocalWeightUpdate:
        f = float(factor)
        return LocalWeightUpdate(self.site, self.d_in, self.d_out, weight=self.weight.detach() * f,
                                 bias=self.bias.detach() * f)

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> LocalWeightUpdate:
        return cls(Site.from_dict(config["site"]), int(config["d_in"]), int(config["d_out"]), weight=tensors["weight"],
                   bias=tensors["bias"])


#: form name → Update class, derived from the form table (:mod:`easyedit_split.base.methods`)
FORMS: dict[str, type[Update]] = {f.name: resolve(f.update_class) for f in FORM_SPECS}


def update_class(form: str) -> type[Update]:
    """The Update class of a form (aliases accepted: ``weight`` is ``local_weight``)."""
    return FORMS[canonical_form(form)]


def make_update(form: str, site: Site, d_in: int, d_out: int, *, rank: int = 4, scale: float = 1.0,
                init_std: float = 0.0, intervention_type: str = "addition") -> Update:
    """A freshly initialised update of ``form`` (``vector`` | ``lora`` | ``local_weight``, or an alias);
    ``intervention_type`` (EasyEdit's key: ``addition`` | ``clamping``) picks the vector's kind, and only
    ``addition`` exists for the other forms (a ``ValueError`` otherwise)."""
    cls = update_class(form)
    if intervention_type not in INTERVENTION_TYPES:
        raise InputError(f"intervention_type {intervention_type!r} is not one of {', '.join(INTERVENTION_TYPES)}")
    if cls is VectorUpdate:
        return INTERVENTION_TYPES[intervention_type](site, d_out, init_std=init_std)
    if intervention_type != "addition":
        raise InputError(f"intervention_type {intervention_type!r} exists only for a steering vector, not {form}")
    if cls is LoRAUpdate:
        return LoRAUpdate(site, d_in, d_out, rank=rank, scale=scale)
    return cls(site, d_in, d_out)
