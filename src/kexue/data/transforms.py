"""Pointwise data transforms: scaling, uniform dequantization, binarization.

Every random transform takes its randomness as an argument (`generator`), so a caller controls it
(style rule 10); the deterministic ones are exact inverses of each other where an inverse exists.
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_unit(x: Tensor, levels: int) -> Tensor:
    """Integer levels {0, …, levels−1} → float32 in [0, 1] (level k ↦ k / (levels − 1))."""
    return x.to(torch.float32) / (levels - 1)


def to_symmetric(x: Tensor, levels: int) -> Tensor:
    """Integer levels → float32 in [−1, 1], the range diffusion models and GANs train on."""
    return to_unit(x, levels) * 2 - 1


def from_symmetric(x: Tensor, levels: int) -> Tensor:
    """[−1, 1] floats → the nearest integer level (uint8 when it fits), clamping outside values."""
    k = ((x.clamp(-1, 1) + 1) / 2 * (levels - 1)).round()
    return k.to(torch.uint8 if levels <= 256 else torch.int64)


def dequantize(x: Tensor, levels: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantization: y = (k + u) / levels with u ~ U[0, 1), so y ∈ [0, 1).

    Bin k becomes the interval [k/levels, (k+1)/levels); a density on y lower-bounds the discrete
    likelihood (Theis et al. 2016), which is what `kexue.metrics.bits_per_dim` converts.
    """
    u = torch.rand(x.shape, generator=generator, device=x.device)
    k = x.to(torch.float32)
    y = (k + u) / levels
    # In float32, k + u rounds up to k + 1 when u is within half an ulp of k below 1 (for k = 255 about once
    # in 1.3e5 draws), which would give y = (k + 1)/levels, e.g. exactly 1.0: clamp to the float below it.
    return torch.minimum(y, torch.nextafter((k + 1) / levels, torch.zeros((), device=x.device)))


def binarize_static(x: Tensor, threshold: float = 0.5) -> Tensor:
    """Static binarization of [0, 1] intensities: 1 where x > threshold (a fixed data set)."""
    return (x > threshold).to(torch.float32)


def binarize_dynamic(x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Dynamic binarization: each pixel ~ Bernoulli(x), redrawn per call (Salakhutdinov & Murray 2008)."""
    return torch.bernoulli(x.to(torch.float32), generator=generator)
