"""O-GAN: the discriminator is an encoder. [6409] kexue.fm/archives/6409; [OGAN] Su, arXiv 1903.01931.

An encoder E: x → ℝ^{n_z} is the whole discriminator: D(x) = avg(E(x)) ([6409] eq. 6). A Pearson
correlation ρ(z, E(G(z))) added to both players' losses makes E(x) a code of x, because ρ is blind to
avg(E) and std(E) ([6409] "原理"): it leaves the discriminator its degree of freedom, where ‖z − E(G(z))‖²
would take all n_z of them ("basically always fails", the `objective="mse"` ablation).

The adversarial part is the GAN-QP variant of [6409] eq. 7, written as ONE loss with stop-gradients
(the single-loss trick of [6387]) as in the official code (reference/generative.md §1.8):

    t1 = avg E(x_r) − avg E(sg x_f)                 critic term; G gets nothing (sg)
    t2 = avg E(x_f) − avg E(sg x_f)                 value 0; E's gradients cancel, G gets ∇ avg E(x_f)
    qp = 0.25 · t1² / mean_pixels(x_r − sg x_f)²    GAN-QP's quadratic brake ([6163]), critic only
    L  = mean(t1 + t2 − λ·ρ(z, E(x_f))) + mean(qp)  one optimizer (RMSprop 1e-4) over E and G

Notation box — the sign convention is the PAPER's, opposite to `kexue.gan.losses`: **real samples score
LOW** (E minimises t1 = D(x_r) − D(x_f); G minimises D(x_f)). The pair (x_r[i], x_f[i]) shares row i.

| code        | [6409]             | meaning                                                        |
|-------------|--------------------|----------------------------------------------------------------|
| `z_dim`     | n_z                | code / noise size                                              |
| `rho_weight`| λ (λ₂ in eq. 7)    | weight of −ρ (0.5 in the official code, 1.0 at 256²)           |
| `standardize` | 𝒩(z)             | (z − avg z)/std z per sample, over the n_z coordinates (eq. 2) |
| `correlation` | ρ(z, ẑ)          | cos(𝒩(z), 𝒩(ẑ)) (eq. 5)                                      |
| `reconstruct` | x̂ = G(𝒩(E(x)))  | times 0.9 at test time in the official code                    |
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.gan.nets import critic_for, generator_for

OBJECTIVES = ("rho", "mse")


# ------------------------------------------------------------------------------------------- pure functions
def standardize(z: Tensor, eps: float = 1e-8) -> Tensor:
    """𝒩(z) = (z − avg z)/std z over the last dimension (population std, divide by n_z)  [6409] eq. 2."""
    zc = z - z.mean(-1, keepdim=True)
    return zc / zc.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(eps)


def correlation(z: Tensor, zhat: Tensor, eps: float = 1e-12) -> Tensor:
    """Pearson ρ(z, ẑ) across the n_z coordinates of each sample: (..., n_z), (..., n_z) → (...).

    Centre, l2-normalise, dot = cos(𝒩(z), 𝒩(ẑ))  [6409] eq. 5. Invariant to ẑ → a·ẑ + b for a > 0."""
    if z.shape != zhat.shape:
        raise ValueError(f"ρ(z, ẑ) pairs coordinates: shapes {tuple(z.shape)} and {tuple(zhat.shape)} differ")
    zc = F.normalize(z - z.mean(-1, keepdim=True), dim=-1, eps=eps)
    hc = F.normalize(zhat - zhat.mean(-1, keepdim=True), dim=-1, eps=eps)
    return (zc * hc).sum(-1)


def ogan_terms(encoder: nn.Module, x_r: Tensor, x_f: Tensor, z: Tensor) -> dict[str, Tensor]:
    """The per-sample terms of O-GAN's single loss, each (B,); x_f = G(z) still attached to G.

    E runs once on [x_r, sg x_f, x_f] (3B rows; E has no batch norm, so rows do not mix). Returns
    t1, t2, qp (see the module doc), rho = ρ(z, E(x_f)) and sq_norm = ‖z − E(x_f)‖² (the ablation's
    reconstruction error, summed over the n_z coordinates as [6409] writes it); both reach E *and* G."""
    if x_r.shape != x_f.shape:
        raise ValueError(f"O-GAN pairs x_r[i] with x_f[i]: shapes {tuple(x_r.shape)} and {tuple(x_f.shape)}")
    x_f_sg = x_f.detach()
    e_r, e_f_sg, e_f = encoder(torch.cat([x_r, x_f_sg, x_f])).chunk(3)  # 3 × (B, n_z)
    d_r, d_f_sg, d_f = e_r.mean(1), e_f_sg.mean(1), e_f.mean(1)  # D(x) = avg E(x)  [6409] eq. 6
    t1 = d_r - d_f_sg  # real → low score
    t2 = d_f - d_f_sg  # 0 in value; ∇_G only  [6387] eq. 5
    qp = 0.25 * t1.pow(2) / (x_r - x_f_sg).pow(2).flatten(1).mean(1)  # [6409] eq. 8, code's 0.25 / mean
    return {
        "t1": t1,
        "t2": t2,
        "qp": qp,
        "rho": correlation(z, e_f),  # [6409] eq. 5
        "sq_norm": (z - e_f).pow(2).sum(1),  # ‖z − E(G(z))‖², the "原理" ablation
    }


def ogan_loss(terms: dict[str, Tensor], rho_weight: float, objective: str = "rho") -> Tensor:
    """L = mean(t1 + t2 − λρ) + mean(qp); with objective="mse", +λ‖z − E(G(z))‖² in place of −λρ.

    Scale: ‖𝒩(z) − 𝒩(ẑ)‖² = 2n_z(1 − ρ), so −λρ is (λ/2n_z)·‖𝒩(z) − 𝒩(ẑ)‖² + const ([6409] "原理"): the
    ablation differs by not standardising ẑ (it pins avg E(G(z)) and std E(G(z)), the discriminator's
    freedom) and by weighing the squared norm 2n_z times more, as the post writes ‖z − E(G(z))‖²."""
    if objective == "rho":
        rec = -terms["rho"]
    elif objective == "mse":
        rec = terms["sq_norm"]
    else:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    return (terms["t1"] + terms["t2"] + rho_weight * rec).mean() + terms["qp"].mean()


# ------------------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class OGANConfig:
    shape: tuple[int, ...] = (1, 28, 28)  # (C, H, W) images in [−1, 1]
    z_dim: int = 32  # n_z; [OGAN] uses 128 for 128² faces, MNIST needs far fewer (reference §4 #10)
    width: int = 32  # conv: base channels (DCGAN-lite); MLP: hidden width
    rho_weight: float = 0.5  # λ on −ρ: 0.5 in the official code (1.0 for 256²); 0 = a plain GAN-QP
    objective: str = "rho"  # "rho" (the paper) or "mse" (‖z − E(G(z))‖², the ablation that fails)
    lr: float = 1e-4  # RMSprop learning rate (official code); TrainConfig.lr is not used
    alpha: float = 0.99  # RMSprop's squared-gradient decay (Keras' rho = 0.99)

    def __post_init__(self) -> None:
        checks = [
            (self.objective in OBJECTIVES, f"objective must be 'rho' or 'mse', got {self.objective!r}"),
            (
                self.z_dim >= 3,  # [6409]: avg, std and 𝒩(z) are functionally independent only for n_z ≥ 3
                f"z_dim must be ≥ 3 (avg, std and the direction of the code need n_z ≥ 3), got {self.z_dim}",
            ),
            (self.width >= 1, f"width must be ≥ 1, got {self.width}"),
            (self.rho_weight >= 0, f"rho_weight must be ≥ 0, got {self.rho_weight}"),
            (self.lr > 0, f"the learning rate must be > 0, got {self.lr}"),
            (0 <= self.alpha < 1, f"RMSprop's alpha must lie in [0, 1), got {self.alpha}"),
            (len(self.shape) == 3, f"O-GAN takes (C, H, W) images, got shape {self.shape}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class OGAN(nn.Module):
    """Generator G: z (B, n_z) → x (B, C, H, W) in [−1, 1]; encoder E: x → (B, n_z), D(x) = avg E(x).

    Trained by the ordinary Trainer with one loss per step (no phases). z ~ N(0, I) inside `loss` comes
    from the global generator (the trainer seeds and checkpoints it) unless passed in."""

    def __init__(self, config: OGANConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = generator_for(config.shape, config.z_dim, config.width)
        self.encoder = critic_for(config.shape, config.width, out_dim=config.z_dim)

    def configure_optimizer(self, train_config) -> torch.optim.Optimizer:
        """RMSprop(1e-4, 0.99) over E and G together, as the official code (one loss, one optimizer)."""
        return torch.optim.RMSprop(self.parameters(), lr=self.config.lr, alpha=self.config.alpha)

    def noise(self, n: int, *, generator: torch.Generator | None = None, device=None) -> Tensor:
        """z ~ N(0, I), (n, n_z), in the parameters' dtype (on their device unless given)."""
        p = next(self.parameters())
        device = device if device is not None else p.device
        return torch.randn(n, self.config.z_dim, generator=generator, device=device, dtype=p.dtype)

    def discriminator(self, x: Tensor) -> Tensor:
        """D(x) = avg(E(x)), shape (B,); LOW on real images."""
        return self.encoder(x).mean(1)

    def loss(self, batch, *, z: Tensor | None = None) -> dict[str, Tensor]:
        x_r = batch[0] if isinstance(batch, (tuple, list)) else batch
        z = self.noise(len(x_r), device=x_r.device) if z is None else z
        terms = ogan_terms(self.encoder, x_r, self.generator(z), z)
        loss = ogan_loss(terms, self.config.rho_weight, self.config.objective)
        logged = {k: terms[k].mean().detach() for k in ("t1", "qp", "rho", "sq_norm")}
        return {**logged, "loss": loss}

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n images (n, C, H, W) in [−1, 1], from G in its current train/eval mode (BN statistics)."""
        return self.generator(self.noise(n, generator=generator))

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """E(x): (B, C, H, W) → (B, n_z), the raw code (its avg is the discriminator's score)."""
        return self.encoder(x)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, scale: float = 0.9) -> Tensor:
        """x̂ = G(scale·𝒩(E(x)))  [6409] "原理" (the official code's test-time scale 0.9)."""
        return self.generator(scale * standardize(self.encoder(x)))
