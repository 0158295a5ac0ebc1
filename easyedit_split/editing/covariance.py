"""ROME/MEMIT covariance statistics computed offline from local text, in EasyEdit's own cache format.

ROME (with ``mom2_adjustment: true``) and MEMIT need the second moment ``C = E[k kᵀ]`` of the
inputs ``k`` of the edited module (the MLP down-projection). EasyEdit's ``layer_stats`` computes it
over Wikipedia or WikiText, downloaded with ``datasets.load_dataset`` — impossible offline — but
it first looks for a cached result::

    {stats_dir}/{model folder name}/{mom2_dataset}_stats/{layer}_{mom2_dtype}_mom2_{mom2_n_samples}.npz

and, when that file exists and records the same ``sample_size``, loads it and never touches the
dataset. :func:`write_local_stats` writes exactly that file, computed with EasyEdit's own
statistics classes (``CombinedStat``/``SecondMoment``, ``nethook.TraceDict``, ``save_cached_state``)
over a local corpus: the first ``mom2_n_samples`` texts of :func:`local_corpus` — the questions
and answers of the shipped data sets (psychopathy statements, sentiment prompts and reviews,
power-seeking questions). That is far less text than the 100 000 Wikipedia articles EasyEdit's
YAMLs ask for, so the statistics are noisier; the report says which corpus and how many texts.
Set ``mom2_dataset`` to a name of your own (the shipped YAMLs say ``easyedit_split_local``) so the
file can never be mistaken for Wikipedia statistics.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from easyedit_split.base.atomic_io import atomic_path
from easyedit_split.data.pairs import load_builtin
from easyedit_split.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["CORPUS_DATASETS", "local_corpus", "stats_file", "write_local_stats"]

#: shipped data sets whose text makes up the local corpus, in this order
CORPUS_DATASETS = ("psychopathy", "sentiment", "power-seeking")


def local_corpus(limit: int | None = None) -> list[str]:
    """Texts from the shipped data: each pair's question followed by its positive answer, then by its negative."""
    texts: list[str] = []
    for name in CORPUS_DATASETS:
        for pair in load_builtin(name):
            texts.append(pair.question + pair.positive)
            texts.append(pair.question + pair.negative)
            if limit is not None and len(texts) >= limit:
                return texts[:limit]
    return texts


def stats_file(stats_dir: str | os.PathLike, model: nn.Module, layer_name: str, ds_name: str, precision: str,
               sample_size: int) -> Path:
    """The path where EasyEdit's ``layer_stats`` looks for cached ``mom2`` statistics."""
    model_name = str(model.config._name_or_path).rsplit("/")[-1]
    return Path(stats_dir) / model_name / f"{ds_name}_stats" / f"{layer_name}_{precision}_mom2_{sample_size}.npz"


def _save_stat(path: Path, stat: Any, sample_size: int) -> None:
    """EasyEdit's ``save_cached_state`` layout (the stat's state dict plus ``sample_size``), written atomically."""
    from easyeditor.util.runningstats import box_numpy_null

    state = stat.state_dict()
    state["sample_size"] = sample_size
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **box_numpy_null(state))


@torch.no_grad()
def write_local_stats(model: nn.Module, tokenizer: Any, hparams: Any, *, texts: Sequence[str] | None = None,
                      batch_size: int = 32, max_length: int = 128, force: bool = False) -> list[Path]:
    """Write EasyEdit's cached ``mom2`` statistics for every layer of ``hparams`` (ROME/MEMIT hparams).

    Reads ``hparams.layers``, ``rewrite_module_tmp``, ``stats_dir``, ``mom2_dataset``,
    ``mom2_n_samples`` and ``mom2_dtype``; uses the first ``mom2_n_samples`` of ``texts`` (default
    :func:`local_corpus`). Existing files are kept unless ``force``. Returns the files.
    """
    from easyeditor.models.rome.tok_dataset import flatten_masked_batch
    from easyeditor.util.nethook import TraceDict
    from easyeditor.util.runningstats import CombinedStat, SecondMoment

    n = int(hparams.mom2_n_samples)
    corpus = list(texts) if texts is not None else local_corpus(n)
    if len(corpus) < n:
        raise InputError(f"mom2_n_samples is {n} but the local corpus has only {len(corpus)} texts; "
                         f"lower mom2_n_samples in the hparams")
    corpus = corpus[:n]
    layer_names = [hparams.rewrite_module_tmp.format(layer) for layer in hparams.layers]
    files = {name: stats_file(hparams.stats_dir, model, name, hparams.mom2_dataset, hparams.mom2_dtype, n)
             for name in layer_names}
    todo = [name for name in layer_names if force or not files[name].exists()]
    if not todo:
        return list(files.values())
    dtype = getattr(torch, hparams.mom2_dtype)
    stats = {name: CombinedStat(mom2=SecondMoment()) for name in todo}
    device = next(model.parameters()).device
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch_size):
            batch = tokenizer(corpus[start:start + batch_size], return_tensors="pt", padding=True, truncation=True,
                              max_length=max_length).to(device)
            with TraceDict(model, todo, retain_input=True, retain_output=False, stop=True) as traces:
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            for name in todo:
                feats = flatten_masked_batch(traces[name].input, batch["attention_mask"])
                stats[name].add(feats.to(dtype))
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    for name in todo:
        stats[name].to_(device="cpu")
        _save_stat(files[name], stats[name], n)
        logger.info("wrote %s (%d texts, %d key vectors)", files[name], n, stats[name].mom2.count)
    return list(files.values())
