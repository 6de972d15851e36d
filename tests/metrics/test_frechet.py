"""Fréchet distance and KID: closed forms, a scipy reference, an mpmath oracle for ill-conditioned inputs."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.linalg
import torch

from kexue.metrics.frechet import (
    frechet_distance,
    frechet_distance_from_features,
    gaussian_stats,
    kid,
)

F64 = torch.float64
EPS = torch.finfo(F64).eps


def random_cov(d: int, eigs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Q diag(eigs) Qᵀ with Q a random orthogonal matrix: a covariance with prescribed spectrum."""
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=F64, generator=gen))
    return (q * eigs) @ q.T


def test_gaussian_stats_match_numpy(gen):
    f = torch.randn(40, 5, generator=gen)  # float32 in, float64 out
    mu, sigma = gaussian_stats(f)
    assert mu.dtype == sigma.dtype == F64
    assert np.allclose(mu.numpy(), f.double().numpy().mean(0), rtol=1e-13, atol=1e-15)
    assert np.allclose(sigma.numpy(), np.cov(f.double().numpy(), rowvar=False, ddof=1), rtol=1e-12)


@pytest.mark.parametrize("lam_min", [1e-1, 1e-12])
def test_identical_moments_give_zero(gen, lam_min):
    # With λ_min = 1e−12 the textbook route tr sqrtm(Σ1Σ2) leaves ~8e−10 here; the nuclear-norm route 0.
    mu = torch.randn(6, dtype=F64, generator=gen)
    sigma = random_cov(6, torch.logspace(math.log10(lam_min), 0, 6, dtype=F64), gen)
    assert 0 <= frechet_distance(mu, sigma, mu.clone(), sigma.clone()) <= 1e-12


def test_rank_deficient_identical_covariances_give_zero(gen):
    f = torch.randn(6, 3, dtype=F64, generator=gen)
    sigma = f @ f.T  # rank 3 in 6-D, as FID's covariance is when N < D; round-off gives λ ≈ ±1e−16
    assert 0 <= frechet_distance(torch.zeros(6), sigma, torch.zeros(6), sigma) <= 1e-12


def test_commuting_covariances_closed_form(gen):
    # Same eigenbasis: Σ1^{1/2}Σ2Σ1^{1/2} = Q diag(λ1 λ2) Qᵀ, so the trace term is Σ_i (√λ1_i − √λ2_i)².
    l1 = torch.rand(5, dtype=F64, generator=gen) + 0.1
    l2 = torch.rand(5, dtype=F64, generator=gen) + 0.1
    mu1, mu2 = torch.randn(5, dtype=F64, generator=gen), torch.randn(5, dtype=F64, generator=gen)
    want = float((mu1 - mu2).square().sum() + (l1.sqrt() - l2.sqrt()).square().sum())
    assert frechet_distance(mu1, torch.diag(l1), mu2, torch.diag(l2)) == pytest.approx(want, rel=1e-13)
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=F64, generator=gen))
    rotated = frechet_distance(q @ mu1, (q * l1) @ q.T, q @ mu2, (q * l2) @ q.T)  # same Gaussians, rotated
    assert rotated == pytest.approx(want, rel=1e-12)


def test_random_spd_equals_scipy_sqrtm_reference(gen):
    for _ in range(5):
        a = torch.randn(7, 7, dtype=F64, generator=gen)
        b = torch.randn(7, 7, dtype=F64, generator=gen)
        s1, s2 = a @ a.T + 0.1 * torch.eye(7, dtype=F64), b @ b.T + 0.1 * torch.eye(7, dtype=F64)
        mu1, mu2 = torch.randn(7, dtype=F64, generator=gen), torch.randn(7, dtype=F64, generator=gen)
        # The FID reference formula [HRUNH17] eq. 6 with tr((Σ1Σ2)^{1/2}) from a general matrix square root.
        cross = np.trace(scipy.linalg.sqrtm(s1.numpy() @ s2.numpy())).real
        want = float((mu1 - mu2).square().sum() + s1.trace() + s2.trace()) - 2 * cross
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-11)
        assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(want, rel=1e-11)  # symmetric


def test_trace_part_is_translation_invariant(gen):
    s1, s2 = random_cov(4, torch.rand(4, dtype=F64, generator=gen) + 0.2, gen), torch.eye(4, dtype=F64)
    mu1, mu2, c = (torch.randn(4, dtype=F64, generator=gen) for _ in range(3))
    base = frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(mu1 + c, s1, mu2 + c, s2) == pytest.approx(base, rel=1e-14)
    trace_part = base - float((mu1 - mu2).square().sum())
    assert frechet_distance(c, s1, c, s2) == pytest.approx(trace_part, rel=1e-12)


def mp_frechet(mu1, s1, mu2, s2) -> mpmath.mpf:
    """The textbook formula [DL82] at 50 digits: tr(Σ1 + Σ2) − 2 Σ √eig(Σ1^{1/2}Σ2Σ1^{1/2}) + ‖Δμ‖²."""
    with mpmath.workdps(50):
        a, b = mpmath.matrix(s1.tolist()), mpmath.matrix(s2.tolist())
        lam, q = mpmath.eigsy(a)
        assert min(lam) > 0  # the float64 inputs are exactly positive definite: no clamping in the oracle
        r = q * mpmath.diag([mpmath.sqrt(v) for v in lam]) * q.T  # Σ1^{1/2}
        nu = mpmath.eigsy(r * b * r)[0]
        dmu = sum((mpmath.mpf(u) - mpmath.mpf(v)) ** 2 for u, v in zip(mu1.tolist(), mu2.tolist()))
        tr = sum(a[i, i] + b[i, i] for i in range(a.rows))
        return dmu + tr - 2 * sum(mpmath.sqrt(v) for v in nu)


def test_ill_conditioned_against_mpmath(gen):
    # row 8: mpmath oracle. Covariances with condition number 1e12, where float64 is in doubt: an eigenvalue
    # λ of Σ is only known to ±ε‖Σ‖, which moves √λ by up to ε‖Σ‖/(2√λ_min) ≈ 1.1e−10; summing over D
    # eigenvalues of both square roots gives the tolerance 2·D·ε/√λ_min (‖Σ‖ = 1) ≈ 2.7e−9.
    d, lam_min = 6, 1e-12
    tol = 2 * d * EPS / math.sqrt(lam_min)
    for _ in range(3):
        s1 = random_cov(d, torch.logspace(-12, 0, d, dtype=F64), gen)
        s2 = random_cov(d, torch.logspace(-12, 0, d, dtype=F64), gen)
        mu1, mu2 = torch.randn(d, dtype=F64, generator=gen), torch.randn(d, dtype=F64, generator=gen)
        want = mp_frechet(mu1, s1, mu2, s2)
        assert abs(frechet_distance(mu1, s1, mu2, s2) - float(want)) <= tol


def test_from_features_moment_matched_samples_equal_closed_form(gen):
    # Whitening makes the sample mean and unbiased covariance exactly (μ, Σ), so no sampling error remains.
    def sample_with_moments(mu, sigma, n):
        z = torch.randn(n, len(mu), dtype=F64, generator=gen)
        z = z - z.mean(0)
        z = z @ torch.linalg.inv(torch.linalg.cholesky(z.T @ z / (n - 1))).T  # (n, D) with cov I
        return mu + z @ torch.linalg.cholesky(sigma).T

    mu1, mu2 = torch.zeros(3, dtype=F64), torch.tensor([1.0, -0.5, 0.25], dtype=F64)
    s1, s2 = random_cov(3, torch.tensor([1.0, 0.5, 0.2], dtype=F64), gen), torch.eye(3, dtype=F64) * 0.7
    got = frechet_distance_from_features(sample_with_moments(mu1, s1, 50), sample_with_moments(mu2, s2, 80))
    assert got == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-12)


def test_from_features_of_large_samples_near_closed_form(gen):
    n = 20000
    mu1, mu2 = torch.zeros(3, dtype=F64), torch.tensor([1.0, -0.5, 0.25], dtype=F64)
    s1 = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.8]], dtype=F64)
    s2 = torch.tensor([[0.6, -0.2, 0.1], [-0.2, 1.2, 0.0], [0.1, 0.0, 0.4]], dtype=F64)
    x = mu1 + torch.randn(n, 3, dtype=F64, generator=gen) @ torch.linalg.cholesky(s1).T
    y = mu2 + torch.randn(n, 3, dtype=F64, generator=gen) @ torch.linalg.cholesky(s2).T
    dmu = mu2 - mu1
    # The ‖μ̂1 − μ̂2‖² term dominates the sampling error, sd ≈ 2√(Δμᵀ(Σ1+Σ2)Δμ/N) ≈ 0.020 (over 30 seeds
    # the whole estimate had sd 0.022); allow 5 of these, ~6% of the value 1.78.
    sd = 2 * math.sqrt(float(dmu @ (s1 + s2) @ dmu) / n)
    assert frechet_distance_from_features(x, y) == pytest.approx(
        frechet_distance(mu1, s1, mu2, s2), abs=5 * sd
    )


def test_kid_full_subsets_equal_explicit_formula(gen):
    # With subset_size ≥ N every round uses all rows (in some order), so KID is the unbiased MMD² of the
    # full sets with k(a, b) = (aᵀb/d + 1)³ [B18] eq. 3 / [G12] eq. 3, and its spread over rounds is 0.
    n, d = 5, 3
    x = torch.randn(n, d, dtype=F64, generator=gen)
    y = torch.randn(n, d, dtype=F64, generator=gen) + 0.5

    def k(a, b):
        return (float(a @ b) / d + 1) ** 3

    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(n)) / (n * n)
    mean, std = kid(x, y, num_subsets=4, subset_size=100, generator=gen)
    assert mean == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-12)
    assert std <= 1e-12


def test_kid_same_distribution_is_near_zero_and_different_is_not(gen):
    # Each round is an unbiased estimate of MMD² = 0, so the mean over rounds has sd ≤ one round's sd:
    # |mean| < 3 std fails with probability < 0.3% even though rounds share rows.
    x = torch.randn(600, 8, dtype=F64, generator=gen)
    y = torch.randn(600, 8, dtype=F64, generator=gen)
    mean, std = kid(x, y, num_subsets=20, subset_size=200, generator=gen)
    assert abs(mean) < 3 * std
    mean_shift, std_shift = kid(x, y + 0.5, num_subsets=20, subset_size=200, generator=gen)
    assert mean_shift > 3 * std_shift and mean_shift > 10 * abs(mean)


def test_kid_is_seeded_and_single_subset_has_nan_std(gen):
    x, y = torch.randn(30, 4, generator=gen), torch.randn(40, 4, generator=gen)
    a = kid(x, y, num_subsets=5, subset_size=10, generator=torch.Generator().manual_seed(7))
    b = kid(x, y, num_subsets=5, subset_size=10, generator=torch.Generator().manual_seed(7))
    assert a == b
    assert math.isnan(kid(x, y, num_subsets=1, subset_size=10, generator=gen)[1])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: gaussian_stats(torch.zeros(1, 3)), "at least 2"),
        (lambda: gaussian_stats(torch.zeros(0, 3)), "non-empty"),
        (lambda: frechet_distance(torch.zeros(3), torch.eye(2), torch.zeros(3), torch.eye(3)), r"\(D, D\)"),
        (
            lambda: frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(2), torch.eye(2)),
            "dimensions 3 and 2",
        ),
        (lambda: kid(torch.zeros(5, 3), torch.zeros(5, 4)), "same extractor"),
        (lambda: kid(torch.zeros(1, 3), torch.zeros(5, 3)), "subsets of ≥ 2 rows"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
