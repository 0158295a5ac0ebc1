"""Layer 1, the base: atomic file writes (:mod:`.atomic_io`), argument checks (:mod:`.checks`), the YAML
reader (:mod:`.hparams_io`), multiplier grids (:mod:`.multipliers`), the method and form tables
(:mod:`.methods`) and shipped default settings (:mod:`.defaults`). Imports nothing above
:mod:`easyedit_split.errors`, and no torch."""
