"""DiffMean / CAA (train-free): mean site activation over the answer tokens of positive sequences
minus that of negative sequences, as a :class:`~easyedit_split.core.updates.VectorUpdate`.

This is the one DiffMean of the package: ``train`` with a DiffMean YAML, the EasyEdit entry point
``generate_diffmean``, the main job and the ``diffmean@L`` artefact spec all call
:func:`diffmean_update`. Prompts are rendered as training renders them (the hparams' ``use_chat_template``,
``system_prompt`` and ``answer_instruction``); without hparams, with the shipped ``diffmean.yaml``'s settings
(:func:`default_diffmean_hparams`). Save the update with ``hparams=hp.to_dict()`` so that later
evaluation renders prompts the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from easyedit_split.base.progress import progress as progress_bar
from easyedit_split.core.record import site_output
from easyedit_split.core.sites import Site, resolve_site
from easyedit_split.core.updates import VectorUpdate
from easyedit_split.data.encoding import EncodedPair, check_context_length, collate_sequences, pad_id_of
from easyedit_split.data.pairs import PolarityPair
from easyedit_split.errors import EasyEditSplitError
from easyedit_split.training.hparams import DiffMeanHyperParams
from easyedit_split.training.trainer import encode_for

logger = logging.getLogger(__name__)

__all__ = ["DiffMeanError", "default_diffmean_hparams", "diffmean_update", "diffmean_vector"]

#: keys of the shipped diffmean.yaml that decide how the vector is computed (not where it is written)
_COMPUTE_KEYS = ("use_chat_template", "system_prompt", "answer_instruction", "batch_size", "normalize", "exclude_bos")


class DiffMeanError(EasyEditSplitError, ValueError):
    """DiffMean cannot be computed from the given data."""


@torch.no_grad()
def diffmean_vector(
    model: nn.Module,
    site: Site,
    positive_batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    negative_batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    *,
    normalize: bool = False,
) -> VectorUpdate:
    """Mean site output over marked tokens of positive sequences minus negative sequences.

    Each batch is ``(input_ids, attention_mask, position_mask)`` where ``position_mask [B, T]``
    marks the tokens whose activations are averaged (CAA: the answer tokens).
    """
    rs = resolve_site(model, site)
    means = []
    for batches in (positive_batches, negative_batches):
        total = torch.zeros(rs.d_out, dtype=torch.float64)
        count = 0
        for input_ids, attention_mask, pos_mask in batches:
            acts = site_output(model, site, input_ids, attention_mask).float()  # [B, T, D]
            m = pos_mask.to(acts.device).bool()
            total += acts[m].sum(0).double().cpu()
            count += int(m.sum())
        if count == 0:
            raise DiffMeanError("diffmean_vector: no marked positions in the data")
        means.append(total / count)
    vec = (means[0] - means[1]).float()
    if normalize:
        vec = vec / vec.norm().clamp_min(1e-12)
    return VectorUpdate(site, rs.d_out, vector=vec)


def default_diffmean_hparams(layer: int, component: str | None = None,
                             module_path: str | None = None) -> DiffMeanHyperParams:
    """DiffMean hparams for ``layer`` (``component`` or an explicit ``module_path``) with the shipped
    ``diffmean.yaml``'s rendering and batching."""
    from easyedit_split.base.defaults import packaged_hparams_dir
    from easyedit_split.base.hparams_io import load_yaml

    path = packaged_hparams_dir() / "diffmean.yaml"
    shipped = load_yaml(path)
    data = {k: shipped[k] for k in _COMPUTE_KEYS if k in shipped}
    data.update(alg_name="diffmean", layers=[int(layer)], intervention_components=component,
                intervention_module_path=module_path)
    return DiffMeanHyperParams.from_dict(data, source=str(path))


def _batches(encoded: Sequence[EncodedPair], positive: bool, pad: int, batch_size: int, device: torch.device):
    for s in range(0, len(encoded), batch_size):
        chunk = encoded[s:s + batch_size]
        items = [(e.prompt_ids, e.positive_ids if positive else e.negative_ids) for e in chunk]
        b = collate_sequences(items, pad, padding_side="right")
        yield b.input_ids.to(device), b.attention_mask.to(device), b.answer_mask.to(device)


def diffmean_update(
    model: nn.Module,
    tokenizer: Any,
    pairs: Sequence[PolarityPair] | Sequence[EncodedPair],
    hp: DiffMeanHyperParams,
    *,
    layer: int | None = None,
    progress: bool = True,
) -> VectorUpdate:
    """The DiffMean vector at ``Site(layer, hp.component)`` from the answer tokens of ``pairs``.

    ``layer`` defaults to the only entry of ``hp.layers``. Raw pairs are rendered with the hparams'
    chat-template settings; already-encoded pairs are used as they are.
    """
    if layer is None:
        if len(hp.layers) != 1:
            raise DiffMeanError(f"hparams list layers {hp.layers}; pass layer= to compute one of them")
        layer = hp.layers[0]
    items = list(pairs)
    if not items:
        raise DiffMeanError("DiffMean needs at least one pair")
    if isinstance(items[0], EncodedPair):
        encoded = items
    else:
        encoded = encode_for(hp, items, tokenizer)
    check_context_length(encoded, model)
    pad = pad_id_of(tokenizer)
    device = next(model.parameters()).device
    site = Site(int(layer), hp.component, hp.intervention_module_path)
    n_batches = -(-len(encoded) // hp.batch_size)
    update = diffmean_vector(
        model, site,
        progress_bar(_batches(encoded, True, pad, hp.batch_size, device), total=n_batches, unit="batch",
                     desc=f"DiffMean L{layer}: positive answers", enabled=progress),
        progress_bar(_batches(encoded, False, pad, hp.batch_size, device), total=n_batches, unit="batch",
                     desc=f"DiffMean L{layer}: negative answers", enabled=progress),
        normalize=hp.normalize)
    logger.info("DiffMean vector at %s: norm %.4g from %d pairs", site, float(update.vector.detach().norm()), len(encoded))
    return update
