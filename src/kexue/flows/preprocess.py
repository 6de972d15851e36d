r"""From dequantized data y ∈ [0, 1)^D to the flow's input, with the Jacobian of the map.

- logit ([RNVP] Sec. 4.1): x = logit(α + (1 − 2α)·y), which maps the bounded data to ℝ and keeps y's
  boundary away from ±∞; per dimension log|dx/dy| = log(1 − 2α) − log p − log(1 − p), p = α + (1 − 2α)y.
  [RNVP] uses α = 0.05 on MNIST and CIFAR-10.
- centre ([Glow] code): x = y − ½, log|det| = 0.

The density of y is then p_Y(y) = p_X(x(y))·|det ∂x/∂y|, and bits/dim on the discrete data follows from
`kexue.metrics.bits_per_dim` (uniform dequantization, Theis et al. 2016).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kexue.flows.base import sum_per_example, zeros_logdet


def check_alpha(alpha: float | None) -> None:
    if alpha is not None and not 0 <= alpha < 0.5:
        raise ValueError(f"the logit transform's α must lie in [0, 0.5), got {alpha}")


def to_flow_space(y: Tensor, alpha: float | None) -> tuple[Tensor, Tensor]:
    """y ∈ [0, 1) → (x, log|det ∂x/∂y|) with x = logit(α + (1 − 2α)y), or y − ½ when α is None."""
    if alpha is None:
        return y - 0.5, zeros_logdet(y)
    p = alpha + (1 - 2 * alpha) * y
    x = p.log() - torch.log1p(-p)
    return x, sum_per_example(math.log(1 - 2 * alpha) - p.log() - torch.log1p(-p))


def from_flow_space(x: Tensor, alpha: float | None) -> Tensor:
    """The inverse map x → y, clamped to [0, 1] (samples outside the data range are clipped there)."""
    y = x + 0.5 if alpha is None else (torch.sigmoid(x) - alpha) / (1 - 2 * alpha)
    return y.clamp(0, 1)
