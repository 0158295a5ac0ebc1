"""Concepts of the benchmark: a folder of ``<concept>.jsonl`` files, their pairs, and two seeded splits.

* **Concept folder** — any folder of ``<concept>.jsonl`` (or ``.jsonl.gz``) files in the persona layout
  (``question``, ``answer_matching_behavior``, ``answer_not_matching_behavior``) or EasyEdit's
  (``question``/``input``, ``matching``, ``not_matching``); the columns are detected per file by
  :func:`~easyedit_split.data.pairs.read_pairs`. The package embeds a small subset of Anthropic's persona
  sets (:func:`embedded_concepts_dir`), so the benchmark runs on a fresh machine without network.
* **Pairs of one concept** (:func:`split_pairs`) — deduplicated by content (a pair that occurs twice
  counts once, so a held-out pair is never also a training pair), shuffled with the seed, then cut into
  test, validation and training parts in that order (disjoint).
* **Concepts** (:func:`split_concepts`) — *tuning* concepts (only their validation pairs may be used to
  choose defaults) and *report* concepts (every figure quoted). The rule is :data:`SPLIT_RULE`; the
  split of the 120 persona sets and the embedded subset are recorded in
  ``resources/data/persona/concept_split.json`` (:func:`recorded_split`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from easyedit_split.data.formats import DataError, read_pairs
from easyedit_split.data.pairs import pair_digests, unique_pairs
from easyedit_split.data.records import PolarityPair
from easyedit_split.errors import InputError

logger = logging.getLogger(__name__)

__all__ = [
    "CONCEPT_SUFFIXES",
    "SPLIT_RULE",
    "ConceptRoles",
    "ConceptSplit",
    "concept_files",
    "digest",
    "embedded_concepts_dir",
    "load_concept_pairs",
    "recorded_split",
    "roles_for",
    "split_concepts",
    "split_pairs",
]

CONCEPT_SUFFIXES = (".jsonl", ".jsonl.gz")
SPLIT_FILE = "concept_split.json"

#: how concepts are split into tuning and report concepts (recorded with every split)
SPLIT_RULE = ("sort the concept names; the pinned concepts are tuning concepts; of the others, "
              "random.Random(f'bench-concepts/{seed}').sample(names, round(tuning_fraction * n_all) - n_pinned) are "
              "tuning concepts too (sorted); the rest are report concepts")
#: concepts that are always tuning concepts: the earlier SmolLM2 defaults were chosen on psychopathy pairs
PINNED_TUNING = ("psychopathy",)
TUNING_FRACTION = 0.25


def digest(obj: Any) -> str:
    """A short SHA-256 of ``obj``'s canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def embedded_concepts_dir() -> Path:
    """The folder of persona concepts shipped with the package (gzipped, CC BY 4.0; see its README)."""
    folder = Path(str(resources.files("easyedit_split").joinpath("resources", "data", "persona")))
    if not folder.is_dir():
        raise DataError(f"embedded concept folder missing: {folder} (broken installation?)")
    return folder


def _concept_name(path: Path) -> str | None:
    for suffix in CONCEPT_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def concept_files(folder: str | Path) -> dict[str, Path]:
    """``{concept: file}`` for every ``<concept>.jsonl`` / ``.jsonl.gz`` in ``folder`` (sorted by name)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"concept folder {root} does not exist or is not a folder (give a folder of <concept>.jsonl files)")
    found: dict[str, Path] = {}
    for path in sorted(root.iterdir()):
        name = _concept_name(path)
        if name is None or not path.is_file():
            continue
        if name in found:
            raise DataError(f"concept {name!r} has two files in {root}: {found[name].name} and {path.name}; keep one")
        found[name] = path
    if not found:
        raise DataError(f"no <concept>.jsonl files in {root}")
    return dict(sorted(found.items()))


def load_concept_pairs(path: str | Path) -> list[PolarityPair]:
    """The pairs of one concept file, deduplicated by content (first occurrence kept, file order)."""
    return unique_pairs(read_pairs(path, "auto"), source=str(path), log_level=logging.INFO)


@dataclass(frozen=True)
class ConceptSplit:
    """Disjoint training, validation and test pairs of one concept."""

    concept: str
    train: list[PolarityPair]
    val: list[PolarityPair]
    test: list[PolarityPair]

    def digests(self) -> dict[str, str]:
        """One digest per part (of its pairs' contents, in order)."""
        return {part: digest(pair_digests(getattr(self, part))) for part in ("train", "val", "test")}


def split_pairs(concept: str, pairs: Sequence[PolarityPair], *, n_train: int, n_val: int, n_test: int,
                seed: int) -> ConceptSplit:
    """Shuffle the (deduplicated) pairs with ``seed``; the first ``n_test`` are test pairs, the next ``n_val``
    validation pairs, the next ``n_train`` training pairs."""
    for what, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if n < 1:
            raise InputError(f"{what} must be >= 1, got {n}")
    need = n_train + n_val + n_test
    if len(pairs) < need:
        raise DataError(f"concept {concept!r}: {len(pairs)} distinct pairs, fewer than n_train {n_train} + n_val "
                        f"{n_val} + n_test {n_test} = {need}; use smaller sizes or leave the concept out")
    order = list(range(len(pairs)))
    random.Random(f"bench-pairs/{seed}").shuffle(order)
    shuffled = [pairs[i] for i in order]
    return ConceptSplit(concept, train=shuffled[n_test + n_val: need], val=shuffled[n_test: n_test + n_val],
                        test=shuffled[:n_test])


@dataclass
class ConceptRoles:
    """Which concepts tune the defaults and which are reported; with how the split was made."""

    tuning: list[str]
    report: list[str]
    seed: int
    rule: str = SPLIT_RULE
    source: str = "computed"  # "computed" or the recorded file it was read from
    extra: dict[str, Any] = field(default_factory=dict)

    def role(self, concept: str) -> str:
        if concept in self.tuning:
            return "tuning"
        if concept in self.report:
            return "report"
        raise KeyError(concept)

    def to_dict(self) -> dict[str, Any]:
        return {"tuning": list(self.tuning), "report": list(self.report), "seed": self.seed, "rule": self.rule,
                "source": self.source, **self.extra}


def split_concepts(names: Iterable[str], *, seed: int = 0, tuning_fraction: float = TUNING_FRACTION,
                   pinned: Sequence[str] = PINNED_TUNING) -> ConceptRoles:
    """Tuning and report concepts by :data:`SPLIT_RULE` (deterministic for the same names and seed)."""
    every = sorted(set(names))
    if not 0.0 <= tuning_fraction < 1.0:
        raise InputError(f"tuning_fraction must be in [0, 1), got {tuning_fraction}")
    pinned_here = [n for n in every if n in set(pinned)]
    rest = [n for n in every if n not in set(pinned_here)]
    k = max(0, min(len(rest), round(tuning_fraction * len(every)) - len(pinned_here)))
    drawn = random.Random(f"bench-concepts/{seed}").sample(rest, k)
    tuning = sorted(set(pinned_here) | set(drawn))
    report = [n for n in every if n not in set(tuning)]
    return ConceptRoles(tuning, report, seed, extra={"tuning_fraction": tuning_fraction, "pinned": list(pinned)})


def recorded_split() -> dict[str, Any]:
    """The recorded split (``resources/data/persona/concept_split.json``): the 120 persona sets' tuning and
    report concepts (``all``) and the embedded subset (``embedded``)."""
    path = embedded_concepts_dir() / SPLIT_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"recorded concept split {path} cannot be read ({exc})") from None


def roles_for(names: Iterable[str], *, seed: int = 0) -> ConceptRoles:
    """The roles of a folder's concepts: the recorded split where every name is in it (with seed 0), else
    :func:`split_concepts` on these names."""
    names = sorted(set(names))
    if seed == 0:
        rec = recorded_split()
        known = rec["all"]
        tuning, report = set(known["tuning"]), set(known["report"])
        if names and all(n in tuning or n in report for n in names):
            return ConceptRoles([n for n in names if n in tuning], [n for n in names if n in report], int(rec["seed"]),
                                rec["rule"], source=f"recorded ({SPLIT_FILE})",
                                extra={"tuning_fraction": rec["tuning_fraction"], "pinned": rec["pinned"]})
    return split_concepts(names, seed=seed)
