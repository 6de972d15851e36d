"""The GAN loss zoo against its formulas: values, signs and gradients on fixed logits (float64).

References are written independently of kexue.gan.losses: with log σ instead of softplus, and the
relativistic means as explicit sums; closed-form gradients where they are short.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.gan import losses as L

F64 = torch.float64


def logits(seed: int, n: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c_r = (2 * torch.randn(n, generator=g, dtype=F64)).requires_grad_(True)
    c_f = (2 * torch.randn(n, generator=g, dtype=F64)).requires_grad_(True)
    return c_r, c_f


def log_sig(x):
    return torch.log(torch.sigmoid(x))


def log_one_minus_sig(x):
    return torch.log(1 - torch.sigmoid(x))


def mean(x):
    return x.sum() / x.numel()


# Written formulas (critic loss, generator loss); real → high.
REFERENCE = {
    "sgan": (
        lambda r, f: -mean(log_sig(r)) - mean(log_one_minus_sig(f)),
        lambda r, f: mean(log_one_minus_sig(f)),
    ),
    "ns": (
        lambda r, f: -mean(log_sig(r)) - mean(log_one_minus_sig(f)),
        lambda r, f: -mean(log_sig(f)),
    ),
    "lsgan": (
        lambda r, f: 0.5 * mean((r - 1) ** 2) + 0.5 * mean(f**2),
        lambda r, f: 0.5 * mean((f - 1) ** 2),
    ),
    "hinge": (
        lambda r, f: mean(torch.clamp(1 - r, min=0)) + mean(torch.clamp(1 + f, min=0)),
        lambda r, f: -mean(f),
    ),
    "wgan-gp": (lambda r, f: mean(f) - mean(r), lambda r, f: -mean(f)),
    "rsgan": (lambda r, f: -mean(log_sig(r - f)), lambda r, f: -mean(log_sig(f - r))),
    "rasgan": (
        lambda r, f: -0.5 * (mean(log_sig(r - mean(f))) + mean(log_one_minus_sig(f - mean(r)))),
        lambda r, f: -0.5 * (mean(log_one_minus_sig(r - mean(f))) + mean(log_sig(f - mean(r)))),
    ),
    "ralsgan": (
        lambda r, f: 0.5 * (mean((r - mean(f) - 1) ** 2) + mean((f - mean(r) + 1) ** 2)),
        lambda r, f: 0.5 * (mean((r - mean(f) + 1) ** 2) + mean((f - mean(r) - 1) ** 2)),
    ),
    "rahinge": (
        lambda r, f: (
            0.5 * (mean(torch.clamp(1 - (r - mean(f)), min=0)) + mean(torch.clamp(1 + (f - mean(r)), min=0)))
        ),
        lambda r, f: (
            0.5 * (mean(torch.clamp(1 + (r - mean(f)), min=0)) + mean(torch.clamp(1 - (f - mean(r)), min=0)))
        ),
    ),
}


def grads(value, *xs):
    return torch.autograd.grad(value, xs, allow_unused=True)


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_values_and_gradients_match_the_written_formulas(name, seed):
    loss = L.gan_loss(name)
    ref_d, ref_g = REFERENCE[name]
    c_r, c_f = logits(seed)
    for ours, ref in (
        (loss.critic_loss(c_r, c_f), ref_d(c_r, c_f)),
        (loss.generator_loss(c_r, c_f), ref_g(c_r, c_f)),
    ):
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
        for a, b in zip(grads(ours, c_r, c_f), grads(ref, c_r, c_f)):
            if b is None:
                assert a is None or torch.all(a == 0)
            else:
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_closed_form_gradients():
    """Short hand derivations: d/dc of the per-batch means."""
    c_r, c_f = logits(3)
    n = len(c_r)
    # NS generator: d/dc_f mean softplus(−c_f) = −σ(−c_f)/n
    (g,) = grads(L.gan_loss("ns").generator_loss(None, c_f), c_f)
    torch.testing.assert_close(g, -torch.sigmoid(-c_f) / n)
    # hinge critic: −1[c_r < 1]/n on the real logits, +1[c_f > −1]/n on the fake ones
    g_r, g_f = grads(L.gan_loss("hinge").critic_loss(c_r, c_f), c_r, c_f)
    torch.testing.assert_close(g_r, -(c_r < 1).double() / n)
    torch.testing.assert_close(g_f, (c_f > -1).double() / n)
    # RSGAN critic: with s = σ(−(c_r − c_f)), d/dc_r = −s/n and d/dc_f = +s/n (paired, not batch means)
    g_r, g_f = grads(L.gan_loss("rsgan").critic_loss(c_r, c_f), c_r, c_f)
    s = torch.sigmoid(-(c_r - c_f))
    torch.testing.assert_close(g_r, -s / n)
    torch.testing.assert_close(g_f, s / n)


def test_relativistic_generator_losses_are_not_the_standard_one():
    """PyTorch-GAN #52 overwrote RaGAN's generator loss with the standard one: ours reads C_r."""
    c_r, c_f = logits(4)
    for name in ("rsgan", "rasgan", "ralsgan", "rahinge", "gan-qp-l1"):
        loss = L.gan_loss(name)
        assert loss.uses_real_in_g
        g_r, _ = grads(loss.generator_loss(c_r, c_f, torch.ones(len(c_r))), c_r, c_f)
        assert g_r is not None and g_r.abs().sum() > 0, name
        with pytest.raises(ValueError, match="real scores"):
            loss.generator_loss(None, c_f)
    ras = L.gan_loss("rasgan").generator_loss(c_r, c_f)
    assert not torch.allclose(ras, L.gan_loss("ns").generator_loss(None, c_f))


def test_rasgan_fake_term_uses_c_f_minus_mean_real():
    """RelativisticGAN #2: the fake term is BCE(C_f − m_r, 0), not BCE(m_f − C_r, 0). Raising every real
    score by t lowers the critic loss through both terms (C_r − m_f up, C_f − m_r down)."""
    c_r, c_f = logits(5)
    d = L.gan_loss("rasgan").critic_loss
    assert d(c_r + 1.0, c_f) < d(c_r, c_f)
    fake_term = lambda r, f: L.bce_fake(f - r.mean()).mean()  # noqa: E731
    wrong = lambda r, f: L.bce_fake(f.mean() - r).mean()  # noqa: E731
    ours = 2 * d(c_r, c_f) - L.bce_real(c_r - c_f.mean()).mean()
    torch.testing.assert_close(ours, fake_term(c_r, c_f))
    assert not torch.allclose(ours, wrong(c_r, c_f))


# ------------------------------------------------------------------------------------------ GAN-QP
def test_qp_distance_uses_per_pixel_means():
    x_r = torch.zeros(2, 1, 4, 4)
    x_f = torch.cat([torch.full((1, 1, 4, 4), 0.5), torch.full((1, 1, 4, 4), -2.0)])
    torch.testing.assert_close(L.qp_distance(x_r, x_f, "l1"), torch.tensor([5.0, 20.0]))
    torch.testing.assert_close(L.qp_distance(x_r, x_f, "l2", lam=1.0), torch.tensor([0.5, 2.0]))
    with pytest.raises(ValueError, match="'l1' or 'l2'"):
        L.qp_distance(x_r, x_f, "l3")
    with pytest.raises(ValueError, match="pairs"):
        L.qp_distance(x_r, x_f[:1], "l1")


@settings(max_examples=25, deadline=None)
@given(lam_d=st.floats(0.05, 20.0), start=st.floats(-3.0, 3.0))
def test_gan_qp_two_point_masses_reach_half_lambda_d(lam_d, start):
    """Tabular critic on two point masses ([6163]): max_Δ Δ − Δ²/(2λd) at Δ* = λd, value λd/2.
    Newton's method on the (quadratic) loss lands there in one step."""
    t = torch.tensor([start, 0.0], dtype=F64, requires_grad=True)  # T(x_r), T(x_f)
    dist = torch.tensor([lam_d], dtype=F64)
    loss = L.gan_loss("gan-qp-l1").critic_loss(t[:1], t[1:], dist)
    (g,) = torch.autograd.grad(loss, t, create_graph=True)
    delta = (t[0] - t[1]).detach() - g[0].detach() / (1 / lam_d)  # Newton step in Δ (curvature 1/λd)
    assert math.isclose(float(delta), lam_d, rel_tol=1e-9)
    value = float(delta - delta**2 / (2 * lam_d))
    assert math.isclose(value, lam_d / 2, rel_tol=1e-9)


def test_gan_qp_generator_loss_has_no_quadratic_term():
    c_r, c_f = logits(6)
    dist = torch.full((len(c_r),), 0.1)  # a tiny λd would dominate a quadratic term
    loss = L.gan_loss("gan-qp-l2")
    torch.testing.assert_close(loss.generator_loss(c_r, c_f, dist), (c_r - c_f).mean())
    with pytest.raises(ValueError, match="pair distances"):
        loss.critic_loss(c_r, c_f)


# ------------------------------------------------------------------------------------------ interface
def test_shapes_and_names_are_checked():
    c = torch.zeros(4)
    loss = L.gan_loss("ns")
    torch.testing.assert_close(loss.critic_loss(c[:, None], c[:, None]), loss.critic_loss(c, c))
    with pytest.raises(ValueError, match=r"\(B,\) or \(B, 1\)"):
        loss.critic_loss(torch.zeros(4, 2), c)
    with pytest.raises(ValueError, match="one to one"):
        loss.critic_loss(c, c[:3])
    with pytest.raises(ValueError, match="unknown GAN loss 'wgan'"):
        L.gan_loss("wgan")


@pytest.mark.parametrize("name", sorted(L.LOSSES))
def test_single_loss_value_is_the_critic_loss_and_its_gradient_split_is_exact(name):
    """[6387]: L_D(C_r, C(sg x_f)) + [L_G(C_r, C(x_f)) − L_G(C_r, C(sg x_f))] has L_D's value; with the
    critic's outputs as stand-ins, d/dC(sg x_f) and d/dC_r give ∇_D L_D (plus the bracket's cancelling
    parts), d/dC(x_f) gives ∇ L_G."""
    loss = L.gan_loss(name)
    c_r, c_f = logits(7)
    c_f_sg = c_f.detach().clone().requires_grad_(True)  # the same values, a separate leaf
    dist = torch.full((len(c_r),), 3.0)
    total = L.single_loss(loss, c_r, c_f_sg, c_f, dist)
    torch.testing.assert_close(total, loss.critic_loss(c_r, c_f_sg, dist))
    g_r, g_sg, g_f = grads(total, c_r, c_f_sg, c_f)
    d_r, d_f = grads(loss.critic_loss(c_r, c_f_sg, dist), c_r, c_f_sg)
    (gg_f,) = grads(loss.generator_loss(c_r, c_f, dist), c_f)
    # the critic's own gradient: through C_r and C(sg x_f), the generator term's parts cancel in
    # the network (C(x_f) and C(sg x_f) share its weights); the generator gets d L_G / d C(x_f)
    torch.testing.assert_close(g_f, gg_f)
    (gg_sg,) = grads(loss.generator_loss(c_r, c_f_sg, dist), c_f_sg)
    torch.testing.assert_close(g_sg, d_f - gg_sg)
    if g_r is not None:
        torch.testing.assert_close(g_r, d_r if d_r is not None else torch.zeros_like(g_r))
