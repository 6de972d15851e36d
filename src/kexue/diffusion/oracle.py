r"""Closed forms for data from a mixture of isotropic Gaussians: the optimal ε-predictor and exact densities.

For p_0 = Σ_k π_k N(μ_k, s_k² I) every noisy marginal is again a mixture,

    q_t = Σ_k π_k N(√ᾱ_t μ_k, v_k I),  v_k = ᾱ_t s_k² + β̄_t,

so the score, ε*(x_t) = E[ε|x_t] = −√β̄_t ∇log q_t, E[x0|x_t] and the per-dimension posterior covariance of x0
are exact. A single component (K = 1) is Gaussian data, where everything Analytic-DPM estimates has a
closed form. These oracles separate discretisation error from network error in tests and reproductions
(reference/diffusion.md §4a). Everything is float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GaussianMixture:
    means: Tensor  # (K, D) μ_k
    stds: Tensor  # (K,) s_k > 0
    weights: Tensor  # (K,) π_k, summing to 1

    @classmethod
    def from_toy(cls, toy) -> GaussianMixture:
        """From kexue.data.toy2d.GaussianMixture2D."""
        f64 = torch.float64
        return cls(
            torch.tensor(toy.means, dtype=f64),
            torch.tensor(toy.stds, dtype=f64),
            torch.tensor(toy.weights, dtype=f64),
        )

    @classmethod
    def ring(cls, k: int = 8, radius: float = 0.8, std: float = 0.08) -> GaussianMixture:
        """K equal Gaussians on a circle (reference/diffusion.md §2.6: radius 0.8, std 0.08)."""
        angle = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
        means = radius * torch.stack([angle.cos(), angle.sin()], 1)
        return cls(
            means, torch.full((k,), std, dtype=torch.float64), torch.full((k,), 1 / k, dtype=torch.float64)
        )

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        return self.means[k] + self.stds[k, None] * z  # (n, D)

    def _logits(self, x: Tensor, abar_t: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """log π_k N(x; √ᾱ μ_k, v_k I) (n, K), v (K,) or (n, K), x − √ᾱ μ_k (n, K, D); on x's device, float64.

        abar_t is one ᾱ for every row or an (n,) tensor of per-row ᾱ (rows at different timesteps).
        """
        x = x.double()
        a = _rows(abar_t, x)  # () or (n, 1)
        means, stds, weights = (p.to(x.device) for p in (self.means, self.stds, self.weights))
        v = a * stds**2 + (1 - a)  # (K,) or (n, K)
        diff = x[:, None, :] - a.sqrt()[..., None] * means[None]  # (n, K, D)
        logits = weights.log() - 0.5 * (diff**2).sum(-1) / v - 0.5 * self.dim * torch.log(2 * math.pi * v)
        return logits, v, diff

    def _parts(self, x: Tensor, abar_t: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Responsibilities r (n, K), variances v (K,), centred x − √ᾱ μ_k (n, K, D) under q_t."""
        logits, v, diff = self._logits(x, abar_t)
        return logits.softmax(-1), v, diff

    def log_prob(self, x: Tensor, abar_t: float | Tensor = 1.0) -> Tensor:
        """log q_t(x), (n, D) → (n,); abar_t = 1 gives the data density."""
        return self._logits(x, abar_t)[0].logsumexp(-1)

    def score(self, x: Tensor, abar_t: float | Tensor) -> Tensor:
        """∇_x log q_t(x) = −Σ_k r_k (x − √ᾱ μ_k)/v_k, (n, D)."""
        r, v, diff = self._parts(x.double(), abar_t)
        return -(r[..., None] * diff / v[..., None]).sum(1)

    def eps(self, x: Tensor, abar_t: float | Tensor) -> Tensor:
        """ε*(x_t) = E[ε|x_t] = −√β̄_t·∇log q_t(x_t): the L_simple minimiser."""
        return -(1 - _rows(abar_t, x)).sqrt() * self.score(x, abar_t)

    def eps_fn(self, abar: Tensor):
        """ε* as an ε-network: (x (B, D), t (B,) 1-based, mixed timesteps allowed) → (B, D)."""
        return lambda x, t: self.eps(x, abar.to(t.device)[t])

    def x0_moments(self, x: Tensor, abar_t: float | Tensor) -> tuple[Tensor, Tensor]:
        """E[x0|x_t] (n, D) and the diagonal of Cov[x0|x_t] (n, D), by the law of total variance."""
        r, v, diff = self._parts(x.double(), abar_t)
        a, s2 = _rows(abar_t, x), self.stds.to(x.device) ** 2
        m_k = self.means.to(x.device)[None] + (a.sqrt() * s2 / v)[..., None] * diff  # (n, K, D) E[x0|x_t, k]
        c_k = s2 * (1 - a) / v  # (K,) or (n, K): Var[x0|x_t, k] per dimension
        mean = (r[..., None] * m_k).sum(1)
        second = (r[..., None] * (m_k**2 + c_k[..., None])).sum(1)
        return mean, second - mean**2


def _rows(abar_t: float | Tensor, x: Tensor) -> Tensor:
    """ᾱ as a float64 scalar, or an (n,) per-row ᾱ as (n, 1), on x's device."""
    a = torch.as_tensor(abar_t, dtype=torch.float64).to(x.device)
    return a[:, None] if a.dim() == 1 else a
