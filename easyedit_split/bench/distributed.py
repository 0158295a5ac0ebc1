"""Rank, world, device and barrier for running the benchmark under ``torchrun``.

Without ``torchrun`` (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) everything runs in one process and no
process group is created. With ``WORLD_SIZE > 1`` a process group is initialised (NCCL where the rank
has a GPU, gloo otherwise), each rank takes the cells ``i`` with ``i % world == rank`` of the plan (a
fixed assignment: a rerun gives every rank the same cells, and skips those already written), and
rank 0 writes the per-concept files and the aggregate after a barrier.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

__all__ = ["RankInfo", "assigned", "barrier", "broadcast_error", "device_for", "process_group", "rank_info"]

T = TypeVar("T")
#: how long a rank waits at a barrier for the others (cells can be long)
BARRIER_TIMEOUT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class RankInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        from easyedit_split.errors import InputError

        raise InputError(f"environment variable {name}={text!r} is not an integer") from None


def rank_info() -> RankInfo:
    """This process's place from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if not 0 <= rank < max(world, 1):
        from easyedit_split.errors import InputError

        raise InputError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return RankInfo(rank, world, _env_int("LOCAL_RANK", 0))


def device_for(info: RankInfo, requested: str | None) -> str:
    """``requested`` when given; else ``cuda:LOCAL_RANK`` where CUDA is available, ``cpu`` otherwise. A bare
    ``cuda`` under torchrun means this rank's GPU."""
    import torch

    if requested in (None, "", "auto"):
        return f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and info.distributed:
        return f"cuda:{info.local_rank}"
    return requested


@contextlib.contextmanager
def process_group(info: RankInfo, device: str) -> Iterator[None]:
    """Initialise the default process group for the duration (only when ``world > 1``)."""
    if not info.distributed:
        yield
        return
    import torch.distributed as dist

    if dist.is_initialized():  # the CLI's torchrun entry (core.distributed) already made the group: use it
        yield
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=BARRIER_TIMEOUT)
    logger.info("rank %d of %d on %s (%s)", info.rank, info.world, device, backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(info: RankInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()


def broadcast_error(info: RankInfo, message: Any) -> Any:
    """Rank 0's ``message`` (None: all is well; any picklable value), on every rank, so that all ranks stop
    on rank 0's refusal."""
    if not info.distributed:
        return message
    import torch.distributed as dist

    box: list[Any] = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def assigned(items: Sequence[T], info: RankInfo) -> list[T]:
    """The items of this rank: every ``world``-th one, starting at ``rank`` (deterministic)."""
    return [item for i, item in enumerate(items) if i % info.world == info.rank]
