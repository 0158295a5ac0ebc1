"""Polarity-paired examples, readers with per-row validation, splitting and the shipped datasets."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import math
import os
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..safe_text import shown
from .formats import (
    SUFFIX_TYPES,
    DataError,
    DatasetFormat,
    detect_format,
    first_entry,
    get_format,
    resolve_columns,
)

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_DATASETS",
    "PolarityPair",
    "builtin_dataset_path",
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


@dataclass(frozen=True)
class PolarityPair:
    """One contrastive example: a query, the answer showing the concept and the one showing its opposite."""

    id: str
    question: str
    positive: str
    negative: str
    source: str  # "file:line" (1-based line for jsonl/csv; 1-based record index for json/parquet)
    meta: dict = field(default_factory=dict, compare=False, hash=False)


# ------------------------------------------------------------------------------------------- readers


def _infer_file_type(path: Path) -> str:
    return SUFFIX_TYPES.get(path.suffix.lower(), "jsonl")


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (kept by surrogateescape)


def _not_utf8(where: str) -> DataError:
    return DataError(f"{where}: not UTF-8 text (undecodable bytes); re-save the file as UTF-8")


def _read_text(path: Path) -> str:
    """The file's text: UTF-8 (a BOM is dropped) or UTF-16 with a BOM (spreadsheet "Unicode text").

    Bytes that are not UTF-8 are kept as surrogate escapes, so a bad row can be reported by line and
    skipped instead of failing the whole file.
    """
    raw = path.read_bytes()
    if b"\x00" in raw[:4096] and not raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"{path}: holds NUL bytes, so it is not UTF-8 text — probably UTF-16 (or UTF-32) without a "
                        "byte-order mark; re-save it as UTF-8 (or as UTF-16 with a BOM)")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: starts with a UTF-16 byte-order mark but is not UTF-16 ({exc.reason} at "
                            f"byte {exc.start}); re-save it as UTF-8") from None
    return raw.decode("utf-8-sig", errors="surrogateescape")


def _check_data_file(path: Path) -> None:
    """A :class:`DataError` saying what ``path`` is when it is not a readable file (missing, a folder, a
    broken symlink or a symlink loop)."""
    try:
        path.stat()
    except FileNotFoundError:
        if os.path.lexists(path):
            raise DataError(f"data file {path} is a symbolic link to a file that does not exist") from None
        raise DataError(f"data file {path} does not exist") from None
    except OSError as exc:  # ELOOP, ENAMETOOLONG, EACCES …
        raise DataError(f"data file {path} cannot be read ({exc.strerror or exc}"
                        f"{'; a symbolic link that points back to itself' if exc.errno == 40 else ''})") from None
    if path.is_dir():
        raise DataError(f"data file {path} is a folder; give the data file inside it (.jsonl, .json, .csv, .tsv or "
                        ".parquet)")
    if not path.is_file():
        raise DataError(f"data file {path} is not a regular file")


def iter_records(path: str | os.PathLike, file_type: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_or_index, record)``; a row that cannot be read (unparseable JSON, bytes that are not
    UTF-8) yields ``(line, DataError(...))`` so the caller can report it by line and skip it."""
    path = Path(path)
    _check_data_file(path)
    ftype = file_type or _infer_file_type(path)
    if ftype == "jsonl":
        for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
            if not line.strip():
                continue
            if _UNDECODABLE.search(line):
                yield lineno, _not_utf8("line")
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, DataError(f"unparseable JSON line ({exc.msg} at column {exc.colno})")
    elif ftype == "json":
        text = _read_text(path)
        bad = _UNDECODABLE.search(text)
        if bad:
            raise _not_utf8(f"{path}:{text.count(chr(10), 0, bad.start()) + 1}")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: unparseable JSON ({exc.msg})") from exc
        if isinstance(obj, dict):  # {"data": [...]} or {id: record}
            if isinstance(obj.get("data"), list):
                obj = obj["data"]
            elif obj and all(isinstance(v, dict) for v in obj.values()):
                obj = [dict(v, _key=k) for k, v in obj.items()]
            else:
                raise DataError(f"{path}: a JSON data file holds a list of records (objects with question and answer "
                                "fields), {\"data\": [records]} or {id: record}; this is an object with keys "
                                f"{shown(sorted(map(str, obj))[:8])}")
        if not isinstance(obj, list):
            raise DataError(f"{path}: a JSON data file must hold a list of records (objects with question and answer "
                            f"fields), got a {type(obj).__name__}")
        yield from enumerate(obj, start=1)
    elif ftype == "csv":
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        reader = csv.DictReader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter)
        try:
            header = reader.fieldnames or []
            if any(_UNDECODABLE.search(h) for h in header if h):
                raise _not_utf8(f"{path}:1 (header)")
            for row in reader:
                # reader.line_num is the physical line on which the record ends
                if any(isinstance(v, str) and _UNDECODABLE.search(v) for v in row.values()):
                    yield reader.line_num, _not_utf8("row")
                    continue
                yield reader.line_num, {k: v for k, v in row.items() if k is not None}
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    elif ftype == "parquet":
        try:
            import pandas as pd

            frame = pd.read_parquet(path)
        except ImportError as exc:
            raise DataError(f"reading {path} needs pyarrow: pip install 'easyedit-split[parquet]'") from exc
        except Exception as exc:
            raise DataError(f"could not read parquet file {path}: {exc}") from exc
        for index, row in enumerate(frame.to_dict(orient="records"), start=1):
            yield index, row
    else:
        raise DataError(f"unsupported file type {ftype!r} for {path} (jsonl, json, csv or parquet)")


def _peek_columns(path: Path, file_type: str) -> set[str]:
    for _, record in iter_records(path, file_type):
        if isinstance(record, dict):
            return set(record)
    return set()


def _field_value(record: dict, key: str) -> Any:
    """The field's value; a list (as in EasyEdit's in-memory data) stands for its first element."""
    return first_entry(record.get(key))


def _field_problem(record: dict, key: str, *, allow_empty: bool = False) -> str | None:
    value = _field_value(record, key)
    if value is None:
        return f"missing field {key!r}"
    if isinstance(value, float) and math.isnan(value):
        return f"missing field {key!r}"
    if not isinstance(value, str):
        return f"field {key!r} is {type(value).__name__}, not a string"
    if not allow_empty and not value.strip():
        return f"field {key!r} is empty"
    return None


def read_pairs(
    path: str | os.PathLike,
    format: str | DatasetFormat = "auto",
    *,
    strict: bool = False,
    limit: int | None = None,
) -> list[PolarityPair]:
    """Read polarity pairs from a jsonl/json/csv/parquet file.

    ``format`` is ``"auto"`` (detect from the columns), a built-in format name (``persona``,
    ``psychopathy``, ``powerseeking``, ``axbench``) or a :class:`DatasetFormat`; a DatasetFormat's own
    ``path`` is ignored in favour of ``path``. Column names are matched case- and whitespace-insensitively
    (a spreadsheet's BOM is dropped); ``auto`` accepts the in-memory API's names (``question``/``input``/
    ``prompt``, …) and a column that cannot be mapped is a :class:`DataError` naming the file and its
    columns. Text is UTF-8 (with or without BOM) or UTF-16 with a BOM. Bad rows (bytes that are not
    UTF-8, missing or non-string field, empty answer, identical answers, unparseable JSON line) are skipped with one warning each naming ``file:line``,
    or, with ``strict=True``, reported together in a :class:`DataError`. ``limit`` caps the number of
    pairs returned (rows are read in file order).
    """
    path = Path(path)
    _check_data_file(path)
    if isinstance(format, DatasetFormat):
        fmt = format
        file_type = fmt.file_type if fmt.path is None or Path(fmt.path) == path else _infer_file_type(path)
    else:
        file_type = _infer_file_type(path)
        fmt = None if str(format).lower() == "auto" else get_format(str(format))
    columns = _peek_columns(path, file_type)
    if not columns:
        first = next((r for _, r in iter_records(path, file_type) if not isinstance(r, DataError)), None)
        what = "no records" if first is None else f"no record with named fields (the first is a {type(first).__name__})"
        raise DataError(f"{path} holds {what}; a data file holds records such as {{\"question\": …, \"matching\": …, "
                        "\"not_matching\": …}} (one JSON object per line in .jsonl, a list of them in .json, rows under a "
                        "header in .csv)")
    source = str(path)
    fmt = detect_format(columns, source=source) if fmt is None else resolve_columns(fmt, columns, source=source)
    name = path.name

    pairs: list[PolarityPair] = []
    problems: list[str] = []
    for lineno, record in iter_records(path, file_type):
        where = f"{path}:{lineno}"
        if isinstance(record, DataError):
            problems.append(f"{where}: {record}")
            continue
        if not isinstance(record, dict):
            problems.append(f"{where}: record is {type(record).__name__}, not an object")
            continue
        if fmt.filter and any(str(record.get(k)) != str(v) for k, v in fmt.filter.items()):
            continue
        issue = (
            (_field_problem(record, fmt.question_field, allow_empty=True) if fmt.question_field else None)
            or _field_problem(record, fmt.positive_field)
            or _field_problem(record, fmt.negative_field)
        )
        if issue is None and _field_value(record, fmt.positive_field) == _field_value(record, fmt.negative_field):
            issue = "positive and negative answers are identical"
        if issue is not None:
            problems.append(f"{where}: {issue}")
            continue
        if fmt.id_field and record.get(fmt.id_field) not in (None, ""):
            pair_id = str(record[fmt.id_field])
        else:
            pair_id = f"{path.stem}-{lineno}"
        used = {fmt.question_field, fmt.positive_field, fmt.negative_field, fmt.id_field}
        meta = {k: v for k, v in record.items() if k not in used}
        if fmt.concept_field and fmt.concept_field in record:
            meta["concept"] = record[fmt.concept_field]
        pairs.append(
            PolarityPair(
                id=pair_id,
                question=_field_value(record, fmt.question_field) if fmt.question_field else "",
                positive=_field_value(record, fmt.positive_field),
                negative=_field_value(record, fmt.negative_field),
                source=f"{name}:{lineno}",
                meta=meta,
            )
        )
        if limit is not None and len(pairs) >= limit:
            break

    if problems:
        if strict:
            shown = "\n  ".join(problems[:50])
            more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
            raise DataError(f"{len(problems)} bad row(s) in {path}:\n  {shown}{more}")
        for problem in problems:
            logger.warning("skipping bad row %s", problem)
        logger.warning("skipped %d bad row(s) of %s; kept %d pair(s)", len(problems), path, len(pairs))
    if not pairs:
        raise DataError(f"no valid polarity pairs in {path} (format {fmt.name or 'custom'})")
    return pairs


# ------------------------------------------------------------------------------------------ splitting


def train_test_split(
    pairs: Sequence[PolarityPair],
    test_size: int | float,  # noqa: PYI041
    seed: int,
) -> tuple[list[PolarityPair], list[PolarityPair]]:
    """Seeded, deterministic split. ``test_size`` is a count (int) or a fraction in (0, 1) (float).

    Both parts keep the original order of ``pairs``.
    """
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


def unique_pairs(pairs: Sequence[PolarityPair], source: str = "the data") -> list[PolarityPair]:
    """``pairs`` without repeats (same question and answers, :func:`pair_digests`), first occurrence kept, with
    a warning saying how many were dropped: split after this, a pair can never be both a training and a
    held-out pair."""
    seen: set[str] = set()
    out = []
    for p, d in zip(pairs, pair_digests(pairs)):
        if d not in seen:
            seen.add(d)
            out.append(p)
    if len(out) < len(pairs):
        logger.warning("%s holds %d repeated pair(s) (same question and answers); each is kept once, so that no "
                       "held-out pair is also a training pair", source, len(pairs) - len(out))
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
