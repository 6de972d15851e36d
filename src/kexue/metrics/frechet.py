"""Fréchet distance between Gaussians fitted to features (FID's formula) and the Kernel Inception Distance.

Sources:
  [DL82]   Dowson & Landau, "The Fréchet distance between multivariate normal distributions",
           J. Multivariate Anal. 12 (1982): d² = ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2(Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2}).
  [HRUNH17] Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter, "GANs Trained by a Two Time-Scale Update
           Rule Converge to a Local Nash Equilibrium", NeurIPS 2017, eq. 6 (FID).
  [B18]    Bińkowski, Sutherland, Arbel, Gretton, "Demystifying MMD GANs", ICLR 2018, Sec. 3 (KID).
  [G12]    Gretton et al., "A Kernel Two-Sample Test", JMLR 2012, eq. 3 (the unbiased MMD² inside KID).

Numerics: with S_i = Σ_i^{1/2} (symmetric roots from `eigh`, tiny negative eigenvalues clamped to 0),
    S1 Σ2 S1 = (S1 S2)(S1 S2)ᵀ,  so  tr((S1 Σ2 S1)^{1/2}) = Σ_k σ_k(S1 S2) = ‖S1 S2‖_*  (nuclear norm).
Singular values are real, non-negative and computed to absolute accuracy ~ε‖S1 S2‖, so no complex parts
appear and no second square root of tiny eigenvalues is taken (the failure mode of `scipy.linalg.sqrtm`
on near-singular feature covariances).
"""

from __future__ import annotations

import torch
from torch import Tensor

from kexue.metrics.mmd import as_samples, kernel_mmd2, polynomial_kernel


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and unbiased covariance (D, D), both float64, of features (N, D) with N ≥ 2."""
    f = as_samples(features, "features", "gaussian_stats")
    if f.shape[0] < 2:
        raise ValueError(
            f"gaussian_stats: need at least 2 feature vectors for a covariance, got {f.shape[0]}"
        )
    mu = f.mean(0)  # (D,)
    fc = f - mu  # (N, D) centred
    return mu, fc.T @ fc / (f.shape[0] - 1)  # unbiased: divide by N − 1


def _psd_sqrt(sigma: Tensor) -> Tensor:
    """Symmetric PSD square root V diag(√max(λ, 0)) Vᵀ of a symmetric (D, D) matrix."""
    lam, v = torch.linalg.eigh((sigma + sigma.T) / 2)  # symmetrise: round-off may break symmetry
    return (v * lam.clamp_min(0).sqrt()) @ v.T  # (D, D)


def _check_gaussian(mu: Tensor, sigma: Tensor, name: str) -> tuple[Tensor, Tensor]:
    mu, sigma = torch.as_tensor(mu, dtype=torch.float64), torch.as_tensor(sigma, dtype=torch.float64)
    if mu.dim() != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(
            f"frechet_distance: {name} needs mu of shape (D,) and sigma of shape (D, D), "
            f"got {tuple(mu.shape)} and {tuple(sigma.shape)}"
        )
    return mu, sigma.to(mu.device)


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2)  [DL82].

    mu1, mu2: (D,) means; sigma1, sigma2: (D, D) symmetric PSD covariances. This is FID [HRUNH17] eq. 6
    when the statistics come from Inception features. Computed in float64.
    """
    mu1, sigma1 = _check_gaussian(mu1, sigma1, "the first Gaussian")
    mu2, sigma2 = _check_gaussian(mu2, sigma2, "the second Gaussian")
    if mu1.shape != mu2.shape:
        raise ValueError(
            f"frechet_distance: the Gaussians have dimensions {mu1.shape[0]} and {mu2.shape[0]}; "
            "pass statistics of the same features"
        )
    mu2, sigma2 = mu2.to(mu1.device), sigma2.to(mu1.device)
    cross = torch.linalg.svdvals(_psd_sqrt(sigma1) @ _psd_sqrt(sigma2)).sum()  # tr((S1 Σ2 S1)^{1/2}), see top
    d2 = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * cross  # [DL82]
    return float(d2.clamp_min(0))  # d² ≥ 0; round-off can leave −1e−15 when the Gaussians coincide


def frechet_distance_from_features(f1: Tensor, f2: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to features f1 (N1, D) and f2 (N2, D) (FID's recipe)."""
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))


def kid(
    f1: Tensor,
    f2: Tensor,
    *,
    num_subsets: int = 100,  # [B18] App. D averages over 100 subsets
    subset_size: int = 1000,  # [B18] uses 1000 per subset; clipped to min(N1, N2)
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Kernel Inception Distance [B18] Sec. 3: unbiased MMD² with k(a, b) = (aᵀb / D + 1)³.

    f1: (N1, D), f2: (N2, D) features. Each of num_subsets rounds draws subset_size rows of each set
    without replacement (with `generator`) and takes the unbiased MMD² ([G12] eq. 3); returns the mean
    and the standard deviation (ddof = 1) over rounds; the std is NaN when num_subsets == 1.
    """
    where = "kid"
    f1, f2 = as_samples(f1, "f1", where), as_samples(f2, "f2", where).to(f1.device)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(
            f"{where}: f1 has {f1.shape[1]} features but f2 has {f2.shape[1]}; use the same extractor"
        )
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2 or num_subsets < 1:
        raise ValueError(
            f"{where}: need subsets of ≥ 2 rows and num_subsets ≥ 1, got subset size {m} "
            f"(N1={f1.shape[0]}, N2={f2.shape[0]}) and num_subsets={num_subsets}"
        )
    device = generator.device if generator is not None else f1.device
    scores = []
    for _ in range(num_subsets):
        i1 = torch.randperm(f1.shape[0], generator=generator, device=device)[:m].to(f1.device)
        i2 = torch.randperm(f2.shape[0], generator=generator, device=device)[:m].to(f1.device)
        scores.append(kernel_mmd2(f1[i1], f2[i2], polynomial_kernel, unbiased=True, chunk_size=max(m, 1)))
    s = torch.tensor(scores, dtype=torch.float64)
    return float(s.mean()), float(s.std()) if num_subsets > 1 else float("nan")
