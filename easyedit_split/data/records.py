"""Rows of a data file and the polarity pair each becomes: :class:`PolarityPair`, reading the rows of a
jsonl/json/csv/parquet file (:func:`iter_records`) and checking them one by one (:func:`pairs_from_rows`,
given the file's resolved :class:`~easyedit_split.data.formats.DatasetFormat`).

This is the bottom of :mod:`easyedit_split.data`: :mod:`.formats` (which columns mean what, ``read_pairs``)
and :mod:`.pairs` (splits, shipped datasets) build on it.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyedit_split.base.safe_text import shown
from easyedit_split.errors import EasyEditSplitError

logger = logging.getLogger(__name__)

__all__ = [
    "SUFFIX_TYPES",
    "DataError",
    "PolarityPair",
    "check_data_file",
    "first_entry",
    "infer_file_type",
    "iter_records",
    "pairs_from_rows",
    "peek_columns",
]


class DataError(EasyEditSplitError, ValueError):
    """Bad or missing data; the message names the file (and line, for row problems)."""


#: file suffix → file type
SUFFIX_TYPES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class PolarityPair:
    """One contrastive example: a query, the answer showing the concept and the one showing its opposite."""

    id: str
    question: str
    positive: str
    negative: str
    source: str  # "file:line" (1-based line for jsonl/csv; 1-based record index for json/parquet)
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        # id and source are labels, often made from a file name; one that was not UTF-8 holds lone
        # surrogates, which no table, JSON or terminal can take: keep them as visible escapes (\udce9)
        for name in ("id", "source"):
            value = getattr(self, name)
            if isinstance(value, str) and _SURROGATE.search(value):
                object.__setattr__(self, name, value.encode("utf-8", "backslashreplace").decode("utf-8"))


def first_entry(value: Any) -> Any:
    """A field's value, where a list (as in EasyEdit's in-memory data) stands for its first entry and an
    empty list for an empty answer."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else ""
    return value


# ------------------------------------------------------------------------------------------- readers


def infer_file_type(path: Path) -> str:
    """The file type for ``path``'s suffix (:data:`SUFFIX_TYPES`; jsonl when the suffix is unknown); a
    ``.gz`` file by the suffix before it (``pairs.jsonl.gz`` is JSON Lines)."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        suffix = Path(path.stem).suffix.lower()
    return SUFFIX_TYPES.get(suffix, "jsonl")


def file_stem(path: Path) -> str:
    """``pairs`` for ``pairs.jsonl`` and for ``pairs.jsonl.gz`` (so pair ids do not depend on compression)."""
    return Path(path.stem).stem if path.suffix.lower() == ".gz" else path.stem


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in ``.gz``."""
    raw = path.read_bytes()
    if path.suffix.lower() != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: ends in .gz but is not a complete gzip file ({exc})") from None


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (kept by surrogateescape)


def _not_utf8(where: str) -> DataError:
    return DataError(f"{where}: not UTF-8 text (undecodable bytes); re-save the file as UTF-8")


def _read_text(path: Path) -> str:
    """The file's text: UTF-8 (a BOM is dropped) or UTF-16 with a BOM (spreadsheet "Unicode text").

    Bytes that are not UTF-8 are kept as surrogate escapes, so a bad row can be reported by line and
    skipped instead of failing the whole file.
    """
    raw = _read_bytes(path)
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


def check_data_file(path: Path) -> None:
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
    check_data_file(path)
    ftype = file_type or infer_file_type(path)
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


def peek_columns(path: Path, file_type: str) -> set[str]:
    """The keys of the first readable record (an empty set when there is none)."""
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


def pairs_from_rows(path: Path, file_type: str, fmt: Any, *, strict: bool = False,
                    limit: int | None = None) -> list[PolarityPair]:
    """The polarity pairs in the rows of ``path``, read as ``file_type`` with the columns of ``fmt`` (a
    :class:`~easyedit_split.data.formats.DatasetFormat` already matched to the file's columns); bad rows
    are skipped with a warning each, or reported together with ``strict`` (see
    :func:`~easyedit_split.data.formats.read_pairs`)."""
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
            pair_id = f"{file_stem(path)}-{lineno}"
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
