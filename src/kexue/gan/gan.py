"""A GAN with any loss of `kexue.gan.losses`, trained alternately or with one loss ([6387]).

Two training modes, both through the ordinary `Trainer`:
- "alternating": the cycle ("d",)·d_steps + ("g",)·g_steps (`kexue.train.phases`). The critic's phase
  scores real and detached fake samples; the generator's phase runs the critic `frozen`.
- "single": one loss, one backward pass per step ([6387], `losses.single_loss`): the critic sees
  [x_r, sg x_f, x_f] in one batch, and the generator's term L_G(x_f) − L_G(sg x_f) is 0 in value but
  carries the generator's gradient. Simultaneous (not alternating) updates, one data pass, one G forward.

The VI regulariser of [5716] (Su, arXiv 1807.05936; the post's last equation): the generator's loss gains
vi_weight · mean‖G(z) − G°(z)‖² (per-pixel mean, same z), G° the generator as it was when the cycle began,
i.e. the one the critic was just fitted against. Its gradient is 0 on the cycle's first generator update,
so it acts from the second on. The paper's code runs two generator updates per iteration in its first
experiment (g_steps = 2) and 5 critic batches then 10 generator updates against one G° in its second (no
BN; d_steps = 5, g_steps = 10); it reuses the same z for both updates of a pair, where kexue draws a fresh
z per update (both estimate the same loss).

Data: images in [−1, 1] (tanh generators), or 2-D points. The generator's noise z ~ N(0, I) is drawn from
the global generator (the trainer seeds and checkpoints it); `sample` takes an explicit one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kexue.gan import losses as L
from kexue.gan.nets import critic_for, generator_for
from kexue.train.phases import frozen


@dataclass(frozen=True)
class GANConfig:
    shape: tuple[int, ...] = (1, 28, 28)  # (C, H, W) images in [−1, 1], or (2,) points
    loss: str = "ns"  # a name in kexue.gan.losses.LOSSES
    z_dim: int = 64  # generator noise size
    width: int = 64  # conv: base channels; MLP: hidden width
    mode: str = "alternating"  # "alternating" (two phases) or "single" (one loss, [6387])
    d_steps: int = 1  # critic updates per cycle (alternating)
    g_steps: int = 1  # generator updates per cycle (alternating; 2 for the VI regulariser)
    lr_d: float = 2e-4  # critic learning rate (Adam; DCGAN's 2e-4)
    lr_g: float = 2e-4  # generator learning rate
    beta1: float = 0.5  # Adam β1 (DCGAN's 0.5)
    beta2: float = 0.999  # Adam β2
    spectral_norm: bool = False  # spectral-normalise every critic layer ([6051], Miyato et al. 2018)
    gp_weight: float = 10.0  # WGAN-GP's λ (used by loss "wgan-gp")
    qp_lambda: float = 10.0  # GAN-QP's λ on the per-pixel mean distance
    vi_weight: float = 0.0  # the VI regulariser's weight ([5716]: 5 on the per-pixel mean squared error)
    single_ratio: float = (
        1.0  # mode "single": weight λ of the generator's term ([6387]; G:D lr ratio under SGD)
    )

    def __post_init__(self) -> None:
        L.gan_loss(self.loss)  # raises on an unknown name
        checks = [
            (
                self.mode in ("alternating", "single"),
                f"mode must be 'alternating' or 'single', got {self.mode!r}",
            ),
            (
                self.z_dim >= 1 and self.width >= 1,
                f"z_dim and width must be ≥ 1, got {self.z_dim}, {self.width}",
            ),
            (
                self.d_steps >= 1 and self.g_steps >= 1,
                f"d_steps and g_steps must be ≥ 1, got {self.d_steps}, {self.g_steps}",
            ),
            (self.lr_d > 0 and self.lr_g > 0, f"learning rates must be > 0, got {self.lr_d}, {self.lr_g}"),
            (
                0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
                f"Adam betas must lie in [0, 1), got {self.beta1}, {self.beta2}",
            ),
            (
                self.gp_weight >= 0 and self.qp_lambda > 0 and self.vi_weight >= 0 and self.single_ratio >= 0,
                "gp_weight, vi_weight and single_ratio must be ≥ 0 and qp_lambda > 0",
            ),
            (len(self.shape) in (1, 3), f"shape must be (D,) points or (C, H, W) images, got {self.shape}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.vi_weight > 0 and (self.mode != "alternating" or self.g_steps < 2):
            raise ValueError(
                "the VI regulariser compares G with the generator at the start of the cycle, so its "
                "gradient is 0 on the first update: use mode='alternating' with g_steps ≥ 2"
            )


class GAN(nn.Module):
    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        self.objective = L.gan_loss(config.loss)
        self.generator = generator_for(config.shape, config.z_dim, config.width)
        self.critic = critic_for(config.shape, config.width, spectral_norm=config.spectral_norm)
        if config.vi_weight > 0:  # G°, refreshed at the start of every cycle; never trained
            self.generator_old = copy.deepcopy(self.generator).requires_grad_(False)
        if config.mode == "alternating":
            self.phases = ("d",) * config.d_steps + ("g",) * config.g_steps

    @property
    def symmetric_images(self) -> bool:
        """Samples are images in [−1, 1] (tanh); `kexue sample` maps them to [0, 1]."""
        return len(self.config.shape) == 3

    # ---------------------------------------------------------------------------------------- pieces
    def configure_optimizer(self, train_config) -> torch.optim.Optimizer:
        """Adam (AdamW with the trainer's weight decay, 0 by default) with one group per network."""
        c = self.config
        groups = [
            {"params": list(self.critic.parameters()), "lr": c.lr_d},
            {"params": list(self.generator.parameters()), "lr": c.lr_g},
        ]
        return torch.optim.AdamW(groups, betas=(c.beta1, c.beta2), weight_decay=train_config.weight_decay)

    def noise(self, n: int, *, generator: torch.Generator | None = None, device=None) -> Tensor:
        p = next(self.parameters())
        device = device if device is not None else p.device
        return torch.randn(n, self.config.z_dim, generator=generator, device=device, dtype=p.dtype)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n samples (images in [−1, 1] or points) from the generator in its current train/eval mode."""
        return self.generator(self.noise(n, generator=generator))

    def _distance(self, x_r: Tensor, x_f_sg: Tensor) -> Tensor | None:
        if self.objective.distance is None:
            return None
        return L.qp_distance(x_r, x_f_sg, self.objective.distance, self.config.qp_lambda)

    def _penalty(self, x_r: Tensor, x_f_sg: Tensor) -> Tensor | None:
        if not self.objective.gradient_penalty or self.config.gp_weight == 0:
            return None
        from kexue.nn.lipschitz import gradient_penalty

        return self.config.gp_weight * gradient_penalty(self.critic, x_r, x_f_sg)

    def _scores(self, *xs: Tensor) -> list[Tensor]:
        """The critic on several batches in one forward pass (no batch norm in the critic: see nets)."""
        c = self.critic(torch.cat(xs))[:, 0]
        return list(c.split([len(x) for x in xs]))

    # ---------------------------------------------------------------------------------------- losses
    def loss(self, batch, phase: str | None = None) -> dict[str, Tensor]:
        x_r = batch[0]
        z = self.noise(len(x_r), device=x_r.device)
        if phase is None:
            if self.config.mode != "single":
                raise ValueError("an alternating GAN trains in phases: call loss(batch, phase='d' or 'g')")
            return self._single(x_r, z)
        if phase == "d":
            return self._critic_phase(x_r, z)
        if phase == "g":
            return self._generator_phase(x_r, z)
        raise ValueError(f"a GAN's phases are 'd' and 'g', got {phase!r}")

    def _critic_phase(self, x_r: Tensor, z: Tensor) -> dict[str, Tensor]:
        if self.config.vi_weight > 0:  # the cycle starts with the critic: G° ← G
            self.generator_old.load_state_dict(self.generator.state_dict())
        with torch.no_grad():
            x_f = self.generator(z)
        c_r, c_f = self._scores(x_r, x_f)
        loss = self.objective.critic_loss(c_r, c_f, self._distance(x_r, x_f))
        out = {"gap": (c_r - c_f).mean().detach()}
        gp = self._penalty(x_r, x_f)
        if gp is not None:
            out["gp"], loss = gp.detach(), loss + gp
        return {**out, "loss": loss}

    def _generator_phase(self, x_r: Tensor, z: Tensor) -> dict[str, Tensor]:
        x_f = self.generator(z)
        c_r = None
        if self.objective.uses_real_in_g:
            with torch.no_grad():
                c_r = self.critic(x_r)[:, 0]
        with frozen(self.critic):
            c_f = self.critic(x_f)[:, 0]
        dist = self._distance(x_r, x_f.detach())
        loss = self.objective.generator_loss(c_r, c_f, dist)
        if self.config.vi_weight > 0:
            with torch.no_grad():
                x_old = self.generator_old(z)
            vi = (x_f - x_old).pow(2).mean()  # ‖G(z) − G°(z)‖² as a per-pixel mean ([5716] code)
            return {"vi": vi.detach(), "loss": loss + self.config.vi_weight * vi}
        return {"loss": loss}

    def _single(self, x_r: Tensor, z: Tensor) -> dict[str, Tensor]:
        x_f = self.generator(z)
        x_f_sg = x_f.detach()
        c_r, c_f_sg, c_f = self._scores(x_r, x_f_sg, x_f)
        dist = self._distance(x_r, x_f_sg)
        loss = L.single_loss(self.objective, c_r, c_f_sg, c_f, dist, self.config.single_ratio)
        out = {"gap": (c_r - c_f_sg).mean().detach()}
        gp = self._penalty(x_r, x_f_sg)
        if gp is not None:
            out["gp"], loss = gp.detach(), loss + gp
        return {**out, "loss": loss}
