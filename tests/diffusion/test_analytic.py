"""Analytic-DPM: identities of the optimal variance, the oracle moment on Gaussian data, the DP trajectory."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kexue.diffusion import analytic, ddim, schedules
from kexue.diffusion.oracle import GaussianMixture

F64 = torch.float64


def gaussian(d: int = 3, s: float = 0.5, mu: float = 0.3) -> GaussianMixture:
    """N(μ·1, s²I) as a one-component mixture."""
    return GaussianMixture(
        torch.full((1, d), mu, dtype=F64), torch.tensor([s], dtype=F64), torch.ones(1, dtype=F64)
    )


def gaussian_ms_eps(abar: torch.Tensor, s: float) -> torch.Tensor:
    """Closed form for data N(μ, s²I): ε* = √β̄(x_t − √ᾱμ)/(ᾱs² + β̄), so E‖ε*‖²/d = β̄/(ᾱs² + β̄)."""
    return (1 - abar) / (abar * s**2 + 1 - abar)


def gaussian_reverse_var(abar: torch.Tensor, t: int, s_: int, s: float) -> torch.Tensor:
    """Var(x_s|x_t) for Gaussian data under the Markov (DDPM) forward process, from the joint Gaussian:
    Var(x_u) = ᾱ_u s² + β̄_u, Cov(x_s, x_t) = √α_{t|s}·Var(x_s), so Var(x_s|x_t) = V_s − α_{t|s}V_s²/V_t."""
    v = abar * s**2 + 1 - abar
    return v[s_] - abar[t] / abar[s_] * v[s_] ** 2 / v[t]


@st.composite
def schedule_and_steps(draw):
    n = draw(st.integers(4, 60))
    if draw(st.booleans()):
        lo = draw(st.floats(1e-5, 1e-3))
        abar = schedules.linear_abar(n, lo, draw(st.floats(2e-3, 0.3)))
    else:
        abar = schedules.cosine_abar(n)
    t = draw(st.integers(2, n))
    s = draw(st.integers(1, t - 1))
    return abar, t, s


# --------------------------------------------------------------------------------------------- σ*² identities
@settings(max_examples=60, deadline=None)
@given(schedule_and_steps(), st.floats(0, 1))
@example((schedules.cosine_abar(24), 24, 1), 1.0)  # ᾱ_t = 4e-6, ms = 1: cancellation in the direct form
def test_corollary2_equals_the_general_gamma_form(case, ms):
    abar, t, s = case
    a_t, a_s = abar[t], abar[s]
    lam2 = ddim.beta_tilde(a_t, a_s)
    cov = (1 - a_t) / a_t * (1 - ms)  # unclamped
    general = analytic.optimal_variance(a_t, a_s, lam2, cov)
    assert torch.allclose(analytic.optimal_variance_cor2(a_t, a_s, ms), general, rtol=1e-9, atol=1e-15)
    gamma2 = a_s * (1 - a_t / a_s) ** 2 / (1 - a_t) ** 2  # the DDPM γ² of reference §1.4
    assert torch.allclose(ddim.gamma(a_t, a_s, lam2) ** 2, gamma2, rtol=1e-9, atol=1e-15)
    if cov <= 1:  # the Thm 2 clamp is inactive
        assert torch.allclose(analytic.optimal_variance_ddpm(a_t, a_s, ms), general, rtol=1e-9)


@settings(max_examples=60, deadline=None)
@given(schedule_and_steps(), st.floats(0, 1.5), st.floats(0, 1))
def test_optimal_variance_lies_within_the_theorem2_bounds(case, ms, eta):
    abar, t, s = case
    a_t, a_s = abar[t], abar[s]
    for lam2, var in (
        (ddim.beta_tilde(a_t, a_s), analytic.optimal_variance_ddpm(a_t, a_s, ms)),
        (eta**2 * ddim.beta_tilde(a_t, a_s), analytic.optimal_variance_ddim(a_t, a_s, ms, eta)),
    ):
        g2 = ddim.gamma(a_t, a_s, lam2) ** 2
        tol = 1e-12 * (lam2 + g2 * (1 - a_t) / a_t)
        assert lam2 - tol <= var <= lam2 + g2 * min(1.0, (1 - a_t) / a_t) + tol  # [ADPM] Thm 2


@settings(max_examples=40, deadline=None)
@given(st.integers(5, 40), st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_trajectory_cost_plus_telescoping_constant_is_the_log_variance_ratio(n, k, seed):
    k = min(k, n)
    g = torch.Generator().manual_seed(seed)
    abar = schedules.linear_abar(n, 1e-4, 0.2)
    ms = torch.cat([torch.zeros(1, dtype=F64), torch.rand(n, generator=g, dtype=F64)])
    traj = torch.cat(
        [
            torch.tensor([1]),
            (torch.randperm(n - 2, generator=g)[: k - 2] + 2).sort().values,
            torch.tensor([n]),
        ]
    )
    j = analytic.trajectory_cost(ms, abar)
    pairs = list(itertools.pairwise(traj.tolist()))
    lhs = sum(float(j[s, t]) for s, t in pairs)
    ratio = sum(
        math.log(analytic.optimal_variance_cor2(abar[t], abar[s], ms[t]) / ddim.beta_tilde(abar[t], abar[s]))
        for s, t in pairs
    )
    # log(σ*²/λ²) = J + log(β̄_t/β̄_s) − log α_{t|s}: the sum telescopes to the ends τ_1 = 1, τ_K = N
    const = math.log((1 - abar[n]) / (1 - abar[1])) - math.log(abar[n] / abar[1])
    assert lhs + const == pytest.approx(ratio, rel=1e-9, abs=1e-9)


# --------------------------------------------------------------------------------------------- oracle moments
@pytest.mark.parametrize("control_variate", [True, False])
def test_oracle_moment_matches_gaussian_closed_form(gen, control_variate):
    s, n = 0.5, 50
    gm, abar = gaussian(s=s), schedules.linear_abar(n, 1e-3, 0.2)
    ts = torch.tensor([1, 5, 20, 50])
    ms, se = analytic.estimate_ms_eps(
        gm.eps_fn(abar),
        gm.sample(5000, generator=gen),
        abar,
        ts,
        m_per_t=4000,
        generator=gen,
        control_variate=control_variate,
        with_stderr=True,
    )
    exact = gaussian_ms_eps(abar, s)
    assert bool(ms[1:].isnan().sum() == n - len(ts)) and ms[0] == 0
    assert torch.all((ms[ts] - exact[ts]).abs() < 4 * se[ts] + 1e-12), (ms[ts], exact[ts], se[ts])
    # Γ_t = ms_eps/β̄_t, and cov_x0 is the exact posterior variance s²β̄/(ᾱs² + β̄) of x0 given x_t
    cov = analytic.cov_x0_from_ms_eps(ms, abar)
    post = s**2 * (1 - abar) / (abar * s**2 + 1 - abar)
    scale = (1 - abar) / abar  # d cov / d ms_eps
    assert torch.all((cov[ts] - post[ts]).abs() < 4 * scale[ts] * se[ts] + 1e-12)
    # σ*² of the DDPM step t → s is exactly Var(x_s|x_t) for Gaussian data
    for t, s_ in [(50, 20), (20, 5), (5, 1)]:
        exact_var = analytic.optimal_variance_ddpm(abar[t], abar[s_], exact[t])
        assert float(exact_var) == pytest.approx(float(gaussian_reverse_var(abar, t, s_, s)), rel=1e-10)
        var = analytic.optimal_variance_ddpm(abar[t], abar[s_], ms[t])
        g2 = ddim.gamma(abar[t], abar[s_], ddim.beta_tilde(abar[t], abar[s_])) ** 2
        assert abs(float(var - exact_var)) < 4 * float(g2 * scale[t] * se[t]) + 1e-15


def test_control_variate_shrinks_the_error_where_eps_is_nearly_the_noise(gen):
    gm, abar = gaussian(d=8, s=0.5), schedules.linear_abar(100, 1e-3, 0.2)
    ts = torch.tensor([90, 100])
    args = (gm.eps_fn(abar), gm.sample(1000, generator=gen), abar, ts)
    _, se_plain = analytic.estimate_ms_eps(
        *args, m_per_t=400, generator=gen, control_variate=False, with_stderr=True
    )
    _, se_cv = analytic.estimate_ms_eps(*args, m_per_t=400, generator=gen, with_stderr=True)
    assert torch.all(se_cv[ts] < 0.2 * se_plain[ts])


def test_oracle_ms_eps_is_at_most_one_on_the_ring(gen):
    # ε* = E[ε|x_t], so E‖ε*‖² ≤ E‖ε‖² = d (Jensen); Monte Carlo may exceed 1 only within its error
    gm, abar = GaussianMixture.ring(), schedules.linear_abar(1000)
    ts = torch.tensor([1, 10, 100, 300, 600, 1000])
    ms, se = analytic.estimate_ms_eps(
        gm.eps_fn(abar),
        gm.sample(4000, generator=gen),
        abar,
        ts,
        m_per_t=2000,
        generator=gen,
        with_stderr=True,
    )
    assert torch.all(ms[ts] <= 1 + 3 * se[ts])
    assert ms[1] < 0.05  # at t = 1 the noise (std 0.01) is not identifiable inside a component of std 0.08


def test_analytic_ddpm_sampling_is_exact_for_gaussian_data(gen):
    # For Gaussian data q(x_s|x_t) is Gaussian with variance λ² + γ²Var(x0|x_t): the analytic step is exact,
    # so even K = 4 steps give the data's variance (minus the last step's tiny posterior variance).
    s, n = 0.5, 200
    gm, abar = gaussian(d=2, s=s, mu=0.0), schedules.linear_abar(n, 1e-3, 0.05)
    traj = schedules.trajectory("even", n, 4)
    ms = gaussian_ms_eps(abar, s)
    ms[0] = 0
    x = torch.randn(20000, 2, generator=gen, dtype=F64)
    kw = dict(variance="beta_tilde", generator=gen)
    out = ddim.sample(gm.eps_fn(abar), x, abar, traj, cov_x0=analytic.cov_fn(ms, abar), **kw)
    out_small = ddim.sample(gm.eps_fn(abar), x, abar, traj, **kw)
    post1 = s**2 * (1 - abar[1]) / (abar[1] * s**2 + 1 - abar[1])
    assert float(out.var()) == pytest.approx(s**2 - float(post1), rel=0.03)
    assert float(out_small.var()) < 0.8 * s**2  # σ² = β̃ under-disperses at few steps


# --------------------------------------------------------------------------------------------- trajectory
def _brute_force(j: torch.Tensor, n: int, k: int) -> tuple[float, list[int]]:
    best = (math.inf, [])
    for mid in itertools.combinations(range(2, n), k - 2):
        path = [1, *mid, n]
        cost = sum(float(j[s, t]) for s, t in itertools.pairwise(path))
        best = min(best, (cost, path))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_dp_trajectory_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    n, k = 12, 4
    abar = schedules.linear_abar(n, 1e-3, 0.3) if seed % 2 else schedules.cosine_abar(n)
    ms = torch.cat([torch.zeros(1, dtype=F64), torch.rand(n, generator=g, dtype=F64)])
    traj = analytic.optimal_trajectory(ms, abar, k)
    j = analytic.trajectory_cost(ms, abar)
    cost, path = _brute_force(j, n, k)
    assert traj.tolist() == path
    assert sum(float(j[s, t]) for s, t in itertools.pairwise(traj.tolist())) == pytest.approx(cost, rel=1e-12)


def test_optimal_trajectory_shapes_and_late_ms_eps_above_one():
    n = 100
    abar = schedules.linear_abar(n, 1e-3, 0.2)
    ms = 1 - 0.9 * abar  # a plausible increasing moment, ≤ 1
    traj = analytic.optimal_trajectory(ms, abar, 10)
    assert traj[0] == 1 and traj[-1] == n and len(traj) == 10 and bool((traj.diff() > 0).all())
    assert analytic.optimal_trajectory(ms, abar, n).tolist() == list(range(1, n + 1))
    bad = ms.clone()
    bad[91:] = 1.01  # late estimates above 1: the official split drops 2·10 steps and spaces them evenly
    split = analytic.optimal_trajectory(bad, abar, 10)
    assert split[0] == 1 and split[-1] == n and len(split) == 10 and bool((split.diff() > 0).all())
    assert int((split > n - 20).sum()) >= 1  # K2 ≥ 1 even steps on the dropped tail, the rest by DP on 1..80
    assert split[: int((split <= n - 20).sum())][-1] == n - 20
    early = ms.clone()
    early[30:] = 1.01
    with pytest.raises(ValueError, match="too early for the official split"):
        analytic.optimal_trajectory(early, abar, 10)


# --------------------------------------------------------------------------------------------- the rest
def test_penultimate_clip_numbers():
    # [ADPM] App. F.2: y = 2 gives 3.87e-4 and y = 1 gives 9.66e-5 for 8-bit data in [−1, 1]
    assert analytic.penultimate_max_var(2) == pytest.approx(3.87e-4, rel=2e-3)
    assert analytic.penultimate_max_var(1) == pytest.approx(9.66e-5, rel=2e-3)
    assert analytic.penultimate_max_var(1, levels=17) == pytest.approx((0.125 * math.sqrt(math.pi / 2)) ** 2)


def test_cov_fn_feeds_the_sampler_and_refuses_missing_timesteps():
    abar = schedules.linear_abar(10)
    ms = torch.full((11,), math.nan, dtype=F64)
    ms[0], ms[10] = 0, 0.5
    cov = analytic.cov_fn(ms, abar)
    assert float(cov(10, torch.zeros(1), torch.zeros(1))) == pytest.approx(
        float((1 - abar[10]) / abar[10] * 0.5)
    )
    with pytest.raises(ValueError, match="not estimated at t = 3"):
        cov(3, torch.zeros(1), torch.zeros(1))


def test_bad_arguments_raise_clear_errors():
    abar = schedules.linear_abar(10)
    ms = torch.full((11,), 0.5, dtype=F64)
    with pytest.raises(ValueError, match=r"ms_eps must be the \(11,\) table"):
        analytic.cov_x0_from_ms_eps(ms[1:], abar)
    with pytest.raises(ValueError, match="cannot be negative"):
        analytic.cov_x0_from_ms_eps(-ms, abar)
    with pytest.raises(ValueError, match=r"K must be an integer in 2\.\.N=10"):
        analytic.optimal_trajectory(ms, abar, 11)
    with pytest.raises(ValueError, match="η must be"):
        analytic.optimal_variance_ddim(abar[5], abar[2], 0.5, -0.1)
    ms_missing = ms.clone()
    ms_missing[4] = math.nan
    with pytest.raises(ValueError, match=r"every t = 1\.\.N"):
        analytic.optimal_trajectory(ms_missing, abar, 4)
    with pytest.raises(ValueError, match="timesteps must be"):
        analytic.estimate_ms_eps(lambda x, t: x, torch.zeros(4, 2), abar, torch.tensor([0, 3]))


def test_two_step_optimal_trajectory_is_the_only_one_even_with_late_ms_above_one():
    from kexue.diffusion import analytic, schedules

    abar = schedules.linear_abar(1000)
    ms = torch.full((1001,), 0.9, dtype=torch.float64)
    ms[0], ms[995:] = 0.0, 1.01
    assert analytic.optimal_trajectory(ms, abar, 2).tolist() == [1, 1000]


def test_analytic_variance_refuses_eta():
    from kexue.diffusion import likelihood

    with pytest.raises(ValueError, match="analytic_ddim"):
        likelihood.VarianceChoice("analytic", 0.5, lambda t, x, e: 0.1)
