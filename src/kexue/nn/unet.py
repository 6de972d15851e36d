"""A small U-Net ε-net for 28×28 (MNIST) and 8×8 (digits) images.

The [DDPM] Ho et al. 2020 App. B layout shrunk for CPUs: two resolutions (H and H/2, then H/4 in the
middle), one residual block per level on the way down and two on the way up with skip connections,
GroupNorm + SiLU, the time embedding added inside every block, zero-initialised block outputs. Sizes:
widths (c, 2c, 2c); H must be divisible by 4 (28 → 14 → 7, 8 → 4 → 2).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kexue.nn.time_embedding import timestep_embedding


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.drop = _norm(c_out), nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # (B, C_in, H, W), (B, E) → (B, C_out, H, W)
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(nn.functional.silu(self.norm2(h))))
        return self.skip(x) + h


class UNet(nn.Module):
    """(x (B, C, H, W), t (B,)) → ε̂ (B, C, H, W)."""

    def __init__(self, channels: int = 1, width: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        c1, c2, e = width, 2 * width, 4 * width
        self.width = width
        self.time = nn.Sequential(nn.Linear(width, e), nn.SiLU(), nn.Linear(e, e))
        self.inp = nn.Conv2d(channels, c1, 3, padding=1)
        self.down1 = ResBlock(c1, c1, e, dropout)
        self.pool1 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)  # H → H/2
        self.down2 = ResBlock(c1, c2, e, dropout)
        self.pool2 = nn.Conv2d(c2, c2, 3, stride=2, padding=1)  # H/2 → H/4
        self.mid1, self.mid2 = ResBlock(c2, c2, e, dropout), ResBlock(c2, c2, e, dropout)
        self.up2 = ResBlock(c2 + c2, c2, e, dropout)
        self.up1 = ResBlock(c2 + c1, c1, e, dropout)
        self.out_norm = _norm(c1)
        self.out = nn.Conv2d(c1, channels, 3, padding=1)

    def features(self, x: Tensor, t: Tensor) -> Tensor:
        """The last hidden map (B, width, H, W) before the output head (NPR/SN heads read it)."""
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"the U-Net needs H and W divisible by 4, got {tuple(x.shape[-2:])}")
        emb = self.time(timestep_embedding(t, self.width).to(x.dtype))  # (B, E)
        h1 = self.down1(self.inp(x), emb)  # (B, c1, H, W)
        h2 = self.down2(self.pool1(h1), emb)  # (B, c2, H/2, W/2)
        h = self.mid2(self.mid1(self.pool2(h2), emb), emb)  # (B, c2, H/4, W/4)
        h = nn.functional.interpolate(h, size=h2.shape[-2:], mode="nearest")  # (B, c2, H/2, W/2)
        h = self.up2(torch.cat([h, h2], dim=1), emb)  # (B, c2, H/2, W/2)
        h = nn.functional.interpolate(h, size=h1.shape[-2:], mode="nearest")  # (B, c2, H, W)
        return self.up1(torch.cat([h, h1], dim=1), emb)  # (B, c1, H, W)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.out(nn.functional.silu(self.out_norm(self.features(x, t))))  # (B, C, H, W)
