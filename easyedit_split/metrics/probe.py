"""Concept score from a linear probe on hidden states.

The probe is a scikit-learn logistic regression (after standardisation) on the residual-stream hidden
state at one layer, mean-pooled over the answer tokens of polarity-paired data: the positive answer's
features are labelled 1, the negative answer's 0. Pairs (not single answers) are split into train and
held-out test, so both answers of a pair sit on the same side; the held-out accuracy is reported.
Applied to a generated text (hidden states of the *unsteered* model over the generated tokens, given
the prompt), the probe's probability of class 1 is the concept score.

``pooling="answer"`` averages over the answer (generated) tokens only; ``"all"`` over prompt and answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from easyedit_split.base.progress import progress as progress_bar
from easyedit_split.core.generation import Generation
from easyedit_split.core.record import site_output
from easyedit_split.core.sites import Site
from easyedit_split.data.encoding import collate_sequences, encode_pairs, pad_id_of
from easyedit_split.data.pairs import PolarityPair, train_test_split
from easyedit_split.errors import InputError

__all__ = ["ConceptProbe", "fit_concept_probe", "pooled_hidden_states"]

POOLINGS = ("answer", "all")


def pooled_hidden_states(
    model: nn.Module,
    items: Sequence[tuple[Sequence[int], Sequence[int]]],
    layer: int,
    *,
    pooling: str = "answer",
    pad_token_id: int = 0,
    batch_size: int = 16,
    progress: bool = False,
) -> torch.Tensor:
    """``[N, D]`` float32: the residual stream at ``layer``'s output, mean over each item's tokens.

    ``items`` are ``(prompt_ids, answer_ids)``; every answer must have at least one token.
    """
    if pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    site = Site(layer, "residual")
    device = next(model.parameters()).device
    out: list[torch.Tensor] = []
    batches = [list(range(k, min(k + batch_size, len(items)))) for k in range(0, len(items), batch_size)]
    with torch.no_grad():
        for rows in progress_bar(batches, desc="probe features", unit="batch", enabled=progress):
            batch = collate_sequences([items[i] for i in rows], pad_token_id, "right").to(device)
            h = site_output(model, site, batch.input_ids, batch.attention_mask).float()  # [B, T, D]; stops there
            mask = batch.answer_mask if pooling == "answer" else batch.attention_mask.bool()
            w = mask.to(h.dtype).unsqueeze(-1)
            out.append(((h * w).sum(1) / w.sum(1)).cpu())
    if not out:
        raise InputError("no items to compute hidden states of")
    return torch.cat(out)


@dataclass
class ConceptProbe:
    """A fitted probe: ``predict_proba(features)`` and ``score(model, generations)``."""

    layer: int
    pooling: str
    classifier: Any  # sklearn Pipeline(StandardScaler, LogisticRegression)
    train_accuracy: float
    test_accuracy: float
    n_train_pairs: int
    n_test_pairs: int
    meta: dict = field(default_factory=dict)

    def predict_proba(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        x = features.numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
        return self.classifier.predict_proba(x)[:, 1]

    def score(
        self,
        model: nn.Module,
        generations: Sequence[Generation] | Sequence[tuple[Sequence[int], Sequence[int]]],
        *,
        pad_token_id: int = 0,
        batch_size: int = 16,
        progress: bool = True,
    ) -> list[float]:
        """Probability of the concept for each generation (NaN for an empty one)."""
        items = [
            (list(g.prompt_ids), list(g.token_ids)) if isinstance(g, Generation) else (list(g[0]), list(g[1]))
            for g in generations
        ]
        keep = [i for i, (_, a) in enumerate(items) if a]
        scores = [math.nan] * len(items)
        if keep:
            feats = pooled_hidden_states(
                model,
                [items[i] for i in keep],
                self.layer,
                pooling=self.pooling,
                pad_token_id=pad_token_id,
                batch_size=batch_size,
                progress=progress,
            )
            for i, p in zip(keep, self.predict_proba(feats)):
                scores[i] = float(p)
        return scores

    def summary(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "pooling": self.pooling,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "n_train_pairs": self.n_train_pairs,
            "n_test_pairs": self.n_test_pairs,
            **self.meta,
        }


def _features_and_labels(model, encoded, layer, pooling, pad_token_id, batch_size, progress):
    items = [(e.prompt_ids, e.positive_ids) for e in encoded] + [
        (e.prompt_ids, e.negative_ids) for e in encoded
    ]
    labels = np.array([1] * len(encoded) + [0] * len(encoded))
    feats = pooled_hidden_states(
        model,
        items,
        layer,
        pooling=pooling,
        pad_token_id=pad_token_id,
        batch_size=batch_size,
        progress=progress,
    )
    return feats.numpy(), labels


def fit_concept_probe(
    model: nn.Module,
    tokenizer: Any,
    pairs: Sequence[PolarityPair],
    layer: int,
    *,
    test_size: float = 0.25,
    seed: int = 0,
    C: float = 1.0,
    pooling: str = "answer",
    chat_template: bool | None = None,
    system_prompt: str | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> ConceptProbe:
    """Fit the probe on ``pairs`` (positive answer = 1, negative = 0) with a held-out pair split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(pairs) < 4:
        raise InputError(f"a concept probe needs at least 4 pairs, got {len(pairs)}")
    train, test = train_test_split(pairs, test_size, seed)
    if not train or not test:
        raise InputError(
            f"test_size {test_size} leaves {len(train)} train and {len(test)} test pairs; both must be > 0"
        )
    pad = pad_id_of(tokenizer)
    kw = {"chat_template": chat_template, "system_prompt": system_prompt}
    x_tr, y_tr = _features_and_labels(
        model, encode_pairs(train, tokenizer, **kw), layer, pooling, pad, batch_size, progress
    )
    x_te, y_te = _features_and_labels(
        model, encode_pairs(test, tokenizer, **kw), layer, pooling, pad, batch_size, progress
    )
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
    clf.fit(x_tr, y_tr)
    return ConceptProbe(
        layer=layer,
        pooling=pooling,
        classifier=clf,
        train_accuracy=float(clf.score(x_tr, y_tr)),
        test_accuracy=float(clf.score(x_te, y_te)),
        n_train_pairs=len(train),
        n_test_pairs=len(test),
        meta={"C": C, "seed": seed, "test_size": test_size},
    )
