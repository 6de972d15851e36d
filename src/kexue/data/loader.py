"""Batches in a fixed, resumable, process-safe order.

Post 6575 ("让Keras更酷一些!": 中间变量、权重滑动和安全生成器) moves Keras data loading from Python generators
to `Sequence`: a batch is a pure function of its index, so worker processes can neither repeat nor lose
samples. `BatchStream` is that idea in PyTorch terms, extended to what resuming and DDP need:

- epoch e visits the data in the permutation P_e = randperm(N) drawn from a generator seeded by (seed, e);
- global batch b of epoch e is P_e[b·B : (b+1)·B] (the last incomplete batch is dropped);
- under DDP with W processes, rank r takes the r-th contiguous chunk of each global batch, so W processes
  with B/W each see exactly the samples one process sees with batch B;
- the position (epoch, batch) is the whole state: a checkpoint stores it and resuming skips to it.

In-memory `TensorDataset`s are indexed directly (one gather per batch, no per-sample Python); any other
map-style Dataset goes through a DataLoader whose generator is seeded per (seed, epoch, rank); from it torch
(≥ 1.9) seeds each worker's torch, NumPy and `random` generators distinctly, so workers neither repeat each
other's "random" augmentations (the classic bug of forked workers) nor change them from run to run. One limit:
a run resumed in the middle of an epoch hands batches to workers in a different rotation, so random
per-sample augmentation drawn inside workers differs from the uninterrupted run (in-memory data and
deterministic data sets resume exactly).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from kexue.errors import DataError


def mix_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (NumPy's SeedSequence hashing: nearby keys give unrelated streams)."""
    return int(
        np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2, np.uint64)[0] >> 1
    )


def epoch_permutation(n: int, seed: int, epoch: int, *, shuffle: bool = True) -> Tensor:
    """P_e: the order in which epoch `epoch` visits n samples (the identity when shuffle is False)."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))


class BatchStream:
    """An endless stream of this process's batches, resumable from (epoch, batch).

    dataset: a TensorDataset (fast path) or any map-style Dataset returning tuples of tensors.
    batch_size: the GLOBAL batch over all `world` processes; each process yields batch_size // world rows.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        shuffle: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        n = len(dataset)  # type: ignore[arg-type]
        if batch_size < 1 or batch_size % world:
            raise DataError(
                f"batch size {batch_size} must be a positive multiple of the number of "
                f"processes ({world}); pass --batch-size divisible by {world}"
            )
        if n < batch_size:
            raise DataError(
                f"the data set has {n} samples, fewer than one batch of {batch_size}; "
                f"pass a smaller --batch-size"
            )
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world, self.shuffle = rank, world, shuffle
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.batches_per_epoch = n // batch_size
        self.epoch, self.batch = 0, 0  # position of the NEXT batch

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "world": self.world,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["batch_size"] != self.batch_size or state["seed"] != self.seed:
            raise DataError(
                f"cannot resume: the checkpoint was written with batch size {state['batch_size']} "
                f"and seed {state['seed']}, this run uses {self.batch_size} and {self.seed}; "
                "resume with the original settings"
            )
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])

    def _rank_indices(self, perm: Tensor, b: int) -> Tensor:
        per_rank = self.batch_size // self.world
        start = b * self.batch_size + self.rank * per_rank
        return perm[start : start + per_rank]

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        while True:
            perm = epoch_permutation(len(self.dataset), self.seed, self.epoch, shuffle=self.shuffle)
            for batch in self._epoch_batches(perm, self.batch):
                self.batch += 1  # advance before yielding: a checkpoint taken now resumes after this batch
                yield batch
            self.epoch, self.batch = self.epoch + 1, 0

    def _epoch_batches(self, perm: Tensor, start: int) -> Iterator[tuple[Tensor, ...]]:
        index = [self._rank_indices(perm, b) for b in range(start, self.batches_per_epoch)]
        if isinstance(self.dataset, TensorDataset):
            for idx in index:
                yield tuple(t[idx] for t in self.dataset.tensors)
            return
        loader = DataLoader(
            self.dataset,
            batch_sampler=[i.tolist() for i in index],
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            generator=torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, self.rank)),
        )
        for batch in loader:
            yield tuple(batch) if isinstance(batch, (list, tuple)) else (batch,)
