"""BatchStream (post 6575's process-safe `Sequence`, in PyTorch terms): each epoch visits every sample at most
once in an order fixed by (seed, epoch); a stream restored mid-epoch continues exactly; W ranks with B/W rows
each reproduce one process with batch B; the DataLoader path (with workers) yields what the fast path
yields; worker processes draw distinct NumPy/Python random numbers."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import Dataset, TensorDataset

from kexue.data.loader import BatchStream, epoch_permutation, mix_seed
from kexue.errors import DataError


def indexed(n: int) -> TensorDataset:
    """Sample i is (i, i/2): a batch shows exactly which samples it holds."""
    return TensorDataset(torch.arange(n), torch.arange(n) * 0.5)


class MapIndexed(Dataset):
    """The same data as `indexed`, as a map-style Dataset (not a TensorDataset): takes the DataLoader path."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.tensor(i), torch.tensor(i * 0.5)


class NumpyDraws(Dataset):
    """Each item is (index, NumPy's global draw, Python's global draw): what an augmentation would use."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int):
        return (
            torch.tensor(i),
            torch.tensor(np.random.rand()),  # noqa: NPY002 - the global generator is what is tested
            torch.tensor(random.random()),
        )


def take(stream: BatchStream, k: int) -> list[tuple[torch.Tensor, ...]]:
    return list(itertools.islice(iter(stream), k))


def assert_same_batches(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert len(x) == len(y)
        for s, t in zip(x, y):
            assert torch.equal(s, t)


# ------------------------------------------------------------------------------------------ one process
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), data=st.data(), seed=st.integers(0, 2**40))
def test_epoch_visits_each_sample_at_most_once(n, data, seed):
    """One epoch = N//B batches of B distinct samples: N//B·B samples, none twice; then a new epoch."""
    b = data.draw(st.integers(1, n))
    stream = BatchStream(indexed(n), b, seed=seed)
    per_epoch = n // b
    batches = take(stream, 2 * per_epoch)
    for e in range(2):
        idx = torch.cat([x[0] for x in batches[e * per_epoch : (e + 1) * per_epoch]])
        assert len(idx) == per_epoch * b
        assert len(idx.unique()) == len(idx)  # at most once
        # global batch j of epoch e is P_e[jB : (j+1)B] (the module docstring's definition)
        assert torch.equal(idx, epoch_permutation(n, seed, e)[: per_epoch * b])
    for x, i in batches:
        assert torch.equal(i, x * 0.5)  # the tensors of a sample stay together


def test_order_is_a_function_of_seed_and_epoch_only():
    n = 50
    torch.manual_seed(1)
    a = take(BatchStream(indexed(n), 8, seed=3), 14)
    torch.manual_seed(2)  # the global generator must not matter
    torch.rand(7)
    b = take(BatchStream(indexed(n), 8, seed=3), 14)
    assert_same_batches(a, b)
    p = epoch_permutation(n, 3, 0)
    assert torch.equal(p.sort().values, torch.arange(n))  # a permutation
    assert torch.equal(p, epoch_permutation(n, 3, 0))
    assert not torch.equal(p, epoch_permutation(n, 3, 1))  # a new order each epoch
    assert not torch.equal(p, epoch_permutation(n, 4, 0))  # and each seed
    assert torch.equal(epoch_permutation(n, 3, 5, shuffle=False), torch.arange(n))
    (first,) = take(BatchStream(indexed(n), 8, seed=3, shuffle=False), 1)
    assert torch.equal(first[0], torch.arange(8))


def test_mix_seed_separates_nearby_keys():
    """Nearby keys give unrelated 63-bit seeds (so epoch e and seed s+1 never share a stream)."""
    seeds = {mix_seed(s, e) for s in range(8) for e in range(8)}
    assert len(seeds) == 64
    assert all(0 <= s < 2**63 for s in seeds)
    assert mix_seed(1, 2) != mix_seed(2, 1)
    assert mix_seed(1, 2) == mix_seed(1, 2)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    data=st.data(),
    seed=st.integers(0, 2**32),
    via_json=st.booleans(),
)
def test_restored_stream_continues_exactly(n, data, seed, via_json):
    """A stream rebuilt from state_dict() taken after any batch yields what the uninterrupted one yields."""
    b = data.draw(st.integers(1, n))
    per_epoch = n // b
    stop = data.draw(st.integers(0, 3 * per_epoch))
    stream = BatchStream(indexed(n), b, seed=seed)
    it = iter(stream)
    for _ in range(stop):
        next(it)
    state = stream.state_dict()
    if via_json:  # what a checkpoint gives back
        state = json.loads(json.dumps(state))
    uninterrupted = [next(it) for _ in range(per_epoch + 2)]
    restored = BatchStream(indexed(n), b, seed=seed)
    restored.load_state_dict(state)
    assert_same_batches(take(restored, per_epoch + 2), uninterrupted)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_concatenate_to_the_global_batch(world):
    """DDP: rank r takes the r-th chunk of each global batch, so the ranks' batches concatenate to it."""
    n, b = 50, 4 * world
    steps = 2 * (n // b) + 1  # over an epoch boundary
    single = take(BatchStream(indexed(n), b, seed=7), steps)
    ranks = [take(BatchStream(indexed(n), b, seed=7, rank=r, world=world), steps) for r in range(world)]
    for j in range(steps):
        assert all(len(ranks[r][j][0]) == b // world for r in range(world))
        for t in range(2):
            assert torch.equal(torch.cat([ranks[r][j][t] for r in range(world)]), single[j][t])


def test_rank_resume_continues_exactly():
    n, b, world = 30, 6, 3
    streams = [BatchStream(indexed(n), b, seed=1, rank=r, world=world) for r in range(world)]
    its = [iter(s) for s in streams]
    for it in its:
        for _ in range(4):
            next(it)
    for r, (s, it) in enumerate(zip(streams, its)):
        restored = BatchStream(indexed(n), b, seed=1, rank=r, world=world)
        restored.load_state_dict(s.state_dict())
        assert_same_batches(take(restored, 6), [next(it) for _ in range(6)])


# ------------------------------------------------------------------------------------------ errors
def test_errors():
    """One-line DataErrors (a ValueError) that say what to change."""
    with pytest.raises(DataError, match="multiple of the number of processes"):
        BatchStream(indexed(20), 10, world=3)
    with pytest.raises(DataError, match="positive multiple"):
        BatchStream(indexed(20), 0)
    with pytest.raises(DataError, match="fewer than one batch of 8"):
        BatchStream(indexed(7), 8)
    state = BatchStream(indexed(20), 4, seed=1).state_dict()
    with pytest.raises(DataError, match="batch size 4 and seed 1, this run uses 5 and 1"):
        BatchStream(indexed(20), 5, seed=1).load_state_dict(state)
    with pytest.raises(DataError, match="batch size 4 and seed 1, this run uses 4 and 2"):
        BatchStream(indexed(20), 4, seed=2).load_state_dict(state)


# ------------------------------------------------------------------------------------------ DataLoader path
@pytest.mark.parametrize("workers", [0, 2])
def test_map_style_dataset_matches_the_fast_path(workers):
    """A non-TensorDataset goes through a DataLoader (with workers or not) and yields the same batches,
    including across an epoch boundary and after a mid-epoch restore."""
    n, b = 13, 4  # 3 batches per epoch, 1 sample dropped
    fast = take(BatchStream(indexed(n), b, seed=5), 5)
    slow = BatchStream(MapIndexed(n), b, seed=5, num_workers=workers)
    assert_same_batches(take(slow, 5), fast)
    restored = BatchStream(MapIndexed(n), b, seed=5, num_workers=workers)
    restored.load_state_dict({**slow.state_dict(), "epoch": 0, "batch": 2})
    assert_same_batches(take(restored, 3), fast[2:])


def test_workers_draw_distinct_numpy_numbers():
    """The classic bug: forked workers that share NumPy's state repeat each other's "random" augmentations.
    Through BatchStream all draws differ, across workers and epochs, and they are a function of the seed (a
    second stream draws the same numbers): BatchStream seeds the DataLoader's generator per (seed, epoch,
    rank), from which torch seeds every worker's NumPy generator."""
    runs = []
    for _ in range(2):
        stream = BatchStream(NumpyDraws(), 4, seed=11, num_workers=2)
        runs.append(take(stream, 8))  # 2 epochs × 4 batches, batches alternate between the 2 workers
    draws = torch.cat([torch.stack([a, r]) for _, a, r in runs[0]], 1)  # (2, 32)
    for row in draws:
        assert len(row.unique()) == len(row)
    assert_same_batches(runs[0], runs[1])
