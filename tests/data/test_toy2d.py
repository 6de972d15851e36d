"""2-D toy distributions: every log_prob integrates to 1, samples follow log_prob, and the math is exact.

Quadrature: a Riemann (midpoint) sum with step h ≤ σ/2 integrates a Gaussian over the real line with relative
error 2·exp(−2π²σ²/h²) < 1e-33 (Poisson summation), and boxes reach ≥ 10σ past every mean (mass lost
< e^{−50}); for the piecewise-constant checkerboard, cells aligned with the grid make the sum exact. What is
left is float64 round-off over ~10⁵ terms, hence the 1e-10 tolerances.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.data.toy2d import Banana, Checkerboard, GaussianMixture2D, grid25, imbalanced, ring8

WIDE = GaussianMixture2D(((-1.0, 0.0), (1.5, 0.5), (0.0, 2.0)), (0.5, 0.8, 0.3), (0.5, 0.3, 0.2))
SMALL_BANANA = Banana(s1=1.0, s2=0.5, b=1.0)
DISTS = {
    "ring8": ring8(),
    "grid25": grid25(),
    "imbalanced": imbalanced(),
    "wide": WIDE,
    "checkerboard": Checkerboard(),
    "checkerboard3": Checkerboard(3, 1.0),
    "banana": Banana(),
    "small_banana": SMALL_BANANA,
}


def midpoint_grid(lo: tuple[float, float], hi: tuple[float, float], cells: tuple[int, int]):
    """Midpoints (M·N, 2) float64 of an M×N grid of cells over [lo, hi], and the cell area."""
    hx, hy = (hi[0] - lo[0]) / cells[0], (hi[1] - lo[1]) / cells[1]
    gx = lo[0] + (torch.arange(cells[0], dtype=torch.float64) + 0.5) * hx
    gy = lo[1] + (torch.arange(cells[1], dtype=torch.float64) + 0.5) * hy
    return torch.cartesian_prod(gx, gy), hx * hy  # (M·N, 2), row-major in x then y


def box_for(dist) -> tuple[tuple[float, float], tuple[float, float], tuple[int, int]]:
    """A box holding all mass (to e^{−50}) and a grid fine enough for the quadrature error bound above."""
    if isinstance(dist, GaussianMixture2D):
        mu, sig = np.array(dist.means), max(dist.stds)
        lo, hi = mu.min(0) - 10 * sig, mu.max(0) + 10 * sig
        h = min(dist.stds) / 2
    elif isinstance(dist, Checkerboard):  # one extra cell of white space around the board, 8 steps per cell
        w = dist.half_width + dist.side
        return (-w, -w), (w, w), (8 * (dist.squares + 2),) * 2
    else:  # Banana: x1 within ±10 s1; x2 within 10 s2 of the curve b(x1² − s1²) for those x1
        ends = (-dist.b * dist.s1**2, 99 * dist.b * dist.s1**2)  # the curve at x1 = 0 and x1 = ±10 s1
        lo = np.array([-10 * dist.s1, min(ends) - 10 * dist.s2])
        hi = np.array([10 * dist.s1, max(ends) + 10 * dist.s2])
        h = min(dist.s1, dist.s2) / 4
    cells = tuple(int(c) for c in np.ceil((hi - lo) / h))
    return tuple(lo), tuple(hi), cells


@pytest.mark.parametrize("name", list(DISTS))
def test_log_prob_integrates_to_one(name):
    dist = DISTS[name]
    points, area = midpoint_grid(*box_for(dist))
    assert math.isclose(dist.log_prob(points).exp().sum().item() * area, 1.0, abs_tol=1e-10)


def exact_moments(dist) -> tuple[np.ndarray, np.ndarray]:
    """E[x] and Cov[x] in closed form (derivations in the toy2d docstrings)."""
    if isinstance(dist, GaussianMixture2D):
        mu, s2, w = np.array(dist.means), np.array(dist.stds) ** 2, np.array(dist.weights)
        mean = w @ mu
        second = np.einsum("k,ki,kj->ij", w, mu, mu) + (w @ s2) * np.eye(2)  # Σ π_k (μ_k μ_kᵀ + σ_k² I)
        return mean, second - np.outer(mean, mean)
    if isinstance(dist, Checkerboard):  # average of the black cells' uniform moments
        s, lo = dist.side, -dist.half_width
        centres = np.array(
            [
                (lo + (a + 0.5) * s, lo + (b + 0.5) * s)
                for a in range(dist.squares)
                for b in range(dist.squares)
                if (a + b) % 2 == 0
            ]
        )
        mean = centres.mean(0)
        second = np.einsum("ki,kj->ij", centres, centres) / len(centres) + s**2 / 12 * np.eye(2)
        return mean, second - np.outer(mean, mean)
    return np.zeros(2), np.diag([dist.s1**2, dist.s2**2 + 2 * dist.b**2 * dist.s1**4])  # Banana


@pytest.mark.parametrize("name", list(DISTS))
def test_sample_moments_match_exact_moments(name, gen):
    dist = DISTS[name]
    x = dist.sample(40_000, generator=gen).double().numpy()
    mean, cov = exact_moments(dist)
    d = x - mean
    prods = np.einsum("ni,nj->nij", d, d)  # per-sample (x − μ)(x − μ)ᵀ; its mean estimates Cov
    se_mean = x.std(0) / math.sqrt(len(x))
    se_cov = prods.std(0) / math.sqrt(len(x))
    assert (np.abs(x.mean(0) - mean) < 5 * se_mean + 1e-12).all()  # 5 standard errors: a deterministic seed,
    assert (np.abs(prods.mean(0) - cov) < 5 * se_cov + 1e-12).all()  # yet a wrong σ or weight fails by far


BINS = {  # name: (lo, hi, bins per axis, fine cells per bin)
    "ring8": ((-2.2, -2.2), (2.2, 2.2), 5, 88),  # h = 0.01 = σ/2
    "grid25": ((-4.5, -4.5), (4.5, 4.5), 5, 72),  # h = 0.025 = σ/2; one mode per bin
    "imbalanced": ((-8.0, -8.0), (8.0, 8.0), 8, 8),
    "wide": ((-2.5, -1.5), (3.0, 3.5), 6, 20),
    "checkerboard": ((-4.0, -4.0), (4.0, 4.0), 8, 2),  # half-cells: white ones must stay empty
    "small_banana": ((-3.0, -2.0), (3.0, 8.0), 6, 40),
}


@pytest.mark.parametrize("name", list(BINS))
def test_sample_frequencies_match_bin_probabilities_of_log_prob(name, gen):
    dist = DISTS[name]
    lo, hi, bins, fine = BINS[name]
    points, area = midpoint_grid(lo, hi, (bins * fine, bins * fine))
    density = dist.log_prob(points).exp().reshape(bins, fine, bins, fine)  # (bx, fx, by, fy)
    probs = (density.sum((1, 3)) * area).flatten().numpy()  # bin probabilities integrated from log_prob
    x = dist.sample(20_000, generator=gen).double().numpy()
    ix = np.floor((x - lo) / ((np.array(hi) - lo) / bins)).astype(int)  # (n, 2) bin indices
    inside = ((ix >= 0) & (ix < bins)).all(1)
    counts = np.bincount(ix[inside, 0] * bins + ix[inside, 1], minlength=bins * bins)
    probs, counts = np.append(probs, 1 - probs.sum()), np.append(counts, (~inside).sum())  # + overflow bin
    empty = probs < 1e-12
    assert counts[empty].sum() == 0  # no sample where log_prob has (numerically) no mass
    expected = len(x) * probs[~empty] / probs[~empty].sum()
    chi2 = ((counts[~empty] - expected) ** 2 / expected).sum()
    assert scipy.stats.chi2.sf(chi2, df=(~empty).sum() - 1) > 1e-3


@pytest.mark.parametrize("name", list(DISTS))
def test_samples_are_reproducible_per_generator(name):
    dist = DISTS[name]
    a = dist.sample(64, generator=torch.Generator().manual_seed(1))
    b = dist.sample(64, generator=torch.Generator().manual_seed(1))
    c = dist.sample(64, generator=torch.Generator().manual_seed(2))
    assert a.shape == (64, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert dist.sample(0).shape == (0, 2)
    lp = dist.log_prob(a)  # float32 input is accepted; the result is float64
    assert lp.shape == (64,) and lp.dtype == torch.float64 and torch.isfinite(lp).all()


def test_bad_sample_sizes_and_point_shapes():
    for n in (-1, 2.0, True):
        with pytest.raises(ValueError, match="sample size"):
            ring8().sample(n)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        Banana().log_prob(torch.zeros(5, 3))


# ---- Gaussian mixtures -----------------------------------------------------------------------------------


def test_named_mixtures_have_the_published_geometry():
    r = ring8()
    angles = np.arctan2(*np.array(r.means).T[::-1]) % (2 * np.pi)
    assert np.allclose(np.hypot(*np.array(r.means).T), 2.0) and np.allclose(
        np.sort(angles), np.arange(8) * np.pi / 4
    )
    assert r.stds == (0.02,) * 8 and r.weights == (1 / 8,) * 8
    g = grid25()
    assert sorted(g.means) == [
        (a, b) for a in (-4.0, -2.0, 0.0, 2.0, 4.0) for b in (-4.0, -2.0, 0.0, 2.0, 4.0)
    ]
    m = imbalanced()  # [NCSN] Sec. 3.2: 1/5 N((−5, −5), I) + 4/5 N((5, 5), I)
    assert m.means == ((-5.0, -5.0), (5.0, 5.0)) and m.stds == (1.0, 1.0) and m.weights == (0.2, 0.8)


def test_mixture_equals_scipy_and_is_frozen():
    x = torch.tensor([[0.3, -0.2], [1.0, 1.0], [-2.0, 3.0]], dtype=torch.float64)
    ref = sum(
        w * scipy.stats.multivariate_normal(mu, s**2 * np.eye(2)).pdf(x.numpy())
        for mu, s, w in zip(WIDE.means, WIDE.stds, WIDE.weights)
    )
    assert np.allclose(WIDE.log_prob(x).numpy(), np.log(ref), rtol=1e-13, atol=0)
    as_arrays = GaussianMixture2D(
        np.array(WIDE.means), torch.tensor(WIDE.stds, dtype=torch.float64), list(WIDE.weights)
    )
    assert as_arrays == WIDE and hash(as_arrays) == hash(WIDE)
    with pytest.raises(AttributeError):
        WIDE.stds = (1.0, 1.0, 1.0)


def log_prob_mpmath(dist: GaussianMixture2D, x: tuple[float, float]) -> mpmath.mpf:
    with mpmath.workdps(50):
        total = mpmath.mpf(0)
        for (m1, m2), s, w in zip(dist.means, dist.stds, dist.weights):
            d2 = (mpmath.mpf(x[0]) - m1) ** 2 + (mpmath.mpf(x[1]) - m2) ** 2
            total += w * mpmath.exp(-d2 / (2 * mpmath.mpf(s) ** 2)) / (2 * mpmath.pi * mpmath.mpf(s) ** 2)
        return mpmath.log(total)


def test_mixture_log_prob_far_in_the_tails_against_mpmath():
    # row 8: mpmath oracle
    # At 40σ the density is e^{−800} < 1e-347: it underflows in float64, so a naive log(Σ π_k N) gives −inf.
    single = GaussianMixture2D(((1.0, 2.0),), (0.1,), (1.0,))
    two = GaussianMixture2D(((0.0, 0.0), (3.0, 1.0)), (0.5, 2.0), (0.3, 0.7))
    cases = [
        (single, (5.0, 2.0)),
        (single, (1.0, -2.0)),
        (two, (20.0, 0.0)),
        (two, (80.0, 1.0)),
        (two, (-200.0, 150.0)),
        (ring8(), (2.0, 0.8)),
    ]  # 40σ from the ring's nearest mean
    for dist, point in cases:
        got = dist.log_prob(torch.tensor([point], dtype=torch.float64)).item()
        assert math.isfinite(got)
        assert math.isclose(got, float(log_prob_mpmath(dist, point)), rel_tol=1e-14)


mixtures = st.integers(1, 4).flatmap(
    lambda k: st.tuples(
        st.lists(st.tuples(st.floats(-10, 10), st.floats(-10, 10)), min_size=k, max_size=k),
        st.lists(st.floats(0.05, 5.0), min_size=k, max_size=k),
        st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k),
    )
)
points = st.lists(st.tuples(st.floats(-20, 20), st.floats(-20, 20)), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(params=mixtures, xs=points)
def test_random_mixtures_match_the_naive_sum_where_it_is_safe(params, xs):
    means, stds, raw = params
    weights = np.array(raw) / np.sum(raw)
    dist = GaussianMixture2D(means, stds, weights)
    x = torch.tensor(xs, dtype=torch.float64)
    lp = dist.log_prob(x).numpy()
    assert np.isfinite(lp).all()  # up to (40/0.05)² / 2 = 3.2e5 nats below the peak, still finite
    d2 = ((np.array(xs)[:, None, :] - np.array(means)) ** 2).sum(-1)  # (n, K)
    s2 = np.array(stds) ** 2
    naive = (weights * np.exp(-d2 / (2 * s2)) / (2 * np.pi * s2)).sum(1)
    safe = naive > 1e-300
    assert np.allclose(lp[safe], np.log(naive[safe]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"means": [[0, 0, 0]], "stds": [1], "weights": [1]}, "shape"),
        ({"means": [[0, 0]], "stds": [1, 2], "weights": [1]}, "shape"),
        ({"means": [[0, 0], [1, 1]], "stds": [1, 0], "weights": [0.5, 0.5]}, "stds"),
        ({"means": [[0, 0], [1, 1]], "stds": [1, -1], "weights": [0.5, 0.5]}, "stds"),
        ({"means": [[0, 0], [1, 1]], "stds": [1, 1], "weights": [1.2, -0.2]}, "weights"),
        ({"means": [[0, 0], [1, 1]], "stds": [1, 1], "weights": [0.5, 0.49]}, "sum to 1"),
        ({"means": [[0, float("nan")]], "stds": [1], "weights": [1]}, "finite"),
    ],
)
def test_mixture_rejects_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        GaussianMixture2D(**kwargs)


def test_zero_weight_components_are_allowed_and_ignored():
    mixed = GaussianMixture2D(((0.0, 0.0), (9.0, 9.0)), (1.0, 1.0), (1.0, 0.0))
    alone = GaussianMixture2D(((0.0, 0.0),), (1.0,), (1.0,))
    x = torch.tensor([[0.5, 0.5], [9.0, 9.0]])
    assert torch.allclose(mixed.log_prob(x), alone.log_prob(x), rtol=1e-15)
    assert (
        mixed.sample(1000, generator=torch.Generator().manual_seed(0)).abs() < 7
    ).all()  # never from (9, 9)


# ---- checkerboard and banana -----------------------------------------------------------------------------


def test_checkerboard_support():
    board = Checkerboard()  # 8 black cells of area 4: density 1/32
    x = torch.tensor([[-3.0, -3.0], [-4.0, -4.0], [-1.0, -1.0], [3.9, 3.9], [-1.0, -3.0], [4.0, 0.0], [0, 9]])
    expected = [-math.log(32)] * 4 + [-math.inf] * 3  # black, corner (closed), black, black; white, edge, off
    assert board.log_prob(x).tolist() == expected


def test_checkerboard_samples_all_land_on_black_squares(gen):
    for board in (Checkerboard(), Checkerboard(3, 1.0), Checkerboard(10_000, 1e4)):
        # The last board has cells of side 2 at |x| up to 1e4, where a float32 ulp is ~1e-3: rounding puts a
        # few of 50,000 raw samples across a cell edge (onto white), which `sample` must step back.
        assert torch.isfinite(board.log_prob(board.sample(50_000, generator=gen))).all()


@pytest.mark.parametrize(
    "kwargs", [{"squares": 0}, {"squares": 2.0}, {"half_width": 0.0}, {"half_width": math.inf}]
)
def test_checkerboard_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        Checkerboard(**kwargs)


@pytest.mark.parametrize("banana", [Banana(), SMALL_BANANA, Banana(2.0, 0.3, -0.7)])
def test_banana_density_by_change_of_variables(banana, gen):
    """log p(x) = log N(T⁻¹(x); 0, diag(s1², s2²)) + log|det ∂T⁻¹/∂x|, the Jacobian taken by autograd."""

    def inverse(x: torch.Tensor) -> torch.Tensor:  # T⁻¹(x) = (x1, x2 − b(x1² − s1²))
        return torch.stack([x[0], x[1] - banana.b * (x[0] ** 2 - banana.s1**2)])

    x = banana.sample(16, generator=gen).double()
    gauss = scipy.stats.multivariate_normal(np.zeros(2), np.diag([banana.s1**2, banana.s2**2]))
    for xi, lp in zip(x, banana.log_prob(x)):
        jac = torch.autograd.functional.jacobian(inverse, xi)  # (2, 2)
        ref = gauss.logpdf(inverse(xi).numpy()) + torch.linalg.slogdet(jac).logabsdet.item()
        assert math.isclose(lp.item(), ref, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("kwargs", [{"s1": 0.0}, {"s2": -1.0}, {"b": math.nan}])
def test_banana_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        Banana(**kwargs)
