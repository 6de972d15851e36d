"""Reparameterizations and gradient estimators against closed forms, enumeration and Monte Carlo ([6705])."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from kexue.estimators import (
    MovingAverageBaseline,
    gaussian_kl,
    gaussian_kl_standard,
    gaussian_log_prob,
    gumbel_max,
    gumbel_softmax,
    reparameterize,
    score_function_surrogate,
    straight_through,
)
from kexue.estimators.score_function import leave_one_out_baseline

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ Gaussian
def test_reparameterized_gradient_of_a_quadratic_matches_the_closed_form():
    """E(μ + σε)² = μ² + σ²: the reparameterized Monte Carlo gradient is 2μ in μ and 2σ² in log σ²... per
    unit: d/dlogσ² (σ²) = σ². 200k samples, common ε."""
    mu = torch.tensor([0.7, -1.3], dtype=F64, requires_grad=True)
    logvar = torch.tensor([0.2, -0.5], dtype=F64, requires_grad=True)
    eps = torch.randn(200_000, 2, generator=gen(), dtype=F64)
    z = reparameterize(mu.expand(len(eps), 2), logvar.expand(len(eps), 2), eps=eps)
    z.pow(2).mean(0).sum().backward()
    torch.testing.assert_close(mu.grad, 2 * mu.detach(), atol=2e-2, rtol=0)
    torch.testing.assert_close(logvar.grad, logvar.detach().exp(), atol=2e-2, rtol=0)


def test_gaussian_kls_match_monte_carlo_and_torch_distributions():
    g = gen(1)
    mu1, mu2 = torch.randn(3, generator=g, dtype=F64), torch.randn(3, generator=g, dtype=F64)
    lv1, lv2 = torch.randn(3, generator=g, dtype=F64) * 0.5, torch.randn(3, generator=g, dtype=F64) * 0.5
    z = reparameterize(mu1.expand(400_000, 3), lv1.expand(400_000, 3), generator=g)
    mc = (gaussian_log_prob(z, mu1, lv1) - gaussian_log_prob(z, mu2, lv2)).mean()
    exact = gaussian_kl(mu1, lv1, mu2, lv2)
    assert abs(float(mc - exact)) < 0.02
    d = torch.distributions
    p, q = d.Normal(mu1, (0.5 * lv1).exp()), d.Normal(mu2, (0.5 * lv2).exp())
    torch.testing.assert_close(exact, d.kl_divergence(p, q).sum())
    torch.testing.assert_close(gaussian_log_prob(z[:5], mu1, lv1), p.log_prob(z[:5]).sum(-1))
    zero = torch.zeros(3, dtype=F64)
    torch.testing.assert_close(gaussian_kl_standard(mu1, lv1), gaussian_kl(mu1, lv1, zero, zero))
    with pytest.raises(ValueError, match="same shape"):
        reparameterize(mu1, lv1[:2])


# ------------------------------------------------------------------------------------------ Gumbel
def test_gumbel_max_frequencies_match_softmax():
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5], dtype=F64)
    n = 100_000
    counts = torch.bincount(gumbel_max(logits.expand(n, 5), generator=gen(2)), minlength=5)
    p = torch.softmax(logits, -1)
    chi2 = stats.chisquare(counts.numpy(), (p * n).numpy())
    assert chi2.pvalue > 1e-3


def test_gumbel_softmax_tends_to_the_gumbel_max_one_hot_as_tau_goes_to_zero():
    """Same noise: the relaxed sample's argmax is the Gumbel-max sample at every τ, and its mean distance
    to that one-hot shrinks to 0 as τ → 0 (slowly for rows whose top two perturbed logits nearly tie)."""
    logits = torch.randn(200, 6, generator=gen(3), dtype=F64)
    index = gumbel_max(logits, generator=gen(4))
    hard = torch.nn.functional.one_hot(index, 6).to(F64)
    errors = []
    for tau in (1, 0.1, 0.01, 1e-4):
        soft = gumbel_softmax(logits, tau, generator=gen(4))
        assert torch.equal(soft.argmax(-1), index)
        errors.append(float((soft - hard).abs().sum(-1).mean()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-3
    soft = gumbel_softmax(logits, 0.7, generator=gen(5))
    torch.testing.assert_close(soft.sum(-1), torch.ones(200, dtype=F64))
    with pytest.raises(ValueError, match="τ must be > 0"):
        gumbel_softmax(logits, 0.0)


def test_straight_through_is_one_hot_forward_and_soft_backward():
    logits = torch.randn(4, 5, generator=gen(6), dtype=F64, requires_grad=True)
    w = torch.randn(5, dtype=F64)
    probs = torch.softmax(logits, -1)
    y = straight_through(probs)
    torch.testing.assert_close(
        y.detach(), torch.nn.functional.one_hot(probs.argmax(-1), 5).to(F64), atol=1e-15, rtol=0
    )
    (g_st,) = torch.autograd.grad((y * w).sum(), logits)
    (g_soft,) = torch.autograd.grad((torch.softmax(logits, -1) * w).sum(), logits)
    torch.testing.assert_close(g_st, g_soft)
    hard = gumbel_softmax(logits, 0.5, hard=True, generator=gen(7))
    assert ((hard.detach() - hard.detach().round()).abs() < 1e-15).all() and (
        hard.detach().round().sum(-1) == 1
    ).all()


# ------------------------------------------------------------------------------------------ score function
def categorical_setup():
    logits = torch.tensor([0.5, -0.2, 1.0, 0.0], dtype=F64, requires_grad=True)
    f = torch.tensor([3.0, -1.0, 0.5, 2.0], dtype=F64)  # any function of the category
    (exact,) = torch.autograd.grad((torch.softmax(logits, -1) * f).sum(), logits)  # by enumeration
    return logits, f, exact


def sf_gradients(logits, f, n, baseline, seed):
    """n single-sample REINFORCE gradients (n, K): (f(y) − b)·∇ log p(y) = (f(y) − b)(onehot(y) − p)."""
    y = gumbel_max(logits.detach().expand(n, -1), generator=gen(seed))
    fy = f[y]
    b = baseline(fy) if callable(baseline) else baseline
    p = torch.softmax(logits.detach(), -1)
    rows = (fy - b)[:, None] * (torch.nn.functional.one_hot(y, len(p)).to(F64) - p)
    # the surrogate's autograd gradient is the sum of these rows
    surrogate = score_function_surrogate(torch.log_softmax(logits, -1)[y], fy, b)
    torch.testing.assert_close(torch.autograd.grad(surrogate.sum(), logits)[0], rows.sum(0))
    return rows


@pytest.mark.parametrize("baseline", ["none", "constant", "leave-one-out"])
def test_score_function_is_unbiased_against_enumeration(baseline):
    logits, f, exact = categorical_setup()
    n = 50_000
    b = {"none": 0.0, "constant": 1.2, "leave-one-out": leave_one_out_baseline}[baseline]
    rows = sf_gradients(logits, f, n, b, seed=8)
    mean, se = rows.mean(0), rows.std(0) / math.sqrt(n)
    assert ((mean - exact).abs() < 5 * se + 1e-12).all(), (mean, exact, se)


def test_a_good_baseline_lowers_the_variance():
    logits, f, _ = categorical_setup()
    plain = sf_gradients(logits, f, 20_000, 0.0, seed=9).var(0).sum()
    loo = sf_gradients(logits, f, 20_000, leave_one_out_baseline, seed=9).var(0).sum()
    assert loo < 0.5 * plain


def test_moving_average_baseline_uses_only_past_values():
    b = MovingAverageBaseline(0.5)
    assert float(b(torch.tensor([2.0, 4.0]))) == 0.0  # nothing seen yet
    assert float(b(torch.tensor([0.0]))) == 3.0
    assert float(b(torch.tensor([1.0]))) == 1.5  # 0.5·3 + 0.5·0
    with pytest.raises(ValueError, match="decay"):
        MovingAverageBaseline(1.0)
    with pytest.raises(ValueError, match="one entry per sample"):
        score_function_surrogate(torch.zeros(3), torch.zeros(2))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=8), st.floats(-3, 3))
def test_gumbel_softmax_is_shift_invariant_and_normalised(logits, c):
    o = torch.tensor(logits, dtype=F64)
    a = gumbel_softmax(o, 0.5, generator=gen(10))
    b = gumbel_softmax(o + c, 0.5, generator=gen(10))
    torch.testing.assert_close(a, b)
    assert abs(float(a.sum()) - 1) < 1e-12 and (a >= 0).all()
