"""easyedit-split: SPLIT steering and preference-utility analysis as an EasyEdit plugin."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "register_with_easyedit"]


def register_with_easyedit(names: tuple[str, ...] | None = None, *, keep_upstream: bool = False,
                           overwrite: bool = False) -> list[str]:
    """Insert the plugin's methods into EasyEdit's registries (see :func:`easyedit_split.registry.register_with_easyedit`)."""
    from .registry import register_with_easyedit as _register

    return _register(names, keep_upstream=keep_upstream, overwrite=overwrite)
