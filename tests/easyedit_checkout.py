"""The EasyEdit checkout the EasyEdit-backed tests run against, and the tiny model folder they load.

The checkout is ``$EASYEDIT_PATH`` when that folder holds what a test needs, else
``shared/easyedit-553fd05`` next to the repository (or next to the folder holding it, as for a git
worktree). Tests that need it skip, with the reason, where none is found or where EasyEdit's steering
dependencies (the ``easyedit`` extra) are missing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import build_tiny_tokenizer
from tests.tiny_models import tiny_model

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = Path("shared") / "easyedit-553fd05"
#: a file each side of EasyEdit must have: its steering framework (``steer``) and its editors (``easyeditor``)
STEERING = "steer/utils/alg_dict.py"
EDITING = "easyeditor/__init__.py"
#: what EasyEdit's ``steer`` package imports beyond this package's own dependencies
STEER_DEPS = ("omegaconf", "hydra", "datasets", "einops", "dotenv")


def _candidates() -> list[Path]:
    env = os.environ.get("EASYEDIT_PATH")
    return [*([Path(env)] if env else []), REPO.parent / SNAPSHOT, REPO.parents[1] / SNAPSHOT]


def find_checkout(marker: str) -> Path | None:
    """The first candidate checkout (see the module doc) holding ``marker``, or None."""
    return next((c for c in _candidates() if (c / marker).is_file()), None)


def require_checkout(marker: str) -> Path:
    """The checkout holding ``marker``; skips the calling test (or module) when there is none."""
    found = find_checkout(marker)
    if found is None:
        tried = ", ".join(map(str, _candidates()))
        pytest.skip(f"no EasyEdit checkout with {marker} (tried {tried}; set EASYEDIT_PATH)", allow_module_level=True)
    return found


def require_steering() -> Path:
    """The checkout of EasyEdit's ``steer`` package, its dependencies importable; skips otherwise."""
    root = require_checkout(STEERING)
    for dep in STEER_DEPS:
        pytest.importorskip(dep, reason=f"EasyEdit's steering needs {dep}: pip install -e '.[easyedit]'")
    return root


@contextlib.contextmanager
def steer_on_path(root: Path) -> Iterator[Path]:
    """``root`` on ``sys.path`` (EasyEdit's steering imports as ``steer``); afterwards the path and every
    imported ``steer`` module are removed again, so that later test modules see no EasyEdit."""
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "steer" or m.startswith("steer.")]:
            del sys.modules[name]


def save_tiny_llama(folder: Path, *, model_max_length: int | None = None) -> Path:
    """``tiny_model('llama')`` and the tiny tokenizer saved in ``folder``, whose name must contain "llama":
    EasyEdit's loaders pick the model family from the path string."""
    if "llama" not in folder.name.lower():
        raise ValueError(f"{folder}: EasyEdit needs 'llama' in the folder name to load it as a Llama")
    tok = build_tiny_tokenizer()
    if model_max_length is not None:
        tok.model_max_length = model_max_length
    tiny_model("llama").save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
