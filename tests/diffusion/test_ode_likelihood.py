"""PF-ODE likelihoods against closed-form densities; trace estimators; the dequantisation bound, offsets."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.data.transforms import from_symmetric
from kexue.diffusion import ode_likelihood as L
from kexue.diffusion import sde as S
from kexue.diffusion.oracle import GaussianMixture
from kexue.metrics import bits_per_dim as metrics_bits_per_dim

EPS = 1e-5  # [SDE] App. D.2


def _gaussian(d: int = 3, std: float = 0.4) -> GaussianMixture:
    mu = torch.linspace(-0.5, 0.5, d, dtype=torch.float64)[None]  # (1, D)
    return GaussianMixture(mu, torch.tensor([std], dtype=torch.float64), torch.ones(1, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["vp", "subvp"])
@pytest.mark.parametrize("exact", [True, False])
def test_gaussian_data_nll_is_the_exact_log_density(kind, exact, gen):
    """K = 1: with p_T = q_T the ODE gives −log q_ε(x) to 1e-3 nats. Hutchinson is exact here too:
    ∂f̃/∂x = c(t)·I for isotropic Gaussian data, and vᵀ(cI)v = c·D for every Rademacher v."""
    gm, sde = _gaussian(), S.SDE(kind)
    x = gm.sample(32, generator=gen)
    q_T = lambda z: S.mixture_log_prob(gm, sde, z, sde.T)  # noqa: E731
    score = S.mixture_score(gm, sde)
    res = L.ode_nll(score, sde, x, eps=EPS, exact=exact, generator=gen, prior_log_prob=q_T)
    want = -S.mixture_log_prob(gm, sde, x, EPS)
    assert res.nll.shape == (32,) and res.nll.dtype == torch.float64 and res.nfe > 10
    assert (res.nll - want).abs().max() < 1e-3
    # the default prior N(0, I) differs from q_T by ≈ m(T)·μ·x_T (documented in ode_nll): small, not 0
    plain = L.ode_nll(score, sde, x, eps=EPS, exact=exact, generator=gen)
    assert (plain.nll - want).abs().max() < 0.03


def test_ring_nll_matches_the_true_density(gen):
    """8-Gaussian ring, VP, closed-form score, exact divergence (D = 2), RK45 at rtol = atol = 1e-5.

    What the ODE computes is log q_ε, the data smoothed by s(ε) = 1e-3 (plus the prior's mismatch
    N(0, I) vs q_T, ~1e-4): that is asserted tightly. Against the data density log p_0 the smoothing adds
    ≤ 2e-3 nats per point, far inside the claim's 0.01 (reference §2.6: −0.0581 vs −0.0581, 146 NFE).
    """
    gm, sde = GaussianMixture.ring(), S.SDE()
    x = gm.sample(200, generator=gen)
    res = L.ode_nll(S.mixture_score(gm, sde), sde, x, eps=EPS)
    log_q_eps, log_p0 = S.mixture_log_prob(gm, sde, x, EPS), gm.log_prob(x)
    assert (log_q_eps - log_p0).abs().max() < 2e-3  # the ε-smoothing, exactly
    err_q = (res.nll + log_q_eps).abs()
    # one solve for the batch: RK45's error control is an RMS over all 600 states, so a point can be off by
    # more than rtol; measured mean 3e-5, max 2e-3 at 500 points (max 2e-4 solving points one by one)
    assert err_q.mean() < 1e-3 and err_q.max() < 5e-3
    assert (res.nll + log_p0).abs().mean() < 0.01  # the claim (issue #3)
    assert 50 < res.nfe < 400


def _mlp(d: int, gen: torch.Generator):
    w1 = torch.randn(d, 16, dtype=torch.float64, generator=gen)
    w2 = torch.randn(16, d, dtype=torch.float64, generator=gen) / 4
    return lambda x: torch.tanh(x @ w1) @ w2 + x**3 / 3  # per example, nonlinear, non-symmetric Jacobian


def test_exact_divergence_is_the_jacobian_trace(gen):
    fn, x = _mlp(5, gen), torch.randn(7, 5, dtype=torch.float64, generator=gen)
    out, div = L.divergence_exact(fn, x)
    want = torch.stack([torch.autograd.functional.jacobian(fn, xi[None])[0, :, 0].trace() for xi in x])
    assert torch.allclose(out, fn(x)) and torch.allclose(div, want, rtol=1e-12, atol=1e-12)


def test_hutchinson_averaged_over_all_sign_vectors_is_the_exact_trace(gen):
    """E_v[vᵀJv] = tr J for Rademacher v, as an identity: the mean over all 2^D sign vectors.  [H89]"""
    d = 4
    fn, x = _mlp(d, gen), torch.randn(3, d, dtype=torch.float64, generator=gen)
    _, exact = L.divergence_exact(fn, x)
    signs = [torch.tensor(v, dtype=torch.float64) for v in itertools.product((-1.0, 1.0), repeat=d)]
    mean = sum(L.divergence_hutchinson(fn, x, v.expand(3, d))[1] for v in signs) / len(signs)
    assert torch.allclose(mean, exact, rtol=1e-12, atol=1e-12)


def test_hutchinson_with_random_vectors_is_unbiased(gen):
    d, n = 6, 4000
    fn, x = _mlp(d, gen), torch.randn(1, d, dtype=torch.float64, generator=gen)
    _, exact = L.divergence_exact(fn, x)
    v = L.rademacher((n, d), generator=gen)
    assert set(v.unique().tolist()) == {-1.0, 1.0}
    _, est = L.divergence_hutchinson(fn, x.expand(n, d), v)  # n draws for the same point
    assert abs(est.mean() - exact[0]) < 4 * est.std() / math.sqrt(n)


def test_bits_per_dim_offsets_and_agreement_with_metrics():
    """log₂(1/Δ): digits (17 levels in [−1, 1], Δ = 2/16) → +3; 8-bit as (k + u)/256 in [−1, 1] → +7."""
    assert L.bits_per_dim(0.0, 64, 2 / 16) == pytest.approx(3.0)
    assert L.bits_per_dim(0.0, 3072, 2 / 256) == pytest.approx(7.0)
    nll = torch.tensor([10.0, -20.0], dtype=torch.float64)
    assert torch.allclose(
        L.bits_per_dim(nll, 64, 2 / 16), metrics_bits_per_dim(nll, 64, num_bins=16, interval=2)
    )


@settings(max_examples=25, deadline=None)
@given(levels=st.integers(2, 256), seed=st.integers(0, 2**16))
def test_dequantised_points_stay_in_the_bin_of_their_level(levels, seed):
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, levels, (200,), generator=g)
    y = L.dequantize_symmetric(k, levels, generator=g)
    centre, half = 2 * k.double() / (levels - 1) - 1, 1 / (levels - 1)
    assert y.dtype == torch.float64 and bool(((y - centre).abs() <= half).all())
    inner = (y - centre).abs() < 0.999 * half  # away from the bin edge, rounding recovers the level
    assert torch.equal(from_symmetric(y[inner], levels).long(), k[inner])


def test_dequantised_ode_nll_bounds_the_exact_discrete_nll(gen):
    """The Jensen bound of `bits_per_dim` (with its offset) lies above the exact discrete −log₂P/D and near
    it: Gaussian model, 5 levels in [−1, 1] (Δ = 1/2), P(k) = Π ∫_bin q_ε in closed form."""
    gm, sde, levels, reps = _gaussian(d=2, std=0.5), S.SDE(), 5, 400
    k = torch.tensor([[2, 3], [1, 2]])  # two discrete points, (2, D)
    bpd, nfe = L.ode_bits_per_dim(
        S.mixture_score(gm, sde), sde, k.repeat_interleave(reps, 0), levels, generator=gen, eps=EPS
    )
    bound = bpd.view(2, reps).mean(1)
    se = bpd.view(2, reps).std(1) / math.sqrt(reps)
    centre, delta = 2 * k.double() / (levels - 1) - 1, 0.5
    m, s = sde.mean_coef(EPS), sde.std(EPS)
    sd = (m**2 * 0.5**2 + s**2).sqrt()
    phi = lambda z: 0.5 * (1 + torch.erf(z / math.sqrt(2)))  # noqa: E731
    mean = m * gm.means[0]
    mass = phi((centre + delta / 2 - mean) / sd) - phi((centre - delta / 2 - mean) / sd)  # (2, D)
    exact = -mass.log().sum(1) / (2 * math.log(2))
    # E_u[−log q_ε(y)] in closed form: E(y − mean)² = (centre − mean)² + Δ²/12 per dimension
    expected = (
        ((centre - mean) ** 2 + delta**2 / 12) / (2 * sd**2) + 0.5 * torch.log(2 * math.pi * sd**2)
    ).sum(1)
    expected = expected / (2 * math.log(2)) + math.log2(1 / delta)
    assert bool((bound - expected).abs().lt(3 * se).all())  # the offset and the estimator are right
    assert bool((expected >= exact).all())  # Jensen: the bound is above the discrete NLL
    assert nfe > 0


def test_bad_arguments_raise_clear_errors(gen):
    sde, score = S.SDE(), (lambda x, t: -x)
    x = torch.zeros(2, 2, dtype=torch.float64)
    for eps in (1.0, 2.0, 0.0, -1e-5):
        with pytest.raises(ValueError, match="eps < T"):
            L.ode_nll(score, sde, x, eps=eps)
    with pytest.raises(ValueError, match="rtol"):
        L.ode_nll(score, sde, x, rtol=0.0)
    with pytest.raises(ValueError, match="draws"):
        L.ode_bits_per_dim(score, sde, torch.zeros(2, 2, dtype=torch.long), 17, draws=0)
    with pytest.raises(ValueError, match="levels"):
        L.dequantize_symmetric(torch.zeros(2, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="delta"):
        L.bits_per_dim(1.0, 64, 0.0)
