"""The attention scale [9812, 8823]: the softmax-gradient identity against the autograd Jacobian, the exact
mean-field maximiser against a root finder and the post's fits, the sampled objective against quadrature and
its α → ∞ limit, the cosine moment generating function against its Bessel form, log-n against its
definition, and the planted-key focus against a literal construction and its mean field."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, special

from kexue.errors import KexueError
from kexue.nn.attention_scale import (
    cosine_log_mgf,
    cosine_mean_field_optimum,
    gradient_max_scale,
    log_n_scale,
    mean_field_objective,
    mean_field_optimum,
    planted_key_focus,
    planted_key_mass_mean_field,
    sampled_objective,
    sampled_objective_limit,
    softmax_gradient_l1,
    softmax_gradient_l1_autograd,
    standard_scale,
    su_cosine_fit,
    su_fit,
)


def _stationarity(alpha: float, n: float) -> float:
    """d/dα of α(1 − e^{α²}/n): 1 − (1 + 2α²)e^{α²}/n  [9812] eq. 6."""
    return 1 - (1 + 2 * alpha**2) * math.exp(alpha**2) / n


# ------------------------------------------------------------------------------------ eq. 3
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), alpha=st.floats(0.0, 30.0), seed=st.integers(0, 2**31 - 1))
def test_gradient_l1_closed_form_equals_the_autograd_jacobian(n, alpha, seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(3, n, generator=g, dtype=torch.float64)
    closed = softmax_gradient_l1(s, alpha)
    exact = softmax_gradient_l1_autograd(s, alpha)
    torch.testing.assert_close(closed, exact, rtol=1e-10, atol=1e-12)


def test_gradient_l1_vanishes_at_both_ends_and_broadcasts_alpha(gen):
    """[9812]: the gradient is 0 at α = 0 and as α → ∞ (a unique maximum score); a per-row α broadcasts."""
    s = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    assert softmax_gradient_l1(s, 0.0).abs().max() == 0
    assert softmax_gradient_l1(s, 1e6).abs().max() < 1e-100
    alpha = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    rows = torch.stack([softmax_gradient_l1(s[i], a) for i, a in enumerate(alpha)])
    torch.testing.assert_close(softmax_gradient_l1(s, alpha), rows, rtol=0, atol=0)


# ------------------------------------------------------------------------------------ mean field, eq. 6
@settings(max_examples=60, deadline=None)
@given(n=st.floats(1.5, 1e9))
def test_mean_field_optimum_is_the_stationary_point(n):
    alpha = mean_field_optimum(n).item()
    assert abs(_stationarity(alpha, n)) < 1e-11
    root = optimize.brentq(_stationarity, 0.0, math.sqrt(math.log(n)) + 1, args=(n,), xtol=1e-15, rtol=1e-15)
    assert alpha == pytest.approx(root, rel=1e-12)
    closed = math.sqrt(special.lambertw(n * math.sqrt(math.e) / 2).real - 0.5)  # α*² = W(n√e/2) − ½
    assert alpha == pytest.approx(closed, rel=1e-12)
    f = lambda a: mean_field_objective(torch.tensor(a), n).item()  # noqa: E731
    assert f(alpha) >= max(f(alpha * 0.99), f(alpha * 1.01))  # a maximum, not a minimum


def test_mean_field_optimum_keeps_shape_and_device_and_rejects_no_keys():
    n = torch.tensor([[1.0, 64.0], [1024.0, 16384.0]])
    alpha = mean_field_optimum(n)
    assert alpha.shape == (2, 2) and alpha.dtype == torch.float64 and alpha[0, 0] == 0  # n = 1: α* = 0
    # [R] reference/transformer.md §2.4: 1.55 / 2.15 / 2.65 for n = 64 / 1k / 16k
    torch.testing.assert_close(
        alpha[[0, 1, 1], [1, 0, 1]], torch.tensor([1.55, 2.15, 2.65]).double(), atol=6e-3, rtol=0
    )
    with pytest.raises(KexueError, match="n ≥ 1"):
        mean_field_optimum(torch.tensor([0.5, 4.0]))


def test_mean_field_optimum_is_within_ten_percent_of_su_fit_on_512_to_16k():
    """[9812]: α* ≈ 0.84√(ln n). Where it is not: small n (n = 40: 11%) and very large n, where
    α*/√(ln n) → 1 (Lambert W asymptotics) and the ratio to the fit tends to 1/0.84."""
    n = torch.logspace(math.log10(512), math.log10(16384), 200, dtype=torch.float64)
    rel = (mean_field_optimum(n) / su_fit(n) - 1).abs()
    assert rel.max() < 0.10
    assert (mean_field_optimum(40.0) / su_fit(40.0) - 1).abs() > 0.10
    assert (mean_field_optimum(1e14) / su_fit(1e14) - 1).abs() > 0.10
    big = torch.tensor(1e300, dtype=torch.float64)
    assert 0.99 < (mean_field_optimum(big) / big.log().sqrt()).item() < 1


def test_su_coefficient_is_the_least_squares_fit_over_the_posts_grid():
    """The post's Mathematica: n = 40·Range[500], fit α* ≈ c√(ln n); least squares gives c = 0.841."""
    n = 40 * torch.arange(1, 501, dtype=torch.float64)
    x, y = n.log().sqrt(), mean_field_optimum(n)
    c = (x @ y / (x @ x)).item()
    assert abs(c - 0.84) < 0.005


def test_gradient_max_scale_is_the_optimum_over_sqrt_d_and_su_fit_is_its_formula():
    n = torch.tensor([128.0, 4096.0])
    torch.testing.assert_close(gradient_max_scale(n, head_dim=64), mean_field_optimum(n) / 8)
    assert su_fit(math.e**4).item() == pytest.approx(0.84 * 2)
    assert su_cosine_fit(math.e**2).item() == pytest.approx(7.0)


# ------------------------------------------------------------------------------------ cosine, eq. 7
@pytest.mark.parametrize("d", [2, 3, 16, 128])
def test_cosine_mgf_equals_the_bessel_form(d):
    """∫e^{as}(1 − s²)^{ν−½}ds / ∫(1 − s²)^{ν−½}ds = Γ(ν+1)(2/a)^ν I_ν(a), ν = d/2 − 1 (DLMF 10.32.2)."""
    a = np.array([1e-3, 0.5, 5.0, 30.0, 100.0, 300.0])
    nu = d / 2 - 1
    bessel = special.gammaln(nu + 1) + nu * np.log(2 / a) + np.log(special.ive(nu, a)) + a
    ours = cosine_log_mgf(torch.from_numpy(a), head_dim=d)
    torch.testing.assert_close(ours, torch.from_numpy(bessel), rtol=1e-12, atol=1e-12)


def test_cosine_optimum_is_stationary_and_in_the_posts_range():
    """[9812]: for d = 128, α* ≈ 3.5 ln n and lies in 25–35 over a wide range of n."""
    n = torch.tensor([40.0, 1024.0, 4096.0, 20000.0], dtype=torch.float64)
    alpha = cosine_mean_field_optimum(n, head_dim=128).requires_grad_(True)
    f = mean_field_objective(alpha, n, log_mgf=lambda a: cosine_log_mgf(a, head_dim=128))
    (grad,) = torch.autograd.grad(f.sum(), alpha)
    assert grad.abs().max() < 1e-12
    assert cosine_mean_field_optimum(1.0).item() == 0
    nu = 63.0

    def neg_f(a, m):  # the same objective through scipy's Bessel function
        log_g = lambda x: special.gammaln(nu + 1) + nu * np.log(2 / x) + np.log(special.ive(nu, x)) + x  # noqa: E731
        return -a * (1 - np.exp(log_g(2 * a) - 2 * log_g(a)) / m)

    for m, a in zip(n.tolist(), alpha.tolist()):
        ref = optimize.minimize_scalar(
            neg_f, bounds=(1.0, 80.0), args=(m,), method="bounded", options={"xatol": 1e-9}
        )
        assert a == pytest.approx(ref.x, rel=1e-6)
    assert ((alpha[1:] >= 25) & (alpha[1:] <= 35)).all()
    assert ((alpha[1:] / su_cosine_fit(n[1:]) - 1).abs() < 0.08).all()


# ------------------------------------------------------------------------------------ sampled objective
def test_sampled_objective_is_eq3_on_the_generators_draws():
    """One block of draws, then blocks of ⌊max_elements/n⌋ rows: each block is eq. 3 on its own randn."""
    alpha = torch.tensor([0.5, 2.5])
    got = sampled_objective(alpha, 50, samples=7, generator=torch.Generator().manual_seed(3))
    s = torch.randn(7, 50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    want = torch.stack([softmax_gradient_l1(s, a) for a in alpha.double()], -1)  # (7, 2)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    got = sampled_objective(
        alpha, 50, samples=7, generator=torch.Generator().manual_seed(3), max_elements=120
    )
    g = torch.Generator().manual_seed(3)
    s = torch.cat([torch.randn(r, 50, generator=g, dtype=torch.float64) for r in (2, 2, 2, 1)])
    want = torch.stack([softmax_gradient_l1(s, a) for a in alpha.double()], -1)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_sampled_objective_for_two_scores_equals_quadrature(gen):
    """n = 2: α(1 − Σp²) = 2α·e^{−α|X|}/(1 + e^{−α|X|})² with X = s₁ − s₂ ~ N(0, 2); E by quadrature."""
    alpha = torch.tensor([0.5, 2.0, 8.0])
    v = sampled_objective(alpha, 2, samples=40000, generator=gen)
    mean, se = v.mean(0), v.std(0) / math.sqrt(len(v))
    for a, m, e in zip(alpha.tolist(), mean.tolist(), se.tolist()):

        def integrand(x, a=a):  # on x ≥ 0, doubled by symmetry
            t = math.exp(-a * x)
            return 2 * 2 * a * t / (1 + t) ** 2 * math.exp(-x * x / 4) / math.sqrt(4 * math.pi)

        exact = integrate.quad(integrand, 0, 40, limit=200)[0]
        assert abs(m - exact) < 4 * e


def test_sampled_objective_limit_is_the_top_two_gap_density():
    """f_Δ(0) = n(n−1)∫φ²Φ^{n−2}: 1/√π for n = 2 (|s₁ − s₂|, s₁ − s₂ ~ N(0, 2)), 3/(2√π) for n = 3
    (by symmetry ∫φ²Φ = ½∫φ²), and scipy's adaptive quadrature for larger n."""
    assert sampled_objective_limit(2) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-12)
    assert sampled_objective_limit(3) == pytest.approx(3 / (2 * math.sqrt(math.pi)), rel=1e-12)
    for n in (64, 4096):
        f = lambda x: n * (n - 1) * np.exp(-x * x) / (2 * np.pi) * special.ndtr(x) ** (n - 2)  # noqa: E731, B023
        ref = integrate.quad(f, -12, 12, points=[math.sqrt(2 * math.log(n))], limit=200)[0]
        assert sampled_objective_limit(n) == pytest.approx(ref, rel=1e-9)
    with pytest.raises(KexueError, match="n ≥ 2"):
        sampled_objective_limit(1)


def test_sampled_objective_approaches_its_limit_and_matches_mean_field_only_at_small_alpha(gen):
    """At large α the sampled mean sits on the plateau f_Δ(0); eq. 6 goes negative there. At α ≤ 1 the
    mean field is accurate (the sums of e^{αs} concentrate)."""
    n = 16
    v = sampled_objective(torch.tensor([40.0]), n, samples=20000, generator=gen)
    limit = sampled_objective_limit(n)
    assert abs(v.mean().item() - limit) < 4 * v.std().item() / math.sqrt(len(v)) + 0.02
    assert mean_field_objective(torch.tensor(40.0), n) < 0
    small = torch.tensor([0.25, 0.5, 1.0])
    v = sampled_objective(small, 4096, samples=16, generator=gen).mean(0)
    torch.testing.assert_close(v, mean_field_objective(small, 4096), rtol=2e-4, atol=0)


@pytest.mark.parametrize("n", [512, 4096])
def test_sampled_objective_prefers_2_5_over_1(gen, n):
    """[9812]: the blind choice 2.5/√d beats 1/√d; paired draws, by far more than the noise."""
    v = sampled_objective(torch.tensor([1.0, 2.5]), n, samples=16, generator=gen)
    diff = v[:, 1] - v[:, 0]
    assert diff.mean() > 5 * diff.std() / math.sqrt(len(diff))


# ------------------------------------------------------------------------------------ log n [8823]
@settings(max_examples=40, deadline=None)
@given(n=st.integers(-3, 10**6), d=st.integers(1, 512), base=st.integers(2, 4096), min_n=st.integers(1, 64))
def test_log_n_scale_int_and_tensor_paths_agree_with_the_definition(n, d, base, min_n):
    want = math.log(max(n, min_n)) / math.log(base) / math.sqrt(d)
    assert log_n_scale(n, head_dim=d, base=base, min_n=min_n) == pytest.approx(want, rel=1e-12, abs=1e-15)
    got = log_n_scale(torch.tensor([n]), head_dim=d, base=base, min_n=min_n)
    assert got.dtype == torch.float64 and got.item() == pytest.approx(want, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("d", [16, 64, 128])
def test_log_n_scale_is_standard_at_the_base_length(d):
    assert log_n_scale(512, head_dim=d) == pytest.approx(standard_scale(d), rel=1e-15)
    assert log_n_scale(torch.tensor(100), head_dim=d, base=100).item() == pytest.approx(standard_scale(d))


def test_log_n_scale_per_row_counts_and_the_softmax_plus_clamp():
    """A causal row i sees i + 1 keys (bert4keras softmax_plus); rows under the clamp use min_n."""
    T, d = 40, 64
    counts = torch.arange(1, T + 1)[:, None]  # (T, 1)
    scale = log_n_scale(counts, head_dim=d, min_n=16)
    assert scale.shape == (T, 1)
    want = torch.tensor([math.log(max(i + 1, 16)) for i in range(T)], dtype=torch.float64) / math.log(512) / 8
    torch.testing.assert_close(scale[:, 0], want, rtol=1e-15, atol=0)
    assert (scale[:16] == scale[15]).all() and (scale[16:].diff(dim=0) > 0).all()
    with pytest.raises(KexueError, match="base > 1"):
        log_n_scale(10, head_dim=d, base=1)


# ------------------------------------------------------------------------------------ planted-key focus
def test_planted_key_focus_matches_the_literal_vectors(gen):
    """The reduction q·k = ‖q‖z against building q, the keys and the planted key in ℝ^d."""
    n, d, c, trials = 24, 16, 0.5, 3000
    mass, entropy = planted_key_focus(n, head_dim=d, cos=c, scale=1 / 4, trials=trials, generator=gen)
    q = torch.randn(trials, d, generator=gen, dtype=torch.float64)
    k = torch.randn(trials, n, d, generator=gen, dtype=torch.float64)
    u = k[:, 0] - (k[:, 0] * q).sum(-1, keepdim=True) * q / q.pow(2).sum(-1, keepdim=True)  # ⟂ q
    k[:, 0] = math.sqrt(d) * (
        c * q / q.norm(dim=-1, keepdim=True) + math.sqrt(1 - c * c) * u / u.norm(dim=-1, keepdim=True)
    )
    p = torch.softmax((k @ q[..., None])[..., 0] / 4, -1)  # (trials, n)
    lit_mass, lit_entropy = p[:, 0], -(p * p.log()).sum(-1)
    for ours, lit in ((mass, lit_mass), (entropy, lit_entropy)):
        se = math.sqrt((ours.var() + lit.var()).item() / trials)
        assert abs((ours.mean() - lit.mean()).item()) < 4 * se


def test_entropy_is_ln_n_without_signal_and_mass_sums_with_the_rest(gen):
    mass, entropy = planted_key_focus(100, head_dim=8, cos=0.3, scale=0.0, trials=5, generator=gen)
    torch.testing.assert_close(entropy, torch.full((5,), math.log(100), dtype=torch.float64))
    torch.testing.assert_close(mass, torch.full((5,), 0.01, dtype=torch.float64))


def test_log_n_keeps_the_planted_key_in_focus_as_n_grows():
    """[8823]: under log_512 n the planted key's mass decays more slowly; ≥ 2× the standard at 16× the base
    ([R] reference/transformer.md §2.4: 0.0139 vs 0.0040 at 8192). Equal at the base (same draws)."""
    d, c, out = 64, 0.5, {}
    for n in (512, 8192):
        for name, scale in (("std", standard_scale(d)), ("log", log_n_scale(n, head_dim=d))):
            g = torch.Generator().manual_seed(n)
            mass, entropy = planted_key_focus(n, head_dim=d, cos=c, scale=scale, trials=256, generator=g)
            out[name, n] = (mass.mean().item(), entropy.mean().item())
            mf = planted_key_mass_mean_field(n, head_dim=d, cos=c, scale=scale).item()
            assert out[name, n][0] == pytest.approx(mf, rel=0.15)
    assert out["std", 512] == out["log", 512]
    assert out["log", 8192][0] / out["log", 512][0] > out["std", 8192][0] / out["std", 512][0]
    assert out["log", 8192][0] >= 2 * out["std", 8192][0]
    assert out["log", 8192][1] < out["std", 8192][1] < math.log(8192)  # sharper, and below uniform


def test_planted_key_focus_rejects_bad_input(gen):
    with pytest.raises(KexueError, match="cos"):
        planted_key_focus(10, head_dim=4, cos=1.5, scale=0.5, trials=2, generator=gen)
    with pytest.raises(KexueError, match="head_dim ≥ 2"):
        cosine_log_mgf(torch.tensor(1.0), head_dim=1)
