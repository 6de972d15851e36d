"""Scaling round trips for every level count, dequantization inside its bin, and both binarizations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.data.transforms import (
    binarize_dynamic,
    binarize_static,
    dequantize,
    from_symmetric,
    to_symmetric,
    to_unit,
)


def all_levels(levels: int) -> torch.Tensor:
    return torch.arange(levels, dtype=torch.uint8 if levels <= 256 else torch.int64)


@settings(max_examples=60, deadline=None)
@given(levels=st.one_of(st.integers(2, 256), st.integers(257, 2**16)))
def test_symmetric_round_trip_is_exact_for_every_level(levels):
    k = all_levels(levels)
    unit, sym = to_unit(k, levels), to_symmetric(k, levels)
    assert unit.dtype == sym.dtype == torch.float32
    assert unit[0] == 0 and unit[-1] == 1 and sym[0] == -1 and sym[-1] == 1
    assert (unit.diff() > 0).all()  # distinct levels stay distinct
    back = from_symmetric(sym, levels)
    assert back.dtype == k.dtype and torch.equal(back, k)


@settings(max_examples=60, deadline=None)
@given(levels=st.integers(2, 256), seed=st.integers(0, 2**32 - 1))
def test_from_symmetric_picks_the_nearest_level_and_clamps(levels, seed):
    y = torch.rand(1000, generator=torch.Generator().manual_seed(seed)) * 3 - 1.5  # some beyond ±1
    k = from_symmetric(y, levels)
    assert k.min() >= 0 and k.max() <= levels - 1
    step = 2 / (levels - 1)  # spacing of the levels in [−1, 1]
    err = (to_symmetric(k, levels) - y.clamp(-1, 1)).abs()
    assert (err <= step / 2 + 1e-6).all()


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_dequantize_stays_in_its_bin_with_the_right_mean(levels, gen):
    n = 20_000
    k = all_levels(levels).repeat(n)  # (levels·n,)
    y = dequantize(k, levels, generator=gen)
    kf = k.to(torch.float32)
    assert y.dtype == torch.float32 and y.shape == k.shape
    assert (y >= kf / levels).all() and (y < (kf + 1) / levels).all()  # bin [k/L, (k+1)/L)
    means = y.view(n, levels).mean(0).double()  # per level
    se = 1 / (levels * math.sqrt(12 * n))  # U[k/L, (k+1)/L) has std 1/(L√12)
    target = (torch.arange(levels, dtype=torch.float64) + 0.5) / levels
    assert ((means - target).abs() < 5 * se).all()


def test_dequantize_top_level_never_reaches_one(gen):
    # float32 k + u rounds up to k + 1 for about 1 in 1.3e5 draws at k = 255 (u's last bits are below k's
    # ulp); 2·10⁶ draws would contain ~15 such values if the bin's open upper edge were not enforced.
    y = dequantize(torch.full((2_000_000,), 255, dtype=torch.uint8), 256, generator=gen)
    assert y.max() < 1.0 and y.min() >= 255 / 256


def test_dequantize_is_reproducible_per_generator():
    x = torch.randint(0, 256, (4, 1, 3, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    a = dequantize(x, 256, generator=torch.Generator().manual_seed(5))
    b = dequantize(x, 256, generator=torch.Generator().manual_seed(5))
    c = dequantize(x, 256, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal((a * 256).floor().to(torch.uint8), x)  # the bin index is the level


def test_dynamic_binarization_has_mean_x(gen):
    p = torch.linspace(0, 1, 11)  # includes the deterministic ends 0 and 1
    n = 20_000
    b = binarize_dynamic(p.repeat(n, 1), generator=gen)  # (n, 11)
    assert b.dtype == torch.float32 and set(b.unique().tolist()) <= {0.0, 1.0}
    assert (b[:, 0] == 0).all() and (b[:, -1] == 1).all()
    se = (p * (1 - p) / n).sqrt()
    assert ((b.mean(0) - p).abs() <= 5 * se + 1e-12).all()
    again = binarize_dynamic(p.repeat(n, 1), generator=torch.Generator().manual_seed(0))
    assert torch.equal(b, again)  # `gen` is seeded with 0 as well: same draws


def test_static_binarization_thresholds():
    x = torch.tensor([0.0, 0.25, 0.5, 0.5001, 1.0], dtype=torch.float64)
    assert binarize_static(x).tolist() == [0, 0, 0, 1, 1]  # strictly above 0.5
    assert binarize_static(x, threshold=0.2).tolist() == [0, 1, 1, 1, 1]
    assert binarize_static(x).dtype == torch.float32
