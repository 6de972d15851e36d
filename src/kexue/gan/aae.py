"""The adversarial autoencoder as [5716] derives it: a GAN on the codes, plus a decoder.

Sources: [5716] Su, "Variational inference: a unified framework of generative models" (kexue.fm/archives/
5716, arXiv 1807.05936), §"GAN视角下的AAE"; [AAE] Makhzani, Shlens, Jaitly, Goodfellow, Frey,
"Adversarial Autoencoders", ICLR 2016 workshop (arXiv 1511.05644).

[5716] swaps x and z in its GAN derivation: an encoder p(z|x) = δ(z − E(x)) pushes the data p̃(x) to the
aggregated posterior p(z) = ∫ p(z|x) p̃(x) dx, and a binary label y separates codes (y = 1) from prior
samples q(z) = N(0, I) (y = 0). Alternating KL minimisation gives (D(z) = q(0|z): "z is a prior sample")

    L_D   = −E_{z∼q(z)} log D(z) − E_{x∼p̃} log(1 − D(E(x)))                     [5716] AAE D loss
    L_E,G = E_{x∼p̃}[ −log D(E(x)) + λ‖x − G(E(x))‖² ]                           [5716] last AAE eq.

(the KL(p(z) ‖ p°(z)) term of the exact encoder loss is dropped, "with careful training", as for GANs; a
decoder G is trained jointly because a good enough reconstruction does not disturb the game).

Notation box (this module ↔ [5716] ↔ kexue.gan.losses):
- the code critic C(z) is a logit with D(z) = σ(C(z)); **prior samples are "real" and score HIGH**, the
  codes E(x) are "fake" — so L_D = BCE(C(z_p), 1) + BCE(C(E(x)), 0), the `ns` critic loss of `losses`;
- −log D(E(x)) = BCE(C(E(x)), 1), the non-saturating generator loss `ns_g` with the encoder as generator;
- λ‖x − G(E(x))‖² is taken as rec_weight · the per-pixel MEAN squared error (as the VI regulariser of
  `gan.py`); the post leaves λ open.

Two cycles through the trainer's phases protocol (`kexue.train.phases`), both ending with the networks
that were just trained against a fresh critic:
- cycle="joint" (default, [5716]): ("d",)·d_steps + ("ae",). "d" trains C on z_p against sg E(x);
  "ae" trains E and G on the joint loss above, C `frozen`.
- cycle="makhzani" ([AAE] §2): ("rec", "d", "enc"). "rec" trains E and G on the reconstruction alone,
  "d" as above, "enc" trains E alone on −log D(E(x)) (the "regularization phase").

encoder="gaussian" is [AAE] §2's Gaussian posterior: E outputs (μ, log σ) and z = μ + σ·ε (reparameterised);
the critic sees the sampled codes, so it is the aggregated posterior that is matched to N(0, I).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kexue.gan import losses as L
from kexue.gan.nets import MLPCritic, critic_for, generator_for
from kexue.train.phases import frozen

CYCLES = {"joint": ("d", "ae"), "makhzani": ("rec", "d", "enc")}
ENCODERS = ("deterministic", "gaussian")


def code_critic_loss(c_prior: Tensor, c_code: Tensor) -> Tensor:
    """L_D = mean BCE(C(z_p), 1) + mean BCE(C(E(x)), 0); c_prior, c_code (B,) logits  [5716] AAE D loss."""
    return L.bce_real(c_prior).mean() + L.bce_fake(c_code).mean()


def encoder_adversarial_loss(c_code: Tensor) -> Tensor:
    """−E log D(E(x)) = mean BCE(C(E(x)), 1), (B,) logits → scalar  [5716] (non-saturating)."""
    return L.bce_real(c_code).mean()


def reconstruction_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """mean (x − G(E(x)))² over the batch and every pixel: [5716]'s ‖x − G(E(x))‖² per pixel."""
    return (x - x_hat).pow(2).mean()


@dataclass(frozen=True)
class AAEConfig:
    shape: tuple[int, ...] = (1, 28, 28)  # (C, H, W) images in [−1, 1] (tanh decoder), or (D,) vectors
    z_dim: int = 8  # code size; the prior is N(0, I_z_dim)
    width: int = 64  # encoder/decoder: conv base channels or MLP hidden width (kexue.gan.nets)
    d_width: int = 128  # the code critic's MLP hidden width (3 layers, LeakyReLU(0.2))
    encoder: str = "deterministic"  # p(z|x) = δ(z − E(x)) ([5716]) or "gaussian" ([AAE] §2)
    cycle: str = "joint"  # "joint": ("d"·d_steps, "ae") as [5716]; "makhzani": ("rec", "d", "enc")
    d_steps: int = 1  # critic updates per cycle ("joint" only)
    rec_weight: float = 10.0  # λ on the per-pixel mean squared reconstruction error (our choice)
    lr: float = 1e-3  # Adam learning rate of the encoder and decoder
    lr_d: float = 1e-3  # Adam learning rate of the code critic
    beta1: float = 0.5  # Adam β1 (DCGAN's 0.5)
    beta2: float = 0.999  # Adam β2

    def __post_init__(self) -> None:
        checks = [
            (
                self.encoder in ENCODERS,
                f"encoder must be 'deterministic' or 'gaussian', got {self.encoder!r}",
            ),
            (self.cycle in CYCLES, f"cycle must be 'joint' or 'makhzani', got {self.cycle!r}"),
            (
                self.z_dim >= 1 and self.width >= 1 and self.d_width >= 1,
                f"z_dim, width and d_width must be ≥ 1, got {self.z_dim}, {self.width}, {self.d_width}",
            ),
            (self.d_steps >= 1, f"d_steps must be ≥ 1, got {self.d_steps}"),
            (self.rec_weight > 0, f"rec_weight must be > 0, got {self.rec_weight}"),
            (self.lr > 0 and self.lr_d > 0, f"learning rates must be > 0, got {self.lr}, {self.lr_d}"),
            (
                0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
                f"Adam betas must lie in [0, 1), got {self.beta1}, {self.beta2}",
            ),
            (len(self.shape) in (1, 3), f"shape must be (D,) vectors or (C, H, W) images, got {self.shape}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class AAE(nn.Module):
    """E: x (B, *shape) → z (B, z_dim); G: z → x; C: z → (B,) logit. Phases as `AAEConfig.cycle`."""

    def __init__(self, config: AAEConfig) -> None:
        super().__init__()
        self.config = config
        out = 2 * config.z_dim if config.encoder == "gaussian" else config.z_dim  # (μ, log σ) or E(x)
        self.encoder = critic_for(config.shape, config.width, out_dim=out)
        self.decoder = generator_for(config.shape, config.z_dim, config.width)
        self.critic = MLPCritic((config.z_dim,), 1, config.d_width)
        joint = ("d",) * config.d_steps + ("ae",)
        self.phases = joint if config.cycle == "joint" else CYCLES["makhzani"]

    def configure_optimizer(self, train_config) -> torch.optim.Optimizer:
        """Adam (AdamW with the trainer's weight decay, 0 by default): one group for E and G, one for C."""
        c = self.config
        groups = [
            {"params": [*self.encoder.parameters(), *self.decoder.parameters()], "lr": c.lr},
            {"params": list(self.critic.parameters()), "lr": c.lr_d},
        ]
        return torch.optim.AdamW(groups, betas=(c.beta1, c.beta2), weight_decay=train_config.weight_decay)

    # ---------------------------------------------------------------------------------------- pieces
    def _code(self, x: Tensor, eps: Tensor | None = None, generator=None) -> tuple[Tensor, Tensor]:
        """(z, μ): z a code drawn from p(z|x) — μ itself for the deterministic encoder."""
        h = self.encoder(x)  # (B, z_dim) or (B, 2·z_dim)
        if self.config.encoder == "deterministic":
            return h, h
        mu, log_sigma = h.chunk(2, dim=1)  # (B, z_dim) each
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + log_sigma.exp() * eps, mu  # reparameterised z ∼ N(μ, σ²)  [AAE] §2

    def prior(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n draws of q(z) = N(0, I), (n, z_dim), on the model's device and in its dtype."""
        p = next(self.critic.parameters())
        return torch.randn(n, self.config.z_dim, generator=generator, device=p.device, dtype=p.dtype)

    # ---------------------------------------------------------------------------------------- losses
    def loss(
        self, batch, phase: str | None = None, *, z_prior: Tensor | None = None, eps: Tensor | None = None
    ) -> dict[str, Tensor]:
        """One phase's loss on batch (x,) or (x, y); z_prior (B, z_dim) and eps (the Gaussian encoder's
        noise) are drawn from the global generator (seeded by the trainer) unless given."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if phase not in ("d", "ae", "rec", "enc"):
            raise ValueError(f"an AAE trains in phases 'd', 'ae', 'rec', 'enc', got {phase!r}")
        if phase == "d":
            with torch.no_grad():
                z, _ = self._code(x, eps)
            z_prior = self.prior(len(x)) if z_prior is None else z_prior
            c_prior, c_code = self.critic(torch.cat([z_prior, z]))[:, 0].split([len(z_prior), len(z)])
            loss = code_critic_loss(c_prior, c_code)
            return {"gap": (c_prior.mean() - c_code.mean()).detach(), "loss": loss}
        z, _ = self._code(x, eps)
        out: dict[str, Tensor] = {}
        loss = x.new_zeros(())
        if phase in ("ae", "enc"):  # −log D(E(x)), the critic frozen: only E gets this gradient
            with frozen(self.critic):
                adv = encoder_adversarial_loss(self.critic(z)[:, 0])
            out["adv"], loss = adv.detach(), loss + adv
        if phase in ("ae", "rec"):  # λ·mean(x − G(E(x)))²  [5716]
            rec = reconstruction_loss(x, self.decoder(z))
            out["rec"], loss = rec.detach(), loss + self.config.rec_weight * rec
        return {**out, "loss": loss}

    # ---------------------------------------------------------------------------------------- use
    @torch.no_grad()
    def encode(self, x: Tensor, *, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """E(x) (B, z_dim): the code, or for the Gaussian encoder its mean μ (a draw with sample=True)."""
        eps = None if sample else torch.zeros((), device=x.device)  # ε = 0 gives z = μ
        return self._code(x, eps, generator)[0]

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """G(z): (B, z_dim) → (B, *shape), images in [−1, 1]."""
        return self.decoder(z)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n samples G(z), z ∼ N(0, I), from the decoder in its current train/eval mode (BN statistics)."""
        return self.decoder(self.prior(n, generator=generator))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """G(E(x)) with the code's mean: (B, *shape) → (B, *shape)."""
        return self.decoder(self.encode(x))
