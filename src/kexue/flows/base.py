r"""The flow interface and its combinators.  [5776], [NICE] Sec. 2

A flow layer f is a bijection with a tractable Jacobian. Every layer in kexue.flows has

    forward(x) → (y, log|det ∂y/∂x|)     inverse(y) → (x, log|det ∂x/∂y|)

with the log-determinant per example, shape (B,), in x's dtype; inverse's log-det is minus forward's at
the same point. A chain's log-det is the sum of its layers' (change of variables):

    log p(x) = log p_Z(f(x)) + Σ_k log|det ∂h_k/∂h_{k−1}|        [5776] eq. 3, [NICE] eq. 2

Sources:
  [5776] kexue.fm/archives/5776 (细水长flow之NICE).
  [NICE] Dinh, Krueger, Bengio, "NICE: Non-linear Independent Components Estimation", ICLR 2015 workshop.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def zeros_logdet(x: Tensor) -> Tensor:
    """A (B,) zero log-determinant in x's dtype and device (volume-preserving layers)."""
    return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)


def sum_per_example(x: Tensor) -> Tensor:
    """Σ over every axis but the batch axis: (B, …) → (B,)."""
    return x.flatten(1).sum(1)


class Chain(nn.Module):
    """f = f_K ∘ … ∘ f_1: forward runs the layers in order, inverse in reverse; the log-dets add up."""

    def __init__(self, layers: Iterable[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = zeros_logdet(x)
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        logdet = zeros_logdet(y)
        for layer in reversed(self.layers):
            y, ld = layer.inverse(y)
            logdet = logdet + ld
        return y, logdet


class Shuffle(nn.Module):
    """A fixed random permutation of the features (axis 1): RealNVP's shuffle between couplings [5807]."""

    def __init__(self, channels: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        perm = torch.randperm(channels, generator=generator)
        self.register_buffer("perm", perm)
        self.register_buffer("inv", torch.argsort(perm))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, self.perm], zeros_logdet(x)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y[:, self.inv], zeros_logdet(y)


class Reverse(nn.Module):
    """Reverse the order of the features (axis 1): NICE's fixed exchange between couplings  [5776]."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.flip(1), zeros_logdet(x)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y.flip(1), zeros_logdet(y)
