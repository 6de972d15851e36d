"""Devices and DDP: the same command runs on one process or under `torchrun`.

`torchrun --nproc_per_node N -m kexue train …` sets RANK, WORLD_SIZE and LOCAL_RANK; `setup` then joins
the process group (NCCL on CUDA, gloo on CPU) and gives each process its device. Without those variables
everything is a single process and no process group exists. The collective helpers act only for a `Dist`
that is active, so a single-process Trainer run inside a torchrun job (say, a metric's own classifier
trained from a callback) never joins the job's collectives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from kexue.errors import KexueError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # noqa: RUF009 - immutable

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """ "auto" → CUDA when present (device `local_rank`), else CPU; "cuda" without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise KexueError(
                f"--device {name} was asked for but CUDA is not available here; "
                "use --device cpu or --device auto"
            )
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    if name != "cpu":
        raise KexueError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def setup(device: str = "auto") -> Dist:
    """Join the torchrun process group when launched by torchrun; otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, dev)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def all_max(flag: bool, d: Dist) -> bool:
    """True on every process when `flag` is True on any (a cheap agreement, e.g. on a NaN or a stop)."""
    if not d.active:
        return flag
    t = torch.tensor([float(flag)], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_mean(values: list[float], d: Dist) -> list[float]:
    """Average a few floats over processes (for logging)."""
    if not d.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return (t / d.world).tolist()


def gather_objects(obj: Any, d: Dist) -> list[Any]:
    """Every process's `obj`, in rank order (a one-element list on a single process)."""
    if not d.active:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out
