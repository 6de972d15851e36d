"""Sliced Wasserstein: translations, exact 1-D W_p vs scipy, unequal sizes, Gaussian limit, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import wasserstein_distance

from kexue.metrics.sliced_wasserstein import random_directions, sliced_wasserstein


@pytest.mark.parametrize("p", [1, 2, 3])
def test_translation_gives_projected_shift(gen, p):
    # Sorting commutes with a shift, so W_p(θᵀx, θᵀx + θᵀc) = |θᵀc| on every direction exactly.
    x = torch.randn(50, 3, dtype=torch.float64, generator=gen)
    c = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    theta = random_directions(32, 3, generator=gen)
    want = float((theta @ c).abs().pow(p).mean() ** (1 / p))
    assert sliced_wasserstein(x, x + c, projections=theta, p=p) == pytest.approx(want, rel=1e-12)


def test_same_seed_gives_same_directions(gen):
    x = torch.randn(20, 5, generator=gen)
    y = torch.randn(30, 5, generator=gen)
    a = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(3))
    b = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(3))
    c = sliced_wasserstein(
        x, y, projections=random_directions(128, 5, generator=torch.Generator().manual_seed(3))
    )
    assert a == b == c


@pytest.mark.parametrize(("n", "m"), [(7, 7), (7, 4), (5, 12), (1, 9)])
def test_1d_equals_scipy_w1(gen, n, m):
    # In 1-D the only unit directions are ±1 and W_p is invariant to flipping both samples, so SW_1 = W_1.
    x = torch.randn(n, 1, dtype=torch.float64, generator=gen)
    y = torch.randn(m, 1, dtype=torch.float64, generator=gen) * 2 + 0.3
    want = wasserstein_distance(x[:, 0].numpy(), y[:, 0].numpy())
    assert sliced_wasserstein(x, y, p=1, num_projections=4, generator=gen) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(("n", "m", "p"), [(6, 4, 2), (3, 7, 2), (9, 6, 3)])
def test_unequal_sizes_equal_lcm_expansion(gen, n, m, p):
    # Repeating each of the N atoms L/N times (L = lcm(N, M)) leaves the empirical measure unchanged, so the
    # quantile-merge path must agree with the equal-size sort-and-compare path on the expanded sets.
    x = torch.randn(n, 3, dtype=torch.float64, generator=gen)
    y = torch.randn(m, 3, dtype=torch.float64, generator=gen) + 0.5
    theta = random_directions(16, 3, generator=gen)
    lcm = math.lcm(n, m)
    expanded = sliced_wasserstein(x.repeat(lcm // n, 1), y.repeat(lcm // m, 1), projections=theta, p=p)
    assert sliced_wasserstein(x, y, projections=theta, p=p) == pytest.approx(expanded, rel=1e-12)


def test_zero_for_identical_sets_and_duplicated_measure(gen):
    x = torch.randn(25, 4, dtype=torch.float64, generator=gen)
    shuffled = x[torch.randperm(25, generator=gen)]  # same set; matmul round-off may differ by ~1e−17
    assert sliced_wasserstein(x, shuffled, generator=gen) == pytest.approx(0.0, abs=1e-15)
    assert sliced_wasserstein(x, torch.cat([x, x]), generator=gen) == pytest.approx(0.0, abs=1e-15)


def test_random_directions_are_uniform_on_sphere(gen):
    theta = random_directions(20000, 4, generator=gen)
    assert torch.allclose(theta.norm(dim=1), torch.ones(1, dtype=torch.float64), atol=1e-14)
    # Isotropy: E θθᵀ = I/d. Each entry of the mean has sd ≤ √(Var θ_i²/20000) ≈ 0.0013 for d = 4.
    assert torch.allclose(theta.T @ theta / 20000, torch.eye(4, dtype=torch.float64) / 4, atol=0.006)


def test_gaussians_with_equal_covariance_converge_to_mean_shift(gen):
    # θᵀx ~ N(θᵀμ1, 1), θᵀy ~ N(θᵀμ2, 1), so W_2² = (θᵀΔμ)² per direction and E_θ (θᵀΔμ)² = ‖Δμ‖²/d.
    n, d = 10000, 4
    dmu = torch.tensor([2.0, -2.0, 1.0, 0.0], dtype=torch.float64)
    x = torch.randn(n, d, dtype=torch.float64, generator=gen)
    y = torch.randn(n, d, dtype=torch.float64, generator=gen) + dmu
    theta = random_directions(64, d, generator=gen)
    delta = theta @ dmu  # (L,)
    sw2 = sliced_wasserstein(x, y, projections=theta) ** 2
    # Sampling error is dominated by the sample means, 2 mean_θ δ_θ θᵀ(ε_y − ε_x) with ε ~ N(0, I/n): this sd;
    # the empirical quantiles add a positive O(1/n) bias (≈ 7/n measured for N(0, 1)), allowed as 20/n.
    sd = 2 * math.sqrt(2 / n) * float((delta[:, None] * theta).mean(0).norm())
    assert abs(sw2 - float(delta.square().mean())) < 4 * sd + 20 / n
    # The directions' own Monte-Carlo error: Var (θᵀu)² = 2(d−1)/(d²(d+2)) for a unit u.
    sd_theta = dmu.square().sum().item() * math.sqrt(2 * (d - 1) / (d * d * (d + 2)) / 64)
    assert abs(float(delta.square().mean()) - dmu.square().sum().item() / d) < 4 * sd_theta


def _pair(data, n_max=8, d_max=3):
    d = data.draw(st.integers(1, d_max))
    shape = st.tuples(st.integers(1, n_max), st.just(d))
    x = data.draw(arrays(np.float64, shape, elements=st.floats(-10, 10)))
    y = data.draw(arrays(np.float64, shape, elements=st.floats(-10, 10)))
    return torch.from_numpy(x), torch.from_numpy(y)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), p=st.sampled_from([1, 2, 3]))
def test_property_symmetric_and_nonnegative(data, p):
    x, y = _pair(data)
    theta = random_directions(8, x.shape[1], generator=torch.Generator().manual_seed(0))
    a = sliced_wasserstein(x, y, projections=theta, p=p)
    assert a >= 0
    assert a == pytest.approx(sliced_wasserstein(y, x, projections=theta, p=p), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x": torch.zeros(3, 2), "y": torch.zeros(3, 4)}, "same dimension"),
        ({"x": torch.zeros(0, 2), "y": torch.zeros(3, 2)}, "non-empty"),
        ({"x": torch.zeros(3, 2), "y": torch.zeros(3, 2), "p": 0.5}, "p must be"),
        ({"x": torch.zeros(3, 2), "y": torch.zeros(3, 2), "num_projections": 0}, "num_projections"),
        ({"x": torch.zeros(3, 2), "y": torch.zeros(3, 2), "projections": torch.ones(4, 2)}, "unit-norm"),
        ({"x": torch.zeros(3, 2), "y": torch.zeros(3, 2), "projections": torch.ones(4, 3)}, r"\(L, 2\)"),
    ],
)
def test_bad_input_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sliced_wasserstein(**kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(gen):
    x, y = torch.randn(300, 8, generator=gen), torch.randn(200, 8, generator=gen) + 0.1
    theta = random_directions(32, 8, generator=gen)
    want = sliced_wasserstein(x, y, projections=theta)
    assert sliced_wasserstein(x.cuda(), y.cuda(), projections=theta.cuda()) == pytest.approx(want, rel=1e-10)
