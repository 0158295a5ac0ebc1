"""Record the output of sites during a forward pass (a small context manager)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from .sites import Site, resolve_site

__all__ = ["record_site_outputs"]


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
