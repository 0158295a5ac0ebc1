"""The many-concept benchmark: every method on many concepts, the factor chosen on validation pairs,
aggregated across concepts (``easyedit-split bench``; docs/bench.md).

``run_bench(BenchConfig(...))`` runs it (or resumes it); under ``torchrun`` the cells are spread over the
ranks (:class:`~easyedit_split.core.distributed.DistContext`). Modules: :mod:`.concepts` (concept
folders, pair and concept splits), :mod:`.cells` (the plan, the ranks' shares and one cell),
:mod:`.mixed` (``--mixed-sweeps``: a concept's updates swept in one mixed pass), :mod:`.select`
(choosing the factor), :mod:`.aggregate` (statistics across concepts), :mod:`.report` (outputs),
:mod:`.api` (``run_bench``).
"""

from __future__ import annotations

from easyedit_split.bench.api import (
    FULL_GRID,
    QUICK,
    QUICK_GRID,
    BenchConfig,
    BenchResult,
    BenchSettingsError,
    run_bench,
)

__all__ = ["FULL_GRID", "QUICK", "QUICK_GRID", "BenchConfig", "BenchResult", "BenchSettingsError", "run_bench"]
