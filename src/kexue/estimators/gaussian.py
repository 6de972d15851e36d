"""The Gaussian reparameterization and the Gaussian KLs of the VAE ([6705], [5253]).

    E_{z~N(μ, σ²)} f(z) = E_{ε~N(0, I)} f(μ + σ⊙ε)                                   ([6705] eq. 7)
    KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ_i (μ_i² + σ_i² − log σ_i² − 1)                      ([5253])
    KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)) = ½ Σ_i (log σ₂²/σ₁² + (σ₁² + (μ₁ − μ₂)²)/σ₂² − 1)

Variances are passed as log σ² (`logvar`), the usual network output; sums run over the last axis.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def reparameterize(
    mu: Tensor, logvar: Tensor, *, eps: Tensor | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """z = μ + σ⊙ε with ε ~ N(0, I) (given, or drawn from `generator`); differentiable in μ and log σ²."""
    if mu.shape != logvar.shape:
        raise ValueError(
            f"μ and log σ² must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + (0.5 * logvar).exp() * eps


def gaussian_kl_standard(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over the last axis: ½Σ(μ² + σ² − log σ² − 1)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(-1)


def gaussian_kl(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)) for diagonal Gaussians, summed over the last axis."""
    return 0.5 * (logvar2 - logvar1 + (logvar1.exp() + (mu1 - mu2).pow(2)) / logvar2.exp() - 1).sum(-1)


def gaussian_log_prob(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; μ, diag σ²) summed over the last axis."""
    return -0.5 * ((z - mu).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)
