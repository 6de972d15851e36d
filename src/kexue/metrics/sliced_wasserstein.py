"""Sliced Wasserstein distance: the mean over random 1-D projections of the exact 1-D W_p^p.

Sources:
  [RPDB11] Rabin, Peyré, Delon, Bernot, "Wasserstein Barycenter and its Application to Texture
           Mixing", SSVM 2011 (the sliced distance).
  [BRPP15] Bonneel, Rabin, Peyré, Pfister, "Sliced and Radon Wasserstein Barycenters of Measures",
           JMIV 51 (2015), eq. 3: SW_p^p(μ, ν) = ∫_{S^{d−1}} W_p^p(θ#μ, θ#ν) dθ.
  [PC19]   Peyré & Cuturi, "Computational Optimal Transport" (2019), Remark 2.30: in 1-D,
           W_p^p(μ, ν) = ∫_0^1 |F_μ^{-1}(t) − F_ν^{-1}(t)|^p dt with F^{-1} the quantile functions.

For empirical measures with N and M equally weighted atoms, both quantile functions are step functions
that jump only at t ∈ {i/N} ∪ {j/M}; merging those breakpoints makes the integral an exact finite sum.
Breakpoints are kept as integers on the common grid 1/(N·M), so no floating-point rounding decides
which atom an interval belongs to.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kexue.metrics.mmd import as_samples


def _w_pp_1d(xp: Tensor, yp: Tensor, p: float) -> Tensor:
    """Exact W_p^p between the empirical measures of columns: xp (N, L), yp (M, L) -> (L,)."""
    xs, ys = xp.sort(dim=0).values, yp.sort(dim=0).values  # sorted atoms = quantile function values
    n, m = xs.shape[0], ys.shape[0]
    if n == m:  # both quantile functions jump at i/N: match the i-th smallest with the i-th smallest
        return (xs - ys).abs().pow(p).mean(0)
    dev = xs.device
    steps = torch.cat([torch.arange(n + 1, device=dev) * m, torch.arange(1, m + 1, device=dev) * n])
    b = steps.unique()  # (K+1,) merged breakpoints t_k = b_k / (N·M), 0 = b_0 < … < b_K = N·M  [PC19] R2.30
    w = b.diff().to(torch.float64) / (n * m)  # (K,) interval lengths
    ix, iy = b[:-1] // m, b[:-1] // n  # (K,) atom of each measure on (t_{k−1}, t_k]
    return (w[:, None] * (xs[ix] - ys[iy]).abs().pow(p)).sum(0)  # (L,)


def random_directions(
    num_projections: int, dim: int, *, generator: torch.Generator | None = None, device=None
) -> Tensor:
    """Uniform directions on the unit sphere S^{dim−1}: normalised standard normals, (L, D) float64."""
    gen_device = generator.device if generator is not None else device
    theta = torch.randn(num_projections, dim, generator=generator, dtype=torch.float64, device=gen_device)
    return theta / theta.norm(dim=1, keepdim=True)  # (L, D)


def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    *,
    num_projections: int = 128,  # Monte-Carlo directions; error of SW_p^p falls as 1/√L
    p: float = 2,
    projections: Tensor | None = None,  # (L, D) unit directions; overrides num_projections and generator
    generator: torch.Generator | None = None,
) -> float:
    """SW_p(x, y) = (mean_θ W_p^p(θᵀx, θᵀy))^{1/p} over random unit directions θ  [BRPP15] eq. 3.

    x: (N, D) or (N, ...) samples, y: (M, D) or (M, ...) samples (flattened), any device; N ≠ M is
    handled exactly through the quantile functions. Computed in float64.
    """
    where = "sliced_wasserstein"
    x, y = as_samples(x, "x", where), as_samples(y, "y", where)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{where}: x has {x.shape[1]} features per sample but y has {y.shape[1]}; "
            "pass samples of the same dimension"
        )
    if p < 1:
        raise ValueError(f"{where}: p must be ≥ 1 (W_p is a metric only for p ≥ 1), got {p}")
    y = y.to(x.device)
    if projections is None:
        if num_projections < 1:
            raise ValueError(f"{where}: num_projections must be ≥ 1, got {num_projections}")
        theta = random_directions(num_projections, x.shape[1], generator=generator, device=x.device)
    else:
        theta = projections.to(torch.float64)
        if theta.dim() != 2 or theta.shape[1] != x.shape[1] or theta.shape[0] == 0:
            raise ValueError(
                f"{where}: projections must be (L, {x.shape[1]}) with L ≥ 1, got {tuple(theta.shape)}"
            )
        if not torch.allclose(theta.norm(dim=1), torch.ones((), dtype=torch.float64), atol=1e-6):
            raise ValueError(f"{where}: projections must have unit-norm rows; divide by their norms first")
    theta = theta.to(x.device)
    w_pp = _w_pp_1d(x @ theta.T, y @ theta.T, p)  # (L,) from projections (N, L), (M, L)
    return float(w_pp.mean() ** (1 / p))
