"""Run code right after a module has been imported: :func:`after_import` (used by the opt-in
registration, :mod:`easyedit_split.easyedit.autoregister`, and by the registry for EasyEdit's
``Evaluator``). A finder on ``sys.meta_path`` wraps the loader of each watched module; it finds
nothing itself and costs nothing for any other module."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["after_import", "has_callback", "run_import_inside"]


class _ThenCall(importlib.abc.Loader):
    """The module's own loader, followed by the callbacks registered for it."""

    def __init__(self, loader: importlib.abc.Loader, callbacks: list[Callable[[Any], None]]) -> None:
        self._loader, self._callbacks = loader, callbacks

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        for callback in list(self._callbacks):
            callback(module)


class _Around(importlib.abc.Loader):
    """The module's own loader, run inside a context manager (made fresh at each execution)."""

    def __init__(self, loader: importlib.abc.Loader, context: Callable[[], Any]) -> None:
        self._loader, self._context = loader, context

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with self._context():
            self._loader.exec_module(module)


class _ImportWatcher(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader (found by the other finders) of each watched module so
    that its callbacks run right after the module has run (at every import, e.g. after a reload)."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callable[[Any], None]]] = {}
        self.contexts: dict[str, Callable[[], Any]] = {}

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.callbacks and fullname not in self.contexts:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    if fullname in self.contexts:
                        spec.loader = _Around(spec.loader, self.contexts[fullname])
                    if self.callbacks.get(fullname):
                        spec.loader = _ThenCall(spec.loader, self.callbacks[fullname])
                return spec
        return None


def _watcher() -> _ImportWatcher:
    for finder in sys.meta_path:
        if isinstance(finder, _ImportWatcher):
            return finder
    watcher = _ImportWatcher()
    sys.meta_path.insert(0, watcher)
    return watcher


def after_import(module_name: str, callback: Callable[[Any], None], *, key: str | None = None) -> None:
    """Call ``callback(module)`` whenever ``module_name`` has been imported (now, if it already is).
    ``key`` names the callback so that registering it again replaces it instead of adding a second one."""
    callbacks = _watcher().callbacks.setdefault(module_name, [])
    if key is not None:
        callbacks[:] = [c for c in callbacks if getattr(c, "_easyedit_split_key", None) != key]
        callback._easyedit_split_key = key  # type: ignore[attr-defined]
    callbacks.append(callback)
    if module_name in sys.modules:
        callback(sys.modules[module_name])


def has_callback(module_name: str, key: str) -> bool:
    """Whether a callback named ``key`` is waiting for ``module_name`` (see :func:`after_import`)."""
    return any(getattr(c, "_easyedit_split_key", None) == key for c in _watcher().callbacks.get(module_name, []))


def run_import_inside(module_name: str, context: Callable[[], Any]) -> None:
    """Execute ``module_name`` (whenever it is imported from now on) inside ``context()``, a context manager
    factory; one per module, a second call replaces it."""
    _watcher().contexts[module_name] = context
