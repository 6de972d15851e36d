r"""The multi-scale architecture and its learned priors.  [RNVP] Sec. 3.6, [Glow] Sec. 3, [5807] eqs. 3–5

After each level half of the channels, z_i, is factored out and only the rest goes deeper. [5807] reads
the source code of RealNVP and Glow: the factored-out parts are not given independent standard normals
but a chain of conditional Gaussians (Glow's `split2d`),

    p(z_1, z_3, z_5) = p(z_1 | z_2) p(z_3 | z_4) p(z_5)                                 [5807] eq. 4

with (μ, log σ) of p(z_1 | z_2) computed from the kept half z_2 by a zero-initialised conv, and those of
the top p(z_5) learned directly. Equivalently ([5807] eq. 5) each piece is standardised,
ẑ = (z − μ)/σ, log|det| = −Σ log σ, and all ẑ are standard normal. kexue uses that form: `Split` and
`TopPrior` are ordinary flow layers, the whole image maps to one standard-normal vector, and
temperature sampling (ẑ ~ N(0, T²)) scales every conditional σ by T as in [Glow] Sec. 5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kexue.flows.base import Chain, sum_per_example
from kexue.flows.nets import zero_conv


class Split(nn.Module):
    """Factor out the second half of the channels under N(μ(h_1), σ(h_1)²), Glow's split2d.

    forward(h) → (h_1, ẑ_2, log|det|) with ẑ_2 = (h_2 − μ(h_1))·exp(−log σ(h_1)); inverse(h_1, ẑ_2) → h.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"a split needs at least 2 channels, got {channels}")
        self.keep = channels // 2
        self.prior = zero_conv(self.keep, 2 * (channels - self.keep))  # → [μ, log σ]

    def _mean_logstd(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_std = self.prior(kept).chunk(2, dim=1)
        return mu, log_std

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        kept, out = h[:, : self.keep], h[:, self.keep :]
        mu, log_std = self._mean_logstd(kept)
        return kept, (out - mu) * (-log_std).exp(), -sum_per_example(log_std)

    def inverse(self, kept: Tensor, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_std = self._mean_logstd(kept)
        return torch.cat([kept, z_hat * log_std.exp() + mu], dim=1), sum_per_example(log_std)


class TopPrior(nn.Module):
    """The top level's learned N(μ, σ²), one (μ, log σ) per entry, zero-initialised ([Glow] `learntop`)."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(*shape))
        self.log_std = nn.Parameter(torch.zeros(*shape))

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        z = (h - self.mu) * (-self.log_std).exp()
        return z, (-self.log_std.sum()).expand(h.shape[0]).to(h.dtype)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        h = z * self.log_std.exp() + self.mu
        return h, self.log_std.sum().expand(z.shape[0]).to(z.dtype)


class MultiScale(nn.Module):
    """levels[0] → split → levels[1] → split → … → levels[−1] → top prior; output one flat ẑ (B, D).

    levels: one Chain per level (its first layer may squeeze); input_shape: (C, H, W) of one example;
    learn_top: a learned top prior (else the top piece is standard normal).
    """

    def __init__(
        self, levels: Sequence[Chain], input_shape: Sequence[int], *, learn_top: bool = True
    ) -> None:
        super().__init__()
        self.levels = nn.ModuleList(levels)
        self.splits = nn.ModuleList()
        shapes: list[tuple[int, ...]] = []  # shapes of the ẑ pieces, in output order
        shape = tuple(input_shape)
        with torch.no_grad():  # trace the shapes through the levels once, in eval mode (no ActNorm init)
            h = torch.zeros(1, *shape)
            for i, level in enumerate(self.levels):
                h, _ = level.train(False)(h)
                level.train(True)
                if i < len(self.levels) - 1:
                    split = Split(h.shape[1])
                    self.splits.append(split)
                    shapes.append((h.shape[1] - split.keep, *h.shape[2:]))
                    h = h[:, : split.keep]
            shapes.append(tuple(h.shape[1:]))
        self.piece_shapes = shapes
        self.top = TopPrior(shapes[-1]) if learn_top else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pieces, logdet, h = [], None, x
        for i, level in enumerate(self.levels):
            h, ld = level(h)
            logdet = ld if logdet is None else logdet + ld
            if i < len(self.splits):
                h, z, ld = self.splits[i](h)
                pieces.append(z.flatten(1))
                logdet = logdet + ld
        if self.top is not None:
            h, ld = self.top(h)
            logdet = logdet + ld
        pieces.append(h.flatten(1))
        return torch.cat(pieces, dim=1), logdet

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        sizes = [math.prod(s) for s in self.piece_shapes]
        pieces = [p.reshape(len(z), *s) for p, s in zip(z.split(sizes, dim=1), self.piece_shapes)]
        h = pieces[-1]
        logdet = torch.zeros(len(z), dtype=z.dtype, device=z.device)
        if self.top is not None:
            h, logdet = self.top.inverse(h)
        for i in reversed(range(len(self.levels))):
            if i < len(self.splits):
                h, ld = self.splits[i].inverse(h, pieces[i])
                logdet = logdet + ld
            h, ld = self.levels[i].inverse(h)
            logdet = logdet + ld
        return h, logdet
