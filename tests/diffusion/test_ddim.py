"""The DDIM/DDPM reverse-step family: identities between its members, determinism, inversion, errors."""

import pytest
import torch

from kexue.diffusion import ddim, schedules
from kexue.diffusion.ddpm import posterior, x0_from_eps
from kexue.diffusion.oracle import GaussianMixture

F64 = torch.float64
ABAR = schedules.linear_abar(1000)


@pytest.mark.parametrize("t, s", [(1000, 900), (100, 1), (2, 1), (37, 12)])
def test_eta_one_is_the_ddpm_posterior_on_any_subtrajectory(t, s):
    """DDIM η = 1: σ² = β̃_{s|t} and the mean is μ̃(x̂0, x_t) of q(x_s|x_t, x0 = x̂0).  [DDIM] Sec. 4.1"""
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(5, 3, generator=g, dtype=F64)
    a_t, a_s = ABAR[t], ABAR[s]
    x0 = x0_from_eps(x, eps, a_t)
    lam2, var = ddim.reverse_variances(a_t, a_s, "ddim", eta=1.0)
    mu, beta_tilde = posterior(x0, x, a_t, a_s)
    assert var.item() == pytest.approx(beta_tilde.item(), rel=1e-12)
    assert torch.allclose(ddim.step_mean(x, x0, a_t, a_s, lam2), mu, rtol=1e-10, atol=1e-12)
    # and it is DDIM's own eq. 12 form √ᾱ_s x̂0 + √(β̄_s − σ²) ε̂
    assert torch.allclose(
        ddim.step_mean(x, x0, a_t, a_s, lam2), a_s.sqrt() * x0 + (1 - a_s - lam2).sqrt() * eps, atol=1e-12
    )


def test_sigma_hat_and_beta_keep_the_eta_one_mean_with_variance_beta():
    a_t, a_s = ABAR[500], ABAR[400]
    lam_hat, var_hat = ddim.reverse_variances(a_t, a_s, "sigma_hat")
    lam_one, _ = ddim.reverse_variances(a_t, a_s, "ddim", eta=1.0)
    assert lam_hat.item() == pytest.approx(lam_one.item(), rel=1e-12)
    assert var_hat.item() == pytest.approx(1 - (a_t / a_s).item(), rel=1e-12)
    assert ddim.reverse_variances(a_t, a_s, "beta") == (lam_hat, var_hat)
    lam_bt, var_bt = ddim.reverse_variances(a_t, a_s, "beta_tilde")
    assert lam_bt == var_bt == lam_hat
    assert var_bt < var_hat  # β̃ ≤ β


def test_gamma_matches_the_ddpm_posterior_weight_and_corollary():
    """With λ² = β̃, γ = √ᾱ_s β_{t|s}/β̄_t (the x0 weight of μ̃), so γ² = ᾱ_s β_{t|s}²/β̄_t².  [ADPM] Cor. 2"""
    for t, s in [(1000, 1), (400, 399), (50, 10)]:
        a_t, a_s = ABAR[t], ABAR[s]
        b_ts = 1 - a_t / a_s
        g = ddim.gamma(a_t, a_s, ddim.beta_tilde(a_t, a_s))
        assert g.item() == pytest.approx((a_s.sqrt() * b_ts / (1 - a_t)).item(), rel=1e-10)


def test_eta_zero_is_deterministic_and_other_etas_use_the_generator():
    gm = GaussianMixture.ring()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    traj = schedules.trajectory("even", 1000, 10)
    a = ddim.sample(gm.eps_fn(ABAR), x, ABAR, traj, eta=0.0, generator=torch.Generator().manual_seed(1))
    b = ddim.sample(gm.eps_fn(ABAR), x, ABAR, traj, eta=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    c = ddim.sample(gm.eps_fn(ABAR), x, ABAR, traj, eta=0.5, generator=torch.Generator().manual_seed(1))
    d = ddim.sample(gm.eps_fn(ABAR), x, ABAR, traj, eta=0.5, generator=torch.Generator().manual_seed(1))
    e = ddim.sample(gm.eps_fn(ABAR), x, ABAR, traj, eta=0.5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(c, d) and not torch.equal(c, e)


def test_last_step_returns_the_prediction_without_noise():
    """K = 1 with σ² = β: one jump N → 0 whose output is x̂0, whatever the generator."""
    gm = GaussianMixture.ring()
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    traj = torch.tensor([1000])
    out = ddim.sample(
        gm.eps_fn(ABAR), x, ABAR, traj, variance="beta", generator=torch.Generator().manual_seed(5)
    )
    assert torch.allclose(out, x0_from_eps(x, gm.eps(x, ABAR[1000]), ABAR[1000]), atol=1e-12)


@pytest.mark.parametrize("variance, eta", [("ddim", 0.0), ("ddim", 1.0), ("beta_tilde", 0.0), ("beta", 0.0)])
def test_samplers_reach_gaussian_data_with_the_oracle(variance, eta):
    """Gaussian data N(μ, s²I) with the exact ε*: at K = N every member reproduces mean and variance.

    (At coarse K the β̃ members under-disperse: β̃ is Analytic-DPM's lower bound on the optimal variance.)
    """
    mu, s = torch.tensor([[0.5, -0.25]], dtype=F64), 0.3
    gm = GaussianMixture(mu, torch.tensor([s], dtype=F64), torch.ones(1, dtype=F64))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, 2, generator=g, dtype=F64)
    out = ddim.sample(
        gm.eps_fn(ABAR),
        x,
        ABAR,
        schedules.trajectory("even", 1000, 1000),
        variance=variance,
        eta=eta,
        generator=g,
    )
    assert torch.allclose(out.mean(0), mu[0], atol=0.01)
    assert torch.allclose(out.var(0), torch.full((2,), s**2, dtype=F64), rtol=0.05)


def test_encode_decode_error_falls_with_k():
    """DDIM inversion then η = 0 decoding: the round trip sharpens as K grows.  [DDIM] Table 2"""
    gm = GaussianMixture.ring()
    x0 = gm.sample(256, generator=torch.Generator().manual_seed(0))
    errors = []
    for k in (5, 20, 100):
        traj = schedules.trajectory("even", 1000, k)
        xt = ddim.encode(gm.eps_fn(ABAR), x0, ABAR, traj)
        back = ddim.sample(gm.eps_fn(ABAR), xt, ABAR, traj, eta=0.0)
        errors.append((back - x0).pow(2).mean().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3


def test_shapes_dtypes_and_callback():
    seen = []
    x = torch.randn(3, 1, 4, 4)
    out = ddim.sample(
        lambda x, t: torch.zeros_like(x),
        x,
        ABAR,
        schedules.trajectory("quadratic", 1000, 5),
        callback=lambda t, x0: seen.append(t),
    )
    assert out.shape == x.shape and out.dtype == torch.float32
    assert seen == [1000, 563, 251, 63, 1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"eta": -0.1}, "η must be"),
        ({"eta": float("nan")}, "η must be"),
        ({"variance": "huge"}, "unknown variance"),
        ({"traj": torch.tensor([0, 5])}, "1..N"),
        ({"traj": torch.tensor([5, 1001])}, "1..N"),
        ({"traj": torch.tensor([5, 5])}, "strictly increasing"),
        ({"traj": torch.tensor([], dtype=torch.int64)}, "non-empty"),
    ],
)
def test_bad_arguments(kwargs, match):
    traj = kwargs.pop("traj", schedules.trajectory("even", 1000, 4))
    with pytest.raises(ValueError, match=match):
        ddim.sample(lambda x, t: torch.zeros_like(x), torch.zeros(2, 2), ABAR, traj, **kwargs)


@pytest.mark.parametrize("variance, eta", [("ddim", 0.0), ("ddim", 0.7), ("beta", 0.0)])
def test_the_loop_is_the_step_functions(variance, eta):
    """sample() precomputes its coefficients; two steps by hand with the primitives give the same x."""
    gm = GaussianMixture.ring()
    eps_fn = gm.eps_fn(ABAR)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    traj = torch.tensor([300, 1000])
    out = ddim.sample(
        eps_fn, x, ABAR, traj, variance=variance, eta=eta, generator=torch.Generator().manual_seed(7)
    )
    g = torch.Generator().manual_seed(7)
    a_t, a_s = ABAR[1000], ABAR[300]
    lam2, var = ddim.reverse_variances(a_t, a_s, variance, eta)
    x0 = x0_from_eps(x, eps_fn(x, torch.full((16,), 1000)), a_t)
    mid = ddim.step_mean(x, x0, a_t, a_s, lam2)
    if var > 0:
        mid = mid + var.sqrt() * torch.randn(x.shape, generator=g, dtype=F64)
    last = x0_from_eps(mid, eps_fn(mid, torch.full((16,), 300)), a_s)
    assert torch.allclose(out, last, rtol=1e-12, atol=1e-12)


def test_penultimate_cap_touches_only_the_step_into_tau_1():
    """K = 2 on [1, N]: the step N → 1 is the penultimate one; capping its σ² at 0 removes all noise."""
    gm = GaussianMixture.ring()
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    traj = torch.tensor([1, 1000])

    def run(seed, cap):
        g = torch.Generator().manual_seed(seed)
        return ddim.sample(
            gm.eps_fn(ABAR), x, ABAR, traj, variance="beta", max_var_penultimate=cap, generator=g
        )

    assert not torch.equal(run(1, None), run(2, None))
    assert torch.equal(run(1, 0.0), run(2, 0.0))
    three = torch.tensor([1, 500, 1000])  # now the capped step is 500 → 1; the step 1000 → 500 stays random
    a = ddim.sample(
        gm.eps_fn(ABAR),
        x,
        ABAR,
        three,
        variance="beta",
        max_var_penultimate=0.0,
        generator=torch.Generator().manual_seed(1),
    )
    b = ddim.sample(
        gm.eps_fn(ABAR),
        x,
        ABAR,
        three,
        variance="beta",
        max_var_penultimate=0.0,
        generator=torch.Generator().manual_seed(2),
    )
    assert not torch.equal(a, b)


def test_clip_x0_bounds_the_prediction():
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    wild = lambda x, t: -5000 * torch.ones_like(x)  # noqa: E731  x̂0 ≈ x + 50, far outside [−1, 1]
    out = ddim.sample(wild, x, ABAR, torch.tensor([1]), clip_x0=True)
    assert torch.equal(out, torch.ones_like(x))  # K = 1 returns x̂0, clipped to 1
