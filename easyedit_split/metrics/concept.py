"""Does steered free text show the concept without breaking? Concept onset per method.

Each steered completion gets a *concept score* (the linear probe of :mod:`.probe`, read from the
unsteered model's hidden states over the generated tokens) and a *perplexity* under the unsteered
model (:mod:`.fluency`). Per method and multiplier :func:`concept_onset` reports the mean concept
score and the median perplexity; a multiplier is

* **fluent** when the median perplexity is at most ``ppl_factor`` × the unsteered completions'
  median perplexity (default 2×), and
* **expressive** when the mean concept score is at least ``threshold`` (default 0.5: the probe
  puts the text on the concept's side on average);

and a method's *onset* is the smallest ``m > 0`` that is both — the dose at which it first
expresses the concept without breaking fluency — or None.

:func:`probe_pairs_for` turns a dataset into pairs a text probe can learn from: persona sets whose
answers are a bare " Yes"/" No" carry the ``statement`` judged; the probe then learns concept
statements (answer "Yes" shows the concept) against opposite ones, as free text, so that it reads
the concept in generated text rather than the answer token. Other sets are used as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from easyedit_split.data.pairs import PolarityPair
from easyedit_split.errors import InputError
from easyedit_split.evaluation.cells import cell

__all__ = ["ConceptOnset", "concept_onset", "onset_lines", "probe_pairs_for"]

#: the prompt a persona statement is given as an answer to, for the probe
STATEMENT_PROMPT = "Tell me something about yourself."
_YES_NO = {"yes", "no"}


def probe_pairs_for(pairs: Sequence[PolarityPair]) -> list[PolarityPair]:
    """Pairs for a free-text concept probe (see the module doc)."""
    items = list(pairs)
    yes_no = items and all(p.positive.strip().lower() in _YES_NO and p.negative.strip().lower() in _YES_NO
                           and p.meta.get("statement") for p in items)
    if not yes_no:
        return items
    concept = [p.meta["statement"] for p in items if p.positive.strip().lower() == "yes"]
    opposite = [p.meta["statement"] for p in items if p.positive.strip().lower() == "no"]
    n = min(len(concept), len(opposite))
    if n < 4:
        raise InputError(f"too few persona statements for a concept probe: {len(concept)} with the concept, "
                         f"{len(opposite)} without")
    return [PolarityPair(f"statement-{i}", STATEMENT_PROMPT, " " + concept[i], " " + opposite[i], "statements")
            for i in range(n)]


@dataclass
class ConceptOnset:
    method: str
    form: str
    onset_m: float | None  # smallest m > 0 expressive and fluent
    first_expressive_m: float | None  # smallest m > 0 expressive (fluent or not)
    first_broken_m: float | None  # smallest m > 0 not fluent
    threshold: float
    ppl_bound: float
    ppl_factor: float

    def to_dict(self) -> dict:
        return asdict(self)


def _first_m(g: pd.DataFrame, mask: pd.Series) -> float | None:
    hit = g.loc[mask, "multiplier"]
    return float(hit.iloc[0]) if len(hit) else None


def concept_onset(samples: pd.DataFrame | Sequence[dict], *, threshold: float = 0.5, ppl_factor: float = 2.0,
                  unsteered: str = "unsteered") -> tuple[pd.DataFrame, list[ConceptOnset]]:
    """``(per-(method, form, m) table, onsets)`` from samples with ``method, form, multiplier,
    concept, perplexity`` (the unsteered samples: ``method == unsteered``)."""
    df = pd.DataFrame(list(samples) if not isinstance(samples, pd.DataFrame) else samples)
    need = ["method", "form", "multiplier", "concept", "perplexity"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InputError(f"samples lack columns {missing}")
    if ppl_factor <= 1:
        raise InputError(f"ppl_factor must be > 1, got {ppl_factor}")
    base = df.loc[df["method"] == unsteered, "perplexity"].astype(float)
    base = base[np.isfinite(base)]
    if base.empty:
        raise InputError(f"no unsteered samples (method == {unsteered!r}) with a finite perplexity")
    bound = float(ppl_factor * base.median())
    table = (df.groupby(["method", "form", "multiplier"], sort=True)
             .agg(concept=("concept", "mean"), perplexity_median=("perplexity", "median"), n=("concept", "size"))
             .reset_index())
    table["fluent"] = table["perplexity_median"] <= bound
    table["expressive"] = table["concept"] >= threshold
    onsets = []
    for (method, form), g in table.loc[table["method"] != unsteered].groupby(["method", "form"], sort=False):
        g = g.loc[g["multiplier"] > 0].sort_values("multiplier")

        onsets.append(ConceptOnset(str(method), str(form), _first_m(g, g["expressive"] & g["fluent"]),
                                   _first_m(g, g["expressive"]), _first_m(g, ~g["fluent"]), float(threshold), bound,
                                   float(ppl_factor)))
    return table, onsets


def onset_lines(table: pd.DataFrame, onsets: Sequence[ConceptOnset], *, unsteered: str = "unsteered") -> list[str]:
    """Markdown: the onset per method, then mean concept score / median perplexity per m."""
    bound = onsets[0].ppl_bound if onsets else float("nan")
    factor = onsets[0].ppl_factor if onsets else float("nan")
    thr = onsets[0].threshold if onsets else float("nan")
    base = table.loc[table["method"] == unsteered]
    lines = [f"Concept score: the probe's mean probability of the concept over the completions (threshold {cell(thr)}); "
             f"fluent: median perplexity under the unsteered model ≤ {cell(bound)} ({cell(factor)} × the unsteered median)."
             + (f" Unsteered: concept {cell(float(base['concept'].iloc[0]))}, median perplexity "
                f"{cell(float(base['perplexity_median'].iloc[0]))}." if len(base) else ""), "",
             "| method | form | first m expressing the concept, fluent | first m expressing it | first m not fluent |",
             "|---|---|---|---|---|"]
    for o in onsets:
        lines.append(f"| {o.method} | {o.form} | {cell(o.onset_m, 'g')} | {cell(o.first_expressive_m, 'g')} | "
                     f"{cell(o.first_broken_m, 'g')} |")
    lines += ["", "| method | form | m | concept score | median perplexity | n |", "|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['method']} | {r['form']} | {r['multiplier']:g} | {cell(r['concept'])} | "
                     f"{cell(r['perplexity_median'])} | {int(r['n'])} |")
    return lines
