"""Sample-quality and likelihood metrics for generative models.

Sample-based: `mmd2` (kernel two-sample test), `sliced_wasserstein`, `frechet_distance` (FID's formula)
and `kid`; likelihood: `bits_per_dim`; mode collapse: `class_coverage`, `mode_coverage`. All compute in
float64 and accept tensors on any device. Only torch is imported here (style rule 14).
"""

from kexue.metrics.coverage import class_coverage, mode_coverage
from kexue.metrics.frechet import frechet_distance, frechet_distance_from_features, gaussian_stats, kid
from kexue.metrics.likelihood import bits_per_dim, exact_nll, nll_bits_per_dim_discrete
from kexue.metrics.mmd import kernel_mmd2, median_bandwidth, mmd2, polynomial_kernel, rbf_kernel
from kexue.metrics.sliced_wasserstein import random_directions, sliced_wasserstein

__all__ = [
    "bits_per_dim",
    "class_coverage",
    "exact_nll",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "kernel_mmd2",
    "kid",
    "median_bandwidth",
    "mmd2",
    "mode_coverage",
    "nll_bits_per_dim_discrete",
    "polynomial_kernel",
    "random_directions",
    "rbf_kernel",
    "sliced_wasserstein",
]
