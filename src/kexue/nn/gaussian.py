"""A full-covariance Gaussian density: the baseline every density model in kexue has to beat.

    x ~ N(μ, LLᵀ),  L lower-triangular with a positive diagonal (exp of a free parameter)
    −log p(x) = ½‖L⁻¹(x − μ)‖² + Σ_i log L_ii + (D/2) log 2π

Trained by the same trainer as everything else; its maximum-likelihood optimum is known in closed form
(the sample mean and the biased sample covariance), which makes it the trainer's end-to-end check.
On image data it models uniformly dequantized pixels in [0, 1] and logs bits/dim on the discrete data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class GaussianConfig:
    dim: int = 2  # D: 2 for toy data, C·H·W for images
    levels: int | None = None  # grey levels of image data (dequantize + bits/dim); None for continuous data

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be ≥ 1, got {self.dim}")
        if self.levels is not None and self.levels < 2:
            raise ValueError(f"levels must be ≥ 2 (or None for continuous data), got {self.levels}")


class Gaussian(nn.Module):
    def __init__(self, config: GaussianConfig) -> None:
        super().__init__()
        self.config = config
        d = config.dim
        self.mu = nn.Parameter(torch.zeros(d))
        self.log_diag = nn.Parameter(torch.zeros(d))
        self.lower = nn.Parameter(torch.zeros(d * (d - 1) // 2))
        self.register_buffer("tril", torch.tril_indices(d, d, -1), persistent=False)

    def scale_tril(self) -> Tensor:
        """L (D, D): lower-triangular Cholesky factor of the covariance."""
        d = self.config.dim
        L = torch.diag(self.log_diag.exp())
        return L.index_put((self.tril[0], self.tril[1]), self.lower) if d > 1 else L

    def log_prob(self, x: Tensor) -> Tensor:
        """log N(x; μ, LLᵀ) per row, x (B, D) → (B,)."""
        L = self.scale_tril()
        z = torch.linalg.solve_triangular(L, (x - self.mu).T, upper=False).T  # (B, D) = L⁻¹(x − μ)
        return -0.5 * z.pow(2).sum(1) - self.log_diag.sum() - 0.5 * self.config.dim * math.log(2 * math.pi)

    def loss(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        x = batch[0].flatten(1)
        levels = self.config.levels
        if levels is not None:  # x holds [0, 1] levels k/(levels−1): dequantize to (k + u)/levels
            k = (x * (levels - 1)).round()
            x = (k + torch.rand_like(k)) / levels
        nll = -self.log_prob(x).mean()
        out = {"loss": nll}
        if levels is not None:  # bits/dim of the discrete data (dequantization bound, Theis et al. 2016)
            out["bpd"] = (nll.detach() + self.config.dim * math.log(levels)) / (self.config.dim * math.log(2))
        return out

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n draws (n, D); for image data, clamped to [0, 1]."""
        z = torch.randn(n, self.config.dim, generator=generator, device=self.mu.device)
        x = self.mu + z @ self.scale_tril().T
        return x.clamp(0, 1) if self.config.levels is not None else x
