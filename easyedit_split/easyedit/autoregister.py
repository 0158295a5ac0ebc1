"""Opt-in automatic registration: the plugin registers itself whenever EasyEdit's registry is imported.

``easyedit-split easyedit enable`` writes ``easyedit_split_autoregister.pth`` into this environment's
``site-packages``. Python runs its one line at every interpreter start; the line calls
:func:`install`, which puts a finder on ``sys.meta_path`` that does nothing until a module named
``steer.utils.alg_dict`` (EasyEdit's steering registry) is imported; right after EasyEdit's module
has run, :func:`easyedit_split.registry.register_with_easyedit` is called. So EasyEdit's unmodified
scripts (``steering.py``, ``vectors_generate.py``, ``vectors_apply.py``) and the ones it launches as
subprocesses (``examples/run_SPILT.py``) see the plugin. ``easyedit-split easyedit disable`` removes
the file. No EasyEdit file is touched.

Environment switches read at registration time: ``EASYEDIT_SPLIT_AUTOREGISTER=0`` turns the hook
off for one process; ``EASYEDIT_SPLIT_KEEP_UPSTREAM=1`` keeps EasyEdit's own ``spilt``/``sft``/``reps``.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import sysconfig
from pathlib import Path

__all__ = ["PTH_NAME", "disable", "enable", "install", "pth_path", "status"]

PTH_NAME = "easyedit_split_autoregister.pth"
_PTH_LINE = ('import sys; exec("try:\\n import easyedit_split.easyedit.autoregister as _m\\n'
             'except ImportError:\\n _m = None\\nif _m is not None:\\n _m.install({args})")\n')
_REGISTRY = "steer.utils.alg_dict"


def _on_registry_imported(keep_upstream: bool) -> None:
    if os.environ.get("EASYEDIT_SPLIT_AUTOREGISTER", "1").strip() in ("0", "false", "no"):
        return
    from ..registry import register_with_easyedit

    keep = keep_upstream or os.environ.get("EASYEDIT_SPLIT_KEEP_UPSTREAM", "").strip() in ("1", "true", "yes")
    register_with_easyedit(keep_upstream=keep)


class _ThenRegister(importlib.abc.Loader):
    """EasyEdit's own loader, followed by the plugin's registration."""

    def __init__(self, loader: importlib.abc.Loader, keep_upstream: bool) -> None:
        self._loader, self._keep_upstream = loader, keep_upstream

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _on_registry_imported(self._keep_upstream)


class _RegistryWatcher(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of EasyEdit's registry module found by the other finders."""

    def __init__(self, keep_upstream: bool) -> None:
        self.keep_upstream = keep_upstream

    def find_spec(self, fullname, path, target=None):
        if fullname != _REGISTRY:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _ThenRegister(spec.loader, self.keep_upstream)
                return spec
        return None


def install(keep_upstream: bool = False) -> None:
    """Put the watcher on ``sys.meta_path`` (once); registers at once if EasyEdit's registry is already imported."""
    if any(isinstance(f, _RegistryWatcher) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _RegistryWatcher(keep_upstream))
    if _REGISTRY in sys.modules:
        _on_registry_imported(keep_upstream)


def pth_path(site_dir: str | os.PathLike | None = None) -> Path:
    """The ``.pth`` file in ``site_dir`` (default: this interpreter's ``site-packages``)."""
    return Path(site_dir or sysconfig.get_paths()["purelib"]) / PTH_NAME


def enable(site_dir: str | os.PathLike | None = None, *, keep_upstream: bool = False) -> Path:
    path = pth_path(site_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    from .._io import atomic_path

    with atomic_path(path, suffix=".pth") as tmp:
        Path(tmp).write_text(_PTH_LINE.format(args="keep_upstream=True" if keep_upstream else ""), encoding="utf-8")
    return path


def disable(site_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
    path = pth_path(site_dir)
    existed = path.exists()
    if existed:
        path.unlink()
    return path, existed


def status(site_dir: str | os.PathLike | None = None) -> tuple[Path, bool, bool]:
    """``(path, enabled, keep_upstream)``."""
    path = pth_path(site_dir)
    if not path.exists():
        return path, False, False
    return path, True, "keep_upstream=True" in path.read_text(encoding="utf-8")
