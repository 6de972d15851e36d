"""Tweedie's formula: the optimal DAE is x̃ + σ²∇log p_σ (post 7038 eq. 1), checked on Gaussian data."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.dae import DAE, DAEConfig, dae_loss, denoiser_from_score, score_from_denoiser

F64 = torch.float64


def _posterior_mean(x_noisy, mu, s, sigma):
    """E[x | x̃] for x ~ N(μ, s²I), x̃ = x + σn: the conjugate-Gaussian precision-weighted mean."""
    return (s**2 * x_noisy + sigma**2 * mu) / (s**2 + sigma**2)


def _smoothed_score(x_noisy, mu, s, sigma):
    """∇log N(x̃; μ, (s² + σ²)I), the score of p_σ = p * N(0, σ²I)."""
    return -(x_noisy - mu) / (s**2 + sigma**2)


@settings(max_examples=50, deadline=None)
@given(
    mu=st.floats(-5, 5),
    s=st.floats(0.05, 3),
    sigma=st.floats(0.01, 3),
    seed=st.integers(0, 2**16),
)
def test_tweedie_is_the_posterior_mean_on_gaussian_data(mu, s, sigma, seed):
    g = torch.Generator().manual_seed(seed)
    x_noisy = mu + 4 * torch.randn(16, 3, generator=g, dtype=F64)
    r_star = _posterior_mean(x_noisy, mu, s, sigma)
    score = _smoothed_score(x_noisy, mu, s, sigma)
    assert torch.allclose(denoiser_from_score(score, x_noisy, sigma), r_star, rtol=1e-12, atol=1e-12)
    assert torch.allclose(score_from_denoiser(r_star, x_noisy, sigma), score, rtol=1e-9, atol=1e-9)


def test_the_posterior_mean_minimises_the_dae_loss(gen):
    """E‖r(x̃) − x‖² = E‖r* − x‖² + E‖r − r*‖²: shifting r* by δ adds ‖δ‖² (same noise for both)."""
    mu, s, sigma = torch.tensor([1.0, -0.5], dtype=F64), 0.5, 0.3
    x = mu + s * torch.randn(40_000, 2, generator=gen, dtype=F64)
    r_star = lambda xt: _posterior_mean(xt, mu, s, sigma)  # noqa: E731
    best = dae_loss(r_star, x, sigma, generator=torch.Generator().manual_seed(1))
    # the minimum is the posterior variance summed over D = 2: 2·s²σ²/(s² + σ²)
    assert float(best) == pytest.approx(2 * s**2 * sigma**2 / (s**2 + sigma**2), rel=0.02)
    for delta in (0.1, -0.1):
        worse = dae_loss(
            lambda xt, d=delta: r_star(xt) + d, x, sigma, generator=torch.Generator().manual_seed(1)
        )
        assert float(worse - best) == pytest.approx(2 * delta**2, rel=0.1)


def test_a_dae_trained_on_gaussian_data_approaches_the_closed_form():
    torch.manual_seed(0)
    mu, s, sigma = torch.tensor([1.0, -0.5]), 0.5, 0.5
    model = DAE(DAEConfig(dim=2, sigma=sigma, data_std=0.6, width=32, depth=2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        x = mu + s * torch.randn(256, 2, generator=g)
        loss = model.loss((x,))
        opt.zero_grad()
        loss.backward()
        opt.step()
    xt = mu + math.sqrt(s**2 + sigma**2) * torch.randn(2000, 2, generator=g)  # x̃ ~ p_σ
    with torch.no_grad():
        err = (model(xt) - _posterior_mean(xt, mu, s, sigma)).pow(2).sum(1).mean()
        score_err = (model.score(xt) - _smoothed_score(xt, mu, s, sigma)).pow(2).sum(1).mean()
    # E‖r* − x̃‖² = 2σ⁴/(s² + σ²) = 0.25: the learned correction is within 2% of it in squared error
    assert float(err) < 0.02 * 2 * sigma**4 / (s**2 + sigma**2)
    assert float(score_err) == pytest.approx(float(err) / sigma**4, rel=1e-4)  # s = (r − x)/σ²


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "a"])
def test_bad_sigma_is_refused(bad):
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="sigma"):
        score_from_denoiser(x, x, bad)
    with pytest.raises(ValueError, match="sigma"):
        denoiser_from_score(x, x, bad)
    with pytest.raises(ValueError, match="sigma"):
        dae_loss(lambda v: v, x, bad)
    with pytest.raises(ValueError, match="sigma"):
        DAEConfig(sigma=bad)


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        score_from_denoiser(torch.zeros(3, 2), torch.zeros(3, 3), 0.1)
    with pytest.raises(ValueError, match="dim=2"):
        DAE(DAEConfig(dim=2))(torch.zeros(4, 3))


def test_dae_keeps_the_input_shape_and_dtype():
    model = DAE(DAEConfig(dim=64, sigma=0.1)).double()
    x = torch.zeros(5, 1, 8, 8, dtype=F64)
    assert model(x).shape == x.shape and model(x).dtype == F64 and model.score(x).shape == x.shape
