"""easyedit-split: SPLIT steering and preference-utility analysis as an EasyEdit plugin."""

from __future__ import annotations

__version__ = "0.1.0"
