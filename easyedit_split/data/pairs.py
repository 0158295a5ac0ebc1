"""Polarity-paired examples: splitting, content digests and the shipped datasets (reading a file is
:func:`~easyedit_split.data.formats.read_pairs`, its rows :mod:`easyedit_split.data.records`; both are
re-exported here)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from easyedit_split.data.formats import DataError, DatasetFormat, read_pairs
from easyedit_split.data.records import SUFFIX_TYPES, PolarityPair, iter_records

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_DATASETS",
    "PolarityPair",
    "builtin_dataset_path",
    "check_pairs",
    "iter_records",
    "load_builtin",
    "load_pairs",
    "pair_digests",
    "read_pairs",
    "train_test_split",
    "unique_pairs",
]

BUILTIN_DATASETS: dict[str, tuple[str, str]] = {
    # name -> (file under resources/data, format)
    "psychopathy": ("psychopathy.jsonl", "persona"),
    "power-seeking": ("power-seeking-inclination.jsonl", "persona"),
    "sentiment": ("sentiment.jsonl", "persona"),
}
_BUILTIN_ALIASES = {
    "powerseeking": "power-seeking",
    "power_seeking": "power-seeking",
    "power-seeking-inclination": "power-seeking",
}


# ------------------------------------------------------------------------------------------ splitting


def train_test_split(
    pairs: Sequence[PolarityPair],
    test_size: int | float,  # noqa: PYI041
    seed: int,
) -> tuple[list[PolarityPair], list[PolarityPair]]:
    """Seeded, deterministic split. ``test_size`` is a count (int) or a fraction in (0, 1) (float).

    Both parts keep the original order of ``pairs``.
    """
    from easyedit_split.base.checks import check_seed

    check_seed(seed)
    pairs = check_pairs(pairs, "train_test_split", allow_empty=True)
    n = len(pairs)
    if isinstance(test_size, bool):
        raise DataError(f"test_size must be a count or a fraction in (0, 1), got {test_size!r}")
    if isinstance(test_size, float):
        if not 0.0 < test_size < 1.0:
            raise DataError(f"a fractional test_size must be in (0, 1), got {test_size}")
        n_test = round(n * test_size)
    else:
        n_test = int(test_size)
    if not 0 <= n_test <= n:
        raise DataError(f"test_size {test_size} does not fit {n} pairs")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    test_idx = set(order[:n_test])
    train = [p for i, p in enumerate(pairs) if i not in test_idx]
    test = [p for i, p in enumerate(pairs) if i in test_idx]
    return train, test


def check_pairs(pairs: Sequence, what: str, *, allow_empty: bool = False, encoded_ok: bool = False) -> list:
    """``pairs`` as a list, checked where they enter the API (training, evaluation, splitting): each a
    :class:`PolarityPair` (what :func:`load_pairs` gives; with ``encoded_ok`` also an ``EncodedPair``)
    with text answers that are not empty. A pair whose two answers are identical carries no preference
    and is warned about (the file readers skip such rows; a pair built in Python is kept)."""
    from easyedit_split.errors import InputError, InputTypeError

    if isinstance(pairs, (str, bytes, os.PathLike)) or not isinstance(pairs, Sequence):
        raise InputTypeError(f"{what}: pairs must be a list of PolarityPair (e.g. from load_pairs(path)), got "
                             f"{type(pairs).__name__}")
    items = list(pairs)
    if not items and not allow_empty:
        raise InputError(f"{what}: no pairs given")
    same = []
    for i, p in enumerate(items):
        if encoded_ok and type(p).__name__ == "EncodedPair":  # (data.encoding imports this module)
            continue
        if not isinstance(p, PolarityPair):
            raise InputTypeError(f"{what}: pair {i} is a {type(p).__name__}, not a PolarityPair; build pairs with "
                                 "load_pairs(path) or PolarityPair(id, question, positive, negative, source)")
        fields = {"question": p.question, "positive": p.positive, "negative": p.negative}
        bad = [k for k, v in fields.items() if not isinstance(v, str)]
        if bad:
            raise InputTypeError(f"{what}: pair {i} ({p.source}) has a {bad[0]} that is not text: "
                                 f"{type(fields[bad[0]]).__name__}")
        empty = [k for k in ("positive", "negative") if not fields[k].strip()]
        if empty:
            raise InputError(f"{what}: pair {i} ({p.source}) has an empty {empty[0]} answer; there is nothing to score")
        if p.positive == p.negative:
            same.append(p.source or str(i))
    if same:
        logger.warning("%s: %d pair(s) have identical positive and negative answers (%s); they carry no preference "
                       "and only dilute the results", what, len(same), ", ".join(same[:5]))
    return items


def unique_pairs(pairs: Sequence[PolarityPair], source: str = "the data",
                 log_level: int = logging.WARNING) -> list[PolarityPair]:
    """``pairs`` without repeats (same question and answers, :func:`pair_digests`), first occurrence kept, with
    a message (a warning by default) saying how many were dropped: split after this, a pair can never be both
    a training and a held-out pair."""
    seen: set[str] = set()
    out = []
    for p, d in zip(pairs, pair_digests(pairs)):
        if d not in seen:
            seen.add(d)
            out.append(p)
    if len(out) < len(pairs):
        logger.log(log_level, "%s holds %d repeated pair(s) (same question and answers); each is kept once, so that "
                   "no held-out pair is also a training pair", source, len(pairs) - len(out))
    return out


def pair_digests(pairs: Sequence[PolarityPair]) -> list[str]:
    """A short SHA-256 of each pair's content (question and both answers; not its id or source), so that
    the same example is recognised in another file, split or run (e.g. training pairs among held-out ones)."""
    return [hashlib.sha256(json.dumps([p.question, p.positive, p.negative]).encode()).hexdigest()[:16]
            for p in pairs]


# ------------------------------------------------------------------------------------ shipped datasets


def _canonical_dataset(name: str) -> str:
    key = name.strip().lower()
    key = _BUILTIN_ALIASES.get(key, key)
    if key not in BUILTIN_DATASETS:
        raise DataError(f"unknown built-in dataset {name!r}; choose one of {', '.join(BUILTIN_DATASETS)}")
    return key


def builtin_dataset_path(name: str) -> Path:
    """Path of a dataset shipped with the package: ``psychopathy``, ``power-seeking`` or ``sentiment``."""
    filename = BUILTIN_DATASETS[_canonical_dataset(name)][0]
    path = Path(str(resources.files("easyedit_split").joinpath("resources", "data", filename)))
    if not path.is_file():
        raise DataError(f"shipped dataset file missing: {path} (broken installation?)")
    return path


def load_builtin(name: str, *, strict: bool = True, limit: int | None = None) -> list[PolarityPair]:
    """Read a shipped dataset (all rows are valid, so ``strict`` defaults to True)."""
    key = _canonical_dataset(name)
    return read_pairs(builtin_dataset_path(key), BUILTIN_DATASETS[key][1], strict=strict, limit=limit)


def load_pairs(
    name_or_path: str | os.PathLike, format: str | DatasetFormat = "auto", *, limit: int | None = None
) -> list[PolarityPair]:
    """Pairs from a data file when ``name_or_path`` exists, else from the shipped dataset of that name.

    A missing path that looks like a path (a folder separator or a data-file suffix) is reported as a
    missing file, not as an unknown built-in dataset. ``format`` applies to files (shipped datasets
    know their own).
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists() or os.path.lexists(path):  # (a broken link or a loop is reported as such by read_pairs)
        return read_pairs(path, format, limit=limit)
    looks_like_path = isinstance(name_or_path, os.PathLike) or "/" in text or os.sep in text \
        or path.suffix.lower() in SUFFIX_TYPES
    if looks_like_path:
        raise DataError(f"data file {path} does not exist")
    return load_builtin(text, limit=limit)
