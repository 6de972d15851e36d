"""Score SDEs: closed-form marginals vs the SDE, DDPM and DDIM as discretisations, samplers on the oracle."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.diffusion import ddim, schedules
from kexue.diffusion import sde as S
from kexue.diffusion.oracle import GaussianMixture
from kexue.metrics import mmd2

KIND_SDES = [S.SDE("vp"), S.SDE("subvp"), S.SDE("ve", sigma_min=0.01, sigma_max=4.0)]


# ------------------------------------------------------------------------------------ DDPM in the limit
def test_vp_is_the_limit_of_the_linear_ddpm_schedule():
    """ᾱ(i/N) of the VP SDE β 0.1 → 20 against DDPM's ∏(1 − β_j) with β_j = β(·)/N: the gap is O(1/N)."""
    sde = S.vp_from_ddpm(1000)
    assert (sde.beta_min, sde.beta_max) == pytest.approx((0.1, 20.0))
    gaps = {}
    for n in (1000, 10000):
        abar = schedules.linear_abar(n, 0.1 / n, 20.0 / n)  # (N + 1,): DDPM's 1e-4 → 0.02 at N = 1000
        t = torch.arange(n + 1, dtype=torch.float64) / n
        cont = sde.mean_coef(t) ** 2  # ᾱ(t)
        gaps[n] = (abar.log() - cont.log()).abs().max().item()
        assert (abar - cont).abs().max() < 1e-3 * 1000 / n  # the absolute ᾱ gap
    # the documented size (sde.score_from_eps): ≤ 0.07 in log ᾱ at N = 1000, ~10× smaller at 10× the N
    assert gaps[1000] < 0.07 and gaps[10000] < 0.13 * gaps[1000]


def test_t_times_n_map_error_is_as_documented():
    """score_from_eps(abar=None): β̄ at step i vs β̄(i/N) is off by 10% at i = 1, 0.7% at i = 100."""
    sde, abar = S.SDE(), schedules.linear_abar(1000)
    i = torch.tensor([1, 10, 100, 500], dtype=torch.float64)
    rel = ((1 - sde.mean_coef(i / 1000) ** 2) / (1 - abar[i.long()]) - 1).abs()
    assert rel[0] < 0.11 and rel[1] < 0.06 and rel[2] < 0.008 and rel[3] < 0.001


def test_matched_time_map_asks_the_net_at_the_sde_noise_level(gen):
    """With abar given, the step handed to the ε-net has log ᾱ_disc(step) = log ᾱ(t) (interpolated)."""
    sde, abar = S.SDE(), schedules.linear_abar(1000)
    seen = []
    score = S.score_from_eps(lambda x, i: (seen.append(float(i[0])), torch.zeros_like(x))[1], sde, abar=abar)
    times = [1e-5, 1e-3, 0.3, 0.999]
    for t in times:
        score(torch.zeros(3, 2, dtype=torch.float64), t)
    table = abar.log()
    for t, i in zip(times, seen, strict=True):
        lo = int(i)
        interp = table[lo] + (i - lo) * (table[min(lo + 1, 1000)] - table[lo])
        assert float(interp) == pytest.approx(-float(sde.int_beta(t)), rel=1e-9)


def test_score_from_eps_is_minus_eps_over_std(gen):
    """With ε̂ the exact ε* of q_t (via the continuous schedule at t = i/N), the adapter is the exact score."""
    gm, sde = GaussianMixture.ring(), S.SDE()
    eps_fn = lambda x, i: gm.eps(x, sde.mean_coef(float(i[0]) / 1000) ** 2)  # noqa: E731
    x = gm.sample(64, generator=gen)
    for t in (1e-3, 0.2, 0.9):
        got = S.score_from_eps(eps_fn, sde)(x, t)
        assert torch.allclose(got, S.mixture_score(gm, sde)(x, t), rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="VP model"):
        S.score_from_eps(eps_fn, S.SDE("ve"))


# ------------------------------------------------------------------------------------ marginals
@settings(max_examples=40, deadline=None)
@given(t=st.floats(0.01, 1.0), which=st.integers(0, 2))
def test_marginal_moments_solve_the_moment_odes(t, which):
    """For dx = f(t)x dt + g dw: dm/dt = f·m and d(s²)/dt = 2f·s² + g² (the module table is consistent)."""
    sde = KIND_SDES[which]
    tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    m, s2 = sde.mean_coef(tt) + 0 * tt, sde.std(tt) ** 2  # (+ 0·t: VE's m ≡ 1 has no graph)
    (dm,) = torch.autograd.grad(m, tt)
    (ds2,) = torch.autograd.grad(s2, tt)
    m, s2 = m.detach(), s2.detach()
    f = 0.0 if sde.kind == "ve" else -0.5 * float(sde.beta(t))
    g2 = float(sde.diffusion(t)) ** 2
    assert float(dm) == pytest.approx(f * float(m), rel=1e-9, abs=1e-12)
    assert float(ds2) == pytest.approx(2 * f * float(s2) + g2, rel=1e-9, abs=1e-12)
    if sde.kind == "vp":
        assert float(m**2 + s2) == pytest.approx(1.0, abs=1e-12)  # variance preserving
    if sde.kind == "subvp":
        assert float(s2.sqrt()) == pytest.approx(1 - float(m) ** 2, abs=1e-12)  # s = 1 − ᾱ ≤ VP's √(1 − ᾱ)


@pytest.mark.parametrize("sde", KIND_SDES, ids=lambda s: s.kind)
def test_forward_euler_maruyama_matches_the_closed_form_marginal(sde, gen):
    """Simulate the forward SDE on Gaussian data N(μ, s0²I); compare mean and variance to m·μ, m²s0² + s²."""
    n, t, mu, s0 = 20000, 0.5, torch.tensor([1.0, -0.5], dtype=torch.float64), 0.3
    x0 = mu + s0 * torch.randn(n, 2, dtype=torch.float64, generator=gen)
    xt = S.simulate_forward(sde, x0, torch.linspace(0, t, 1001, dtype=torch.float64), generator=gen)
    m, s = float(sde.mean_coef(t)), float(sde.std(t))
    var = m**2 * s0**2 + s**2
    se_mean = math.sqrt(var / n)
    assert torch.allclose(xt.mean(0), m * mu, atol=5 * se_mean)
    # Monte Carlo: the sample variance has relative std √(2/n) = 1%; Euler–Maruyama adds O(Δt·β²) < 1%
    assert torch.allclose(xt.var(0), torch.full((2,), var, dtype=torch.float64), rtol=0.05)


@pytest.mark.parametrize("sde", KIND_SDES, ids=lambda s: s.kind)
def test_mixture_log_prob_and_score_for_every_sde(sde, gen):
    """K = 1: log q_t is N(m·μ, (m²s0² + s²)I) for any kind; the score is its autograd gradient."""
    mu, s0 = torch.tensor([[0.3, -0.2, 0.5]], dtype=torch.float64), 0.4
    gm = GaussianMixture(mu, torch.tensor([s0], dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    x = torch.randn(16, 3, dtype=torch.float64, generator=gen)
    for t in (1e-5, 0.1, 0.7):
        m, s = sde.mean_coef(t), sde.std(t)
        v = m**2 * s0**2 + s**2
        want = -0.5 * ((x - m * mu) ** 2).sum(1) / v - 1.5 * torch.log(2 * math.pi * v)
        assert torch.allclose(S.mixture_log_prob(gm, sde, x, t), want, rtol=1e-10, atol=1e-10)
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(S.mixture_log_prob(gm, sde, xg, t).sum(), xg)
        assert torch.allclose(S.mixture_score(gm, sde)(x, t), grad, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------ DDIM = Euler of the PF-ODE
def _ring_eps(abar):
    gm = GaussianMixture.ring()
    return lambda x, t: gm.eps(x, abar[int(t[0])])  # a smooth nonlinear ε, like a trained net


@pytest.mark.parametrize(("t", "s"), [(1000, 500), (300, 299), (50, 7), (20, 1)])
def test_ddim_eta0_is_euler_in_xbar_sigma(t, s, gen):
    """One η = 0 DDIM step t → s equals one Euler step of dx̄/dσ = ε in x̄ = x/√ᾱ, σ = √(β̄/ᾱ).
    reference/diffusion.md §1.2 and §4; [9228] "回顾DDIM"."""
    abar = schedules.linear_abar(1000)
    eps_fn = _ring_eps(abar)
    x = torch.randn(32, 2, dtype=torch.float64, generator=gen)
    sig = lambda a: ((1 - a) / a).sqrt()  # noqa: E731
    eps = eps_fn(x, torch.full((32,), t))
    xbar_s = x / abar[t].sqrt() + (sig(abar[s]) - sig(abar[t])) * eps  # Euler in (x̄, σ)
    x0_hat = (x - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()
    ddim_s = ddim.step_mean(x, x0_hat, abar[t], abar[s], torch.tensor(0.0, dtype=torch.float64))
    assert torch.allclose(ddim_s, abar[s].sqrt() * xbar_s, rtol=1e-12, atol=1e-12)
    # and the whole η = 0 sampler on τ = (s, t) is two Euler steps: t → s, then s → σ = 0
    out = ddim.sample(eps_fn, x, abar, torch.tensor([s, t]), eta=0.0)
    x_s = abar[s].sqrt() * xbar_s
    xbar_0 = xbar_s - sig(abar[s]) * eps_fn(x_s, torch.full((32,), s))
    assert torch.allclose(out, xbar_0, rtol=1e-12, atol=1e-12)


def test_pf_ode_of_vp_is_dxbar_dsigma_eq_eps(gen):
    """The VP PF-ODE f − ½g²s with s = −ε/s(t), in x̄ = x/m(t), σ = s(t)/m(t), reads dx̄/dσ = ε.  [9228]"""
    sde, gm = S.SDE(), GaussianMixture.ring()
    x = torch.randn(16, 2, dtype=torch.float64, generator=gen)
    score = S.mixture_score(gm, sde)
    for t in (0.01, 0.3, 0.8):
        tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
        dm = float(torch.autograd.grad(sde.mean_coef(tt), tt)[0])
        dsigma = float(torch.autograd.grad(sde.std(tt) / sde.mean_coef(tt), tt)[0])  # σ = s/m
        dxdt = S.ode_drift(score, sde, x, t)
        mt = float(sde.mean_coef(t))
        dxbar_dt = dxdt / mt - x * dm / mt**2
        eps = -float(sde.std(t)) * score(x, t)
        assert torch.allclose(dxbar_dt / dsigma, eps, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------------ samplers
def test_samplers_keep_shape_and_dtype_and_count_nfe(gen):
    sde = S.SDE()
    score = lambda x, t: -x  # noqa: E731  (N(0, I)'s score, any shape)
    x = sde.prior_sample((5, 1, 2, 3), generator=gen)
    ts = S.time_grid(sde, 8)
    assert ts.dtype == torch.float64 and ts.shape == (9,) and ts[0] == 1.0 and ts[-1] == pytest.approx(1e-3)
    for out in (
        S.sample_euler_maruyama(score, sde, x, ts, generator=gen),
        S.sample_pc(score, sde, x, ts, generator=gen),
        S.sample_pc(score, sde, x, ts, corrector_steps=0, generator=gen),
    ):
        assert out.shape == x.shape and out.dtype == torch.float64 and torch.isfinite(out).all()
    for method, nfe in (("euler", 8), ("heun", 16)):
        out, got = S.sample_ode(score, sde, x, ts, method=method)
        assert out.shape == x.shape and out.dtype == torch.float64 and got == nfe
    out, got = S.sample_ode(score, sde, x, ts)
    assert out.shape == x.shape and out.dtype == torch.float64 and got > 6


def test_pf_ode_solvers_agree_and_are_deterministic(gen):
    """Heun with many steps and RK45 land on the same ODE solution; no randomness enters."""
    sde, gm = S.SDE(), GaussianMixture.ring()
    score = S.mixture_score(gm, sde)
    x = sde.prior_sample((64, 2), generator=gen)
    ts = S.time_grid(sde, 400)
    heun, _ = S.sample_ode(score, sde, x, ts, method="heun")
    rk, _ = S.sample_ode(score, sde, x, ts, rtol=1e-8, atol=1e-8)
    assert (heun - rk).abs().max() < 1e-3
    assert torch.equal(rk, S.sample_ode(score, sde, x, ts, rtol=1e-8, atol=1e-8)[0])


RING_N, RING_BW = 2000, (0.04, 0.08, 0.16)  # samples per set; MMD bandwidths at the mode scale 0.08


@pytest.fixture(scope="module")
def ring_ref():
    return GaussianMixture.ring().sample(RING_N, generator=torch.Generator().manual_seed(1))


def test_mmd_sees_a_slightly_wrong_ring(ring_ref, gen):
    """The sampler test below can fail: a ring whose std (0.12) or radius (0.75) is off is far above its
    threshold 0.004 (measured ≈ 0.013)."""
    for wrong in (GaussianMixture.ring(std=0.12), GaussianMixture.ring(radius=0.75)):
        assert mmd2(wrong.sample(RING_N, generator=gen), ring_ref, RING_BW) > 0.008


@pytest.mark.parametrize("sde", KIND_SDES, ids=lambda s: s.kind)
def test_samplers_with_the_oracle_score_reproduce_the_ring(sde, ring_ref, gen):
    """EM (200 steps), PC (100 + 100 corrector, r = 0.16) and RK45 from the prior reach the ring: MMD² at
    the noise floor of 2,000 samples (≈ ±5e-4)."""
    score = S.mixture_score(GaussianMixture.ring(), sde)
    start = lambda: sde.prior_sample((RING_N, 2), generator=gen)  # noqa: E731
    samples = {
        "em": S.sample_euler_maruyama(score, sde, start(), S.time_grid(sde, 200), generator=gen),
        "pc": S.sample_pc(score, sde, start(), S.time_grid(sde, 100), generator=gen),
        "ode": S.sample_ode(score, sde, start(), S.time_grid(sde, 1))[0],
    }
    for name, y in samples.items():
        assert mmd2(y, ring_ref, RING_BW) < 0.004, name  # measured ≤ 0.002 for every kind and sampler


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown SDE"):
        S.SDE("vpsde")
    with pytest.raises(ValueError, match="beta_min"):
        S.SDE("vp", beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="sigma_min"):
        S.SDE("ve", sigma_min=1.0, sigma_max=0.5)
    sde, score = S.SDE(), (lambda x, t: -x)
    x = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="eps < T"):
        S.time_grid(sde, 10, eps=1.0)
    with pytest.raises(ValueError, match="eps < T"):
        S.time_grid(sde, 10, eps=0.0)
    with pytest.raises(ValueError, match="positive integer"):
        S.time_grid(sde, 0)
    with pytest.raises(ValueError, match="snr"):
        S.sample_pc(score, sde, x, S.time_grid(sde, 4), snr=-0.1)
    with pytest.raises(ValueError, match="corrector_steps"):
        S.sample_pc(score, sde, x, S.time_grid(sde, 4), corrector_steps=-1)
    with pytest.raises(ValueError, match="unknown ODE method"):
        S.sample_ode(score, sde, x, S.time_grid(sde, 4), method="rk4")
    with pytest.raises(ValueError, match="descend"):
        S.sample_euler_maruyama(score, sde, x, torch.tensor([0.1, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="ascending"):
        S.simulate_forward(sde, x, torch.tensor([0.5, 0.1], dtype=torch.float64))
