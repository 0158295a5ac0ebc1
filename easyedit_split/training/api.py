"""``train_layers``: train (or, for DiffMean, compute) one update per layer of an hparams file.

The one training entry behind ``easyedit-split train`` and EasyEdit's ``generate_<method>``. With an
output folder it writes, per layer, this package's ``layer_{L}.safetensors`` (updates plus metadata,
including the hparams, so evaluation later renders prompts the same way) and EasyEdit's
``layer_{L}.pt`` (tensors only).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from easyedit_split.base.hparams_io import HParamsError, HyperParams, load_yaml
from easyedit_split.base.methods import UnknownMethodError, hparams_class
from easyedit_split.core.updates import Update
from easyedit_split.errors import InputError
from easyedit_split.training.trainer import TrainResult

logger = logging.getLogger(__name__)

__all__ = ["LayerResult", "TrainLayersResult", "load_train_hparams", "output_folder", "train_layers"]


@dataclass
class LayerResult:
    layer: int
    update: Update
    train_result: TrainResult | None  # None for DiffMean (train-free)
    path: Path | None = None  # layer_{L}.safetensors
    easyedit_path: Path | None = None  # layer_{L}.pt

    @property
    def final_loss(self) -> float | None:
        history = self.train_result.loss_history if self.train_result is not None else None
        return history[-1] if history else None


@dataclass
class TrainLayersResult:
    method: str
    form: str
    hparams: Any
    n_pairs: int
    output_dir: Path | None
    layers: list[LayerResult] = field(default_factory=list)

    @property
    def updates(self) -> dict[int, Update]:
        return {r.layer: r.update for r in self.layers}


def load_train_hparams(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> HyperParams:
    """Read an hparams YAML once; its ``alg_name`` (after ``overrides``) picks the method's class."""
    data = load_yaml(path)
    alg = (overrides or {}).get("alg_name", data.get("alg_name", "split"))
    try:
        cls = hparams_class(alg, "train")
    except UnknownMethodError as exc:
        raise HParamsError(f"{path}: key 'alg_name': {exc}") from None
    return cls.from_dict(data, source=str(path), overrides=overrides)


_UPSTREAM_FOLDER_NAMES = ("spilt", "caa")


def output_folder(hp: Any) -> Path:
    """``steer_vector_output_dir/<name>_<form>``: ``<name>`` is the method, or upstream's spelling
    where the config uses it (``alg_name: spilt`` → ``spilt_<form>``, ``caa`` → ``caa_vector``),
    which is where EasyEdit's apply configs and ``examples/run_SPILT.py`` look."""
    alg = str(getattr(hp, "alg_name", "")).strip().lower()
    name = alg if alg in _UPSTREAM_FOLDER_NAMES else hp.method
    return Path(hp.steer_vector_output_dir) / f"{name}_{hp.form}"


def train_layers(
    hparams: HyperParams | str | os.PathLike,
    pairs: Sequence | str | os.PathLike | None = None,
    model: nn.Module | None = None,
    tokenizer: Any = None,
    *,
    output_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    device_map: str | dict | None = None,
    max_memory: dict | str | None = None,
) -> TrainLayersResult:
    """One update per layer of ``hparams.layers``.

    ``hparams``: a training hparams object or a YAML path. ``pairs``: polarity pairs, a data file or a
    built-in dataset name (default: ``steer_train_dataset``); the training part is selected with
    ``test_size``/``max_num_of_examples``. ``model``/``tokenizer`` default to ``model_name_or_path``.
    ``output_dir`` defaults to :func:`output_folder` when ``save_vectors`` is true; nothing is written
    when it is None and ``save_vectors`` is false. ``device_map``/``max_memory``: where the model is loaded
    (see :func:`~easyedit_split.core.models.load_model`), when ``model`` is not given.

    Under torchrun every rank calls this with the same arguments: each trains on its share of every
    batch (gradients summed over ranks) and rank 0 writes the files.
    """
    from easyedit_split.core.distributed import current
    from easyedit_split.core.easyedit_layout import write_easyedit_pt
    from easyedit_split.core.serialization import save_updates
    from easyedit_split.data.pairs import PolarityPair, load_pairs, pair_digests
    from easyedit_split.training.diffmean import diffmean_update
    from easyedit_split.training.trainer import Trainer, check_site, select_pairs

    hp = hparams if isinstance(hparams, HyperParams) else load_train_hparams(hparams)
    if pairs is None:
        if not hp.steer_train_dataset:
            raise HParamsError("no pairs given and hparams.steer_train_dataset is not set; pass --data or set it")
        pairs = hp.steer_train_dataset
    if isinstance(pairs, (str, os.PathLike)):
        pairs = load_pairs(pairs)
    selected = select_pairs(hp, pairs)
    if model is None:
        from easyedit_split.core.models import load_model

        model, tokenizer = load_model(hp.model_name_or_path, dtype=hp.torch_dtype, device=hp.device,
                                      device_map=device_map, max_memory=max_memory)
    elif tokenizer is None:
        raise InputError("train_layers: pass the tokenizer with the model")
    for layer in hp.layers:  # every layer's site before the first is trained: no half set of layer files
        check_site(model, hp, layer)
    folder = Path(output_dir) if output_dir is not None else (output_folder(hp) if hp.save_vectors else None)
    pt_writer = write_easyedit_pt
    if getattr(hp, "intervention_type", "addition") != "addition":
        pt_writer = None
        if folder is not None:
            logger.warning("intervention_type %s: no EasyEdit layer_L.pt is written beside the .safetensors in %s "
                           "(EasyEdit's appliers only add vectors and would apply it as an addition); the "
                           "plugin's apply, generate and sweep read the .safetensors", hp.intervention_type, folder)
    result = TrainLayersResult(hp.method, hp.form, hp, len(selected), folder)
    for layer in hp.layers:
        path = folder / f"layer_{layer}.safetensors" if folder is not None else None
        if hp.method == "diffmean":
            update = diffmean_update(model, tokenizer, selected, hp, layer=layer)
            if path is not None and current().is_main:
                save_updates(path, [update], model=model, method="diffmean", hparams=hp.to_dict(),
                             extra={"layer": layer, "n_train_pairs": len(selected),
                                    **({"train_pair_digests": pair_digests(selected)}
                                       if isinstance(selected[0], PolarityPair) else {})},
                             easyedit_pt=pt_writer)
            train_result = None
        else:
            ckpt_base = folder if folder is not None else output_folder(hp)
            ckpt_dir = hp.checkpoint_dir or (ckpt_base / f"checkpoints_layer_{layer}" if hp.checkpoint_every else None)
            train_result = Trainer(model, tokenizer, hp, layer=layer).train(
                selected, output_path=path, checkpoint_dir=ckpt_dir, resume=resume, progress=progress,
                easyedit_pt=pt_writer)
            update = train_result.updates[0]
        # the .pt is written with its .safetensors, which records the .pt's SHA-256 (a mixed pair is refused)
        pt = path.with_suffix(".pt") if path is not None and pt_writer is not None else None
        result.layers.append(LayerResult(int(layer), update, train_result, path, pt))
    return result
