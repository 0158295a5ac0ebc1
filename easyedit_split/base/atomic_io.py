"""Atomic file output: write to a temporary file in the target folder, then rename.

A crash or an exception never leaves a half-written artefact at the destination: either the
old file (if any) stays, or the complete new one replaces it. A temporary file or folder names the
process that writes it (``.<name>.<pid>.<random>.tmp``); litter left by a process that was killed is
removed on the next write of the same name. Outputs get the permissions the umask gives (not the
0600 of a temporary file), so other users of a shared machine can read results as they can read any
other file. A write that fails (disk full, ``ulimit -f``, no permission, read-only file system) is an
:class:`~easyedit_split.errors.OutputError` naming the destination, never the temporary name.

Several files that belong together (an update's ``.safetensors`` and EasyEdit's ``.pt``) are written
with :func:`staged_files`: all into a staging folder first, then moved in, so a failed write leaves
none of them; a whole folder (an export) with :func:`atomic_dir`.

Output checks made before any heavy work (:func:`check_writable`, :func:`refuse_existing`,
:func:`check_distinct`) and :func:`output_lock`, an exclusive lock on an output folder while it is
written (a second writer fails at once with :class:`~easyedit_split.errors.OutputError`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from easyedit_split.errors import OutputError

logger = logging.getLogger(__name__)

__all__ = [
    "EVALUATION_RESULTS",
    "MAIN_JOB_RESULTS",
    "JsonlAppender",
    "atomic_dir",
    "atomic_path",
    "atomic_save_safetensors",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_report",
    "atomic_write_text",
    "check_distinct",
    "check_writable",
    "dumps_json",
    "encode_metadata",
    "json_safe",
    "non_finite_paths",
    "output_lock",
    "refuse_earlier_results",
    "refuse_existing",
    "staged_files",
    "write_failed",
]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _give_umask_mode(path: Path, *, is_dir: bool = False) -> None:
    """The mode a plain ``open``/``mkdir`` would have given (``mkstemp``/``mkdtemp`` give 0600/0700)."""
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


_WRITE_HINTS = {
    errno.ENOSPC: "the disk is full; free some space or choose another location",
    errno.EDQUOT: "the disk quota is exceeded; free some space or choose another location",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f) or the file system allows",
    errno.EACCES: "no permission to write there; choose another location or fix its permissions",
    errno.EPERM: "no permission to write there; choose another location or fix its permissions",
    errno.EROFS: "the file system is read-only; choose another location",
}


def write_failed(dest: str | os.PathLike, exc: OSError) -> OutputError:
    """An :class:`OutputError` naming ``dest`` (the real output, not a temporary name) and what to do."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = _WRITE_HINTS.get(exc.errno or -1)
    return OutputError(f"cannot write {dest}: {reason}" + (f" ({hint})" if hint else ""))


@contextlib.contextmanager
def _mapped_write_errors(dest: str | os.PathLike) -> Iterator[None]:
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise write_failed(dest, exc) from exc


def _tmp_prefix(dest: Path) -> str:
    return f".{dest.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The caller writes the temporary file however it likes (``savefig``, ``to_parquet``…).
    On any exception the temporary file is removed and the destination is untouched; an ``OSError``
    becomes an :class:`OutputError` naming ``path``.
    """
    dest = Path(path)
    with _mapped_write_errors(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(dest)
        fd, tmp_name = tempfile.mkstemp(prefix=_tmp_prefix(dest), suffix=suffix + ".tmp", dir=dest.parent)
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _mapped_write_errors(dest):
            yield tmp
            _give_umask_mode(tmp)
            os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (an existing folder only
    with ``overwrite``, and only once the new one is complete). Folders of killed writers are removed on the
    next write of the same name; an ``OSError`` becomes an :class:`OutputError` naming ``path``."""
    dest = Path(path)
    with _mapped_write_errors(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(dest)
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(dest), suffix=".tmp", dir=dest.parent))
    try:
        with _mapped_write_errors(dest):
            yield tmp
            _give_umask_mode(tmp, is_dir=True)
            _replace_dir(tmp, dest, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(tmp: Path, dest: Path, overwrite: bool) -> None:
    if not dest.exists():
        os.replace(tmp, dest)
        return
    if not overwrite:
        raise OutputError(f"{dest} appeared while it was being written; not replacing it")
    backup = Path(tempfile.mkdtemp(prefix=_tmp_prefix(dest), suffix=".old.tmp", dir=dest.parent))
    backup.rmdir()
    os.replace(dest, backup)
    try:
        os.replace(tmp, dest)
    except BaseException:
        os.replace(backup, dest)
        raise
    shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def staged_files(folder: str | os.PathLike, *, last: tuple[str, ...] = (),
                 replaces: tuple[str, ...] = ()) -> Iterator[Path]:
    """Write several files of ``folder`` all or nothing: yield a staging folder; the caller writes the files
    there under their final names; on success each is moved into ``folder`` (the names in ``last``
    after all the others, in that order) and the names in ``replaces`` that were not written are removed
    from ``folder`` (a stale companion file); on any failure nothing changes. An ``OSError`` becomes an
    :class:`OutputError` naming ``folder``."""
    dest = Path(folder)
    marker = dest / ".easyedit-split-staging"
    with _mapped_write_errors(dest):
        dest.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(marker)
        stage = Path(tempfile.mkdtemp(prefix=_tmp_prefix(marker), suffix=".tmp", dir=dest))
    try:
        with _mapped_write_errors(dest):
            yield stage
            names = sorted(p.name for p in stage.iterdir())
            order = [n for n in names if n not in last] + [n for n in last if n in names]
            for name in order:
                _give_umask_mode(stage / name)
                os.replace(stage / name, dest / name)
            for name in replaces:
                if name not in names:
                    with contextlib.suppress(FileNotFoundError):
                        (dest / name).unlink()
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its files
    return True


def _remove_stale_tmp(dest: Path) -> None:
    """Remove ``.<dest.name>.<pid>.*.tmp`` files (and folders) of processes that no longer run."""
    prefix = f".{dest.name}."
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid_text = name[len(prefix):].split(".", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        logger.info("removing %s, left by an interrupted write", entry)
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


#: how text becomes bytes in every output: UTF-8, a lone surrogate (a file name or row that was not UTF-8,
#: kept by Python as ``\udcXX``) written as its escape ``\udcXX`` — which JSON reads back as the same
#: character — instead of failing the write
TEXT_ERRORS = "backslashreplace"


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8", errors=TEXT_ERRORS))


def atomic_write_report(path: str | os.PathLike, text: str) -> Path:
    """Write a human-readable report (``report.md``, ``summary.md``) atomically, with every control,
    terminal-escape and bidi-override character of text that came from files escaped
    (:func:`~easyedit_split.safe_text.markdown_safe`)."""
    from easyedit_split.base.safe_text import markdown_safe

    return atomic_write_text(path, markdown_safe(text))


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN/inf float replaced by None (JSON has no NaN; ``NaN`` in a file is not JSON).

    numpy scalars and arrays become Python numbers and lists. Where a value was replaced, callers that
    must say so record it themselves (e.g. a ``non_finite`` list).
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy / torch scalars and arrays
        return json_safe(obj.tolist())
    return obj


def non_finite_paths(obj: Any, where: str = "") -> list[str]:
    """JSON paths (``a.b[2]``) of the NaN/inf floats in ``obj``."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [where or "."]
    if isinstance(obj, Mapping):
        return [p for k, v in obj.items() for p in non_finite_paths(v, f"{where}.{k}" if where else str(k))]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in non_finite_paths(v, f"{where}[{i}]")]
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return non_finite_paths(obj.tolist(), where)
    return []


def dumps_json(obj: Any, indent: int | None = None) -> str:
    """``json.dumps`` that never writes NaN/Infinity: they become null (:func:`json_safe`) and a mapping
    gets a ``"non_finite"`` list naming where, so a missing number is never mistaken for a measured one."""
    safe = json_safe(obj)
    if isinstance(obj, Mapping) and "non_finite" not in obj:
        bad = non_finite_paths(obj)
        if bad:
            safe["non_finite"] = bad
    return json.dumps(safe, indent=indent, sort_keys=False, default=str, allow_nan=False, ensure_ascii=False)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically; NaN/inf become null (the file is always valid JSON)."""
    return atomic_write_text(path, dumps_json(obj, indent=indent) + "\n")


def _metadata_default(key: str):
    """JSON for the plain values a header may hold besides JSON's own (paths, dtypes, sets, numpy/torch
    numbers); any other object is refused, naming the key, instead of being saved as its ``repr``."""
    def default(obj: Any) -> Any:
        if isinstance(obj, os.PathLike):
            return os.fspath(obj)
        if isinstance(obj, (set, frozenset)):
            return sorted(obj, key=str)
        if isinstance(obj, (Mapping, Sequence)):  # omegaconf's DictConfig/ListConfig (hydra): their text, as
            return str(obj)                      # the hparams classes read them (a str field)
        if isinstance(obj, Enum):
            return obj.value
        if hasattr(obj, "tolist") and callable(obj.tolist):
            return json_safe(obj.tolist())
        if type(obj).__module__ == "torch" and type(obj).__name__ in ("dtype", "device"):
            return str(obj)
        from easyedit_split.errors import InputTypeError

        raise InputTypeError(f"metadata {key!r} holds a {type(obj).__name__} ({str(obj)[:80]}), which cannot be saved "
                             "in a file header; give JSON values (text, numbers, lists, mappings)")
    return default


def encode_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    """A safetensors header's metadata: strings as they are, anything else as strict JSON (NaN/inf become
    null and a mapping lists them under ``"non_finite"``, as :func:`dumps_json` does)."""
    out = {}
    for k, v in metadata.items():
        if isinstance(v, str):
            out[str(k)] = v
            continue
        safe = json_safe(v)
        if isinstance(v, Mapping) and "non_finite" not in v:
            bad = non_finite_paths(v)
            if bad:
                safe["non_finite"] = bad
        out[str(k)] = json.dumps(safe, default=_metadata_default(str(k)), allow_nan=False)
    return out


def atomic_save_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None
) -> Path:
    """Save ``tensors`` as safetensors; ``metadata`` values are JSON-encoded into the header."""
    from safetensors.torch import save

    meta = encode_metadata(metadata or {})
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write_bytes(path, save(contiguous, metadata=meta))  # a failed write is an OSError


# ------------------------------------------------------------------------------ checks before the work


def check_writable(path: str | os.PathLike, *, what: str = "output", is_dir: bool = True) -> Path:
    """Check that ``path`` (a folder, or with ``is_dir=False`` a file) can be written, creating the
    folder; raise :class:`OutputError` naming ``what`` (e.g. ``"--output"``) and the path otherwise.

    Call it before any heavy work, so an unwritable location costs nothing.
    """
    p = Path(path)
    folder = p if is_dir else p.parent
    if is_dir and p.exists() and not p.is_dir():
        raise OutputError(f"{what} {p} is a file, not a folder; choose a folder")
    if not is_dir and p.is_dir():
        raise OutputError(f"{what} {p} is a folder; give a file name")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".write-check.{os.getpid()}.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {p} cannot be written ({exc.strerror or exc}); choose another location or "
                          "fix its permissions") from None
    if not is_dir and p.exists() and not os.access(p, os.W_OK):
        raise OutputError(f"{what} {p} exists and is read-only; choose another file or fix its permissions")
    return p


def refuse_existing(paths: Iterable[str | os.PathLike], *, overwrite: bool, flag: str = "--overwrite") -> None:
    """Raise :class:`OutputError` when any of ``paths`` exists and ``overwrite`` is False; the message names
    the files and the command-line ``flag`` that allows replacing them."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        shown = ", ".join(existing[:4]) + (f" and {len(existing) - 4} more" if len(existing) > 4 else "")
        raise OutputError(f"{shown} already exist(s); pass {flag} to replace, or choose another output")


#: the files a finished evaluation (sweep, compare, easyedit report) leaves in its output folder
EVALUATION_RESULTS = ("results.json", "report.md", "sweep_*.csv", "sweep_*.parquet", "provenance.json")
#: the files a finished main job (``run``) leaves in its output folder
MAIN_JOB_RESULTS = ("summary.md", "summary.json", "config.json")


def refuse_earlier_results(folder: str | os.PathLike, patterns: Iterable[str], *, overwrite: bool,
                           what: str = "--output", flag: str = "--overwrite") -> None:
    """Raise :class:`OutputError` when ``folder`` already holds results of an earlier run (files matching
    ``patterns``) and ``overwrite`` is False: no command replaces results without being asked. Partial
    results of an interrupted run (dot files) do not count: a rerun continues from them."""
    p = Path(folder)
    if overwrite or not p.is_dir():
        return
    found = sorted({f.name for pattern in patterns for f in p.glob(pattern)})
    if found:
        shown_names = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise OutputError(f"{what} {p} already holds the results of an earlier run ({shown_names}); pass {flag} to "
                          "replace them, or choose another folder")


def refuse_replacing_inputs(output: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None], *,
                            what: str = "--output", replaces_folder: bool = False) -> None:
    """Raise :class:`OutputError` when writing ``output`` would replace one of ``inputs`` (``{label: path}``;
    paths that do not exist, such as built-in names, are skipped): the same file or folder (symlinks
    followed), or — when the output replaces a whole folder — a folder holding the input. Even with
    ``--overwrite`` an input is never the thing replaced."""
    out = Path(os.path.abspath(output)).resolve()
    flat = [(label, one) for label, given in inputs.items()
            for one in (given if isinstance(given, (list, tuple)) else [given])]
    for label, given in flat:
        if not isinstance(given, (str, os.PathLike)) or not os.path.exists(given):
            continue
        inp = Path(os.path.abspath(given)).resolve()
        if inp == out or (replaces_folder and out in inp.parents):
            how = "is" if inp == out else "holds"
            raise OutputError(f"{what} {output} {how} {label} {given}; writing there would destroy it, even with "
                              "--overwrite; choose another output")


def check_distinct(outputs: Mapping[str, str | os.PathLike], *, what: str = "name") -> None:
    """Raise :class:`OutputError` when two entries of ``{label: path}`` would write the same file."""
    seen: dict[str, str] = {}
    for label, path in outputs.items():
        key = os.path.normcase(os.path.abspath(os.fspath(path)))
        if key in seen:
            raise OutputError(f"{what}s {seen[key]!r} and {label!r} would both write {path}; choose {what}s that "
                              "differ in letters or digits")
        seen[key] = label


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, *, what: str = "output", name: str = ".easyedit-split.lock") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (``<folder>/.easyedit-split.lock``) while writing into it.

    A second process that tries to write the same folder gets :class:`OutputError` at once instead of
    both succeeding with the last writer winning. The lock is the operating system's (``flock``), so it
    is released even when the holder is killed. Re-entrant within one process. ``name``: the lock file
    (a per-file name such as ``.<file>.lock`` locks one output file instead of the whole folder).
    """
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    lock_file = path / name
    key = str(lock_file.resolve())
    if key in _HELD:
        yield path
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield path
        return
    fh = _open_locked(lock_file, fcntl, what, path)
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        _HELD.add(key)
        try:
            yield path
        finally:
            _HELD.discard(key)
            with contextlib.suppress(FileNotFoundError):
                lock_file.unlink()  # while still held: no empty lock file is left behind in the output
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


def _open_locked(lock_file: Path, fcntl, what: str, folder: Path):
    """Open ``lock_file`` and take its lock; the file is removed on release, so a lock taken on a file that
    was unlinked meanwhile (by the holder releasing it) is retried on the file now at that path."""
    for _ in range(100):
        fh = open(lock_file, "a+")  # noqa: SIM115 - held for the duration of the with block
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise OutputError(f"{what} {folder} is being written by another easyedit-split process (pid {holder}); "
                              "wait for it to finish or choose another output") from None
        try:
            same = os.fstat(fh.fileno()).st_ino == os.stat(lock_file).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fh
        fh.close()  # locked a file its holder had just removed: lock the current one instead
    raise OutputError(f"{what} {folder}: could not take the lock {lock_file} (it keeps being replaced)")


_HELD: set[str] = set()


# ------------------------------------------------------------------------------ partial results


class JsonlAppender:
    """Append records to a JSONL file as they are produced, one complete line per record, flushed.

    Used for results of long jobs (sweep chunks, generations) so that a failure late in a job keeps
    what was done and a rerun can skip it (:meth:`read` returns the records written so far; a torn last
    line from a kill is dropped). NaN/inf are written as null (:func:`dumps_json`).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        lines = self.path.read_text(encoding="utf-8").split("\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i >= len(lines) - 2:  # the torn last line of a killed writer
                    logger.warning("%s: dropping an incomplete last line", self.path)
                    self._truncate_to(records)
                    break
                raise OutputError(f"{self.path}:{i + 1}: not valid JSON; delete the file to start over") from None
        return records

    def _truncate_to(self, records: list[dict[str, Any]]) -> None:
        atomic_write_text(self.path, "".join(dumps_json(r) + "\n" for r in records))

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        text = "".join(dumps_json(r) + "\n" for r in records)
        if not text:
            return
        with _mapped_write_errors(self.path), open(self.path, "a", encoding="utf-8", errors=TEXT_ERRORS) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
