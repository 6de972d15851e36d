r"""DDPM: the forward process, the Bayes posterior q(x_s|x_t, x0), the L_simple loss, and the ε-model.

Sources:
  [DDPM] Ho, Jain & Abbeel, NeurIPS 2020: eq. 4 (marginal), eqs. 6–7 (posterior), eq. 14 (L_simple).
  [9119] kexue.fm/archives/9119 "DDPM = 拆楼 + 建楼": the loss ‖ε − ε_θ(ᾱ_t x0 + β̄_t ε, t)‖² (his eq. 9,
         in his notation where ᾱ_t is √ᾱ_t here).
  [9164] kexue.fm/archives/9164 "DDPM = 贝叶斯 + 去噪": the posterior by Bayes' rule (his eqs. 5–7).

Shapes: x (B, …) any trailing shape; timesteps t, s are Python ints or (B,) tensors; abar is the (N + 1,)
float64 schedule of kexue.diffusion.schedules (abar[0] = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kexue.diffusion import schedules


def _at(abar: Tensor, t: int | Tensor, like: Tensor) -> Tensor:
    """ᾱ_t broadcast against `like` (B, …), in like's dtype and device."""
    a = abar.to(like.device)[t] if isinstance(t, Tensor) else abar[t].to(like.device)
    return a.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1))) if a.dim() else a.to(like.dtype)


def q_sample(x0: Tensor, t: int | Tensor, abar: Tensor, noise: Tensor) -> Tensor:
    """x_t = √ᾱ_t·x0 + √β̄_t·ε.  [DDPM] eq. 4"""
    a = _at(abar, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def x0_from_eps(x: Tensor, eps: Tensor, abar_t: Tensor) -> Tensor:
    """x̂0 = (x_t − √β̄_t·ε̂)/√ᾱ_t: the data the noise prediction implies.  [DDPM] eq. 15"""
    return (x - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()


def posterior(x0: Tensor, xt: Tensor, abar_t: Tensor, abar_s: Tensor) -> tuple[Tensor, Tensor]:
    r"""q(x_s | x_t, x0) = N(μ̃, β̃_{s|t}) for s < t, by Bayes' rule.  [DDPM] eqs. 6–7, [9164] eqs. 5–7

    μ̃ = (√ᾱ_s·β_{t|s}/β̄_t)·x0 + (√α_{t|s}·β̄_s/β̄_t)·x_t,  β̃_{s|t} = β_{t|s}·β̄_s/β̄_t,
    with α_{t|s} = ᾱ_t/ᾱ_s and β_{t|s} = 1 − α_{t|s}. abar_t, abar_s are scalars or broadcastable tensors.
    """
    a_ts = abar_t / abar_s
    b_ts, bbar_t, bbar_s = 1 - a_ts, 1 - abar_t, 1 - abar_s
    mean = (abar_s.sqrt() * b_ts / bbar_t) * x0 + (a_ts.sqrt() * bbar_s / bbar_t) * xt
    return mean, b_ts * bbar_s / bbar_t


def loss_simple(eps_model, x0: Tensor, abar: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """L_simple = E_{t~U{1..N}, ε} ‖ε − ε_θ(√ᾱ_t x0 + √β̄_t ε, t)‖², mean over dimensions.  [DDPM] eq. 14"""
    n = len(abar) - 1
    t = torch.randint(1, n + 1, (len(x0),), device=x0.device, generator=generator)  # (B,)
    noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    return (eps_model(q_sample(x0, t, abar, noise), t) - noise).pow(2).mean()


@dataclass(frozen=True)
class DDPMConfig:
    shape: tuple[int, ...] = (1, 8, 8)  # data shape: (C, H, W) for images, (D,) for vectors
    steps: int = 1000  # N, the number of diffusion steps
    schedule: str = "linear"  # "linear" (β 1e-4 → 0.02, [DDPM]) or "cosine" ([IDDPM])
    net: str = "resmlp"  # "resmlp" (vectors, 8×8 digits) or "unet" (28×28 images)
    width: int = 512  # resmlp: hidden width; unet: channels of the first level
    depth: int = 4  # resmlp: residual blocks; unet: unused
    dropout: float = 0.1  # dropout inside the blocks

    def __post_init__(self) -> None:
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {self.schedule!r}")
        if self.net not in ("resmlp", "unet"):
            raise ValueError(f"net must be 'resmlp' or 'unet', got {self.net!r}")
        if self.net == "unet" and len(self.shape) != 3:
            raise ValueError(f"the U-Net needs image data of shape (C, H, W), got {self.shape}")
        if not (isinstance(self.steps, int) and self.steps >= 2):
            raise ValueError(f"steps must be an integer ≥ 2, got {self.steps!r}")
        if self.width < 1 or self.depth < 1 or not 0 <= self.dropout < 1:
            raise ValueError("width and depth must be ≥ 1 and dropout in [0, 1)")
        if self.net == "unet" and self.width % 8:
            raise ValueError(
                f"the U-Net's width must be a multiple of 8 (GroupNorm of 8 groups), got {self.width}"
            )
        if self.net == "resmlp" and self.width % 2:
            raise ValueError(f"the ResMLP's width must be even (sinusoidal time embedding), got {self.width}")


class DDPM(nn.Module):
    """An ε-prediction diffusion model: `loss(batch)` is L_simple, `eps(x, t)` the noise prediction.

    Data enter in [−1, 1] (the trainer feeds `ImageData.tensor_dataset("symmetric")`). `eps` takes
    x (B, *shape) in any float dtype and 1-based timesteps t (B,) or an int, and returns ε̂ in x's dtype,
    so samplers can run in float64 around a float32 network.
    """

    def __init__(self, config: DDPMConfig) -> None:
        super().__init__()
        from kexue.nn.resmlp import ResMLP
        from kexue.nn.unet import UNet

        self.config = config
        make = schedules.linear_abar if config.schedule == "linear" else schedules.cosine_abar
        self.abar = make(config.steps)  # (N + 1,) float64 on the CPU: not a parameter, not saved
        if config.net == "resmlp":
            dim = int(torch.tensor(config.shape).prod())
            self.net: nn.Module = ResMLP(dim, config.width, config.depth, config.dropout)
        else:
            self.net = UNet(config.shape[0], config.width, config.dropout)

    def eps(self, x: Tensor, t: int | Tensor) -> Tensor:
        dtype = next(self.parameters()).dtype
        t = torch.full((len(x),), t, device=x.device) if not isinstance(t, Tensor) else t.to(x.device)
        if t.dim() == 0:
            t = t.expand(len(x))
        flat = self.config.net == "resmlp"
        h = x.reshape(len(x), -1) if flat else x
        out = self.net(h.to(dtype), t.to(dtype))
        return out.reshape(x.shape).to(x.dtype)

    forward = eps

    def loss(self, batch) -> Tensor:
        x0 = batch[0] if isinstance(batch, (tuple, list)) else batch
        return loss_simple(self.eps, x0.reshape(len(x0), *self.config.shape), self.abar)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        steps: int = 50,
        eta: float = 0.0,
        trajectory: str = "even",
    ) -> Tensor:
        """n samples (n, *shape) on the data's scale [−1, 1] (not clamped), by DDIM (η, K steps, float64)."""
        from kexue.diffusion.ddim import sample as ddim_sample

        device = next(self.parameters()).device
        x = torch.randn(n, *self.config.shape, generator=generator, device=device, dtype=torch.float64)
        traj = schedules.trajectory(trajectory, self.config.steps, steps)
        return ddim_sample(self.eps, x, self.abar, traj, eta=eta, generator=generator).float()
