"""The hparams YAMLs shipped inside the package (the built-in model's defaults).

``easyedit_split/resources/hparams/<model>/`` holds one ``<method>_<form>.yaml`` per trained method
and form and one ``diffmean.yaml``; they are package data, so a plain ``pip install .`` has them.
The repository's ``hparams/`` folder holds the same files for users to copy and edit (a test keeps
the two identical).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["DEFAULT_HPARAMS_MODEL", "hparams_file_name", "packaged_hparams_dir"]

#: the model whose defaults ship with the package
DEFAULT_HPARAMS_MODEL = "smollm2"


def packaged_hparams_dir(model: str = DEFAULT_HPARAMS_MODEL) -> Path:
    """The folder of shipped hparams YAMLs for ``model``."""
    folder = Path(str(resources.files("easyedit_split").joinpath("resources", "hparams", model)))
    if not folder.is_dir():
        raise FileNotFoundError(f"no shipped hparams for {model!r} (expected the folder {folder})")
    return folder


def hparams_file_name(method: str, form: str) -> str:
    """``diffmean.yaml`` for DiffMean (a vector method), else ``<method>_<form>.yaml``."""
    return "diffmean.yaml" if method == "diffmean" else f"{method}_{form}.yaml"
