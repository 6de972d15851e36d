r"""Denoising density estimator (DDE): a scalar network whose gradient is a DAE.  [DDE], [7038] eq. (e-grad)

Train a scalar E(x) so that x + ∇E(x) is the optimal DAE of noise level σ:

    E* = argmin_E E_{x ~ p, ε ~ N(0, σ²I)} ‖∇_x E(x + ε) + ε‖²                     [7038] eq. (e-grad)

By Tweedie ([7038] eq. 1; kexue.dae.tweedie) x + ∇E* = x + σ²∇log p_σ, hence

    E*(x) = σ² log p_σ(x) + C,        p_σ = p * N(0, σ²I)                         [7038] the E_p line

an unnormalised log-density of the smoothed data, and its score is ∇E/σ². On a finite training sample
{x_j} the expectation over p is the empirical one, whose p_σ is the Gaussian kernel density estimate with
bandwidth σ (`kde_log_prob`): the DDE's exact optimum, and so the natural reference for it
(reference/diffusion.md §1.7: "a learned kernel density estimate").

Parametrisation: E(x) = σ²·f(c_in·x) with f a smooth scalar MLP, so f ≈ log p_σ + C is on the log-density
scale whatever σ; the trainer's loss is eq. (e-grad) divided by σ², i.e. E‖σ∇f + n‖² (same minimiser).

Normalising. In 2-D (or any low D) log Z = log ∫ e^f is computed by the midpoint rule on a grid of cells
(`grid_log_normalizer`: logsumexp over cell centres + log cell volume), giving an exactly normalised
log p̂ = f − log Z on the box, whose NLL on held-out points is comparable with any other density.

Sources:
  [DDE]  Bigdeli, Lin, Portenier, Dunbar, Zwicker, "Learning Generative Models using Denoising Density
         Estimators", arXiv:1910.03829 (2020): the DDE objective and its optimum (their Sec. 3).
  [7038] kexue.fm/archives/7038 "从去噪自编码器到生成模型", eq. (e-grad) and the two lines after it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kexue.dae.nets import c_in, check_positive, smooth_mlp

LogFn = Callable[[Tensor], Tensor]  # x (N, D) → unnormalised log-density (N,)


def dde_loss(
    energy_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    sigma: float,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""E‖∇E(x + ε) + ε‖², ε ~ N(0, σ²I); x (B, D), energy_fn (B, D) → (B,).  [7038] eq. (e-grad)

    Differentiable in E's parameters (the gradient is taken with create_graph).
    """
    sigma = check_positive(sigma, "sigma", "dde_loss")
    eps = sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    x_noisy = (x + eps).detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(energy_fn(x_noisy).sum(), x_noisy, create_graph=True)  # (B, D) ∇E
    return (grad + eps).pow(2).flatten(1).sum(1).mean()


@dataclass(frozen=True)
class DDEConfig:
    dim: int = 2  # D
    sigma: float = 0.1  # the smoothing σ of p_σ; reference/diffusion.md §4 row 10: σ = 0.1
    data_std: float = 1.0  # σ_data, per-coordinate data std, for the input scale c_in  [EDM] Table 1
    width: int = 128  # hidden width of the scalar MLP
    depth: int = 3  # hidden layers

    def __post_init__(self) -> None:
        check_positive(self.sigma, "sigma", "DDEConfig")
        check_positive(self.data_std, "data_std", "DDEConfig")
        if self.dim < 1 or self.width < 1 or self.depth < 1:
            raise ValueError(
                f"DDEConfig: dim, width and depth must be ≥ 1, got {self.dim}, {self.width}, {self.depth}"
            )


class DDE(nn.Module):
    """E(x) = σ²·f(c_in·x) ≈ σ² log p_σ(x) + C, a scalar per point; x (B, D)."""

    def __init__(self, config: DDEConfig) -> None:
        super().__init__()
        self.config = config
        self.net = smooth_mlp(config.dim, 1, config.width, config.depth)

    def log_unnormalized(self, x: Tensor) -> Tensor:
        """f(x) = E(x)/σ² ≈ log p_σ(x) + C/σ², (B, D) → (B,)."""
        cfg = self.config
        if x.dim() != 2 or x.shape[1] != cfg.dim:
            raise ValueError(
                f"DDE: expects points of shape (B, {cfg.dim}), got {tuple(x.shape)}; flatten or reshape them"
            )
        return self.net(c_in(cfg.sigma, cfg.data_std) * x).squeeze(1)

    def energy(self, x: Tensor) -> Tensor:
        """E(x) = σ²·f(x), (B, D) → (B,).  [7038] E_p(x) = σ² log p̂(x) + C"""
        return self.config.sigma**2 * self.log_unnormalized(x)

    def score(self, x: Tensor) -> Tensor:
        """∇E/σ² = ∇f ≈ ∇log p_σ(x), (B, D), detached (usable under torch.no_grad, e.g. in Langevin)."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_unnormalized(xg).sum(), xg)
        return grad

    def loss(self, batch) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return dde_loss(self.energy, x, self.config.sigma) / self.config.sigma**2


# ------------------------------------------------------------------------------------------ normalising
def _check_box(box: Sequence[Sequence[float]], cells: int, where: str) -> list[tuple[float, float]]:
    try:
        edges = [(float(lo), float(hi)) for lo, hi in box]
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: box must be a list of (lo, hi) pairs, one per dimension, got {box!r}"
        ) from None
    if not edges or not all(math.isfinite(lo) and math.isfinite(hi) and hi > lo for lo, hi in edges):
        raise ValueError(f"{where}: every (lo, hi) in box must be finite with hi > lo, got {edges}")
    if isinstance(cells, bool) or not isinstance(cells, int) or cells < 1:
        raise ValueError(f"{where}: cells must be an int ≥ 1 (cells per axis), got {cells!r}")
    if cells ** len(edges) > 2**26:
        raise ValueError(
            f"{where}: {cells}^{len(edges)} grid cells are too many; grid normalisation is for low "
            "dimensions, lower cells"
        )
    return edges


def grid_points(box: Sequence[Sequence[float]], cells: int) -> tuple[Tensor, float]:
    """Cell centres of a cells^D grid over the box, (cells^D, D) float64, and the log-volume of one cell."""
    edges = _check_box(box, cells, "grid_points")
    axes = [lo + (torch.arange(cells, dtype=torch.float64) + 0.5) * (hi - lo) / cells for lo, hi in edges]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(edges))  # (cells^D, D)
    log_cell = sum(math.log((hi - lo) / cells) for lo, hi in edges)
    return pts, log_cell


@torch.no_grad()
def grid_log_normalizer(
    log_fn: LogFn, box: Sequence[Sequence[float]], cells: int, *, chunk: int = 65536, device=None
) -> float:
    r"""log Z ≈ log Σ_cells e^{f(centre)}·|cell| (midpoint rule) of an unnormalised log-density f on the box.

    log_fn is called on float64 chunks (≤ chunk, D) moved to `device` (cast them inside if the model is
    float32) and must return (chunk,). Then f − log Z integrates to 1 over the box by the same rule.
    """
    pts, log_cell = grid_points(box, cells)
    vals = []
    for part in pts.split(chunk):
        v = log_fn(part.to(device) if device is not None else part)
        if v.shape != (len(part),):
            raise ValueError(
                f"grid_log_normalizer: log_fn returned shape {tuple(v.shape)} for {len(part)} points; "
                "it must return one log-density per point"
            )
        vals.append(v.double().cpu())
    f = torch.cat(vals)
    if torch.isnan(f).any() or torch.isposinf(f).any():
        raise ValueError(
            "grid_log_normalizer: log_fn returned NaN or +inf on the grid; the density is unusable"
        )
    return float(torch.logsumexp(f, 0)) + log_cell


def kde_log_prob(x: Tensor, data: Tensor, bandwidth: float, *, chunk: int = 1024) -> Tensor:
    r"""log (1/N) Σ_j N(x; x_j, h²I): the Gaussian KDE of `data` (N, D) at points x (M, D), float64, (M,).

    With h = σ this is p_σ of the empirical distribution, the DDE's exact optimum on that sample.
    """
    h = check_positive(bandwidth, "bandwidth", "kde_log_prob")
    if x.dim() != 2 or data.dim() != 2 or x.shape[1] != data.shape[1] or len(data) == 0:
        raise ValueError(
            f"kde_log_prob: x (M, D) and data (N ≥ 1, D) must share D, got {tuple(x.shape)} and "
            f"{tuple(data.shape)}"
        )
    x, data = x.double(), data.double().to(x.device)
    d = x.shape[1]
    const = -math.log(len(data)) - 0.5 * d * math.log(2 * math.pi * h * h)
    out = []
    for part in x.split(chunk):
        d2 = (part[:, None, :] - data[None]).pow(2).sum(-1)  # (m, N), differences first: exact far out
        out.append(torch.logsumexp(-d2 / (2 * h * h), dim=1) + const)
    return torch.cat(out)


__all__ = ["DDE", "DDEConfig", "dde_loss", "grid_log_normalizer", "grid_points", "kde_log_prob"]
