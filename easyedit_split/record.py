"""Record the output of sites during a forward pass (a small context manager)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from .sites import Site, resolve_site

__all__ = ["record_site_outputs", "site_output"]


@contextlib.contextmanager
def record_site_outputs(model: nn.Module, sites: Sequence[Site], *, inputs: bool = False) -> Iterator[dict[Site, list[torch.Tensor]]]:
    """Collect each site's output (or, with ``inputs=True``, its input) on every forward call.

    Yields ``{site: [tensor per call]}``; tensors are detached. Hooks are removed on exit.
    """
    records: dict[Site, list[torch.Tensor]] = {s: [] for s in sites}
    handles = []

    def make(site: Site):
        def hook(module, args, output):
            t = args[0] if inputs else (output[0] if isinstance(output, tuple) else output)
            records[site].append(t.detach())
        return hook

    try:
        for s in sites:
            handles.append(resolve_site(model, s).module.register_forward_hook(make(s)))
        yield records
    finally:
        for h in handles:
            h.remove()


class _ReachedSite(Exception):
    pass


@torch.no_grad()
def site_output(model: nn.Module, site: Site, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                *, inputs: bool = False) -> torch.Tensor:
    """The output (or input) of ``site`` for one batch; the forward stops right there.

    Nothing above the site runs — no later layers, no output head — so reading a middle layer costs
    about half a forward pass.
    """
    from .forward import _base_forward_kwargs, _decoder

    got: list[torch.Tensor] = []

    def hook(module, args, output):
        got.append((args[0] if inputs else (output[0] if isinstance(output, tuple) else output)).detach())
        raise _ReachedSite

    handle = resolve_site(model, site).module.register_forward_hook(hook)
    try:
        _decoder(model)(**_base_forward_kwargs(input_ids, attention_mask))
    except _ReachedSite:
        pass
    finally:
        handle.remove()
    if not got:
        raise RuntimeError(f"the forward pass never reached {site}")
    return got[0]
