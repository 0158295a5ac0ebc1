"""Comparable doses: every update rescaled so that the same ``m`` means the same amount of steering.

Equal ``m`` is not an equal dose: a DiffMean vector of norm 4.7 and a trained vector of norm 40 at
``m = 1`` move the residual stream by very different amounts. A *dose* rescales an update once,
``u → f·u`` (:meth:`~easyedit_split.core.updates.Update.scaled`), so that every later ``m`` (sweeps,
fits, generation) is in a common unit. Modes:

* ``raw`` — ``f = 1`` (the update as trained; the norms below are still measured and reported);
* ``norm`` — ``m = 1`` moves the site's output by as much as the site's own typical activation:
  ``f = ‖h‖̄ / ‖Δh‖̄``, where ``‖h‖̄`` is the mean norm of the unsteered site output and
  ``‖Δh‖̄`` the mean norm of the change the update makes there at raw ``m = 1``
  (``h(m=1) − h(m=0)``; a vector's ``‖v‖``, a LoRA's or local weight's input-dependent change),
  both averaged over the tokens of the evaluation sequences (prompt and positive answer) except
  each sequence's first token (an attention sink whose norm is orders of magnitude larger). With
  several updates the change is measured at the highest updated site (it carries the lower
  updates' effect too);
* ``accuracy`` — ``m = 1`` reaches a target accuracy on a *validation* split (never the test
  pairs): the norm dose is swept over ``probe_grid`` on the validation pairs and ``f`` is the norm
  factor times the first ``m ≥ 0`` where accuracy reaches the target
  (:func:`~.frontier.first_crossing`). If no grid point reaches it, ``f`` uses the grid point of
  highest accuracy and the dose says ``reached = False``.

:func:`measure_site_norms` does the measuring; :func:`dose_updates` returns the rescaled updates and
a :class:`Dose` record with the factor, for the report.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from easyedit_split.core.apply import apply_updates
from easyedit_split.core.record import site_output
from easyedit_split.core.sites import Site
from easyedit_split.core.updates import Update
from easyedit_split.data.encoding import collate_sequences
from easyedit_split.errors import InputError
from easyedit_split.evaluation.frontier import first_crossing
from easyedit_split.evaluation.sweep import encode_for_sweep, pad_id_of

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_PROBE_GRID", "DOSE_MODES", "Dose", "SiteNorms", "dose_updates", "measure_site_norms"]

DOSE_MODES = ("raw", "norm", "accuracy")
#: norm-dose multipliers swept on the validation pairs to find the accuracy dose
DEFAULT_PROBE_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


@dataclass
class SiteNorms:
    site: Site
    activation_norm: float  # mean ‖h‖ of the unsteered site output
    delta_norm: float  # mean ‖h(m=1) − h(m=0)‖
    n_tokens: int


@dataclass
class Dose:
    """How an update was rescaled: dose ``m`` = raw multiplier ``factor · m``."""

    mode: str
    factor: float
    site: str
    activation_norm: float
    delta_norm: float
    n_tokens: int
    target_accuracy: float | None = None
    reached: bool | None = None
    norm_m_at_target: float | None = None  # the accuracy dose in norm units
    n_validation_pairs: int | None = None

    @property
    def relative_norm(self) -> float:
        """``‖Δh‖ / ‖h‖`` of the *dosed* update at ``m = 1``."""
        return self.factor * self.delta_norm / self.activation_norm

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "relative_norm": self.relative_norm}


def _site_output(model: nn.Module, updates: Sequence[Update], site: Site, ids, mask, m: float) -> torch.Tensor:
    with apply_updates(model, updates, m):
        return site_output(model, site, ids, mask).float()


@torch.no_grad()
def measure_site_norms(model: nn.Module, tokenizer: Any, pairs: Sequence, updates: Sequence[Update], *,
                       pad_token_id: int | None = None, batch_size: int = 16, max_pairs: int = 64,
                       encode_kwargs: dict[str, Any] | None = None) -> SiteNorms:
    """Mean site-output norm and mean update-made change at raw ``m = 1`` (see the module doc)."""
    ups = list(updates)
    if not ups:
        raise InputError("no updates to measure")
    site = max((u.site for u in ups), key=lambda s: s.layer)
    encoded = encode_for_sweep(tokenizer, list(pairs)[:max_pairs], **(encode_kwargs or {}))
    pad = pad_id_of(tokenizer) if pad_token_id is None else int(pad_token_id)
    dev = next(model.parameters()).device
    clamped = any(u.acts_at_zero for u in ups)
    act_sum = delta_sum = 0.0
    n = 0
    for s in range(0, len(encoded), batch_size):
        chunk = encoded[s:s + batch_size]
        batch = collate_sequences([(e.prompt_ids, e.positive_ids) for e in chunk], pad, "right").to(dev)
        sel = batch.attention_mask.bool().clone()
        sel[:, 0] = False  # right padding: column 0 is every sequence's first token
        h0 = _site_output(model, ups, site, batch.input_ids, batch.attention_mask, 0.0)
        h1 = _site_output(model, ups, site, batch.input_ids, batch.attention_mask, 1.0)
        # the unsteered output: m = 0 is not the base model for a clamped vector (it removes its direction)
        base = _site_output(model, [], site, batch.input_ids, batch.attention_mask, 0.0) if clamped else h0
        act_sum += float(base[sel].double().norm(dim=-1).sum())
        delta_sum += float((h1 - h0)[sel].double().norm(dim=-1).sum())
        n += int(sel.sum())
    if n == 0:
        raise InputError("no tokens to measure norms on (every sequence has a single token)")
    return SiteNorms(site, act_sum / n, delta_sum / n, n)


def dose_updates(
    model: nn.Module,
    tokenizer: Any,
    updates: Sequence[Update],
    mode: str,
    *,
    norm_pairs: Sequence,
    validation_pairs: Sequence | None = None,
    target_accuracy: float = 0.9,
    probe_grid: Sequence[float] = DEFAULT_PROBE_GRID,
    encode_kwargs: dict[str, Any] | None = None,
    batch_rows: int = 128,
    name: str = "update",
) -> tuple[list[Update], Dose]:
    """``(rescaled updates, Dose)`` for ``mode`` in :data:`DOSE_MODES`.

    ``norm_pairs``: pairs whose sequences the norms are averaged over (the evaluation prompts;
    no labels are used). ``validation_pairs``: the accuracy mode's calibration pairs — keep them
    apart from the test pairs.
    """
    if mode not in DOSE_MODES:
        raise InputError(f"dose must be one of {DOSE_MODES}, got {mode!r}")
    ups = list(updates)
    norms = measure_site_norms(model, tokenizer, norm_pairs, ups, encode_kwargs=encode_kwargs)
    if norms.delta_norm <= 0 or not np.isfinite(norms.delta_norm):
        raise InputError(f"{name}: the update changes nothing at {norms.site} (mean ‖Δh‖ = {norms.delta_norm}); "
                         "it cannot be dosed")
    base = {"site": str(norms.site), "activation_norm": norms.activation_norm, "delta_norm": norms.delta_norm,
                "n_tokens": norms.n_tokens}
    if mode == "raw":
        return ups, Dose("raw", 1.0, **base)
    norm_factor = norms.activation_norm / norms.delta_norm
    if mode == "norm":
        dose = Dose("norm", norm_factor, **base)
        logger.info("%s: norm dose ×%.4g (‖h‖=%.3g, ‖Δh‖=%.3g at %s)", name, norm_factor, norms.activation_norm,
                    norms.delta_norm, norms.site)
        return [u.scaled(norm_factor) for u in ups], dose
    if not validation_pairs:
        raise InputError(f"{name}: the accuracy dose needs validation pairs (apart from the test pairs)")
    if not 0 < target_accuracy <= 1:
        raise InputError(f"target accuracy must be in (0, 1], got {target_accuracy}")
    from easyedit_split.evaluation.logodds import summarize
    from easyedit_split.evaluation.sweep import sweep

    grid = sorted({0.0, *(float(g) for g in probe_grid)})
    if max(grid) <= 0:
        raise InputError(f"probe_grid {list(probe_grid)} has no positive multiplier")
    normed = [u.scaled(norm_factor) for u in ups]
    table = sweep(model, tokenizer, encode_for_sweep(tokenizer, validation_pairs, **(encode_kwargs or {})), normed,
                  grid, batch_rows=batch_rows, progress=False)
    acc = summarize(table, n_boot=0).set_index("m")["accuracy"].reindex(grid).to_numpy()
    m_t = first_crossing(grid, acc, target_accuracy)
    reached = m_t is not None and m_t > 0
    if m_t is None or m_t == 0:
        pos = [i for i, g in enumerate(grid) if g > 0]
        best = max(pos, key=lambda i: (acc[i], -grid[i]))
        if m_t is None:
            logger.warning("%s: validation accuracy never reaches %.3g on the norm-dose grid (best %.3g at m=%g); "
                           "the accuracy dose uses that point", name, target_accuracy, acc[best], grid[best])
        else:
            logger.warning("%s: the unsteered model already reaches validation accuracy %.3g; the accuracy dose "
                           "uses the best positive grid point (m=%g)", name, target_accuracy, grid[best])
        m_t = grid[best]
    factor = norm_factor * m_t
    dose = Dose("accuracy", factor, **base, target_accuracy=float(target_accuracy), reached=bool(reached),
                norm_m_at_target=float(m_t), n_validation_pairs=len(validation_pairs))
    logger.info("%s: accuracy dose ×%.4g (norm dose m=%.3g reaches validation accuracy %.3g: %s)", name, factor, m_t,
                target_accuracy, reached)
    return [u.scaled(factor) for u in ups], dose


def dose_all(model: nn.Module, tokenizer: Any, specs: Mapping[str, Any], mode: str, *, norm_pairs: Sequence,
             validation_pairs: Sequence | None = None, target_accuracy: float = 0.9,
             probe_grid: Sequence[float] = DEFAULT_PROBE_GRID, batch_rows: int = 128) -> tuple[dict, dict[str, Dose]]:
    """Dose every named update spec (anything :func:`~easyedit_split.adapters.artefacts.load_artefact` takes) the same way.

    Returns ``({name: LoadedUpdates with the rescaled updates}, {name: Dose})``; the prompts of the
    accuracy mode's validation sweep are rendered as each update was trained.
    """
    from easyedit_split.adapters.artefacts import load_artefact

    loaded_out, doses = {}, {}
    for name, spec in specs.items():
        loaded = load_artefact(spec, model)
        ups, dose = dose_updates(model, tokenizer, loaded.updates, mode, norm_pairs=norm_pairs,
                                 validation_pairs=validation_pairs, target_accuracy=target_accuracy,
                                 probe_grid=probe_grid, encode_kwargs=loaded.rendering(), batch_rows=batch_rows,
                                 name=name)
        loaded_out[name] = dataclasses.replace(loaded, updates=ups)
        doses[name] = dose
    return loaded_out, doses


def dose_lines(doses: Mapping[str, Dose]) -> list[str]:
    """Markdown: each method's dose (the factor turning dose m into the raw multiplier)."""
    lines = [("| method | dose | factor (raw m per dose m) | site | mean ‖h‖ | mean ‖Δh‖ at raw m=1 | ‖Δh‖/‖h‖ at dose m=1 "
             "| validation target |"), "|---|---|---|---|---|---|---|---|"]
    for name, d in doses.items():
        target = "–" if d.target_accuracy is None else (
            f"accuracy {d.target_accuracy:g} at norm m={d.norm_m_at_target:.3g}"
            + ("" if d.reached else " (not reached: best point used)") + f", {d.n_validation_pairs} pairs")
        lines.append(f"| {name} | {d.mode} | {d.factor:.4g} | {d.site} | {d.activation_norm:.4g} | {d.delta_norm:.4g} | "
                     f"{d.relative_norm:.3g} | {target} |")
    return lines
