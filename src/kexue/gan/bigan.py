"""BiGAN-QP: a generator and an encoder trained against one joint critic. [6214] kexue.fm/archives/6214.

Sources: [6214] Su, "BiGAN-QP" (the post; GAN-QP paper arXiv 1811.07296, v2 appendix); [6163] GAN-QP;
[BiGAN] Donahue et al., ICLR 2017 (arXiv 1605.09782); [ALI] Dumoulin et al., ICLR 2017 (arXiv 1606.00704).

GAN-QP's critic ([6163]) on pairs: T(x, z) scores the real pair (x_r, E(x_r)) against the fake pair
(G(z), z), in GAN-QP's convention **real pairs score HIGH** (as `kexue.gan.losses`):

    Δ     = T(x_r, E(x_r)) − T(G(z), z)                                  [6214] eq. 2, simplified ΔT
    λd    = 10·(mean_pixels|x_r − G(z)| + mean_coords|E(x_r) − z|)        the official code's distance
    L_T   = mean(−Δ + ½Δ²/(λd))                                          [6214] eq. 2 (quadratic: T only)
    L_G,E = mean(Δ) + β₁·mean(z − E(sg G(z)))² + β₂·mean(x_r − G(sg E(x_r)))²    [6214] eq. 4, β = 2, 3

The two reconstruction "guide" terms are coupled too strongly without the stop-gradients, which "tend to
make the images blurry" ([6214] eq. 4 text): the z-reconstruction trains only E, the x-reconstruction only
G. `stop_gradient=False` drops them (the ablation). Training alternates ("d", "d", "g") through the
trainer's phases protocol (`kexue.train.phases`): the critic's phase sees G and E under no_grad, the
generator/encoder phase runs T `frozen`.

`objective="ali"` swaps the adversarial part for ALI/BiGAN's: T is a logit, L_T = BCE(T_r, 1) + BCE(T_f, 0),
and G, E take the swapped-label (non-saturating) loss BCE(T_r, 0) + BCE(T_f, 1) ([ALI] §3; [5716] derives
it as one case of the unified view). The guide terms stay; set beta_z = beta_x = 0 for the original ALI.

T(x, z): the critic body's features of x, concatenated with z, then a small MLP — so T depends on x and z
jointly, not only additively (a single linear head on [feat(x), z] would be a(x) + w·z, blind to how x
and z go together, which is the whole point of a joint critic).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kexue.gan import losses as L
from kexue.gan.nets import critic_for, generator_for
from kexue.train.phases import frozen

OBJECTIVES = ("qp", "ali")


class JointCritic(nn.Module):
    """T(x, z): x (B, C, H, W), z (B, n_z) → (B,). features(x) ⊕ z → Linear → LeakyReLU(0.2) → Linear."""

    def __init__(self, shape: tuple[int, ...], z_dim: int, width: int, hidden: int) -> None:
        super().__init__()
        # the nets' `extra_dim` concatenates z to the features before the critic's head, here of size hidden
        self.body = critic_for(shape, width, out_dim=hidden, extra_dim=z_dim)
        self.out = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        h = self.body.head(torch.cat([self.body.features(x), z], 1))  # (B, hidden)
        return self.out(h)[:, 0]  # (B,)


def pair_distance(x_r: Tensor, x_f: Tensor, z_r: Tensor, z_f: Tensor, lam: float = 10.0) -> Tensor:
    """λd((x_r, z_r), (x_f, z_f)) = λ·(mean|x_r − x_f| + mean|z_r − z_f|) per pair, (B,)  [6214] code."""
    return L.qp_distance(x_r, x_f, "l1", lam) + L.qp_distance(z_r, z_f, "l1", lam)


def critic_loss(t_r: Tensor, t_f: Tensor, dist: Tensor | None, objective: str = "qp") -> Tensor:
    """The joint critic's loss of T_r = T(x_r, E(x_r)), T_f = T(G(z), z), each (B,)."""
    if objective == "qp":
        return L.qp_d(t_r, t_f, dist)  # mean(−Δ + ½Δ²/λd)  [6214] eq. 2
    if objective == "ali":
        return L.bce_real(t_r).mean() + L.bce_fake(t_f).mean()  # [ALI] eq. 1, T a logit
    raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


def adversarial_loss(t_r: Tensor, t_f: Tensor, objective: str = "qp") -> Tensor:
    """G and E's adversarial term: mean(Δ) (GAN-QP, no quadratic term) or ALI's swapped-label BCE."""
    if objective == "qp":
        return L.qp_g(t_r, t_f)  # mean(T_r − T_f)  [6214] eq. 4
    if objective == "ali":
        return L.bce_fake(t_r).mean() + L.bce_real(t_f).mean()  # [ALI] non-saturating: labels swapped
    raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


def guide_terms(
    encoder: nn.Module, generator: nn.Module, x_r: Tensor, z: Tensor, x_f: Tensor, z_r: Tensor, *, stop: bool
) -> tuple[Tensor, Tensor]:
    """(mean(z − E(sg G(z)))², mean(x_r − G(sg E(x_r)))²) — [6214] eq. 4; x_f = G(z), z_r = E(x_r).

    With stop=True the z-term trains only E and the x-term only G; stop=False is eq. 3 (both get both)."""
    x_in, z_in = (x_f.detach(), z_r.detach()) if stop else (x_f, z_r)
    rec_z = (z - encoder(x_in)).pow(2).mean()
    rec_x = (x_r - generator(z_in)).pow(2).mean()
    return rec_z, rec_x


@dataclass(frozen=True)
class BiGANQPConfig:
    shape: tuple[int, ...] = (1, 28, 28)  # (C, H, W) images in [−1, 1]
    z_dim: int = 32  # code size ([6214] 256 for 256² faces; MNIST needs far fewer)
    width: int = 32  # conv: base channels of G, E and T's body; MLP: hidden width
    hidden: int = 256  # T's joint layer on [features(x), z]
    objective: str = "qp"  # "qp" (BiGAN-QP) or "ali" (ALI/BiGAN's BCE joint discriminator)
    lam: float = 10.0  # GAN-QP's λ on the per-pixel / per-coordinate MEAN L1 distances (official code)
    beta_z: float = 2.0  # β₁ on mean(z − E(sg G(z)))²  (official code)
    beta_x: float = 3.0  # β₂ on mean(x_r − G(sg E(x_r)))²  (official code)
    stop_gradient: bool = True  # the sg(·) in the guide terms; False is the "blurry" ablation
    d_steps: int = 2  # critic updates per generator/encoder update (official code: 2)
    lr: float = 2e-4  # Adam learning rate (official code); TrainConfig.lr is not used
    beta1: float = 0.5  # Adam β1
    beta2: float = 0.999  # Adam β2

    def __post_init__(self) -> None:
        checks = [
            (self.objective in OBJECTIVES, f"objective must be 'qp' or 'ali', got {self.objective!r}"),
            (
                self.z_dim >= 1 and self.width >= 1 and self.hidden >= 1,
                f"z_dim, width and hidden must be ≥ 1, got {self.z_dim}, {self.width}, {self.hidden}",
            ),
            (self.lam > 0, f"lam must be > 0, got {self.lam}"),
            (
                self.beta_z >= 0 and self.beta_x >= 0,
                f"beta_z and beta_x must be ≥ 0, got {self.beta_z}, {self.beta_x}",
            ),
            (self.d_steps >= 1, f"d_steps must be ≥ 1, got {self.d_steps}"),
            (self.lr > 0, f"the learning rate must be > 0, got {self.lr}"),
            (
                0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
                f"Adam betas must lie in [0, 1), got {self.beta1}, {self.beta2}",
            ),
            (len(self.shape) == 3, f"BiGAN-QP takes (C, H, W) images, got shape {self.shape}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class BiGANQP(nn.Module):
    """G: z (B, n_z) → x in [−1, 1]; E: x → (B, n_z); T(x, z) → (B,). Phases ("d",)·d_steps + ("g",)."""

    def __init__(self, config: BiGANQPConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = generator_for(config.shape, config.z_dim, config.width)
        self.encoder = critic_for(config.shape, config.width, out_dim=config.z_dim)
        self.critic = JointCritic(config.shape, config.z_dim, config.width, config.hidden)
        self.phases = ("d",) * config.d_steps + ("g",)

    def configure_optimizer(self, train_config) -> torch.optim.Optimizer:
        """Adam(2e-4, (0.5, 0.999)) over all three networks: a phase steps only those it gave gradients."""
        c = self.config
        return torch.optim.Adam(self.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))

    def noise(self, n: int, *, generator: torch.Generator | None = None, device=None) -> Tensor:
        """z ~ N(0, I), (n, n_z), in the parameters' dtype (on their device unless given)."""
        p = next(self.parameters())
        device = device if device is not None else p.device
        return torch.randn(n, self.config.z_dim, generator=generator, device=device, dtype=p.dtype)

    def _scores(self, x_r: Tensor, z_r: Tensor, x_f: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """T on the real and fake pairs in one forward pass (no batch norm in T's body)."""
        return self.critic(torch.cat([x_r, x_f]), torch.cat([z_r, z])).chunk(2)  # 2 × (B,)

    # ---------------------------------------------------------------------------------------- losses
    def loss(self, batch, phase: str | None = None, *, z: Tensor | None = None) -> dict[str, Tensor]:
        x_r = batch[0] if isinstance(batch, (tuple, list)) else batch
        z = self.noise(len(x_r), device=x_r.device) if z is None else z
        if phase == "d":
            return self.critic_phase(x_r, z)
        if phase == "g":
            return self.generator_phase(x_r, z)
        raise ValueError(f"BiGAN-QP trains in phases: call loss(batch, phase='d' or 'g'), got {phase!r}")

    def critic_phase(self, x_r: Tensor, z: Tensor) -> dict[str, Tensor]:
        """L_T with G and E under no_grad: only T gets gradients."""
        c = self.config
        with torch.no_grad():
            x_f, z_r = self.generator(z), self.encoder(x_r)
        t_r, t_f = self._scores(x_r, z_r, x_f, z)
        dist = pair_distance(x_r, x_f, z_r, z, c.lam) if c.objective == "qp" else None
        loss = critic_loss(t_r, t_f, dist, c.objective)
        return {"gap": (t_r - t_f).mean().detach(), "loss": loss}

    def generator_phase(self, x_r: Tensor, z: Tensor) -> dict[str, Tensor]:
        """L_{G,E} with T frozen: the adversarial term plus the two (stop-gradient) guide terms."""
        c = self.config
        x_f, z_r = self.generator(z), self.encoder(x_r)
        with frozen(self.critic):
            t_r, t_f = self._scores(x_r, z_r, x_f, z)
        adv = adversarial_loss(t_r, t_f, c.objective)
        rec_z, rec_x = guide_terms(self.encoder, self.generator, x_r, z, x_f, z_r, stop=c.stop_gradient)
        loss = adv + c.beta_z * rec_z + c.beta_x * rec_x
        return {"adv": adv.detach(), "rec_z": rec_z.detach(), "rec_x": rec_x.detach(), "loss": loss}

    # ---------------------------------------------------------------------------------------- use
    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n images (n, C, H, W) in [−1, 1], from G in its current train/eval mode (BN statistics)."""
        return self.generator(self.noise(n, generator=generator))

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """E(x): (B, C, H, W) → (B, n_z)."""
        return self.encoder(x)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """G(E(x)), (B, C, H, W) in [−1, 1]."""
        return self.generator(self.encoder(x))
