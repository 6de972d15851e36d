"""Discrete distributions from perturbations ([9085]): closed forms against sampling, softmax as the Gumbel
case, and the post's four conditions (non-negative, normalised, order-preserving, shift-invariant)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from kexue.estimators import NOISES, argmax_probabilities, sample_argmax
from kexue.estimators.perturbation import quadrature

MU = torch.tensor([0.3, -0.4, 0.9, 0.1, -0.05], dtype=torch.float64)


@pytest.mark.parametrize("noise", sorted(NOISES))
def test_sampled_frequencies_match_the_closed_form(noise):
    n = 100_000
    p = argmax_probabilities(MU, noise)
    counts = torch.bincount(
        sample_argmax(MU, noise, n, generator=torch.Generator().manual_seed(0)), minlength=5
    )
    keep = p * n >= 5  # χ² needs expected counts ≥ 5
    expected = p[keep] / p[keep].sum() * counts[keep].sum()
    assert stats.chisquare(counts[keep].numpy(), expected.numpy()).pvalue > 1e-3


def test_gumbel_quadrature_is_softmax():
    """[9085] eq. 8: the integral with Gumbel's Φ evaluates to softmax."""
    quad = argmax_probabilities(MU, "gumbel", closed_form=False, nodes=200)
    torch.testing.assert_close(quad, torch.softmax(MU, -1), atol=1e-10, rtol=0)
    post = argmax_probabilities(MU, "gumbel", closed_form=False, nodes=20_000, rule="post")
    torch.testing.assert_close(post, torch.softmax(MU, -1), atol=2e-4, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(-2, 2), min_size=2, max_size=6, unique=True),
    st.floats(-10, 10),
    st.sampled_from(["normal", "logistic", "gumbel"]),
)
def test_the_posts_four_conditions(mu, c, noise):
    mu = torch.tensor(mu, dtype=torch.float64)
    p = argmax_probabilities(mu, noise, closed_form=False, nodes=64)
    assert (p >= 0).all()
    assert abs(float(p.sum()) - 1) < 1e-4  # 1 up to the quadrature's error in the tails
    bigger = mu[:, None] > mu[None, :]  # μ_i > μ_j ⇒ p_i ≥ p_j
    assert (p[:, None] >= p[None, :] - 1e-12)[bigger].all()
    shifted = argmax_probabilities(mu + c, noise, closed_form=False, nodes=64)
    torch.testing.assert_close(shifted, p, atol=1e-9, rtol=0)


def test_batched_and_bad_input():
    batch = torch.stack([MU, MU.flip(0)])
    out = argmax_probabilities(batch, "normal")
    torch.testing.assert_close(out[1], argmax_probabilities(MU.flip(0), "normal"))
    t, w = quadrature(7, "post")
    assert float(w.sum()) == pytest.approx(1) and (t > 0).all() and (t < 1).all()
    with pytest.raises(ValueError, match="unknown perturbation noise"):
        argmax_probabilities(MU, "cauchy")
    with pytest.raises(ValueError, match="rule"):
        quadrature(4, "simpson")
    with pytest.raises(ValueError, match="≥ 1 node"):
        quadrature(0)
