"""Opt-in automatic registration: the plugin registers itself whenever EasyEdit's registry is imported.

``easyedit-split easyedit enable`` writes ``easyedit_split_autoregister.pth`` into this environment's
``site-packages``. Python runs its one line at every interpreter start; the line calls
:func:`install`, which puts a finder on ``sys.meta_path`` that does nothing until a module named
``steer.utils.alg_dict`` (EasyEdit's steering registry) is imported; right after EasyEdit's module
has run, :func:`easyedit_split.easyedit.registry.register_with_easyedit` is called (and when
``easyeditor.util.alg_dict``, the editing registry, is imported, ``SPLIT`` is put into its ``ALG_DICT``;
while ``easyeditor`` itself is imported, the modules it imports eagerly whose multimodal or legacy
dependencies do not import here get placeholders, :func:`easyedit_split.editing.easyeditor_import.shim_where_needed`,
so that an unmodified script's ``from easyeditor import BaseEditor`` works on a text-only install)
(:func:`~easyedit_split.easyedit.import_hooks.after_import`
is the general mechanism; registration also uses it for EasyEdit's ``Evaluator``). So EasyEdit's unmodified
scripts (``steering.py``, ``vectors_generate.py``, ``vectors_apply.py``) and the ones it launches as
subprocesses (``examples/run_SPILT.py``) see the plugin. ``easyedit-split easyedit disable`` removes
the file. No EasyEdit file is touched.

Environment switches read at registration time: ``EASYEDIT_SPLIT_AUTOREGISTER=0`` turns the hook
off for one process; ``EASYEDIT_SPLIT_KEEP_UPSTREAM=1`` keeps EasyEdit's own ``spilt``/``sft``/``reps``.
"""

from __future__ import annotations

import logging
import os
import site
import sys
import sysconfig
from pathlib import Path
from typing import Any

from easyedit_split.easyedit.import_hooks import after_import, has_callback, run_import_inside

logger = logging.getLogger(__name__)

__all__ = ["PTH_NAME", "after_import", "disable", "enable", "install", "pth_path", "read_site_dirs", "site_dir_note",
           "status"]

PTH_NAME = "easyedit_split_autoregister.pth"
_PTH_LINE = ('import sys; exec("try:\\n import easyedit_split.easyedit.autoregister as _m\\n'
             'except ImportError:\\n _m = None\\nif _m is not None:\\n _m.install({args})")\n')
_REGISTRY = "steer.utils.alg_dict"
_EDIT_REGISTRY = "easyeditor.util.alg_dict"
_EDITING_PACKAGE = "easyeditor"


def _switched_off() -> bool:
    """``EASYEDIT_SPLIT_AUTOREGISTER=0`` (or false/no): the hook does nothing in this process."""
    return os.environ.get("EASYEDIT_SPLIT_AUTOREGISTER", "1").strip() in ("0", "false", "no")


def _on_registry_imported(keep_upstream: bool) -> None:
    if _switched_off():
        return
    from easyedit_split.easyedit.registry import register_with_easyedit

    keep = keep_upstream or os.environ.get("EASYEDIT_SPLIT_KEEP_UPSTREAM", "").strip() in ("1", "true", "yes")
    register_with_easyedit(keep_upstream=keep)


def _easyeditor_import_context() -> Any:
    """While ``easyeditor`` itself runs: the placeholder shim for exactly the multimodal/legacy modules whose
    dependencies do not import in this environment (none where they all do; none when switched off)."""
    if _switched_off():
        import contextlib

        return contextlib.nullcontext()
    from easyedit_split.editing.easyeditor_import import shim_where_needed

    return shim_where_needed()


def _on_editing_registry_imported(module: Any) -> None:
    if _switched_off():
        return
    from easyedit_split.editing.split_editor import insert_editor

    insert_editor(module)


def install(keep_upstream: bool = False) -> None:
    """Register the plugin whenever one of EasyEdit's registry modules is imported (at once if it
    already is): the steering methods into ``steer.utils.alg_dict``, the ``SPLIT`` editor into
    ``easyeditor.util.alg_dict`` (whose ``ALG_DICT`` an editing script's ``BaseEditor`` reads)."""
    for module_name, callback, key in ((_REGISTRY, lambda module: _on_registry_imported(keep_upstream), "autoregister"),
                                       (_EDIT_REGISTRY, _on_editing_registry_imported, "autoregister-editor")):
        if not has_callback(module_name, key):
            after_import(module_name, callback, key=key)
    run_import_inside(_EDITING_PACKAGE, _easyeditor_import_context)


def pth_path(site_dir: str | os.PathLike | None = None) -> Path:
    """The ``.pth`` file in ``site_dir`` (default: this interpreter's ``site-packages``)."""
    folder = Path(site_dir or sysconfig.get_paths()["purelib"])
    if folder.exists() and not folder.is_dir():
        from easyedit_split.errors import InputError

        raise InputError(f"--site-dir {site_dir} is a file, not a folder; give the site-packages folder the .pth file "
                         "goes into")
    return folder / PTH_NAME


def read_site_dirs() -> list[Path]:
    """The folders whose ``.pth`` files this interpreter runs at start (its site-packages, the user's)."""
    dirs = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [Path(d).resolve() for d in dict.fromkeys(dirs)]


def site_dir_note(site_dir: str | os.PathLike | None) -> str | None:
    """None when this interpreter reads ``.pth`` files from ``site_dir``; else a sentence saying that it does
    not (a folder named site-packages/dist-packages may be another interpreter's, which is fine)."""
    if site_dir is None or Path(site_dir).resolve() in read_site_dirs():
        return None
    name = Path(site_dir).name
    other = name in ("site-packages", "dist-packages")
    return (f"{site_dir} is not a folder this Python ({sys.executable}) reads .pth files from"
            + (" (it may be another interpreter's site-packages: the hook works for that interpreter)" if other else
               f"; the hook takes effect only in a Python that adds it with site.addsitedir() — its own site folders "
               f"are {', '.join(map(str, read_site_dirs()))}"))


def enable(site_dir: str | os.PathLike | None = None, *, keep_upstream: bool = False) -> Path:
    """Write the ``.pth`` file (a ``site_dir`` this interpreter does not read is warned about at WARNING)."""
    note = site_dir_note(site_dir)
    if note:
        logger.warning("%s", note)
    path = pth_path(site_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    from easyedit_split.base.atomic_io import atomic_path

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
