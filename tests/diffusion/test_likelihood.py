"""The trajectory NELBO: decoder normalisation, a closed-form check on Gaussian data, the 2-D oracle table."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from kexue.diffusion import analytic, ddim, likelihood, schedules
from kexue.diffusion.oracle import GaussianMixture

F64 = torch.float64


# --------------------------------------------------------------------------------------------- decoder
@pytest.mark.parametrize("levels", [2, 17, 256])
def test_discrete_decoder_sums_to_one_over_all_bins(levels, gen):
    x = torch.linspace(-1, 1, levels, dtype=F64)[:, None]  # (L, 1) every level
    mean = torch.cat(
        [torch.rand(5, generator=gen, dtype=F64) * 3 - 1.5, torch.tensor([-1.0, 1.0], dtype=F64)]
    )
    for var in (1e-6, 5.4e-5, 0.01, 1.0):
        lp = likelihood.discretized_gaussian_log_prob(x, mean[None, :], var, half_width=1 / (levels - 1))
        assert torch.allclose(lp.exp().sum(0), torch.ones(len(mean), dtype=F64), atol=1e-12), (levels, var)


def test_discrete_decoder_is_accurate_in_the_far_tails():
    mpmath.mp.dps = 50
    h = 1 / 16
    cases = [(0.5, -1.0, 1e-4), (-0.5, 0.9, 1e-3), (0.0, 0.01, 1e-6), (1.0, -0.9, 1e-2), (-1.0, 0.3, 1e-3)]
    for x, mu, var in cases:
        got = likelihood.discretized_gaussian_log_prob(
            torch.tensor([x], dtype=F64), torch.tensor([mu], dtype=F64), var, half_width=h
        )
        s = mpmath.sqrt(var)
        lo = -mpmath.inf if x < -1 + h else (x - mu - h) / s
        hi = mpmath.inf if x > 1 - h else (x - mu + h) / s
        if lo > 0:  # mirror into the left tail, where erfc keeps its relative precision
            lo, hi = -hi, -lo
        want = mpmath.log((mpmath.erfc(-hi / mpmath.sqrt(2)) - mpmath.erfc(-lo / mpmath.sqrt(2))) / 2)
        assert math.isfinite(float(got)) and float(got) == pytest.approx(float(want), rel=1e-9), (x, mu, var)


# --------------------------------------------------------------------------------------------- Gaussian data
def _closed_form_nelbo(abar, traj, s, mu, d, lam2_var):
    """E NELBO for data N(μ, s²I) under the oracle ε*: x̂0 = E[x0|x_t], so E(x0 − x̂0)² = c_t per element,
    c_t = s²β̄_t/(ᾱ_t s² + β̄_t). Prior: ½(β̄_T + ᾱ_T(μ² + s²) − 1 − log β̄_T) per element. Step:
    ½(λ²/σ² − 1 − log(λ²/σ²)) + γ²c_t/(2σ²). Continuous decoder N(x̂0, v): ½log(2πv) + c_{τ_1}/(2v)."""
    c = s**2 * (1 - abar) / (abar * s**2 + 1 - abar)
    a_n = abar[int(traj[-1])]
    total = 0.5 * ((1 - a_n) + a_n * (mu**2 + s**2) - 1 - torch.log(1 - a_n))
    for t, s_ in schedules.steps(traj):
        if s_ == 0:
            v = ddim.beta_tilde(abar[2], abar[1])
            total += 0.5 * torch.log(2 * math.pi * v) + c[t] / (2 * v)
            break
        lam2, var = lam2_var(abar[t], abar[s_], c[t])
        g2 = ddim.gamma(abar[t], abar[s_], lam2) ** 2
        total += 0.5 * (lam2 / var - 1 - torch.log(lam2 / var)) + g2 * c[t] / (2 * var)
    return d * float(total)


def test_nelbo_on_gaussian_data_matches_the_closed_form(gen):
    s, mu, d, n = 0.5, 0.3, 4, 100
    gm = GaussianMixture(
        torch.full((1, d), mu, dtype=F64), torch.tensor([s], dtype=F64), torch.ones(1, dtype=F64)
    )
    abar = schedules.linear_abar(n, 1e-3, 0.1)
    traj = schedules.trajectory("even", n, 6)
    ms = (1 - abar) / (abar * s**2 + 1 - abar)  # closed-form E‖ε*‖²/d
    bt = ddim.beta_tilde
    cases = {
        "beta_tilde": (likelihood.choice("beta_tilde"), lambda at, as_, c: (bt(at, as_), bt(at, as_))),
        "beta": (likelihood.choice("beta"), lambda at, as_, c: (bt(at, as_), 1 - at / as_)),
        "ddim": (likelihood.choice("ddim", eta=0.5), lambda at, as_, c: (0.25 * bt(at, as_),) * 2),
        "analytic": (
            likelihood.choice("analytic", ms_eps=ms, abar=abar),
            lambda at, as_, c: (bt(at, as_), bt(at, as_) + ddim.gamma(at, as_, bt(at, as_)) ** 2 * c),
        ),
    }
    x0 = gm.sample(20000, generator=gen)
    got = likelihood.nelbo_many(
        gm.eps_fn(abar),
        x0,
        abar,
        traj,
        {k: v[0] for k, v in cases.items()},
        levels=None,
        clip_x0=False,
        generator=gen,
    )
    for name, (_, lam2_var) in cases.items():
        want = _closed_form_nelbo(abar, traj, s, mu, d, lam2_var)
        se = float(got[name].std()) / math.sqrt(len(x0))
        assert abs(float(got[name].mean()) - want) < 4 * se, (name, float(got[name].mean()), want, se)
    # the optimal variance makes each step's expected KL (d/2)·log(σ*²/λ²) ([ADPM] Thm 1)
    terms = likelihood.nelbo_terms(
        gm.eps_fn(abar),
        x0,
        abar,
        traj,
        {"a": cases["analytic"][0]},
        levels=None,
        clip_x0=False,
        generator=gen,
    )["a"]
    for row, (t, s_) in zip(terms[1:-1], schedules.steps(traj), strict=False):
        ratio = analytic.optimal_variance_ddpm(abar[t], abar[s_], ms[t]) / bt(abar[t], abar[s_])
        se = float(row.std()) / math.sqrt(len(x0))
        assert abs(float(row.mean()) - d / 2 * math.log(ratio)) < 4 * se + 1e-12


# --------------------------------------------------------------------------------------------- 2-D oracle
# reference/diffusion.md §2.6 [R]: 8 Gaussians (radius 0.8, std 0.08), linear β, N = 1000, exact ε*, ET,
# one shared decoder; negative ELBO in nats/dim
RING_TABLE = {10: (393.7, 0.929, 0.864), 50: (16.0, 0.399, 0.224)}


@pytest.mark.parametrize("k", sorted(RING_TABLE))
def test_oracle_ring_ordering_and_reference_table(k, gen):
    gm, abar = GaussianMixture.ring(), schedules.linear_abar(1000)
    eps_fn = gm.eps_fn(abar)
    traj = schedules.trajectory("even", 1000, k)
    ms = analytic.estimate_ms_eps(
        eps_fn, gm.sample(20000, generator=gen), abar, traj, m_per_t=2000, generator=gen
    )
    choices = {
        "beta_tilde": likelihood.choice("beta_tilde"),
        "beta": likelihood.choice("beta"),
        "analytic": likelihood.choice("analytic", ms_eps=ms, abar=abar),
    }
    x0 = gm.sample(6000, generator=gen)
    out = likelihood.nelbo_many(eps_fn, x0, abar, traj, choices, levels=None, clip_x0=False, generator=gen)
    per_dim = {name: likelihood.nats_per_dim(v, 2) for name, v in out.items()}
    mean = {name: float(v.mean()) for name, v in per_dim.items()}
    se = {name: float(v.std()) / math.sqrt(len(x0)) for name, v in per_dim.items()}
    for name, ref in zip(choices, RING_TABLE[k], strict=True):
        # the reference values carry their own Monte Carlo error of a similar size: 4 of ours
        assert abs(mean[name] - ref) < 4 * se[name], (name, mean[name], ref, se[name])
    for hi, lo in (("beta_tilde", "beta"), ("beta", "analytic")):  # paired: same draws for every choice
        diff = per_dim[hi] - per_dim[lo]
        assert float(diff.mean()) > 3 * float(diff.std()) / math.sqrt(len(x0)), (hi, lo)


# --------------------------------------------------------------------------------------------- API
def test_single_choice_equals_the_shared_draws_and_per_element_cov(gen):
    abar = schedules.linear_abar(50)
    traj = schedules.trajectory("even", 50, 5)
    x0 = (torch.randint(0, 17, (8, 1, 2, 2), generator=gen) / 8 - 1).to(F64)
    eps_fn = lambda x, t: 0.3 * x  # noqa: E731  any deterministic ε̂
    ms = torch.full((51,), 0.7, dtype=F64)
    ms[0] = 0
    kw = dict(levels=17, generator=torch.Generator().manual_seed(3))
    one = likelihood.nelbo(eps_fn, x0, abar, traj, variance="analytic", ms_eps=ms, **kw)
    cov = analytic.cov_x0_from_ms_eps(ms, abar)
    per_element = likelihood.choice("analytic", cov_x0=lambda t, x, e: cov[t].expand_as(x).clone())
    kw["generator"] = torch.Generator().manual_seed(3)
    many = likelihood.nelbo_many(
        eps_fn, x0, abar, traj, {"pe": per_element, "b": likelihood.choice("beta")}, **kw
    )
    assert one.shape == (8,) and torch.allclose(one, many["pe"], rtol=1e-12)
    assert float(likelihood.bits_per_dim(one.mean(), 4)) == pytest.approx(
        float(one.mean()) / (4 * math.log(2))
    )


def test_bad_arguments_raise_clear_errors():
    abar = schedules.linear_abar(20)
    traj = schedules.trajectory("even", 20, 4)
    x0 = torch.zeros(2, 3, dtype=F64)
    eps_fn = lambda x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="unknown variance 'small'"):
        likelihood.nelbo(eps_fn, x0, abar, traj, variance="small")
    with pytest.raises(ValueError, match="η must be a finite number ≥ 0"):
        likelihood.nelbo(eps_fn, x0, abar, traj, variance="ddim", eta=-0.5)
    with pytest.raises(ValueError, match="deterministic"):
        likelihood.nelbo(eps_fn, x0, abar, traj, variance="ddim", eta=0.0)
    with pytest.raises(ValueError, match="need cov_x0"):
        likelihood.nelbo(eps_fn, x0, abar, traj, variance="analytic")
    with pytest.raises(ValueError, match=r"ms_eps must be the \(21,\) table"):
        likelihood.nelbo(eps_fn, x0, abar, traj, variance="analytic", ms_eps=torch.full((20,), 0.5))
    with pytest.raises(ValueError, match="levels must be an integer ≥ 2"):
        likelihood.nelbo(eps_fn, x0, abar, traj, levels=1)
    with pytest.raises(ValueError, match="strictly increasing"):
        likelihood.nelbo(eps_fn, x0, abar, torch.tensor([1, 5, 5, 20]))
    with pytest.raises(ValueError, match=r"K must be an integer in 1\.\.N=20"):
        schedules.trajectory("even", 20, 21)  # K > N is refused where trajectories are made
