"""Importing EasyEdit's knowledge-editing package (``easyeditor``) without editing it.

``import easyeditor`` imports *every* editor and dataset of EasyEdit, including its multimodal
ones, whose third-party dependencies a text-only CPU install does not have or cannot have:

* ``easyeditor.trainer.blip2_models`` (BLIP-2 / MiniGPT-4) imports ``timm``, ``iopath`` and
  ``fairscale``; ``timm`` imports ``torchvision``, and the only torchvision wheels these machines can
  install are CUDA builds that fail against the CPU torch (``operator torchvision::nms does not
  exist``);
* ``easyeditor.dataset.processor.{blip_processors,randaugment,llavaov_processors,qwen2vl_processors}``
  import ``torchvision``, ``cv2``, ``av`` and ``qwen_vl_utils``;
* ``easyeditor.models.unke.unke_main`` and ``easyeditor.models.unke_ARE.unke_ARE_main`` (UnKE and
  AnyEdit's unstructured editors) import ``transformers.modeling_attn_mask_utils``, which
  transformers 5 removed.

None of these modules is used by the text editors (FT, LoRA, ROME, MEMIT …, and SPLIT), but their
packages import them eagerly. :func:`import_easyeditor` therefore imports ``easyeditor`` with an
**opt-in import shim**: a ``sys.meta_path`` finder that, *only for the modules listed in*
:data:`OPTIONAL_MODULES` *and only when one of the dependencies listed for that module cannot be
imported*, puts a placeholder module in its place. Every attribute of a placeholder is a class
that raises :class:`MultimodalUnavailable` (naming the module and the missing dependency) when it is
instantiated or called, so a multimodal editor fails loudly when used and nothing else changes.
Where all dependencies import, the real module is loaded and no placeholder is made; the finder is
on ``sys.meta_path`` only for the duration of the import. Nothing in EasyEdit is edited.

Text-side dependencies of ``import easyeditor`` are real packages, installed by the ``editing``
extra (``pip install -e ".[editing]"``): ``higher``, ``sentence-transformers``, ``nltk``, ``openai``,
``zhipuai`` (+ ``sniffio``), ``rouge``, ``datasets``, ``einops``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from easyedit_split.errors import EasyEditSplitError

logger = logging.getLogger(__name__)

__all__ = [
    "EASYEDIT_PATH_ENV",
    "OPTIONAL_MODULES",
    "EasyEditNotFound",
    "MultimodalUnavailable",
    "OptionalModule",
    "find_easyedit_checkout",
    "import_easyeditor",
    "missing_dependencies",
    "shim_reasons",
    "shim_where_needed",
    "stubbed_modules",
]

#: environment variable naming an EasyEdit checkout (the folder that holds ``easyeditor/``)
EASYEDIT_PATH_ENV = "EASYEDIT_PATH"


class EasyEditNotFound(EasyEditSplitError, ImportError):
    """No EasyEdit checkout with ``easyeditor/`` could be found or imported."""


class MultimodalUnavailable(EasyEditSplitError, ImportError):
    """A placeholder of :func:`import_easyeditor`'s shim was used."""


@dataclass(frozen=True)
class OptionalModule:
    """An EasyEdit module the text editors never use, and what it needs to import."""

    name: str
    needs: tuple[str, ...]
    why: str


OPTIONAL_MODULES: tuple[OptionalModule, ...] = (
    OptionalModule("easyeditor.trainer.blip2_models", ("torchvision", "timm", "iopath", "fairscale"),
                   "BLIP-2 / MiniGPT-4 multimodal models"),
    OptionalModule("easyeditor.dataset.processor.blip_processors", ("torchvision",), "BLIP image processors"),
    OptionalModule("easyeditor.dataset.processor.randaugment", ("cv2",), "image augmentation"),
    OptionalModule("easyeditor.dataset.processor.llavaov_processors", ("av",), "LLaVA-OneVision video processor"),
    OptionalModule("easyeditor.dataset.processor.qwen2vl_processors", ("av", "qwen_vl_utils"),
                   "Qwen2-VL image/video processor"),
    OptionalModule("easyeditor.models.unke.unke_main", ("transformers.modeling_attn_mask_utils",),
                   "UnKE unstructured editor (needs transformers < 5)"),
    OptionalModule("easyeditor.models.unke_ARE.unke_ARE_main", ("transformers.modeling_attn_mask_utils",),
                   "AnyEdit/UnKE-ARE unstructured editor (needs transformers < 5)"),
)


def _importable(name: str) -> bool:
    """True when ``name`` imports; a failed import (a broken torchvision raises RuntimeError) is undone."""
    before = set(sys.modules)
    try:
        importlib.import_module(name)
        return True
    except Exception:  # noqa: BLE001 - any import-time failure means "not usable"
        root = name.partition(".")[0]
        for mod in set(sys.modules) - before:
            if mod == root or mod.startswith(root + "."):
                sys.modules.pop(mod, None)
        return False


def missing_dependencies(modules: Sequence[OptionalModule] = OPTIONAL_MODULES) -> dict[str, tuple[str, ...]]:
    """``{module: missing dependencies}`` for each optional module whose dependencies do not all import."""
    cache: dict[str, bool] = {}
    out = {}
    for om in modules:
        missing = tuple(d for d in om.needs if not cache.setdefault(d, _importable(d)))
        if missing:
            out[om.name] = missing
    return out


def _placeholder(module: str, attr: str, reason: str) -> type:
    message = f"{module}.{attr} is unavailable here: {reason}"

    def refuse(*_args, **_kwargs):
        raise MultimodalUnavailable(message)

    return type(attr, (), {"__init__": refuse, "__call__": refuse, "__doc__": message,
                           "__module__": module, "_easyedit_split_placeholder": True})


class _PlaceholderModule(types.ModuleType):
    """Attributes are placeholders created on access; ``from X import *`` imports nothing."""

    _reason = ""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = _placeholder(self.__name__, attr, self._reason)
        setattr(self, attr, value)
        return value


class _ShimFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, reasons: Mapping[str, str]) -> None:
        self.reasons = dict(reasons)

    def _reason_for(self, fullname: str) -> str | None:
        for name, reason in self.reasons.items():
            if fullname == name or fullname.startswith(name + "."):
                return reason
        return None

    def find_spec(self, fullname, path, target=None):
        if self._reason_for(fullname) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        module = _PlaceholderModule(spec.name)
        module._reason = self._reason_for(spec.name) or ""
        return module

    def exec_module(self, module) -> None:
        module.__path__ = []  # a package, so that submodules resolve to placeholders too


@contextlib.contextmanager
def _shim(reasons: Mapping[str, str]) -> Iterator[None]:
    finder = _ShimFinder(reasons)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def find_easyedit_checkout(path: str | os.PathLike | None = None) -> Path | None:
    """The EasyEdit checkout to use: ``path``, else ``$EASYEDIT_PATH``; None when neither is given.

    Raises :class:`EasyEditNotFound` when the folder given has no ``easyeditor/`` package.
    """
    given = path if path is not None else os.environ.get(EASYEDIT_PATH_ENV)
    if not given:
        return None
    root = Path(given).expanduser().resolve()
    if not (root / "easyeditor" / "__init__.py").is_file():
        source = "path" if path is not None else f"${EASYEDIT_PATH_ENV}"
        raise EasyEditNotFound(f"{source} {root} is not an EasyEdit checkout: it has no easyeditor/__init__.py")
    return root


def shim_reasons() -> dict[str, str]:
    """``{module: why it gets a placeholder}`` for the optional modules whose dependencies do not import
    here (empty where they all do: then nothing is replaced)."""
    missing = missing_dependencies()
    return {name: f"{next(om.why for om in OPTIONAL_MODULES if om.name == name)}; "
                  f"missing or broken dependency: {', '.join(deps)}" for name, deps in missing.items()}


@contextlib.contextmanager
def shim_where_needed() -> Iterator[dict[str, str]]:
    """Placeholders (see the module doc) for exactly the optional modules that cannot import here, for the
    duration of the ``with`` block; yields what is replaced and why."""
    reasons = shim_reasons()
    if reasons:
        logger.info("importing easyeditor with placeholders for %d modules the text editors do not use: %s",
                    len(reasons), "; ".join(f"{n} ({r})" for n, r in reasons.items()))
    with _shim(reasons) if reasons else contextlib.nullcontext():
        yield reasons


def stubbed_modules() -> list[str]:
    """Modules of ``easyeditor`` currently replaced by placeholders."""
    return sorted(n for n, m in sys.modules.items() if isinstance(m, _PlaceholderModule))


def import_easyeditor(path: str | os.PathLike | None = None, *, shim: bool = True) -> types.ModuleType:
    """Import EasyEdit's ``easyeditor`` package (see the module doc for the shim).

    ``path``: an EasyEdit checkout (default ``$EASYEDIT_PATH``; else ``easyeditor`` must already be
    importable). ``shim=False`` imports without placeholders (and fails where EasyEdit's multimodal
    dependencies are missing). Raises :class:`EasyEditNotFound` with the reason when it cannot.
    """
    if "easyeditor" in sys.modules:
        return sys.modules["easyeditor"]
    root = find_easyedit_checkout(path)
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if importlib.util.find_spec("easyeditor") is None:
        raise EasyEditNotFound(
            f"easyeditor is not importable: give the EasyEdit checkout as path= or ${EASYEDIT_PATH_ENV}")
    try:
        with shim_where_needed() if shim else contextlib.nullcontext():
            module = importlib.import_module("easyeditor")
    except ImportError as exc:
        for name in [n for n in sys.modules if n == "easyeditor" or n.startswith("easyeditor.")]:
            sys.modules.pop(name, None)
        raise EasyEditNotFound(
            f"import easyeditor failed: {exc}. Install the editing extra (pip install -e \".[editing]\")") from exc
    return module
