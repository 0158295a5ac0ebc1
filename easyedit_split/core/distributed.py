"""The distributed context: who this process is among the ranks ``torchrun`` started, and the few
collectives the package uses.

``torchrun`` (``torch.distributed.run``) starts one process per rank and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; its rendezvous spans GPUs and
nodes. :func:`init_from_env` reads those variables and initialises the default process group only
when ``WORLD_SIZE > 1`` (``gloo`` on CPU, ``nccl`` on CUDA), so the same code runs unchanged in one
process. :func:`distributed` does the same as a context manager that destroys the group it created.

Sweeps and training share their work over the ranks of :func:`current`: the context made active by
:func:`distributed` (or :func:`share_work`), and a single process otherwise. Sharing is opt-in on
purpose: a caller that initialises the process group itself to give each rank *different* work (the
concept benchmark runs different cells on different ranks) gets rank-local sweeps and training inside
each of them, not collectives that would pair up unrelated calls. :func:`process_context` describes
the initialised group whether or not work is shared over it.

* :meth:`DistContext.shard` — a deterministic contiguous block of a list for this rank;
* :meth:`DistContext.gather` — every rank's Python object, in rank order, on every rank;
* :meth:`DistContext.all_reduce_sum_` — sums tensors in place over ranks (one flattened buffer);
* :meth:`DistContext.barrier`, :attr:`DistContext.is_main` (only rank 0 writes outputs).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from easyedit_split.errors import EasyEditSplitError

logger = logging.getLogger(__name__)

__all__ = ["DistContext", "DistributedError", "context_from_env", "current", "distributed", "init_from_env",
           "process_context", "shard_bounds", "share_work"]

T = TypeVar("T")


class DistributedError(EasyEditSplitError, RuntimeError):
    """The torchrun environment is inconsistent, or the process group cannot be set up."""


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous block of ``n`` items: the first ``n % world_size``
    ranks get one item more (so blocks differ by at most one item, and concatenating them in rank order
    gives the items back in order)."""
    base, extra = divmod(int(n), int(world_size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class DistContext:
    """This process among ``world_size`` ranks (``rank`` 0 is the main one); ``local_rank`` picks its GPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group (one process)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str | torch.device | None = None) -> torch.device:
        """The device for this rank: ``cuda:LOCAL_RANK`` when CUDA is asked for (``cuda`` without an index)
        or, with ``requested`` None, available; otherwise ``requested`` (default cpu)."""
        if requested is None:
            return torch.device(f"cuda:{self.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        dev = torch.device(requested)
        if dev.type == "cuda" and dev.index is None:
            return torch.device(f"cuda:{self.local_rank}")
        return dev

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's contiguous block of ``items`` (see :func:`shard_bounds`)."""
        start, stop = shard_bounds(len(items), self.rank, self.world_size)
        return list(items[start:stop])

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable; produced by this package, never read from a file), in rank order."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_reduce_sum_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Sum ``tensors`` over ranks, in place, through one flattened buffer (one collective call)."""
        if not self.enabled or not tensors:
            return
        import torch.distributed as dist

        flat = torch.cat([t.detach().reshape(-1) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


def _env_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from None


def context_from_env(env: dict[str, str] | None = None) -> DistContext:
    """The context the torchrun variables describe (no process group is touched)."""
    env = dict(os.environ if env is None else env)
    world = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local = _env_int(env, "LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise DistributedError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent (need 0 <= RANK < WORLD_SIZE)")
    return DistContext(rank, world, local)


_ACTIVE: list[DistContext] = []  # the stack of share_work contexts


def current() -> DistContext:
    """The ranks that sweeps and training share their work over: the innermost :func:`share_work` (or
    :func:`distributed`) context, or a single process."""
    return _ACTIVE[-1] if _ACTIVE else DistContext()


@contextlib.contextmanager
def share_work(ctx: DistContext) -> Iterator[DistContext]:
    """Inside the block, sweeps and training split their work over ``ctx``'s ranks (every rank must make
    the same calls with the same arguments)."""
    _ACTIVE.append(ctx)
    try:
        yield ctx
    finally:
        _ACTIVE.pop()


def process_context() -> DistContext:
    """The initialised default process group as a context, or a single process when none is."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = _env_int(dict(os.environ), "LOCAL_RANK", rank)
        return DistContext(rank, world, local, dist.get_backend())
    return DistContext()


def init_from_env(backend: str | None = None, *, timeout_s: float = 1800.0) -> tuple[DistContext, bool]:
    """Initialise the default process group from torchrun's variables when ``WORLD_SIZE > 1``.

    ``backend`` defaults to ``nccl`` when CUDA is available and ``gloo`` otherwise. Returns the context
    and whether this call created the group (an already initialised group is reused as it is).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return process_context(), False
    ctx = context_from_env()
    if not ctx.enabled:
        return ctx, False
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise DistributedError(f"WORLD_SIZE={ctx.world_size} but {', '.join(missing)} unset: start the job with torchrun")
    chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if chosen == "nccl":
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group(backend=chosen, rank=ctx.rank, world_size=ctx.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    logger.info("rank %d of %d (local rank %d) joined the %s process group", ctx.rank, ctx.world_size,
                ctx.local_rank, chosen)
    return DistContext(ctx.rank, ctx.world_size, ctx.local_rank, chosen), True


@contextlib.contextmanager
def distributed(backend: str | None = None, *, share: bool = True,
                timeout_s: float = 1800.0) -> Iterator[DistContext]:
    """``with distributed() as ctx:`` — :func:`init_from_env`, share sweeps and training over the ranks
    inside the block (``share=False``: only set the group up), and destroy the group on exit if this call
    created it (exceptions included). ``timeout_s``: how long a collective waits for the other ranks."""
    import torch.distributed as dist

    ctx, created = init_from_env(backend, timeout_s=timeout_s)
    try:
        if share:
            with share_work(ctx):
                yield ctx
        else:
            yield ctx
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()
