"""The unified dynamic weight update: ``h_out = (W + m·ΔW) h_in + (b + m·Δb)``.

Every control method is an :class:`Update` bound to a :class:`~easyedit_split.core.sites.Site`:

=================  ===========================  ==========================
form               update                       trainable size
=================  ===========================  ==========================
``VectorUpdate``   Δb only (ΔW = 0)             d_out
``LoRAUpdate``     ΔW = scale · B·A (rank r)    r·(d_in + d_out)
``LocalWeight``    full ΔW and Δb               d_in·d_out + d_out
=================  ===========================  ==========================

Updates are ``nn.Module``s so that their parameters train with any optimiser; the math that
applies them is the pure :meth:`Update.delta` (``Δh`` for unit multiplier). Weight convention is
``nn.Linear``'s: ``ΔW`` has shape ``[d_out, d_in]``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from easyedit_split.base.methods import FORMS as FORM_SPECS
from easyedit_split.base.methods import canonical_form, resolve
from easyedit_split.core.sites import Site
from easyedit_split.errors import InputError

__all__ = ["FORMS", "LoRAUpdate", "LocalWeightUpdate", "Update", "VectorUpdate", "make_update", "update_class"]


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

    @classmethod
    def from_config(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> VectorUpdate:
        return cls(Site.from_dict(config["site"]), int(config["d_out"]), vector=tensors["vector"])


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
                init_std: float = 0.0) -> Update:
    """A freshly initialised update of ``form`` (``vector`` | ``lora`` | ``local_weight``, or an alias)."""
    cls = update_class(form)
    if cls is VectorUpdate:
        return VectorUpdate(site, d_out, init_std=init_std)
    if cls is LoRAUpdate:
        return LoRAUpdate(site, d_in, d_out, rank=rank, scale=scale)
    return cls(site, d_in, d_out)
