r"""The invertible 1×1 convolution in LU form.  [Glow] Sec. 3.2, [5807] "可逆1x1卷积"

A 1×1 convolution applies one C×C matrix W to every pixel's channel vector, so
log|det| = H·W·log|det W|. With W = P·L·(U + diag(sign(s)·exp(log|s|))) — P a fixed permutation, L unit
lower-triangular, U strictly upper-triangular — the log-determinant is H·W·Σ log|s|, O(C) instead of O(C³)
([Glow] eq. 10; [5807] eq. 8–9). As in [Glow], W starts as a random rotation: its LU factors are taken
once, P and sign(s) are frozen, L, U and log|s| are trained. On flat (B, C) inputs it is an invertible
linear layer (H·W = 1), the generalisation of NICE's reversal and RealNVP's shuffle that [5807] describes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class InvConv1x1(nn.Module):
    """y = W x per pixel with W = P L (U + diag(sign_s · exp(log_s))); input (B, C) or (B, C, H, W).

    generator: randomness for the initial rotation (a caller seeds it; None uses the global generator).
    """

    def __init__(self, channels: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        s = upper.diagonal()
        self.register_buffer("perm", p.to(torch.float32))
        self.register_buffer("sign_s", s.sign().to(torch.float32))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower.to(torch.float32))
        self.upper = nn.Parameter(torch.triu(upper, 1).to(torch.float32))
        self.log_s = nn.Parameter(s.abs().log().to(torch.float32))

    def weight(self) -> Tensor:
        """W (C, C) from its LU factors."""
        eye = torch.eye(len(self.log_s), dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * self.log_s.exp())
        return self.perm @ lower @ upper

    def _mix(self, x: Tensor, w: Tensor) -> Tensor:
        if x.dim() == 2:
            return x @ w.T
        return torch.einsum("ij,bjhw->bihw", w, x)

    def _pixels(self, x: Tensor) -> int:
        return x[0, 0].numel()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = self.log_s.sum() * self._pixels(x)
        return self._mix(x, self.weight()), logdet.expand(x.shape[0]).to(x.dtype)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        logdet = -self.log_s.sum() * self._pixels(y)
        return self._mix(y, torch.linalg.inv(self.weight())), logdet.expand(y.shape[0]).to(y.dtype)
