"""Schedules and trajectories: closed forms, endpoints, and the off-by-one traps peers are known for."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.diffusion import schedules


def test_linear_abar_is_the_ddpm_product():
    abar = schedules.linear_abar(1000)
    beta = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    assert abar.dtype == torch.float64 and abar.shape == (1001,)
    assert abar[0] == 1
    assert torch.allclose(abar[1:], torch.cumprod(1 - beta, 0), rtol=0, atol=0)
    assert torch.allclose(schedules.betas(abar), beta, rtol=1e-12, atol=1e-15)
    assert 4e-5 < abar[-1] < 5e-5  # the well-known ᾱ_N ≈ 4.0e-5 of the DDPM linear schedule


def test_cosine_abar_matches_its_definition_and_clip():
    n, s = 1000, 0.008
    abar = schedules.cosine_abar(n, s)
    f = lambda t: math.cos((t / n + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 10, 500, 900):
        assert abar[t].item() == pytest.approx(f(t) / f(0), rel=1e-12)
    b = schedules.betas(abar)
    assert float(b.max()) <= 0.999 + 1e-15 and bool((b > 0).all())
    assert bool((abar[1:] < abar[:-1]).all())


@pytest.mark.parametrize("kind", ["even", "quadratic"])
@pytest.mark.parametrize("k", [1, 2, 3, 10, 25, 100, 999, 1000])
def test_trajectory_spans_one_to_n(kind, k):
    tau = schedules.trajectory(kind, 1000, k)
    assert tau.dtype == torch.int64 and tau.shape == (k,)
    assert int(tau[-1]) == 1000 and (k == 1 or int(tau[0]) == 1)
    assert bool((tau[1:] > tau[:-1]).all())


def test_even_trajectory_formula_and_leading_matches_diffusers_spacing():
    tau = schedules.trajectory("even", 1000, 10)
    expected = [round(1 + 999 * (k - 1) / 9) for k in range(1, 11)]
    assert tau.tolist() == expected
    # diffusers timestep_spacing="leading", steps_offset=0: 900, 800, …, 0 (0-based) = 901, …, 1 here
    assert schedules.trajectory("leading", 1000, 10).flip(0).tolist() == [t + 1 for t in range(900, -1, -100)]


def test_steps_walk_down_to_zero_without_repeats():
    pairs = schedules.steps(torch.tensor([1, 5, 9]))
    assert pairs == [(9, 5), (5, 1), (1, 0)]
    assert schedules.steps(torch.tensor([7])) == [(7, 0)]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 400), frac=st.floats(0, 1), kind=st.sampled_from(schedules.TRAJECTORIES))
def test_every_trajectory_is_valid(n, frac, kind):
    k = max(1, min(n, round(frac * n)))
    tau = schedules.trajectory(kind, n, k)
    assert len(tau) == k and int(tau.min()) >= 1 and int(tau.max()) <= n
    assert bool((tau[1:] > tau[:-1]).all())
    pairs = schedules.steps(tau)
    assert pairs[-1][1] == 0 and all(t > s for t, s in pairs)


@pytest.mark.parametrize(
    "args, match",
    [
        (("even", 1000, 0), "K must be an integer in 1..N"),
        (("even", 1000, 1001), "K must be an integer in 1..N"),
        (("spiral", 1000, 10), "unknown trajectory"),
        (("even", 0, 1), "positive integer"),
    ],
)
def test_bad_trajectory_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        schedules.trajectory(*args)
