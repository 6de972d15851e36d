"""Piecewise-linear learning-rate schedules, bert4keras's `piecewise_linear` (repository bojone/bert4keras,
bert4keras/backend.py; [6915] kexue.fm/archives/6915).

    schedule = {t₁: v₁, t₂: v₂, …},  t₁ < t₂ < …
    piecewise_linear(t) = linear through (0, 0), (t₁, v₁), (t₂, v₂), …; constant v_last after t_last

The usual warm-up is {1000: 1, 2000: 0.1}: the multiplier rises from 0 at step 0 to 1 at step 1000, falls
to 0.1 at step 2000 and stays there. With `from_zero=False` (or a knot at t = 0) there is no (0, 0) knot
and the multiplier is v₁ before t₁. The value multiplies the optimizer's base learning rate.

`piecewise_linear_lr(optimizer, schedule)` is torch's `LambdaLR` with this multiplier: the n-th call of
`optimizer.step()` (n = 0, 1, …) runs at lr = base_lr · piecewise_linear(n), as bert4keras evaluates the
schedule at `iterations` before incrementing it — so the very first update of a warm-up has lr 0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import torch
from torch import Tensor

from kexue.errors import KexueError


def _knots(schedule: Mapping[float, float], from_zero: bool) -> tuple[list[float], list[float]]:
    """The schedule's knots sorted by time, with (0, 0) prepended when `from_zero` and t₁ ≠ 0."""
    if not isinstance(schedule, Mapping) or not schedule:
        raise KexueError(
            f"piecewise_linear: schedule must be a non-empty dict {{step: multiplier}}, got {schedule!r}; "
            "e.g. {1000: 1.0, 2000: 0.1}"
        )
    items = sorted((float(t), float(v)) for t, v in schedule.items())
    for t, v in items:
        if not (math.isfinite(t) and math.isfinite(v)) or t < 0:
            raise KexueError(
                f"piecewise_linear: knot {t:g}: {v:g} must have a finite step ≥ 0 and a finite multiplier"
            )
    if from_zero and items[0][0] != 0:
        items = [(0.0, 0.0), *items]
    return [t for t, _ in items], [v for _, v in items]


def piecewise_linear(
    t: float | Tensor, schedule: Mapping[float, float], *, from_zero: bool = True
) -> float | Tensor:
    """The multiplier at step t: linear between knots, constant before the first and after the last.

    t: a number (returns a float) or a tensor of any shape (returns float64 of that shape, on t's device).
    """
    ts, vs = _knots(schedule, from_zero)
    tt = torch.as_tensor(t, dtype=torch.float64, device=t.device if isinstance(t, Tensor) else None)
    knots_t = torch.tensor(ts, dtype=torch.float64, device=tt.device)  # (K,)
    knots_v = torch.tensor(vs, dtype=torch.float64, device=tt.device)  # (K,)
    # segment i spans [t_i, t_{i+1}); clamping i to [0, K−2] and the weight to [0, 1] makes the two ends flat
    i = (torch.searchsorted(knots_t, tt, right=True) - 1).clamp(0, max(len(ts) - 2, 0))
    j = (i + 1).clamp(max=len(ts) - 1)
    span = (knots_t[j] - knots_t[i]).clamp_min(1e-300)  # one knot: span 0 and the weight is irrelevant
    w = ((tt - knots_t[i]) / span).clamp(0.0, 1.0)
    out = (1 - w) * knots_v[i] + w * knots_v[j]  # exactly v_i at w = 0 and v_j at w = 1 (the flat ends)
    return out if isinstance(t, Tensor) else float(out)


def piecewise_linear_lr(
    optimizer: torch.optim.Optimizer, schedule: Mapping[float, float], *, from_zero: bool = True
) -> torch.optim.lr_scheduler.LambdaLR:
    """torch's LambdaLR with lr(n) = base_lr · piecewise_linear(n, schedule); call `.step()` after each
    optimizer update (with `GradientAccumulation`, only when `optimizer.updated`)."""
    _knots(schedule, from_zero)  # refuse a bad schedule here, not at the first step
    multiplier = functools.partial(piecewise_linear, schedule=dict(schedule), from_zero=from_zero)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


__all__ = ["piecewise_linear", "piecewise_linear_lr"]
