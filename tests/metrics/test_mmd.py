"""MMD²: brute-force equality, chunking, symmetry, and unbiasedness against the Gaussian closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import pdist

from kexue.metrics.mmd import kernel_mmd2, median_bandwidth, mmd2, polynomial_kernel

HS = (0.5, 1.0, 2.0)


def brute_mmd2(x: list, y: list, hs, unbiased: bool) -> float:
    """[G12] eqs. 3 and 5 written as literal double loops over Python floats."""

    def k(a, b):
        return sum(math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / (2 * h * h)) for h in hs)

    def pairs(s):
        return [(i, j) for i in range(len(s)) for j in range(len(s)) if i != j or not unbiased]

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i, j in pairs(x)) / (n * (n - 1) if unbiased else n * n)
    kyy = sum(k(y[i], y[j]) for i, j in pairs(y)) / (m * (m - 1) if unbiased else m * m)
    kxy = sum(k(a, b) for a in x for b in y) / (n * m)
    return kxx + kyy - 2 * kxy


@pytest.mark.parametrize("unbiased", [True, False])
def test_equals_brute_force_double_loop(gen, unbiased):
    x = torch.randn(7, 3, dtype=torch.float64, generator=gen)
    y = torch.randn(5, 3, dtype=torch.float64, generator=gen) + 0.7
    want = brute_mmd2(x.tolist(), y.tolist(), HS, unbiased)
    assert mmd2(x, y, HS, unbiased=unbiased) == pytest.approx(want, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("unbiased", [True, False])
def test_chunked_equals_unchunked(gen, unbiased):
    x = torch.randn(23, 4, dtype=torch.float64, generator=gen)
    y = torch.randn(17, 4, dtype=torch.float64, generator=gen) * 1.3
    whole = mmd2(x, y, HS, unbiased=unbiased)  # one block per kernel sum
    for c in (1, 3, 5, 16):  # uneven tails, single rows, and chunks larger than one set
        assert mmd2(x, y, HS, unbiased=unbiased, chunk_size=c) == pytest.approx(whole, rel=1e-12, abs=1e-15)


def test_images_are_flattened(gen):
    x = torch.rand(6, 1, 3, 3, generator=gen)
    y = torch.rand(8, 1, 3, 3, generator=gen)
    assert mmd2(x, y, HS) == mmd2(x.flatten(1), y.flatten(1), HS)


def test_biased_of_a_set_with_itself_is_zero(gen):
    x = torch.randn(40, 5, generator=gen) * 3  # float32 input: computed in float64 inside
    assert abs(mmd2(x, x.clone(), HS, unbiased=False, chunk_size=7)) <= 1e-12


def test_unbiased_of_a_set_with_itself_is_negative(gen):
    # With x = y the U-statistic is mean_{i≠j} k − mean_{i,j} k = (mean_{i≠j} k − H)/n < 0: the
    # diagonal k(x_i, x_i) = H is the largest kernel value, so excluding it (eq. 3) lowers the sum.
    x = torch.randn(30, 2, dtype=torch.float64, generator=gen)
    assert mmd2(x, x, HS) < 0


def test_symmetric(gen):
    x = torch.randn(12, 3, dtype=torch.float64, generator=gen)
    y = torch.randn(9, 3, dtype=torch.float64, generator=gen) + 0.3
    for unbiased in (True, False):
        assert mmd2(x, y, HS, unbiased=unbiased) == pytest.approx(
            mmd2(y, x, HS, unbiased=unbiased), rel=1e-13
        )


def gaussian_rbf_mean(dmu: torch.Tensor, s: torch.Tensor, h: float) -> float:
    """E exp(−‖a − b‖²/(2h²)) for a − b ~ N(Δμ, S) with S = Σ1 + Σ2 (a, b independent Gaussians).

    exp(−‖z‖²/(2h²)) = (2πh²)^{d/2} N(z; 0, h²I), and E_z N(z; 0, h²I) = N(Δμ; 0, h²I + S) (the convolution
    of two Gaussians, e.g. Petersen & Pedersen, The Matrix Cookbook, eq. 371), so the mean is
    (h²)^{d/2} det(h²I + S)^{−1/2} exp(−½ Δμᵀ (h²I + S)^{−1} Δμ).
    """
    d = dmu.shape[0]
    a = h * h * torch.eye(d, dtype=torch.float64) + s
    quad = dmu @ torch.linalg.solve(a, dmu)
    return float((h * h) ** (d / 2) * torch.linalg.det(a) ** -0.5 * torch.exp(-quad / 2))


def test_unbiased_mean_matches_gaussian_closed_form(gen):
    mu1, mu2 = torch.tensor([0.0, 0.0], dtype=torch.float64), torch.tensor([0.6, -0.2], dtype=torch.float64)
    sig1 = torch.tensor([[0.5, 0.1], [0.1, 0.3]], dtype=torch.float64)
    sig2 = torch.tensor([[0.8, -0.2], [-0.2, 0.4]], dtype=torch.float64)
    zero = torch.zeros(2, dtype=torch.float64)
    # Population MMD² = E k(x,x') + E k(y,y') − 2 E k(x,y), summed over the bandwidths.
    truth = sum(
        gaussian_rbf_mean(zero, 2 * sig1, h)
        + gaussian_rbf_mean(zero, 2 * sig2, h)
        - 2 * gaussian_rbf_mean(mu2 - mu1, sig1 + sig2, h)
        for h in HS
    )
    l1, l2 = torch.linalg.cholesky(sig1), torch.linalg.cholesky(sig2)
    reps, n = 300, 12
    u, v = [], []
    for _ in range(reps):
        x = mu1 + torch.randn(n, 2, dtype=torch.float64, generator=gen) @ l1.T
        y = mu2 + torch.randn(n, 2, dtype=torch.float64, generator=gen) @ l2.T
        u.append(mmd2(x, y, HS))
        v.append(mmd2(x, y, HS, unbiased=False))
    u, v = torch.tensor(u), torch.tensor(v)
    se = float(u.std() / math.sqrt(reps))  # CLT: the mean of 300 i.i.d. estimates is ~normal with this sd
    assert abs(float(u.mean()) - truth) < 4 * se  # 4 standard errors: false-alarm rate ~6e−5
    assert 4 * se < 0.3 * truth  # ...and the check is sharp enough to mean something
    assert float(v.mean()) - truth > 4 * se  # the V-statistic's O(1/n) bias is caught at this precision


@settings(max_examples=25, deadline=None)
@given(
    x=arrays(np.float64, st.tuples(st.integers(2, 8), st.integers(1, 3)), elements=st.floats(-5, 5)),
    data=st.data(),
)
def test_property_permutation_invariance_and_biased_nonnegative(x, data):
    d = x.shape[1]
    y = data.draw(arrays(np.float64, st.tuples(st.integers(2, 8), st.just(d)), elements=st.floats(-5, 5)))
    px = data.draw(st.permutations(range(len(x))))
    py = data.draw(st.permutations(range(len(y))))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for unbiased in (True, False):
        base = mmd2(xt, yt, HS, unbiased=unbiased, chunk_size=3)
        perm = mmd2(xt[list(px)], yt[list(py)], HS, unbiased=unbiased, chunk_size=3)
        assert perm == pytest.approx(base, rel=1e-9, abs=1e-12)
    assert mmd2(xt, yt, HS, unbiased=False) >= -1e-12  # = ‖mean φ(x) − mean φ(y)‖² in the RKHS


def test_kernel_mmd2_polynomial_equals_explicit_formula(gen):
    x = torch.randn(6, 4, dtype=torch.float64, generator=gen)
    y = torch.randn(5, 4, dtype=torch.float64, generator=gen)

    def k(a, b):
        return (a @ b.T / 4 + 1) ** 3

    kxx, kyy = k(x, x), k(y, y)
    want = (kxx.sum() - kxx.trace()) / 30 + (kyy.sum() - kyy.trace()) / 20 - 2 * k(x, y).mean()
    assert kernel_mmd2(x, y, polynomial_kernel, chunk_size=4) == pytest.approx(float(want), rel=1e-12)


def test_median_bandwidth_matches_pdist(gen):
    x = torch.randn(40, 3, dtype=torch.float64, generator=gen)  # 780 pairs: an even count, so the
    med = float(np.median(pdist(x.numpy())))  # median is the midpoint of the two middle distances
    hs = median_bandwidth(x, factors=(0.5, 1, 2))
    assert hs == pytest.approx((0.5 * med, med, 2 * med), rel=1e-12)


def test_median_bandwidth_subsample_is_seeded(gen):
    x = torch.randn(300, 2, dtype=torch.float64, generator=gen)
    a = median_bandwidth(x, max_points=40, generator=torch.Generator().manual_seed(1))
    b = median_bandwidth(x, max_points=40, generator=torch.Generator().manual_seed(1))
    full = median_bandwidth(x)
    assert a == b
    assert a[2] == pytest.approx(full[2], rel=0.25)  # a 40-point median is close to the 300-point one


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mmd2(torch.zeros(3, 2), torch.zeros(3, 4), HS), "same dimension"),
        (lambda: mmd2(torch.zeros(0, 2), torch.zeros(3, 2), HS), "non-empty"),
        (lambda: mmd2(torch.zeros(1, 2), torch.zeros(3, 2), HS), "at least 2"),
        (lambda: mmd2(torch.zeros(3, 2), torch.zeros(3, 2), (1.0, 0.0)), "positive"),
        (lambda: mmd2(torch.zeros(3, 2), torch.zeros(3, 2), HS, chunk_size=0), "chunk_size"),
        (lambda: mmd2(torch.tensor([[math.nan]] * 3), torch.zeros(3, 1), HS), "NaN"),
        (lambda: median_bandwidth(torch.ones(5, 2)), "median pairwise distance is 0"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(gen):
    x, y = torch.randn(300, 8, generator=gen), torch.randn(200, 8, generator=gen) + 0.1
    assert mmd2(x.cuda(), y.cuda(), HS, chunk_size=64) == pytest.approx(mmd2(x, y, HS), rel=1e-10)
