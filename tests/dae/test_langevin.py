"""Langevin dynamics: ULA's exact stationary law on a Gaussian, annealing recovers mixture weights."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.dae import annealed_langevin, check_sigmas, geometric_sigmas, langevin
from kexue.data.toy2d import imbalanced
from kexue.diffusion.oracle import GaussianMixture

F64 = torch.float64


def _gaussian_score(mu, v):
    return lambda x: -(x - mu) / v


@pytest.mark.parametrize("v, eps", [(1.0, 1.0), (0.25, 0.1), (2.0, 0.05)])
def test_ula_stationary_variance_on_a_gaussian(v, eps):
    """x ← (1 − ε/2v)(x − μ) + μ + √ε z has stationary variance v/(1 − ε/(4v)), not v (module docstring)."""
    mu, n = 0.7, 40_000
    g = torch.Generator().manual_seed(0)
    x0 = mu + math.sqrt(v) * torch.randn(n, 1, generator=g, dtype=F64)  # start at the target
    steps = math.ceil(20 / (eps / v))  # (1 − ε/2v)^(2·steps) < e^−20: the start is forgotten
    x = langevin(_gaussian_score(mu, v), x0, eps, steps, generator=g)
    exact = v / (1 - eps / (4 * v))
    assert float(x.mean()) == pytest.approx(mu, abs=5 * math.sqrt(exact / n))
    assert float(x.var()) == pytest.approx(exact, abs=5 * exact * math.sqrt(2 / n))
    if eps / v >= 0.1:  # the bias is larger than the sampling error: the closed form is what is seen
        assert abs(float(x.var()) - v) > 5 * exact * math.sqrt(2 / n)


def test_zero_steps_return_the_start_and_runs_are_reproducible(gen):
    x = torch.randn(8, 2, generator=gen)
    score = _gaussian_score(0.0, 1.0)
    assert torch.equal(langevin(score, x, 0.1, 0), x)
    a = langevin(score, x, 0.1, 5, generator=torch.Generator().manual_seed(3))
    b = langevin(score, x, 0.1, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_one_level_of_annealing_is_single_scale_langevin(gen):
    """With L = 1, α_1 = ε·σ_1²/σ_1² = ε: the annealed sampler is the plain one (same noise)."""
    x = torch.randn(16, 3, generator=gen, dtype=F64)
    score = lambda x, sigma: -x / (1 + sigma**2)  # noqa: E731
    a = annealed_langevin(
        score, x, torch.tensor([0.5]), 0.2, 7, generator=torch.Generator().manual_seed(1), denoise=False
    )
    b = langevin(lambda x: score(x, 0.5), x, 0.2, 7, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, b, rtol=0, atol=1e-15)


def test_denoise_is_the_tweedie_jump_at_the_last_level(gen):
    x = torch.randn(16, 2, generator=gen, dtype=F64)
    score = lambda x, sigma: -x / (1 + sigma**2)  # noqa: E731
    sigmas = geometric_sigmas(2.0, 0.1, 4)
    plain = annealed_langevin(
        score, x, sigmas, 0.01, 3, generator=torch.Generator().manual_seed(1), denoise=False
    )
    jumped = annealed_langevin(score, x, sigmas, 0.01, 3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(jumped, plain + 0.1**2 * score(plain, 0.1), rtol=0, atol=1e-15)


def test_annealing_recovers_the_mixture_weights_and_one_scale_does_not():
    """[NCSN] Sec. 3.2 with the exact scores: π = 0.2/0.8 at ±(5, 5), chains from U[−8, 8]²."""
    gm = GaussianMixture.from_toy(imbalanced())
    score = lambda x, s: GaussianMixture(gm.means, (gm.stds**2 + s**2).sqrt(), gm.weights).score(x, 1.0)  # noqa: E731
    g = torch.Generator().manual_seed(0)
    x0 = 16 * torch.rand(1000, 2, generator=g, dtype=F64) - 8
    sigmas = geometric_sigmas(20.0, 1.0, 10)  # [NCSN]'s toy code
    annealed = annealed_langevin(score, x0, sigmas, 0.1, 100, generator=g, denoise=False)  # ε, T: toy code
    single = langevin(lambda x: score(x, 1.0), x0, 0.1, 500, generator=g)
    w_annealed = float((annealed.sum(1) < 0).double().mean())  # the share of the 0.2 mode
    w_single = float((single.sum(1) < 0).double().mean())
    assert abs(w_annealed - 0.2) < 0.05  # binomial s.e. 0.013; the sampler itself leaves ≈ 0.02
    assert abs(w_single - 0.2) > 0.15  # about half the uniform starts lie nearer (−5, −5)


def test_geometric_sigmas():
    s = geometric_sigmas(1.0, 0.01, 10)
    assert s.dtype == F64 and s.shape == (10,)
    assert float(s[0]) == 1.0 and float(s[-1]) == 0.01  # the ends exactly
    ratios = s[1:] / s[:-1]
    assert torch.allclose(ratios, torch.full_like(ratios, 0.01 ** (1 / 9)), rtol=1e-12)
    assert geometric_sigmas(3.0, 0.5, 1).tolist() == [0.5]


@settings(max_examples=60, deadline=None)
@given(levels=st.lists(st.floats(0.001, 100), min_size=2, max_size=8))
def test_sigmas_that_do_not_strictly_decrease_are_refused(levels):
    decreasing = all(b < a for a, b in itertools.pairwise(levels))
    if decreasing:
        assert check_sigmas(torch.tensor(levels, dtype=F64), "test") == levels
        return
    with pytest.raises(ValueError, match="strictly decreasing"):
        annealed_langevin(lambda x, s: x, torch.zeros(2, 2), torch.tensor(levels), 0.1, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sigmas": torch.tensor([1.0, 0.0])}, "finite and > 0"),
        ({"sigmas": torch.tensor([[1.0, 0.5]])}, "1-D"),
        ({"sigmas": torch.tensor([])}, "non-empty"),
        ({"eps": 0.0}, "eps"),
        ({"eps": -1.0}, "eps"),
        ({"steps_per_level": 0}, "steps_per_level"),
        ({"steps_per_level": 1.5}, "steps_per_level"),
        ({"x": torch.zeros(3, 2, dtype=torch.long)}, "floating"),
        ({"score_fn": lambda x, s: x[:, :1]}, "score_fn returned"),
    ],
)
def test_annealed_bad_inputs(kwargs, match):
    args = {
        "score_fn": lambda x, s: -x,
        "x": torch.zeros(3, 2),
        "sigmas": torch.tensor([1.0, 0.5]),
        "eps": 0.1,
        "steps_per_level": 2,
    } | kwargs
    with pytest.raises(ValueError, match=match):
        annealed_langevin(**args)


@pytest.mark.parametrize(
    "step, n_steps, match",
    [(0.0, 3, "step"), (-0.1, 3, "step"), (float("nan"), 3, "step"), (0.1, -1, "n_steps")],
)
def test_langevin_bad_inputs(step, n_steps, match):
    with pytest.raises(ValueError, match=match):
        langevin(lambda x: -x, torch.zeros(3, 2), step, n_steps)


@settings(max_examples=40, deadline=None)
@given(hi=st.floats(1e-3, 1e3), lo=st.floats(1e-3, 1e3), levels=st.integers(2, 20))
def test_geometric_sigmas_refuses_an_empty_range(hi, lo, levels):
    if hi > lo * (1 + 1e-9):
        s = geometric_sigmas(hi, lo, levels)
        assert bool((s[1:] < s[:-1]).all()) and check_sigmas(s, "test") == s.tolist()
    elif hi <= lo:
        with pytest.raises(ValueError, match="must exceed"):
            geometric_sigmas(hi, lo, levels)
