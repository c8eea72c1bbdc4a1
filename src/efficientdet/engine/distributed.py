"""PyTorch DDP set-up for ``torchrun``: NCCL on GPUs, gloo on CPU; helpers that are no-ops in one process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, and its ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """The device for a name; the one place every command and API call resolves ``--device``.

    ``auto`` (or ``None``): CUDA (this process's local GPU ``local_rank``), then Apple MPS, then CPU. A named
    device that this machine lacks (``cuda`` without a CUDA build or driver, ``mps`` off a Mac) or an unknown
    name raises :class:`~efficientdet.errors.ConfigError` with the alternatives.
    """
    from efficientdet.errors import ConfigError

    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device {name!r} is not a device name; use auto, cpu, cuda, cuda:1 or mps") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(name)!r}: CUDA is not available here (no GPU, driver or CUDA build of "
                              "torch); use --device cpu (or auto)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {str(name)!r}: this machine has {torch.cuda.device_count()} GPU(s), "
                              f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not _mps_available():
        raise ConfigError(f"device {str(name)!r}: Apple MPS is not available here; use --device cpu (or auto)")
    return device


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (or run alone)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, dev)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over processes (``t`` itself in one process)."""
    if is_distributed():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
