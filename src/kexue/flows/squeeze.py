r"""Squeeze: trade space for channels, (B, C, H, W) → (B, 4C, H/2, W/2).  [RNVP] Sec. 3.6, [5807] "squeeze"

Each 2×2×C block becomes a 1×1×4C vector, a permutation of the entries: log|det| = 0. Local structure
survives, so channel-wise couplings still see neighbouring pixels ([5807]).
"""

from __future__ import annotations

from torch import Tensor, nn

from kexue.flows.base import zeros_logdet


class Squeeze(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"squeeze needs an even height and width, got {h}×{w}")
        y = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return y.reshape(b, 4 * c, h // 2, w // 2), zeros_logdet(x)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        b, c4, h, w = y.shape
        x = y.view(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c4 // 4, 2 * h, 2 * w), zeros_logdet(y)
