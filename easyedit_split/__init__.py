"""easyedit-split: SPLIT steering and preference-utility analysis as an EasyEdit plugin."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "register_with_easyedit"]


def register_with_easyedit(names: tuple[str, ...] | None = None, *, overwrite: bool = False) -> list[str]:
    """Insert the plugin's methods into EasyEdit's registries (see :mod:`easyedit_split.registry`)."""
    from .registry import register_with_easyedit as _register

    return _register(names, overwrite=overwrite)
