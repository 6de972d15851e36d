"""The small networks of the DAE family: a smooth MLP and the input scaling every DAE here uses.

Sources:
  [EDM] Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models",
        NeurIPS 2022, Table 1: c_in(σ) = 1/√(σ² + σ_data²), so the network sees unit-variance inputs at
        every noise level (here for toy data far from the unit scale, e.g. [NCSN]'s modes at ±(5, 5)).

The activations are SiLU: smooth, so that the DDE's ∇_x E and its second derivatives (its loss
differentiates ∇_x E in the parameters) exist everywhere.
"""

from __future__ import annotations

import math

from torch import nn


def smooth_mlp(d_in: int, d_out: int, width: int, depth: int) -> nn.Sequential:
    """Linear(d_in, W) → [SiLU → Linear(W, W)] × (depth − 1) → SiLU → Linear(W, d_out).

    Maps (B, d_in) → (B, d_out)."""
    if min(d_in, d_out, width, depth) < 1:
        raise ValueError(
            f"smooth_mlp: d_in, d_out, width and depth must all be ≥ 1, got {d_in}, {d_out}, {width}, {depth}"
        )
    layers: list[nn.Module] = [nn.Linear(d_in, width)]
    for _ in range(depth - 1):
        layers += [nn.SiLU(), nn.Linear(width, width)]
    layers += [nn.SiLU(), nn.Linear(width, d_out)]
    return nn.Sequential(*layers)


def c_in(sigma: float, data_std: float) -> float:
    """1/√(σ² + σ_data²): the input scale for x + σn, x of per-coordinate std σ_data.  [EDM] Table 1"""
    return 1.0 / math.sqrt(sigma**2 + data_std**2)


def check_positive(value: float, name: str, where: str) -> float:
    """`value` as a float if it is finite and > 0, else a one-line ValueError naming it and the fix."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} must be a finite number > 0, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{where}: {name} must be a finite number > 0, got {value!r}; pass a positive value")
    return v


__all__ = ["c_in", "check_positive", "smooth_mlp"]
