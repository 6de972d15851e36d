"""The denoising density estimator: its loss's optimum is σ² log p_σ + C, grid normalisation, the KDE."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.dae import DDE, DDEConfig, dde_loss, grid_log_normalizer, grid_points, kde_log_prob

F64 = torch.float64


def _log_normal(x, mu, var):
    """log N(x; μ, var·I) per row, (N, D) → (N,)."""
    d = x.shape[1]
    return -0.5 * (x - mu).pow(2).sum(1) / var - 0.5 * d * math.log(2 * math.pi * var)


def test_dde_loss_of_a_quadratic_energy_has_its_closed_form_and_optimum(gen):
    """x ~ N(μ, s²I), E_a(x) = −a‖x − μ‖²/2: ∇E_a(x̃) + ε = −a(x − μ) + (1 − a)ε, so the loss is
    D[a²s² + (1 − a)²σ²], minimised at a* = σ²/(s² + σ²): E* = σ² log p_σ + C ([7038] after eq. e-grad)."""
    mu, s, sigma, d = torch.tensor([0.3, -1.0], dtype=F64), 0.6, 0.4, 2
    x = mu + s * torch.randn(100_000, d, generator=gen, dtype=F64)
    a_star = sigma**2 / (s**2 + sigma**2)
    losses = {}
    for a in (0.5 * a_star, a_star, 1.5 * a_star):
        energy = lambda v, a=a: -a * (v - mu).pow(2).sum(1) / 2  # noqa: E731
        losses[a] = float(dde_loss(energy, x, sigma, generator=torch.Generator().manual_seed(1)).detach())
        exact = d * (a**2 * s**2 + (1 - a) ** 2 * sigma**2)
        assert losses[a] == pytest.approx(exact, rel=0.02)
    assert min(losses, key=losses.get) == a_star
    # and σ² log p_σ itself is this a* quadratic (up to a constant)
    v = torch.randn(5, d, generator=gen, dtype=F64)
    e_star = sigma**2 * _log_normal(v, mu, s**2 + sigma**2)
    quad = -a_star * (v - mu).pow(2).sum(1) / 2
    assert torch.allclose(e_star - quad, (e_star - quad)[:1].expand(5), rtol=0, atol=1e-12)


def test_dde_score_energy_and_loss_are_consistent(gen):
    model = DDE(DDEConfig(dim=2, sigma=0.1, width=16, depth=2)).double()
    x = torch.randn(6, 2, generator=gen, dtype=F64)
    assert torch.allclose(model.energy(x), 0.01 * model.log_unnormalized(x), rtol=1e-12)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.energy(xg).sum(), xg)
    assert torch.allclose(model.score(x), grad / 0.01, rtol=1e-10)  # score = ∇E/σ²
    with torch.no_grad():
        assert model.score(x).shape == (6, 2)  # usable inside no_grad (Langevin)
    loss = model.loss((x,))
    loss.backward()
    out_bias = model.net[-1].bias  # E is fixed up to the constant C: the loss never sees this bias
    assert out_bias.grad is None
    assert all(p.grad is not None for p in model.parameters() if p is not out_bias)  # through ∇E


def test_grid_normaliser_recovers_the_constant_of_a_gaussian():
    """∫ exp(log N + c) = e^c: the midpoint rule on a wide box returns c."""
    mu, var, c = torch.tensor([0.2, -0.1], dtype=F64), 0.3**2, 3.7
    log_fn = lambda p: _log_normal(p, mu, var) + c  # noqa: E731
    log_z = grid_log_normalizer(log_fn, ((-3, 3), (-3, 3)), 300)
    assert log_z == pytest.approx(c, abs=1e-8)
    pts, log_cell = grid_points(((-3, 3), (-3, 3)), 300)
    mass = torch.exp(log_fn(pts) - log_z + log_cell).sum()  # the normalised density integrates to 1
    assert float(mass) == pytest.approx(1.0, abs=1e-12)


def test_grid_points_cover_the_box_with_cell_centres():
    pts, log_cell = grid_points(((0, 1), (-2, 2)), 4)
    assert pts.shape == (16, 2)
    assert sorted(set(pts[:, 0].tolist())) == [0.125, 0.375, 0.625, 0.875]
    assert sorted(set(pts[:, 1].tolist())) == [-1.5, -0.5, 0.5, 1.5]
    assert log_cell == pytest.approx(math.log(0.25 * 1.0))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), h=st.floats(0.2, 1.0), seed=st.integers(0, 1000))
def test_kde_is_a_mixture_of_gaussians_and_integrates_to_one(n, h, seed):
    g = torch.Generator().manual_seed(seed)
    data = torch.rand(n, 2, generator=g, dtype=F64) - 0.5
    x = torch.randn(7, 2, generator=g, dtype=F64)
    brute = torch.logsumexp(torch.stack([_log_normal(x, c, h * h) for c in data]), 0) - math.log(n)
    assert torch.allclose(kde_log_prob(x, data, h), brute, rtol=1e-12, atol=1e-12)
    log_mass = grid_log_normalizer(lambda p: kde_log_prob(p, data, h), ((-7, 7), (-7, 7)), 200)
    assert log_mass == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "box, cells, match",
    [
        (((1, 0), (0, 1)), 10, "hi > lo"),
        (((0, float("inf")), (0, 1)), 10, "finite"),
        ((0, 1), 10, "pairs"),
        (((0, 1), (0, 1)), 0, "cells"),
        (((0, 1), (0, 1)), 2.5, "cells"),
        (((0, 1),) * 4, 1000, "too many"),
    ],
)
def test_bad_grids_are_refused(box, cells, match):
    with pytest.raises(ValueError, match=match):
        grid_log_normalizer(lambda p: p.sum(1), box, cells)


def test_bad_log_functions_and_inputs_are_refused():
    with pytest.raises(ValueError, match="one log-density per point"):
        grid_log_normalizer(lambda p: p, ((0, 1), (0, 1)), 4)
    with pytest.raises(ValueError, match="NaN"):
        grid_log_normalizer(lambda p: p.sum(1) * float("nan"), ((0, 1), (0, 1)), 4)
    with pytest.raises(ValueError, match="bandwidth"):
        kde_log_prob(torch.zeros(2, 2), torch.zeros(3, 2), 0.0)
    with pytest.raises(ValueError, match="share D"):
        kde_log_prob(torch.zeros(2, 2), torch.zeros(3, 3), 0.1)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        DDE(DDEConfig(dim=2)).log_unnormalized(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="sigma"):
        DDEConfig(sigma=-0.1)
    with pytest.raises(ValueError, match="sigma"):
        dde_loss(lambda v: v.sum(1), torch.zeros(2, 2), 0.0)
