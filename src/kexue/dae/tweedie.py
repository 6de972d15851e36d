r"""The optimal denoising autoencoder is the score: Tweedie's formula.  [7038] eq. (denoise)

For x ~ p and ε ~ N(0, σ²I), the minimiser of the DAE objective

    r* = argmin_r E_{x, ε} ‖r(x + ε) − x‖²                                      [7038] eq. 1

is the posterior mean, and the posterior mean is the noisy data's score [7038] (proof under eq. 1):

    r*(x̃) = E[x | x̃] = x̃ + σ² ∇_x̃ log p_σ(x̃),     p_σ = p * N(0, σ²I)  (Su's \hat p)

so s(x̃) = (r(x̃) − x̃)/σ² estimates ∇log p_σ, and r itself is the final "denoise" step that maps a sample of
p_σ back towards p ([7038], the three-step recipe of the annealed-DSM section).

Sources:
  [7038]   kexue.fm/archives/7038 "从去噪自编码器到生成模型".
  [Robbins] H. Robbins, "An empirical Bayes approach to statistics", 1956; Efron, "Tweedie's formula and
           selection bias", JASA 2011, eq. 2.8 (Tweedie's formula).
  [Vincent] P. Vincent, "A Connection Between Score Matching and Denoising Autoencoders", Neural
           Computation 2011: the DAE / denoising score matching equivalence.

Shapes: x, r_out and score are (B, …) alike; σ is a positive float (one noise level for the batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kexue.dae.nets import c_in, check_positive, smooth_mlp


def _same_shape(a: Tensor, b: Tensor, names: str, where: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{where}: {names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}; "
            "pass the denoiser's output for the same batch x"
        )


def score_from_denoiser(r_out: Tensor, x: Tensor, sigma: float) -> Tensor:
    """s(x) = (r(x) − x)/σ² ≈ ∇log p_σ(x), (B, …).  [7038] eq. 1 solved for the score"""
    sigma = check_positive(sigma, "sigma", "score_from_denoiser")
    _same_shape(r_out, x, "r_out and x", "score_from_denoiser")
    return (r_out - x) / sigma**2


def denoiser_from_score(score: Tensor, x: Tensor, sigma: float) -> Tensor:
    """r(x) = x + σ²·s(x) = E[x0 | x] when s is the exact score of p_σ, (B, …).  [7038] eq. 1, [Robbins]"""
    sigma = check_positive(sigma, "sigma", "denoiser_from_score")
    _same_shape(score, x, "score and x", "denoiser_from_score")
    return x + sigma**2 * score


def dae_loss(
    r_fn: Callable[[Tensor], Tensor], x: Tensor, sigma: float, *, generator: torch.Generator | None = None
) -> Tensor:
    """E_{x, n} ‖r(x + σn) − x‖², n ~ N(0, I): squared norm over features, batch mean.  [7038] eq. 1"""
    sigma = check_positive(sigma, "sigma", "dae_loss")
    n = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (r_fn(x + sigma * n) - x).pow(2).flatten(1).sum(1).mean()


@dataclass(frozen=True)
class DAEConfig:
    dim: int = 2  # D: features per sample (inputs (B, …) are flattened to (B, D))
    sigma: float = 1.0  # the one noise level σ the DAE is trained at
    data_std: float = 1.0  # σ_data, per-coordinate std of the data, for the input scale c_in  [EDM]
    width: int = 128  # hidden width of the MLP
    depth: int = 3  # hidden layers

    def __post_init__(self) -> None:
        check_positive(self.sigma, "sigma", "DAEConfig")
        check_positive(self.data_std, "data_std", "DAEConfig")
        if self.dim < 1 or self.width < 1 or self.depth < 1:
            raise ValueError(
                f"DAEConfig: dim, width and depth must be ≥ 1, got {self.dim}, {self.width}, {self.depth}"
            )


class DAE(nn.Module):
    r"""A denoising autoencoder r(x̃) = x̃ + σ·F(c_in·x̃) trained with [7038] eq. 1.

    The residual form makes r − x̃ = σF, so at the optimum F = σ∇log p_σ = −E[n | x̃], a target of unit
    scale at every σ; the trainer's loss is eq. 1 divided by σ² (the same minimiser, a σ-free scale).
    """

    def __init__(self, config: DAEConfig) -> None:
        super().__init__()
        self.config = config
        self.net = smooth_mlp(config.dim, config.dim, config.width, config.depth)

    def forward(self, x: Tensor) -> Tensor:
        """r(x), (B, …) → (B, …)."""
        cfg = self.config
        flat = x.reshape(len(x), -1)  # (B, D)
        if flat.shape[1] != cfg.dim:
            raise ValueError(
                f"DAE: inputs have {flat.shape[1]} features per sample but the DAE was built for "
                f"dim={cfg.dim}; pass (B, {cfg.dim}) data or build DAEConfig(dim={flat.shape[1]})"
            )
        return x + cfg.sigma * self.net(c_in(cfg.sigma, cfg.data_std) * flat).reshape(x.shape)

    def score(self, x: Tensor) -> Tensor:
        """(r(x) − x)/σ² ≈ ∇log p_σ(x), (B, …)."""
        return score_from_denoiser(self(x), x, self.config.sigma)

    def loss(self, batch) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return dae_loss(self, x, self.config.sigma) / self.config.sigma**2


__all__ = ["DAE", "DAEConfig", "dae_loss", "denoiser_from_score", "score_from_denoiser"]
