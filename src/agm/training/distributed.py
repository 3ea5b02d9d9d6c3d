"""Multi-process data-parallel training with ``torch.distributed`` (launched by ``torchrun``).

Data parallelism: with world size W and global batch B (``train.batch_size``), rank r draws its own
B/W samples and the gradients are averaged over ranks,

    g = (1/W) sum_r grad L_r,   L_r = (1/(B/W)) sum_{i in rank r} loss_i   =>   g = grad (1/B) sum_i loss_i,

so one DDP step equals one single-process step on the union of the ranks' batches for any loss that
is a mean of per-sample terms (the drift-only bridge-matching loss, and AGM during weight warm-up).
AGM's self-normalised weights w_i = B a_i / sum_j a_j (docs/agm.md) are normalised within
each rank's batch (our choice: no extra all-gather per step; the alternative, a global normaliser,
differs by the ratio of the rank's mean a to the global mean a).

Per-rank seeding: rank r's batch/noise generator is seeded with ``rank_seed(seed, r)``; the networks
are initialised identically on every rank (same global seed) and DDP broadcasts rank 0's weights.
Rank 0 alone writes logs and checkpoints; every rank's generator state is gathered into the
checkpoint so that ``resume`` restores each rank exactly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from agm.errors import ConfigError

RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank, world size, local rank (its GPU), and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank r's generator: seed + r * 1_000_003 (rank 0 keeps the single-process seed)."""
    return int(seed) + int(rank) * RANK_SEED_STRIDE


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment variables (0, 1, 0 when absent)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def local_batch_size(global_batch: int, world_size: int) -> int:
    """B / W; ConfigError naming train.batch_size when W does not divide B."""
    if world_size < 1:
        raise ConfigError(f"world size={world_size!r} must be >= 1")
    if global_batch % world_size:
        ok = [b for b in (global_batch - global_batch % world_size, global_batch - global_batch % world_size + world_size) if b > 0]
        raise ConfigError(
            f"train.batch_size={global_batch} is not divisible by the torchrun world size {world_size}; "
            f"accepted: a multiple of {world_size} (e.g. {ok})"
        )
    return global_batch // world_size


def current_context(device: str = "cpu") -> DistContext:
    """The context of an initialised process group (or the single-process context)."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        if str(device).startswith("cuda"):
            device = f"cuda:{local}"
        return DistContext(rank, world, local, device)
    return DistContext(0, 1, 0, device)


def init_distributed(device: str = "cuda", backend: str | None = None, timeout_s: float = 600.0) -> DistContext:
    """Initialise the process group from torchrun's environment (no-op for a single process).

    backend: 'nccl' for CUDA devices, 'gloo' for CPU (default by device). Each rank uses GPU LOCAL_RANK.
    """
    rank, world, local = env_world()
    if world <= 1:
        return DistContext(0, 1, 0, device)
    if not dist.is_initialized():
        backend = backend or ("nccl" if str(device).startswith("cuda") else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return current_context(device)


def cleanup() -> None:
    """Destroy the process group if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(method: object, nets: dict[str, nn.Module], ctx: DistContext) -> None:
    """Replace each trained network attribute of ``method`` by a DistributedDataParallel wrapper.

    The method must hold each network as an attribute named like its key in ``networks()`` (AGM does:
    ``drift``, ``potential``). ``nets`` keeps the unwrapped modules (for EMA, the optimiser and checkpoints).
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    for name, net in nets.items():
        if getattr(method, name, None) is not net:
            raise ConfigError(
                f"DDP needs the method to expose network {name!r} as attribute method.{name}; "
                f"{type(method).__name__} does not"
            )
        kw = {"device_ids": [ctx.local_rank]} if str(ctx.device).startswith("cuda") else {}
        wrapped = DDP(net, broadcast_buffers=False, **kw)
        setattr(method, name, wrapped)


def gather_objects(obj: object, ctx: DistContext) -> list[object]:
    """[obj of rank 0, ..., obj of rank W-1] on every rank (just [obj] without a process group)."""
    if not ctx.enabled:
        return [obj]
    out: list[object] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    """Synchronise all ranks (no-op for one process)."""
    if ctx.enabled:
        dist.barrier()


def all_reduce_mean(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of x over ranks (x itself for one process)."""
    if not ctx.enabled:
        return x
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / ctx.world_size
