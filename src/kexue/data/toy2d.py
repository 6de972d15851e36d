r"""Two-dimensional toy distributions with exact sampling and exact log-densities.

Each object has `sample(n, *, generator=None)` → (n, 2) float32 and `log_prob(x)` for x (n, 2) → (n,) float64,
−inf outside the support. All math is float64; only the returned samples are cast to float32.

Sources:
  [Unrolled] Metz et al., "Unrolled Generative Adversarial Networks", ICLR 2017: 8 Gaussians on a ring.
  [VEEGAN]   Srivastava et al., "VEEGAN", NeurIPS 2017: the 5×5 grid of Gaussians.
  [NCSN]     Song & Ermon, "Generative Modeling by Estimating Gradients of the Data Distribution",
             NeurIPS 2019, Sec. 3.2: the imbalanced two-mode mixture.
  [FFJORD]   Grathwohl et al., "FFJORD", ICLR 2019: the checkerboard toy.
  [Haario]   Haario, Saksman & Tamminen, "Adaptive proposal distribution for random walk Metropolis
             algorithm", Computational Statistics 14, 1999: the twisted Gaussian ("banana").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


class Density2D(Protocol):
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor: ...  # (n, 2) float32
    def log_prob(self, x: Tensor) -> Tensor: ...  # (n, 2) → (n,) float64


@dataclass(frozen=True)
class GaussianMixture2D:
    r"""p(x) = Σ_k π_k N(x; μ_k, σ_k² I): a mixture of K isotropic Gaussians.

    Stored as tuples of floats, so the object is immutable and hashable; arrays or tensors are accepted.
    """

    means: tuple[tuple[float, float], ...]  # μ_k, (K, 2)
    stds: tuple[float, ...]  # σ_k > 0, (K,)
    weights: tuple[float, ...]  # π_k ≥ 0 with Σ π_k = 1 (within 1e-6), (K,)

    def __post_init__(self) -> None:
        means = np.asarray(self.means, dtype=np.float64)
        stds = np.asarray(self.stds, dtype=np.float64)
        weights = np.asarray(self.weights, dtype=np.float64)
        if means.ndim != 2 or means.shape[1] != 2 or len(means) == 0:
            raise ValueError(f"GaussianMixture2D: means must have shape (K, 2) with K ≥ 1, got {means.shape}")
        if stds.shape != (len(means),) or weights.shape != (len(means),):
            raise ValueError(
                f"GaussianMixture2D: stds and weights must have shape ({len(means)},) like means, "
                f"got {stds.shape} and {weights.shape}"
            )
        if not np.isfinite(means).all():
            raise ValueError("GaussianMixture2D: means must be finite")
        if not (np.isfinite(stds) & (stds > 0)).all():
            raise ValueError(f"GaussianMixture2D: stds must be finite and > 0, got {stds.tolist()}")
        if not (weights >= 0).all() or abs(weights.sum() - 1) > 1e-6:
            raise ValueError(
                f"GaussianMixture2D: weights must be ≥ 0 and sum to 1 (within 1e-6), got "
                f"{weights.tolist()} summing to {weights.sum()!r}"
            )
        object.__setattr__(self, "means", tuple(map(tuple, means.tolist())))
        object.__setattr__(self, "stds", tuple(stds.tolist()))
        object.__setattr__(self, "weights", tuple(weights.tolist()))

    def _params(self) -> tuple[Tensor, Tensor, Tensor]:
        f64 = torch.float64
        w = torch.tensor(self.weights, dtype=f64)
        return torch.tensor(self.means, dtype=f64), torch.tensor(self.stds, dtype=f64), w / w.sum()

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        mu, sigma, w = self._params()
        if _count(n) == 0:  # torch.multinomial refuses zero draws
            return torch.empty(0, 2)
        k = torch.multinomial(w, n, replacement=True, generator=generator)  # (n,) component ids
        z = torch.randn(n, 2, dtype=torch.float64, generator=generator)  # (n, 2)
        return (mu[k] + sigma[k, None] * z).to(torch.float32)  # x = μ_k + σ_k z

    def log_prob(self, x: Tensor) -> Tensor:
        x = _points(x)  # (n, 2)
        mu, sigma, w = self._params()
        d2 = ((x[:, None, :] - mu) ** 2).sum(-1)  # (n, K) |x − μ_k|², differences first: exact far out
        log_n = -d2 / (2 * sigma**2) - 2 * torch.log(sigma) - LOG_2PI  # log N(x; μ_k, σ_k² I) in 2-D
        return torch.logsumexp(torch.log(w) + log_n, dim=1)  # (n,); π_k = 0 gives −inf terms, harmless


def ring8(radius: float = 2.0, std: float = 0.02) -> GaussianMixture2D:
    """8 equal Gaussians with means on a circle at angles 2πk/8 ([Unrolled]: radius 2, std 0.02)."""
    angles = 2 * np.pi * np.arange(8) / 8
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (8, 2)
    return GaussianMixture2D(means, (std,) * 8, (1 / 8,) * 8)


def grid25(spacing: float = 2.0, std: float = 0.05) -> GaussianMixture2D:
    """25 equal Gaussians on a 5×5 grid centred at 0: means in {−2, −1, 0, 1, 2}·spacing ([VEEGAN])."""
    ticks = spacing * np.arange(-2, 3)
    means = np.stack(np.meshgrid(ticks, ticks, indexing="ij"), axis=-1).reshape(25, 2)  # (25, 2)
    return GaussianMixture2D(means, (std,) * 25, (1 / 25,) * 25)


def imbalanced(
    weights: tuple[float, float] = (0.2, 0.8), centre: float = 5.0, std: float = 1.0
) -> GaussianMixture2D:
    """π_1 N((−c, −c), σ²I) + π_2 N((c, c), σ²I); the defaults are [NCSN] Sec. 3.2's 1/5 and 4/5 at ±(5, 5).

    [NCSN] uses it to show that Langevin dynamics with a single-scale score cannot recover the weights: near
    either mode the score barely depends on π, so chains started uniformly end about equally in both modes.
    """
    return GaussianMixture2D(((-centre, -centre), (centre, centre)), (std, std), weights)


@dataclass(frozen=True)
class Checkerboard:
    """Uniform on the black squares of a `squares`×`squares` board over [−half_width, half_width]² ([FFJORD]).

    Cell (a, b), counted from the bottom-left corner, covers [−h + a·s, −h + (a+1)·s) × [same in b] with side
    s = 2h / squares, and is black when a + b is even (so the bottom-left cell is black, as in [FFJORD]'s
    generator). The density is 1 / (black area) = 1 / (⌈squares²/2⌉ · s²) on black cells and 0 elsewhere.
    """

    squares: int = 4  # cells per side
    half_width: float = 4.0  # the board is [−h, h]²

    def __post_init__(self) -> None:
        if isinstance(self.squares, bool) or not isinstance(self.squares, int) or self.squares < 1:
            raise ValueError(f"Checkerboard: squares must be an int ≥ 1, got {self.squares!r}")
        if not (math.isfinite(self.half_width) and self.half_width > 0):
            raise ValueError(f"Checkerboard: half_width must be finite and > 0, got {self.half_width!r}")

    @property
    def side(self) -> float:
        return 2 * self.half_width / self.squares

    @property
    def num_black(self) -> int:
        return (self.squares**2 + 1) // 2

    def _cell(self, x: Tensor) -> Tensor:
        """(n, 2) points → (n, 2) int64 cell indices (a, b); monotone in each coordinate."""
        return torch.floor((x.to(torch.float64) + self.half_width) / self.side).long()

    def log_prob(self, x: Tensor) -> Tensor:
        cell = self._cell(_points(x))  # (n, 2)
        inside = ((cell >= 0) & (cell < self.squares)).all(1) & (cell.sum(1) % 2 == 0)
        log_area = math.log(self.num_black * self.side**2)  # ≈ log 2h²: one rounding, no overflow
        # look up a float64 table: torch.where on Python scalars would round −log_area to float32
        table = torch.tensor([-math.inf, -log_area], dtype=torch.float64)
        return table[inside.long()]  # (n,)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        s = self.squares
        m = torch.randint(self.num_black, (_count(n),), generator=generator)  # uniform over black cells
        c = 2 * m  # row-major index b·s + a of the m-th black cell when s is odd (black ⟺ c even) ...
        b = c // s
        a = c % s + (b % 2 if s % 2 == 0 else 0)  # ... for even s, row b's black cells start at a = b mod 2
        cell = torch.stack([a, b], dim=1)  # (n, 2)
        u = torch.rand(n, 2, dtype=torch.float64, generator=generator)
        x = (-self.half_width + (cell + u) * self.side).to(torch.float32)  # (n, 2)
        # Rounding (float64 sum, then float32) can put a point just across its cell's edge (probability about
        # one float32 ulp / side); step such coordinates one ulp back until the point is inside its cell.
        while (off := self._cell(x) - cell).any():
            x = torch.where(off > 0, torch.nextafter(x, torch.tensor(-math.inf)), x)
            x = torch.where(off < 0, torch.nextafter(x, torch.tensor(math.inf)), x)
        return x


@dataclass(frozen=True)
class Banana:
    r"""The twisted Gaussian of [Haario]: a Gaussian bent into a banana by a volume-preserving shear.

    z ~ N(0, diag(s1², s2²)),  x = T(z) = (z1, z2 + b(z1² − s1²)).

    Exact density. T is a bijection with inverse T⁻¹(x) = (x1, x2 − b(x1² − s1²)), and its Jacobian
    ∂T/∂z = [[1, 0], [2b z1, 1]] is lower triangular with unit diagonal, so |det ∂T⁻¹/∂x| = 1 and
    change of variables gives p(x) = p_z(T⁻¹(x)) with no log-det term:

        log p(x) = log N(x1; 0, s1²) + log N(x2 − b(x1² − s1²); 0, s2²).

    Moments: E[x] = 0 (E[z1²] = s1²), Cov(x1, x2) = b E[z1³] = 0, Var(x2) = s2² + 2b²s1⁴ (Var z1² = 2s1⁴).
    [Haario] writes p = f ∘ φ_b with φ_b(x) = (x1, x2 + b x1² − 100b) and s1 = 10, s2 = 1: the same family
    with the sign of b flipped (their banana opens downwards).
    """

    s1: float = 10.0  # std of z1 (= x1); [Haario] 10
    s2: float = 1.0  # std of z2, the banana's thickness; [Haario] 1
    b: float = 0.03  # curvature; [Haario] uses 0.03 (with the opposite sign convention)

    def __post_init__(self) -> None:
        for name in ("s1", "s2"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Banana: {name} must be finite and > 0, got {value!r}")
        if not math.isfinite(self.b):
            raise ValueError(f"Banana: b must be finite, got {self.b!r}")

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(_count(n), 2, dtype=torch.float64, generator=generator)
        z = z * torch.tensor([self.s1, self.s2], dtype=torch.float64)  # (n, 2) ~ N(0, diag(s1², s2²))
        x2 = z[:, 1] + self.b * (z[:, 0] ** 2 - self.s1**2)  # x = T(z)
        return torch.stack([z[:, 0], x2], dim=1).to(torch.float32)

    def log_prob(self, x: Tensor) -> Tensor:
        x = _points(x)
        z2 = x[:, 1] - self.b * (x[:, 0] ** 2 - self.s1**2)  # T⁻¹(x); log|det| = 0
        return _log_normal(x[:, 0], self.s1) + _log_normal(z2, self.s2)


def _log_normal(v: Tensor, std: float) -> Tensor:
    return -0.5 * (v / std) ** 2 - math.log(std) - 0.5 * LOG_2PI  # log N(v; 0, std²), 1-D


def _points(x: Tensor) -> Tensor:
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"toy2d: log_prob expects points of shape (n, 2), got {tuple(x.shape)}")
    return x.to(torch.float64)


def _count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"toy2d: sample size n must be an int ≥ 0, got {n!r}")
    return n
