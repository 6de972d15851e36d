"""Maximum mean discrepancy (MMD) between two samples, computed block-wise in float64.

Sources:
  [G12] Gretton, Borgwardt, Rasch, Schölkopf, Smola, "A Kernel Two-Sample Test", JMLR 13 (2012).
        Eq. 3: the unbiased U-statistic MMD²_u;  eq. 5: the biased V-statistic MMD²_b.
  [B18] Bińkowski, Sutherland, Arbel, Gretton, "Demystifying MMD GANs", ICLR 2018 (polynomial kernel
        of KID, used by `kexue.metrics.frechet.kid`).

Notation: x = {x_i} (N, D) ~ P and y = {y_j} (M, D) ~ Q; MMD²(P, Q) = E k(x,x') + E k(y,y') − 2 E k(x,y).
The three kernel sums are accumulated over (chunk, chunk) blocks, so memory is O(chunk_size²) whatever
N and M are; a self-sum visits only the upper-triangular blocks and doubles the off-diagonal ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Kernel = Callable[[Tensor, Tensor], Tensor]  # (n, D), (m, D) -> (n, m) kernel matrix


def as_samples(x: Tensor, name: str, where: str) -> Tensor:
    """Validate a sample set and return it as an (N, D) float64 matrix; (N, ...) inputs are flattened."""
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x)
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(
            f"{where}: {name} must be a non-empty (N, D) or (N, ...) tensor of samples, "
            f"got shape {tuple(x.shape)}; add a leading sample axis or pass more samples"
        )
    x = x.reshape(x.shape[0], -1).to(torch.float64)  # (N, D)
    if not torch.isfinite(x).all():
        raise ValueError(f"{where}: {name} contains NaN or Inf; drop or fix those samples first")
    return x


def _check_pair(x: Tensor, y: Tensor, where: str) -> tuple[Tensor, Tensor]:
    x, y = as_samples(x, "x", where), as_samples(y, "y", where)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{where}: x has {x.shape[1]} features per sample but y has {y.shape[1]}; "
            "pass samples of the same dimension"
        )
    return x, y.to(x.device)


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """‖a_i − b_j‖² for (n, D), (m, D) -> (n, m) as ‖a‖² + ‖b‖² − 2aᵀb (float64 tames the cancellation)."""
    d2 = a.square().sum(1)[:, None] + b.square().sum(1)[None, :] - 2 * a @ b.T  # (n, m)
    return d2.clamp_min_(0)  # round-off can push exact zeros slightly negative


def rbf_kernel(a: Tensor, b: Tensor, bandwidths: Sequence[float]) -> Tensor:
    """Multi-bandwidth Gaussian kernel k(a, b) = Σ_h exp(−‖a − b‖² / (2h²)); (n, D), (m, D) -> (n, m)."""
    d2 = _sq_dists(a, b)  # (n, m)
    return sum(torch.exp(d2 / (-2.0 * h * h)) for h in bandwidths)  # type: ignore[return-value]


def polynomial_kernel(a: Tensor, b: Tensor, degree: int = 3, coef0: float = 1.0) -> Tensor:
    """KID's kernel k(a, b) = (aᵀb / D + coef0)^degree  [B18] Sec. 3; (n, D), (m, D) -> (n, m)."""
    return (a @ b.T / a.shape[1] + coef0) ** degree


def _kernel_sum(x: Tensor, y: Tensor | None, kernel: Kernel, chunk_size: int, drop_diag: bool) -> Tensor:
    """Σ_{i,j} k(x_i, y_j) over (chunk, chunk) blocks; y=None means y = x (then i ≠ j if drop_diag)."""
    n = x.shape[0]
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    starts = range(0, n, chunk_size)
    if y is not None:
        for i in starts:
            for j in range(0, y.shape[0], chunk_size):
                total += kernel(x[i : i + chunk_size], y[j : j + chunk_size]).sum()
        return total
    for i in starts:
        xi = x[i : i + chunk_size]
        k_ii = kernel(xi, xi)  # (c, c) diagonal block
        total += k_ii.sum() - (k_ii.diagonal().sum() if drop_diag else 0)
        for j in range(i + chunk_size, n, chunk_size):
            total += 2 * kernel(xi, x[j : j + chunk_size]).sum()  # block (i, j) and its mirror (j, i)
    return total


def kernel_mmd2(
    x: Tensor, y: Tensor, kernel: Kernel, *, unbiased: bool = True, chunk_size: int = 4096
) -> float:
    """Squared MMD between samples x (N, D) and y (M, D) under any kernel matrix function.

    unbiased=True gives the U-statistic [G12] eq. 3 (needs N, M ≥ 2; may be slightly negative);
    unbiased=False gives the V-statistic [G12] eq. 5 (= ‖mean φ(x) − mean φ(y)‖² ≥ 0).
    """
    where = "kernel_mmd2"
    x, y = _check_pair(x, y, where)
    if chunk_size < 1:
        raise ValueError(f"{where}: chunk_size must be a positive integer, got {chunk_size}")
    n, m = x.shape[0], y.shape[0]
    if unbiased and min(n, m) < 2:
        raise ValueError(
            f"{where}: the unbiased estimator needs at least 2 samples per set, got N={n}, M={m};"
            " pass more samples or unbiased=False"
        )
    k_xx = _kernel_sum(x, None, kernel, chunk_size, drop_diag=unbiased)
    k_yy = _kernel_sum(y, None, kernel, chunk_size, drop_diag=unbiased)
    k_xy = _kernel_sum(x, y, kernel, chunk_size, drop_diag=False)
    if unbiased:
        mmd2_ = k_xx / (n * (n - 1)) + k_yy / (m * (m - 1)) - 2 * k_xy / (n * m)  # [G12] eq. 3
    else:
        mmd2_ = k_xx / n**2 + k_yy / m**2 - 2 * k_xy / (n * m)  # [G12] eq. 5
    return float(mmd2_)


def mmd2(
    x: Tensor, y: Tensor, bandwidths: Sequence[float], *, unbiased: bool = True, chunk_size: int = 4096
) -> float:
    """Squared MMD with the multi-bandwidth RBF kernel k(a, b) = Σ_h exp(−‖a − b‖² / (2h²)).

    x: (N, D) or (N, ...) samples, y: (M, D) or (M, ...) samples (flattened to D features), any device.
    bandwidths: the h's; fix them once from reference data (`median_bandwidth`) so that numbers are
    comparable across methods. Memory is O(chunk_size²) float64 whatever N and M are.
    """
    hs = tuple(float(h) for h in bandwidths)
    if not hs or min(hs) <= 0:
        raise ValueError(
            f"mmd2: bandwidths must be a non-empty list of positive numbers, got {hs}; "
            "use median_bandwidth(reference_samples)"
        )
    return kernel_mmd2(x, y, lambda a, b: rbf_kernel(a, b, hs), unbiased=unbiased, chunk_size=chunk_size)


def median_bandwidth(
    x: Tensor,
    *,
    factors: Sequence[float] = (0.25, 0.5, 1, 2, 4),  # a spread of scales around the median, as is common
    max_points: int = 2000,  # subsample so the O(n²) pairwise distances stay ~2M numbers
    generator: torch.Generator | None = None,
) -> tuple[float, ...]:
    """Median heuristic [G12] Sec. 8: h = median_{i<j} ‖x_i − x_j‖ on a reference sample, times factors.

    x: (N, D) or (N, ...) reference samples; at most max_points of them (drawn without replacement
    with `generator`) enter the median. Returns one bandwidth per factor.
    """
    where = "median_bandwidth"
    x = as_samples(x, "x", where)
    if x.shape[0] < 2 or max_points < 2:
        raise ValueError(f"{where}: need at least 2 points (got N={x.shape[0]}, max_points={max_points})")
    if x.shape[0] > max_points:
        device = generator.device if generator is not None else x.device
        idx = torch.randperm(x.shape[0], generator=generator, device=device)[:max_points]
        x = x[idx.to(x.device)]  # (max_points, D)
    i, j = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
    d = _sq_dists(x, x)[i, j].sqrt().sort().values  # (P,) pairwise distances, P = n(n−1)/2
    median = float((d[(len(d) - 1) // 2] + d[len(d) // 2]) / 2)  # midpoint median, as numpy's
    if median <= 0:
        raise ValueError(
            f"{where}: the median pairwise distance is 0 (more than half the points coincide); "
            "pass explicit bandwidths instead"
        )
    return tuple(median * float(f) for f in factors)
