"""Data parallelism with one code path: torch DDP under ``torchrun``.

Why DDP rather than Ray Train: the training programs are plain torch loops, DDP is
what ``torchrun`` (and every cluster scheduler) already launches, and it needs no
extra service; Ray stays the engine for search, where its actors fit. Without the
torchrun environment variables everything runs in one process.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    """Rank / world size, and the DDP helpers the trainer needs."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, backend: str | None = None) -> "DistContext":
        """Initialise the process group if launched by torchrun (WORLD_SIZE > 1)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.enabled:
            return model
        device_ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def no_sync(self, model: torch.nn.Module, last: bool):
        """Skip the gradient all-reduce on all but the last micro-batch."""
        if self.enabled and not last:
            return model.no_sync()
        return contextlib.nullcontext()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_mean(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t) / self.world_size
