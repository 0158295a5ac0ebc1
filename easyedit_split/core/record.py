"""Read sites during a forward pass, and stop the pass once a site has run (small context managers).

* :func:`record_site_outputs` collects each site's output (or input) on every forward call;
* :func:`stop_after` ends any forward pass right after a site (or module) has run — nothing above
  it runs, no later layers, no output head — and the ``with`` block carries on after the call;
* :func:`site_output` combines the two for one batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from easyedit_split.core.forward import base_forward
from easyedit_split.core.sites import Site, resolve_site

__all__ = ["SiteReached", "record_site_outputs", "site_output", "stop_after"]


def _first(output):
    return output[0] if isinstance(output, (tuple, list)) else output


@contextlib.contextmanager
def record_site_outputs(model: nn.Module, sites: Sequence[Site], *, inputs: bool = False) -> Iterator[dict[Site, list[torch.Tensor]]]:
    """Collect each site's output (or, with ``inputs=True``, its input) on every forward call.

    Yields ``{site: [tensor per call]}``; tensors are detached. Hooks are removed on exit.
    """
    records: dict[Site, list[torch.Tensor]] = {s: [] for s in sites}
    handles = []

    def make(site: Site):
        def hook(module, args, output):
            records[site].append((args[0] if inputs else _first(output)).detach())
        return hook

    try:
        for s in sites:
            handles.append(resolve_site(model, s).module.register_forward_hook(make(s)))
        yield records
    finally:
        for h in handles:
            h.remove()


class _StopAtSite(Exception):
    """Raised by :func:`stop_after`'s hook; never escapes its ``with`` block."""


@dataclass
class SiteReached:
    """Yielded by :func:`stop_after`: whether the site ran (and so ended the pass)."""

    reached: bool = False


@contextlib.contextmanager
def stop_after(model: nn.Module, where: Site | nn.Module) -> Iterator[SiteReached]:
    """Inside the block, a forward pass ends as soon as ``where`` (a site, or a module) has run.

    Hooks registered on the same module before this one (a :func:`record_site_outputs`, an
    update's hook) still see the output. The statement that started the pass is abandoned and the
    block exits normally; code after it inside the block does not run, so read results after the
    block. The hook is removed on exit.
    """
    module = where if isinstance(where, nn.Module) else resolve_site(model, where).module
    state = SiteReached()

    def hook(mod, args, output):
        state.reached = True
        raise _StopAtSite

    handle = module.register_forward_hook(hook)
    try:
        with contextlib.suppress(_StopAtSite):
            yield state
    finally:
        handle.remove()


@torch.no_grad()
def site_output(model: nn.Module, site: Site, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                *, inputs: bool = False) -> torch.Tensor:
    """The output (or input) of ``site`` for one batch; the forward stops right there.

    Nothing above the site runs — no later layers, no output head — so reading a middle layer costs
    about half a forward pass.
    """
    with record_site_outputs(model, [site], inputs=inputs) as rec, stop_after(model, site) as stop:
        base_forward(model, input_ids, attention_mask)
    if not stop.reached or not rec[site]:
        raise RuntimeError(f"the forward pass never reached {site}")
    return rec[site][0]
