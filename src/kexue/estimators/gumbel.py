"""Gumbel-max sampling and its relaxation Gumbel-softmax ([6705]; Jang et al. 2017; Maddison et al. 2017).

    Gumbel-max:      y = argmax_i (o_i − log(−log u_i)),  u_i ~ U(0, 1)  ⇒  P(y = i) = softmax(o)_i
    Gumbel-softmax:  ỹ = softmax((o − log(−log u)) / τ)   (biased for τ > 0; one-hot as τ → 0)

`o` are logits (log p up to a constant: [6705] replaces log p_i by o_i directly). `hard=True` returns the
straight-through variant: the one-hot forward value with the soft sample's gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kexue.estimators.straight_through import straight_through


def gumbel_noise(shape, *, generator: torch.Generator | None = None, device=None, dtype=None) -> Tensor:
    """g = −log(−log u), u ~ U(0, 1), with u kept inside (0, 1) so g is finite."""
    dtype = dtype or torch.get_default_dtype()
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    tiny = torch.finfo(dtype).tiny
    return -torch.log(-torch.log(u.clamp(tiny, 1 - torch.finfo(dtype).eps)))


def gumbel_max(logits: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Exact categorical samples (indices, shape logits.shape[:-1]) by the Gumbel-max trick."""
    g = gumbel_noise(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    return (logits + g).argmax(-1)


def gumbel_softmax(
    logits: Tensor, tau: float, *, hard: bool = False, generator: torch.Generator | None = None
) -> Tensor:
    """A relaxed one-hot sample softmax((o + g)/τ) over the last axis; `hard`: straight-through one-hot."""
    if not tau > 0:
        raise ValueError(f"the Gumbel-softmax temperature τ must be > 0, got {tau}")
    g = gumbel_noise(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    soft = F.softmax((logits + g) / tau, dim=-1)
    return straight_through(soft) if hard else soft
