r"""A noise-conditional score network s_θ(x, σ) trained by multi-level denoising score matching.  [NCSN]

One network for all noise levels σ_1 > … > σ_L (geometric). Its per-level loss is the DAE objective of
[7038] eq. 1 written for the score ([Vincent]; x̃ = x + σn):

    ℓ(θ; σ) = ½ E ‖s_θ(x̃, σ) + n/σ‖²,       L(θ) = (1/L) Σ_i λ(σ_i) ℓ(θ; σ_i),  λ(σ) = σ²   [NCSN] eqs. 5–6

λ(σ) = σ² makes every level's term ½ E‖σ s_θ + n‖² of order one, since ‖σ·∇log p_σ‖ ~ 1 ([NCSN] Sec. 4.2;
reference/diffusion.md §1.7). The level of each sample is drawn uniformly, an unbiased estimate of the
average over i.

Parametrisation (a choice of this module, not [NCSN]'s conditional instance norm):
    s_θ(x, σ) = F(c_in(σ)·x, log σ)/σ,   c_in = 1/√(σ² + σ_data²)   ([NCSNv2] Technique 3: the score's norm
scales as 1/σ; [EDM] Table 1: unit-variance inputs), with F a ResMLP (kexue.nn.resmlp) whose "time" is
log σ through the sinusoidal embedding. So σ·s_θ = F ≈ −E[n | x̃] is a unit-scale target at every level.

Sources:
  [NCSN]   Song & Ermon, NeurIPS 2019, eqs. 5–6 and Sec. 4.2.
  [NCSNv2] Song & Ermon, "Improved Techniques for Training Score-Based Generative Models", NeurIPS 2020.
  [EDM]    Karras et al., NeurIPS 2022, Table 1.
  [Vincent] Vincent, Neural Computation 2011 (denoising score matching).
  [7038]   kexue.fm/archives/7038.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kexue.dae.langevin import check_sigmas, geometric_sigmas
from kexue.dae.nets import check_positive
from kexue.nn.resmlp import ResMLP

NoiseScoreFn = Callable[[Tensor, Tensor], Tensor]  # (x̃ (B, D), σ (B,)) → s(x̃, σ), (B, D)


def dsm_loss(
    score_fn: NoiseScoreFn, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None
) -> Tensor:
    r"""(1/L) Σ_i σ_i²·½ E‖s(x + σ_i n, σ_i) + n/σ_i‖², one uniformly drawn level per sample.  [NCSN] eq. 6

    x: (B, D); sigmas: the (L,) levels; score_fn receives (x̃ (B, D), σ (B,)) in x's dtype and device.
    """
    levels = torch.tensor(check_sigmas(sigmas, "dsm_loss"), dtype=x.dtype, device=x.device)  # (L,)
    i = torch.randint(len(levels), (len(x),), generator=generator, device=x.device)  # (B,) level ids
    sigma = levels[i]  # (B,)
    n = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    s = sigma.view(-1, *[1] * (x.dim() - 1))  # (B, 1, …) for broadcasting
    x_noisy = x + s * n
    return 0.5 * (s * score_fn(x_noisy, sigma) + n).pow(2).flatten(1).sum(1).mean()  # λ(σ)·ℓ = ½‖σs + n‖²


@dataclass(frozen=True)
class ScoreNetConfig:
    dim: int = 2  # D: features per sample (inputs (B, …) are flattened to (B, D))
    sigma_max: float = 1.0  # σ_1; [NCSN] images: 1, about the largest pairwise data distance ([NCSNv2] T1)
    sigma_min: float = 0.01  # σ_L; [NCSN] images: 0.01
    levels: int = 10  # L; [NCSN]: 10
    data_std: float = 1.0  # σ_data, per-coordinate data std, for c_in  [EDM]
    width: int = 128  # ResMLP width
    depth: int = 3  # ResMLP residual blocks
    dropout: float = 0.0

    def __post_init__(self) -> None:
        geometric_sigmas(self.sigma_max, self.sigma_min, self.levels)  # validates the range
        check_positive(self.data_std, "data_std", "ScoreNetConfig")
        if self.dim < 1 or self.width < 2 or self.width % 2 or self.depth < 1:
            raise ValueError(
                f"ScoreNetConfig: dim ≥ 1, an even width ≥ 2 and depth ≥ 1 are needed, got dim={self.dim}, "
                f"width={self.width}, depth={self.depth}"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"ScoreNetConfig: dropout must lie in [0, 1), got {self.dropout}")


class ScoreNet(nn.Module):
    """s_θ(x, σ) ≈ ∇_x log p_σ(x): (x (B, …), σ float or (B,)) → (B, …)."""

    def __init__(self, config: ScoreNetConfig) -> None:
        super().__init__()
        self.config = config
        self.net = ResMLP(config.dim, config.width, config.depth, config.dropout)

    @property
    def sigmas(self) -> Tensor:
        """The training levels σ_1 > … > σ_L, (L,) float64 on the CPU."""
        cfg = self.config
        return geometric_sigmas(cfg.sigma_max, cfg.sigma_min, cfg.levels)

    def forward(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        cfg = self.config
        flat = x.reshape(len(x), -1)  # (B, D)
        if flat.shape[1] != cfg.dim:
            raise ValueError(
                f"ScoreNet: inputs have {flat.shape[1]} features per sample but the net was built for "
                f"dim={cfg.dim}; pass (B, {cfg.dim}) data or build ScoreNetConfig(dim={flat.shape[1]})"
            )
        sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        if sig.numel() not in (1, len(x)):
            raise ValueError(
                f"ScoreNet: σ must be one number or one per sample ({len(x)}), got {sig.numel()} values"
            )
        sig = sig.expand(len(x))  # (B,)
        if not bool((sig > 0).all()):
            raise ValueError("ScoreNet: every σ must be > 0 (the score of p_σ is conditioned on σ)")
        c = (sig**2 + cfg.data_std**2).rsqrt()[:, None]  # (B, 1) c_in  [EDM] Table 1
        f = self.net(c * flat, sig.log())  # (B, D) F ≈ −E[n | x̃]
        return (f / sig[:, None]).reshape(x.shape)  # s = F/σ  [NCSNv2] Technique 3

    def loss(self, batch) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return dsm_loss(self, x.reshape(len(x), -1), self.sigmas)


__all__ = ["ScoreNet", "ScoreNetConfig", "dsm_loss"]
