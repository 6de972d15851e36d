"""The score-function (REINFORCE) estimator with baselines ([6705] eq. 17; Williams 1992).

    ∇_θ E_{z~p_θ}[f(z)] = E_{z~p_θ}[(f(z) − b) ∇_θ log p_θ(z)]

for any b not depending on z (the baseline keeps the estimator unbiased and, chosen well, lowers its
variance). In autograd form: the *surrogate* (f(z) − b).detach() · log p_θ(z) has exactly this gradient.
It works for discrete z and non-differentiable f, at the price of variance ([6705]: "SF估计的方差太大").
"""

from __future__ import annotations

import torch
from torch import Tensor


def score_function_surrogate(log_prob: Tensor, f: Tensor, baseline: Tensor | float = 0.0) -> Tensor:
    """(f − b)·log p per sample (same shape as log_prob); its gradient is the REINFORCE estimate.
    f and b are detached: only the log-probability carries gradient."""
    if log_prob.shape != f.shape:
        raise ValueError(
            f"log p and f must have one entry per sample, got {tuple(log_prob.shape)} and {tuple(f.shape)}"
        )
    b = baseline.detach() if isinstance(baseline, Tensor) else baseline
    return (f.detach() - b) * log_prob


def leave_one_out_baseline(f: Tensor) -> Tensor:
    """b_k = mean of the other K − 1 samples' f along axis 0 (K ≥ 2): unbiased because b_k is independent
    of z_k (Kool, van Hoof & Welling 2019, "Buy 4 REINFORCE samples, get a baseline for free")."""
    k = f.shape[0]
    if k < 2:
        raise ValueError("the leave-one-out baseline needs at least 2 samples along axis 0")
    return (f.sum(0, keepdim=True) - f) / (k - 1)


class MovingAverageBaseline:
    """b ← decay·b + (1 − decay)·mean f, updated after use (so the baseline never sees the current z)."""

    def __init__(self, decay: float = 0.9) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"the baseline's decay must lie in [0, 1), got {decay}")
        self.decay, self.value = decay, None

    def __call__(self, f: Tensor) -> Tensor:
        b = torch.zeros((), dtype=f.dtype, device=f.device) if self.value is None else self.value
        mean = f.detach().mean()
        self.value = mean if self.value is None else self.decay * self.value + (1 - self.decay) * mean
        return b
