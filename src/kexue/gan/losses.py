"""The GAN loss zoo behind one interface: a critic loss and a generator loss of the critic's outputs.

One sign convention for every loss here: **the critic scores real samples high**. C_r = C(x_r) and
C_f = C(x_f) are the critic's outputs (logits for the BCE losses), shape (B,) or (B, 1); m_r, m_f their
batch means; BCE(c, 1) = softplus(−c) and BCE(c, 0) = softplus(c) (numerically stable, with logits).
(O-GAN and the single-loss hinge example of [6387] score real samples LOW; `kexue.gan.ogan` keeps the
paper's own convention.)

Each loss as (critic loss L_D; generator loss L_G):
- sgan:    BCE(C_r, 1) + BCE(C_f, 0);  −BCE(C_f, 0) = E log(1 − σ(C_f))  (the original minimax loss)
- ns:      as sgan;  BCE(C_f, 1)  (non-saturating)
- lsgan:   ½E(C_r − 1)² + ½E C_f²;  ½E(C_f − 1)²
- hinge:   E relu(1 − C_r) + E relu(1 + C_f);  −E C_f
- wgan-gp: E C_f − E C_r (the model adds the gradient penalty);  −E C_f
- rsgan:   BCE(C_r − C_f, 1);  BCE(C_f − C_r, 1)
- rasgan:  ½[BCE(C_r − m_f, 1) + BCE(C_f − m_r, 0)];  ½[BCE(C_r − m_f, 0) + BCE(C_f − m_r, 1)]
- ralsgan: ½[E(C_r − m_f − 1)² + E(C_f − m_r + 1)²];  ½[E(C_r − m_f + 1)² + E(C_f − m_r − 1)²]
- rahinge: ½[E relu(1 − (C_r − m_f)) + E relu(1 + (C_f − m_r))];  the same with real and fake swapped
- gan-qp-l1, gan-qp-l2: E[−Δ + Δ²/(2λd)] with Δ = C_r − C_f;  E Δ

Sources: SGAN/NS — Goodfellow et al. 2014; LSGAN — Mao et al. 2017 (a = 0, b = c = 1); hinge — Lim & Ye
2017, Miyato et al. 2018; WGAN-GP — Gulrajani et al. 2017; relativistic — Jolicoeur-Martineau 2018, [6110]
(RSGAN pairs x_r[i] with x_f[i]; the known bugs avoided: the original RaSGAN code's m_f − C_r in the fake
term, and PyTorch-GAN overwriting the relativistic generator loss with the standard one); GAN-QP —
Su 2018, arXiv 1811.07296, [6163]: the quadratic term belongs to the critic only, and λd uses per-pixel
*means*, d_L1 = mean|x_r − x_f|, d_L2 = √mean(x_r − x_f)², λ = 10 (`qp_distance`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]  # (C_r, C_f, λd or None) → scalar


def _flat(c: Tensor, name: str) -> Tensor:
    if c.dim() == 2 and c.shape[1] == 1:
        return c[:, 0]
    if c.dim() != 1:
        raise ValueError(f"{name}: the critic's outputs must have shape (B,) or (B, 1), got {tuple(c.shape)}")
    return c


def _pair(c_r: Tensor, c_f: Tensor) -> tuple[Tensor, Tensor]:
    c_r, c_f = _flat(c_r, "C(x_r)"), _flat(c_f, "C(x_f)")
    if c_r.shape != c_f.shape:
        raise ValueError(
            f"real and fake critic outputs must pair up one to one, got {len(c_r)} real and {len(c_f)} fake"
        )
    return c_r, c_f


def bce_real(c: Tensor) -> Tensor:
    """BCE(c, 1) = −log σ(c) = softplus(−c), per element."""
    return F.softplus(-c)


def bce_fake(c: Tensor) -> Tensor:
    """BCE(c, 0) = −log(1 − σ(c)) = softplus(c), per element."""
    return F.softplus(c)


# ------------------------------------------------------------------------------------- standard family
def sgan_d(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    return bce_real(c_r).mean() + bce_fake(c_f).mean()


def sgan_g(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    return -bce_fake(c_f).mean()  # min_G E log(1 − D(G(z))): the original minimax (saturating) loss


def ns_g(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    return bce_real(c_f).mean()  # min_G −E log D(G(z))


def lsgan_d(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    return 0.5 * (c_r - 1).pow(2).mean() + 0.5 * c_f.pow(2).mean()


def lsgan_g(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    return 0.5 * (c_f - 1).pow(2).mean()


def hinge_d(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    return F.relu(1 - c_r).mean() + F.relu(1 + c_f).mean()


def wasserstein_d(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    return c_f.mean() - c_r.mean()


def critic_score_g(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    return -c_f.mean()  # hinge and WGAN generators: raise the critic's score of the fakes


# ------------------------------------------------------------------------------------- relativistic [6110]
def rsgan_d(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    return bce_real(c_r - c_f).mean()  # P(x_r more real than x_f) = σ(C_r − C_f) → 1


def rsgan_g(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    return bce_real(c_f - c_r).mean()


def rasgan_d(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    m_r, m_f = c_r.mean(), c_f.mean()
    return 0.5 * (bce_real(c_r - m_f).mean() + bce_fake(c_f - m_r).mean())


def rasgan_g(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    m_r, m_f = c_r.mean(), c_f.mean()
    return 0.5 * (bce_fake(c_r - m_f).mean() + bce_real(c_f - m_r).mean())


def ralsgan_d(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    m_r, m_f = c_r.mean(), c_f.mean()
    return 0.5 * ((c_r - m_f - 1).pow(2).mean() + (c_f - m_r + 1).pow(2).mean())


def ralsgan_g(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    m_r, m_f = c_r.mean(), c_f.mean()
    return 0.5 * ((c_r - m_f + 1).pow(2).mean() + (c_f - m_r - 1).pow(2).mean())


def rahinge_d(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    m_r, m_f = c_r.mean(), c_f.mean()
    return 0.5 * (F.relu(1 - (c_r - m_f)).mean() + F.relu(1 + (c_f - m_r)).mean())


def rahinge_g(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    m_r, m_f = c_r.mean(), c_f.mean()
    return 0.5 * (F.relu(1 + (c_r - m_f)).mean() + F.relu(1 - (c_f - m_r)).mean())


# ------------------------------------------------------------------------------------- GAN-QP [6163]
def qp_distance(x_r: Tensor, x_f: Tensor, kind: str = "l1", lam: float = 10.0) -> Tensor:
    """λ·d(x_r[i], x_f[i]) per pair, shape (B,), with d the per-pixel MEAN distance of GAN-QP's code.

    l1: λ·mean|x_r − x_f|;  l2: λ·√mean(x_r − x_f)². Pass detached fakes: the distance only scales the
    critic's quadratic term."""
    if x_r.shape != x_f.shape:
        raise ValueError(
            f"GAN-QP pairs x_r[i] with x_f[i]: shapes {tuple(x_r.shape)} and {tuple(x_f.shape)} differ"
        )
    diff = (x_r - x_f).flatten(1)
    if kind == "l1":
        return lam * diff.abs().mean(1)
    if kind == "l2":
        return lam * diff.pow(2).mean(1).sqrt()
    raise ValueError(f"the GAN-QP distance is 'l1' or 'l2', got {kind!r}")


def qp_d(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    """E[−Δ + Δ²/(2λd)]: maximises E Δ with a quadratic brake that makes |Δ*| ≤ λd ([6163] eq. 13)."""
    if dist is None:
        raise ValueError("the GAN-QP critic loss needs the pair distances λ·d(x_r, x_f) (see qp_distance)")
    delta = c_r - c_f
    return (-delta + 0.5 * delta.pow(2) / dist.clamp_min(1e-8)).mean()


def qp_g(c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
    return (c_r - c_f).mean()  # no quadratic term in the generator's loss ([6163])


@dataclass(frozen=True)
class GANLoss:
    """A critic loss and a generator loss of (C_r, C_f[, λd]); `uses_real_in_g`: the generator's loss
    reads C_r (relativistic and GAN-QP), `distance`: "l1"/"l2" for GAN-QP's λd, `gradient_penalty`: the
    critic loss is meant to carry WGAN-GP's penalty."""

    name: str
    d: LossFn
    g: LossFn
    uses_real_in_g: bool = False
    distance: str | None = None
    gradient_penalty: bool = False

    def critic_loss(self, c_r: Tensor, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
        c_r, c_f = _pair(c_r, c_f)
        return self.d(c_r, c_f, dist)

    def generator_loss(self, c_r: Tensor | None, c_f: Tensor, dist: Tensor | None = None) -> Tensor:
        if c_r is None:
            if self.uses_real_in_g:
                raise ValueError(f"the {self.name} generator loss compares with the critic's real scores C_r")
            c_r = torch.zeros_like(_flat(c_f, "C(x_f)"))  # unused by this loss
        c_r, c_f = _pair(c_r, c_f)
        return self.g(c_r, c_f, dist)


LOSSES: dict[str, GANLoss] = {
    loss.name: loss
    for loss in (
        GANLoss("sgan", sgan_d, sgan_g),
        GANLoss("ns", sgan_d, ns_g),
        GANLoss("lsgan", lsgan_d, lsgan_g),
        GANLoss("hinge", hinge_d, critic_score_g),
        GANLoss("wgan-gp", wasserstein_d, critic_score_g, gradient_penalty=True),
        GANLoss("rsgan", rsgan_d, rsgan_g, uses_real_in_g=True),
        GANLoss("rasgan", rasgan_d, rasgan_g, uses_real_in_g=True),
        GANLoss("ralsgan", ralsgan_d, ralsgan_g, uses_real_in_g=True),
        GANLoss("rahinge", rahinge_d, rahinge_g, uses_real_in_g=True),
        GANLoss("gan-qp-l1", qp_d, qp_g, uses_real_in_g=True, distance="l1"),
        GANLoss("gan-qp-l2", qp_d, qp_g, uses_real_in_g=True, distance="l2"),
    )
}


def gan_loss(name: str) -> GANLoss:
    if name not in LOSSES:
        raise ValueError(f"unknown GAN loss {name!r}; use one of {', '.join(LOSSES)}")
    return LOSSES[name]


def single_loss(
    loss: GANLoss, c_r: Tensor, c_f_sg: Tensor, c_f: Tensor, dist: Tensor | None, ratio: float = 1.0
) -> Tensor:
    """One loss whose gradient trains both networks at once ([6387] eq. 5), in this module's convention:

        L = L_D(C_r, C(sg G(z))) + ratio·[L_G(C_r, C(G(z))) − L_G(C_r, C(sg G(z)))]

    The bracket is identically 0 in value, and its gradient is (0 for the critic, ∇_G L_G for the
    generator): ∇[L(D, G) − L(D, sg G)] = (∇_D L, ∇_G L) − (∇_D L, 0). `c_f_sg` = C(x_f.detach()), `c_f` =
    C(x_f), `dist` = λd on the detached fakes (GAN-QP). `ratio` scales the generator's gradient; under SGD
    it is the G:D learning-rate ratio, under Adam/RMSprop (nearly scale-invariant) it has little effect —
    use parameter groups with their own learning rates instead."""
    d_term = loss.critic_loss(c_r, c_f_sg, dist)
    g_term = loss.generator_loss(c_r, c_f, dist) - loss.generator_loss(c_r, c_f_sg, dist)
    return d_term + ratio * g_term
