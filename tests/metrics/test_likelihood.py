"""Bits/dim: exact values for uniform and histogram densities, the dequantization bound, coordinates."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch
from scipy.stats import norm

from kexue.data.transforms import dequantize
from kexue.metrics.likelihood import bits_per_dim, exact_nll, nll_bits_per_dim_discrete


@pytest.mark.parametrize("num_bins", [2, 17, 256])
def test_uniform_density_gives_log2_bins(num_bins):
    d = 5
    # p = 1 on [0, 1]^D (nll 0); the same density on [−1, 1]^D is 2^{−D} (nll D ln 2).
    assert bits_per_dim(0.0, d, num_bins=num_bins) == pytest.approx(math.log2(num_bins), rel=1e-15)
    sym = bits_per_dim(d * math.log(2), d, num_bins=num_bins, interval=2.0)
    assert sym == pytest.approx(math.log2(num_bins), rel=1e-15)


def test_tensor_input_stays_per_example():
    nll = torch.tensor([0.0, 3.0, 6.0])
    out = bits_per_dim(nll, 3, num_bins=4)
    want = torch.tensor([2.0, 2 + 1 / math.log(2), 2 + 2 / math.log(2)], dtype=torch.float64)
    assert isinstance(out, torch.Tensor) and torch.allclose(out, want, rtol=1e-15)


def test_histogram_density_has_no_jensen_gap(gen):
    # A density constant on each bin, p(y) = P(k)/Δ^D, makes the dequantization bound tight for every u,
    # so its bits/dim must equal the exact discrete bits/dim of P.
    k, d = 8, 3
    logits = torch.randn(k, dtype=torch.float64, generator=gen)
    log_pk = logits.log_softmax(0)  # (K,) per-coordinate bin masses; coordinates independent
    levels = torch.randint(0, k, (50, d), generator=gen)  # (B, D) discrete data
    y = dequantize(levels, k, generator=gen).double()  # (B, D) inside the bins

    def log_density(y):  # (B, D) -> (B,): log P(k) − log Δ on each coordinate's bin
        return (log_pk[(y * k).floor().long()] + math.log(k)).sum(1)

    nll = exact_nll(log_density, y)
    exact = nll_bits_per_dim_discrete(log_pk[levels].sum(1), d)
    assert bits_per_dim(nll, d, num_bins=k) == pytest.approx(exact, rel=1e-13)


def _gaussian_bin_terms(mu: float, sigma: float, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For bins [i/K, (i+1)/K): exact mass P(i), and E_u[−log N(y; μ, σ²)] for y uniform in the bin."""
    edges = torch.linspace(0, 1, k + 1, dtype=torch.float64)
    a, b = edges[:-1] - mu, edges[1:] - mu
    mass = torch.from_numpy(norm.cdf(b.numpy() / sigma) - norm.cdf(a.numpy() / sigma))
    mean_sq = (b**3 - a**3) / (3 * (b - a))  # E (y − μ)² for y ~ U[a + μ, b + μ]
    return mass, 0.5 * math.log(2 * math.pi * sigma**2) + mean_sq / (2 * sigma**2), (b - a)


def test_dequantized_bound_is_above_exact_and_tight_for_fine_bins():
    mu, sigma = 0.5, 0.1
    gaps = []
    for k in (64, 128, 256):
        mass, nll_bin, width = _gaussian_bin_terms(mu, sigma, k)
        bound = bits_per_dim(nll_bin, 1, num_bins=k)  # (K,) per bin
        exact = -mass.log() / math.log(2)  # (K,) −log₂ P(k)
        assert (bound >= exact - 1e-12).all()  # Jensen on every bin  [TOB16] Sec. 3.1
        gaps.append(float((mass * (bound - exact)).sum()))  # expected gap under the discretised model
        # Second-order Jensen gap: ½ Var_u log p ≈ (y−μ)²Δ²/(24σ⁴); its mean under P is Δ²/(24σ²) nats.
        assert gaps[-1] == pytest.approx(float(width[0]) ** 2 / (24 * sigma**2) / math.log(2), rel=0.01)
    assert gaps[1] / gaps[0] == pytest.approx(0.25, rel=0.01)  # O(Δ²): halving the bin quarters the gap
    assert gaps[2] / gaps[1] == pytest.approx(0.25, rel=0.01)


def test_extreme_tail_bins_against_mpmath():
    # row 8: mpmath oracle. Bins 6σ–36σ above the mean have masses down to ~1e−280; float64 CDF differences
    # Φ(b) − Φ(a) cancel to exactly 0 beyond ~8σ, so the exact −log₂ P(k) comes from mpmath at 50 digits,
    # as a difference of upper tails Q(a) − Q(b) (Q(t) = Φ(−t)), which mpmath evaluates without cancellation.
    mu, sigma, k = 0.1, 0.025, 32
    mass, nll_bin, _ = _gaussian_bin_terms(mu, sigma, k)
    bound = bits_per_dim(nll_bin, 1, num_bins=k)
    for i in range(8, k):  # bins [i/32, (i+1)/32), from (0.25 − μ)/σ = 6σ up to (1 − μ)/σ = 36σ
        with mpmath.workdps(50):
            a, b = (mpmath.mpf(i) / k - mu) / sigma, (mpmath.mpf(i + 1) / k - mu) / sigma
            exact = float(-mpmath.log(mpmath.ncdf(-a) - mpmath.ncdf(-b), 2))
        # −log p on the bin ranges over [min, max]; log E p and E log p both lie inside that range.
        spread = float(b**2 - a**2) / 2 / math.log(2)
        assert exact <= float(bound[i]) <= exact + spread
        if i >= 10:
            assert float(mass[i]) == 0.0  # the float64 route has lost every digit: the oracle was needed


def test_same_model_in_unit_and_symmetric_coordinates(gen):
    # A model on y ∈ [0, 1]^D, rewritten for z = 2y − 1 ∈ [−1, 1]^D, has log q(z) = log p(y) − D ln 2
    # (Jacobian); bits/dim must not depend on the coordinates once `interval` is set to match.
    d, levels = 4, 256
    x = torch.randint(0, levels, (64, d), generator=gen)
    y = dequantize(x, levels, generator=gen).double()
    mu, sigma = torch.tensor(0.4, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)

    def log_p(y):  # (B, D) -> (B,)
        return torch.distributions.Normal(mu, sigma).log_prob(y).sum(1)

    def log_q(z):  # the same model for z = 2y − 1: mean 2μ − 1, std 2σ
        return torch.distributions.Normal(2 * mu - 1, 2 * sigma).log_prob(z).sum(1)

    bpd_unit = bits_per_dim(exact_nll(log_p, y), d, num_bins=levels)
    bpd_sym = bits_per_dim(exact_nll(log_q, 2 * y - 1), d, num_bins=levels, interval=2.0)
    assert bpd_sym == pytest.approx(bpd_unit, rel=1e-13)
    assert bits_per_dim(exact_nll(log_q, 2 * y - 1), d, num_bins=levels) != pytest.approx(bpd_unit, rel=1e-3)


def test_exact_nll_names_bad_points():
    x = torch.tensor([[0.5], [2.0], [0.1], [-1.0], [0.2]])

    def uniform(x):  # log-density of U[0, 1]
        return torch.where((x >= 0) & (x <= 1), 0.0, -math.inf).sum(1)

    with pytest.raises(ValueError, match=r"not finite at 2 of 5 points \(2 −inf, 0 NaN"):
        exact_nll(uniform, x)
    assert exact_nll(uniform, x[[0, 2, 4]]) == 0.0
    mixed = torch.tensor([0.0, math.nan, math.inf, -math.inf, -1.0])
    with pytest.raises(ValueError, match=r"at 3 of 5 points \(1 −inf, 1 NaN, 1 \+inf\)"):
        exact_nll(lambda x: mixed, torch.zeros(5, 2))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: exact_nll(lambda x: x, torch.zeros(3, 2)), r"must return shape \(3,\)"),
        (lambda: exact_nll(lambda x: x.sum(1), torch.zeros(0, 2)), "non-empty"),
        (lambda: bits_per_dim(1.0, 0, num_bins=256), "num_dims"),
        (lambda: bits_per_dim(1.0, 3, num_bins=256, interval=0.0), "interval"),
        (lambda: nll_bits_per_dim_discrete(torch.tensor([0.5]), 1), "P > 1"),
        (lambda: nll_bits_per_dim_discrete(torch.zeros(2, 2), 1), r"\(B,\)"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
