r"""A flow as a density model: preprocessing, the flow, a standard-normal base; loss, bits/dim, sampling.

    log p_Y(y) = log N(f(x(y)); 0, I) + log|det ∂f/∂x| + log|det ∂x/∂y|          [5776] eq. 3

On image data (`levels` grey levels) the training loss is −log p_Y on uniformly dequantized pixels
y = (k + u)/K, and `bpd` converts it to bits/dim on the discrete data:
bpd = (−log p_Y(y) + D·log K)/(D·ln 2)  (reference/generative.md §1.12; Theis et al. 2016).
On continuous data (levels None) the loss is the NLL in nats and the data is fed as is.

Sampling draws ẑ ~ N(0, T²I) — the temperature T of [Glow] Sec. 5 ([5776]: 0.75) — and inverts the flow.
NICE, RealNVP and Glow differ only in the flow they build.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kexue.data.transforms import dequantize
from kexue.flows.preprocess import from_flow_space, to_flow_space
from kexue.metrics.likelihood import bits_per_dim

LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) per example: (B, …) → (B,)."""
    return -0.5 * (z.flatten(1).pow(2).sum(1) + z[0].numel() * LOG_2PI)


def check_shape(shape: Sequence[int], levels: int | None) -> None:
    if len(shape) not in (1, 3) or any(s < 1 for s in shape):
        raise ValueError(f"shape must be (D,) or (C, H, W) with positive sizes, got {tuple(shape)}")
    if levels is not None and levels < 2:
        raise ValueError(f"levels must be ≥ 2 (or None for continuous data), got {levels}")


class FlowDensity(nn.Module):
    """Abstract: a subclass sets `self.config` (shape, levels, logit) and `self.flow`.

    `self.flow` maps the preprocessed input to ẑ with log|det|, and its inverse takes ẑ as (B, D).
    """

    config: object
    flow: nn.Module
    flat: bool = False  # the flow sees flattened examples (NICE)

    @property
    def num_dims(self) -> int:
        return math.prod(self.config.shape)

    def _to_input(self, y: Tensor) -> Tensor:
        return y.flatten(1) if self.flat else y.reshape(len(y), *self.config.shape)

    def log_prob(self, y: Tensor) -> Tensor:
        """log p(y) per example (B,): y in [0, 1) on image data (dequantized), any real on continuous data."""
        y = self._to_input(y)
        if self.config.levels is None:
            x, ld_pre = y, torch.zeros(len(y), dtype=y.dtype, device=y.device)
        else:
            x, ld_pre = to_flow_space(y, self.config.logit)
        z, ld = self.flow(x)
        return standard_normal_log_prob(z) + ld + ld_pre

    def dequantize(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """[0, 1] levels k/(K − 1) → (k + u)/K, u ~ U[0, 1)."""
        k = (x * (self.config.levels - 1)).round()
        return dequantize(k, self.config.levels, generator=generator)

    def loss(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        x = batch[0]
        y = x if self.config.levels is None else self.dequantize(x)
        nll = -self.log_prob(y).mean()
        out = {"loss": nll}
        if self.config.levels is not None:
            out["bpd"] = bits_per_dim(nll.detach(), self.num_dims, num_bins=self.config.levels)
        return out

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """n draws (n, *shape) at temperature T; images in [0, 1]."""
        if not temperature >= 0:
            raise ValueError(f"the temperature must be ≥ 0, got {temperature}")
        device = next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        z = temperature * torch.randn(n, self.num_dims, generator=generator, device=device, dtype=dtype)
        x, _ = self.flow.inverse(z)
        x = x.reshape(n, *self.config.shape)
        return x if self.config.levels is None else from_flow_space(x, self.config.logit)
