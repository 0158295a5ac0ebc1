"""DiffMean / CAA (train-free): mean site activation over the answer tokens of positive sequences
minus that of negative sequences, as a :class:`~easyedit_split.updates.VectorUpdate`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..adapters import diffmean_vector
from ..data.encoding import EncodedPair, collate_sequences
from ..data.pairs import PolarityPair
from ..sites import Site
from ..updates import VectorUpdate
from .trainer import encode_for

logger = logging.getLogger(__name__)

__all__ = ["diffmean_update"]


def _batches(encoded: Sequence[EncodedPair], which: str, pad: int, batch_size: int):
    for s in range(0, len(encoded), batch_size):
        chunk = encoded[s:s + batch_size]
        items = [(e.prompt_ids, e.positive_ids if which == "pos" else e.negative_ids) for e in chunk]
        b = collate_sequences(items, pad, padding_side="right")
        yield b.input_ids, b.attention_mask, b.answer_mask


def diffmean_update(
    model: nn.Module,
    tokenizer: Any,
    pairs: Sequence[PolarityPair] | Sequence[EncodedPair],
    layer: int,
    *,
    component: str = "residual",
    hp: Any = None,
    batch_size: int = 16,
    normalize: bool = False,
) -> VectorUpdate:
    """The DiffMean vector at ``Site(layer, component)`` from the answer tokens of ``pairs``."""
    if pairs and isinstance(pairs[0], EncodedPair):
        encoded = list(pairs)
    else:
        if hp is None:
            raise ValueError("diffmean_update needs hp (chat template settings) to encode raw pairs")
        encoded = encode_for(hp, pairs, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device

    def moved(which):
        for ids, am, pm in _batches(encoded, which, int(pad), batch_size):
            yield ids.to(device), am.to(device), pm.to(device)

    with torch.no_grad():
        site = Site(int(layer), component, getattr(hp, "intervention_module_path", None))
        update = diffmean_vector(model, site, moved("pos"), moved("neg"), normalize=normalize)
    logger.info("DiffMean vector at %s: norm %.4g from %d pairs", site,
                float(update.vector.detach().norm()), len(encoded))
    return update
