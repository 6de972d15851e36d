"""Sinusoidal embedding of a (possibly fractional) diffusion time.

[Transformer] Vaswani et al. 2017, Sec. 3.5, as used for timesteps by [DDPM] Ho et al. 2020, App. B.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(B,) times → (B, dim): [cos(t·ω_i), sin(t·ω_i)] with ω_i = max_period^(−i/(dim/2)), i < dim/2."""
    if dim % 2:
        raise ValueError(f"the time-embedding width must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([args.cos(), args.sin()], dim=1).to(t.dtype if t.is_floating_point() else torch.float32)
