r"""ActNorm: a per-channel affine map with data-dependent initialisation.  [Glow] Sec. 3.1, [5807] eq. 10

    y = (x − μ) / σ   per channel,      log|det| = H·W·Σ_c −log σ_c

[Glow] initialises μ and σ from the first batch so that y has zero mean and unit variance per channel.
[5807] notes that this is NICE's scaling layer with a bias, and that the released Glow code does not do
the data-dependent init (it starts from zero); kexue does it, on the first batch seen in training mode,
and records that in a buffer so a loaded model is never re-initialised.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ActNorm(nn.Module):
    """Per-channel y = (x − bias)·exp(−log_scale) on (B, C) or (B, C, H, W) inputs."""

    def __init__(self, channels: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.register_buffer("initialized", torch.tensor(False))

    def _view(self, p: Tensor, x: Tensor) -> Tensor:
        return p.view(1, -1, *[1] * (x.dim() - 2))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set bias and scale to the per-channel mean and std of x (one batch)."""
        per_channel = x.transpose(0, 1).flatten(1)  # (C, B·H·W)
        self.bias.copy_(per_channel.mean(1))
        self.log_scale.copy_((per_channel.std(1, unbiased=False) + self.eps).log())
        self.initialized.fill_(True)

    def _pixels(self, x: Tensor) -> int:
        return x[0, 0].numel()  # H·W (1 for flat inputs)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        y = (x - self._view(self.bias, x)) * self._view((-self.log_scale).exp(), x)
        logdet = -self.log_scale.sum() * self._pixels(x)
        return y, logdet.expand(x.shape[0]).to(x.dtype)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = y * self._view(self.log_scale.exp(), y) + self._view(self.bias, y)
        logdet = self.log_scale.sum() * self._pixels(y)
        return x, logdet.expand(y.shape[0]).to(y.dtype)
