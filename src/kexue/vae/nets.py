"""Encoder and decoder networks for image VAEs: an MLP (784-400-…, [KW14] App. C) and a small conv net.

Both kinds share one contract, so the Gaussian VAE, the Gumbel VAE, the clustering VAE and NVAE can pick
either and read their own parameters from the output:

    encoder(x): (B, C, H, W) → (B, out_dim)       the posterior's parameters, flat (e.g. [μ, log σ²])
    decoder(z): (..., Z) → (..., C_out, H, W)     the likelihood's parameters per pixel (e.g. logits)

Leading dimensions of z are kept ((K, B, Z) for the K importance samples of the IWAE bound). The conv
pair halves H and W twice, so it needs H and W divisible by 4 (28×28 → 7×7; 8×8 digits → 2×2).

Sources: [KW14] Kingma & Welling, ICLR 2014 (MLP encoder/decoder); [5253] kexue.fm/archives/5253
(Su's Keras VAE: 784-256-2 MLP, ReLU).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from math import prod

from torch import Tensor, nn


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers sizes[0] → sizes[1] → … with ReLU between them (none after the last)."""
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"an MLP needs at least two positive sizes, got {tuple(sizes)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def check_divisible_by_4(shape: Sequence[int]) -> None:
    """The conv nets downsample twice by 2: H and W must be multiples of 4."""
    _, h, w = shape
    if h % 4 or w % 4:
        raise ValueError(f"the conv VAE nets need H and W divisible by 4, got {h}×{w} (use arch='mlp')")


class MLPEncoder(nn.Module):
    """x (B, C, H, W) → flatten → hidden widths (ReLU) → (B, out_dim)."""

    def __init__(self, shape: Sequence[int], out_dim: int, hidden: Sequence[int] = (400,)) -> None:
        super().__init__()
        self.net = mlp([prod(shape), *hidden, out_dim])

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))  # (B, out_dim)


class MLPDecoder(nn.Module):
    """z (..., Z) → hidden widths (ReLU) → (..., out_channels, H, W); no output activation."""

    def __init__(
        self,
        z_dim: int,
        shape: Sequence[int],
        hidden: Sequence[int] = (400,),
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        c, h, w = shape
        self.out_shape = (out_channels or c, h, w)
        self.net = mlp([z_dim, *hidden, prod(self.out_shape)])

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).unflatten(-1, self.out_shape)  # (..., C_out, H, W)


class ConvEncoder(nn.Module):
    """x (B, C, H, W) → two stride-2 4×4 convs (width, 2·width) → linear → (B, out_dim)."""

    def __init__(self, shape: Sequence[int], out_dim: int, width: int = 32) -> None:
        super().__init__()
        check_divisible_by_4(shape)
        c, h, w = shape
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 4, 2, 1),  # (B, w, H/2, W/2)
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1),  # (B, 2w, H/4, W/4)
            nn.ReLU(),
            nn.Flatten(),  # (B, 2w·H/4·W/4)
            nn.Linear(2 * width * (h // 4) * (w // 4), out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, out_dim)


class ConvDecoder(nn.Module):
    """z (..., Z) → linear → (2·width, H/4, W/4) → two stride-2 transposed convs → (..., C_out, H, W)."""

    def __init__(
        self, z_dim: int, shape: Sequence[int], width: int = 32, out_channels: int | None = None
    ) -> None:
        super().__init__()
        check_divisible_by_4(shape)
        c, h, w = shape
        self.seed_shape = (2 * width, h // 4, w // 4)
        self.fc = nn.Sequential(nn.Linear(z_dim, prod(self.seed_shape)), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),  # (N, w, H/2, W/2)
            nn.ReLU(),
            nn.ConvTranspose2d(width, out_channels or c, 4, 2, 1),  # (N, C_out, H, W)
        )

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        h = self.fc(z.reshape(-1, z.shape[-1])).view(-1, *self.seed_shape)  # (N, 2w, H/4, W/4), N = ∏lead
        out = self.net(h)  # (N, C_out, H, W)
        return out.view(*lead, *out.shape[1:])  # (..., C_out, H, W)


def encoder_for(
    arch: str, shape: Sequence[int], out_dim: int, *, hidden=(400,), width: int = 32
) -> nn.Module:
    """The encoder of `arch` ("mlp" or "conv") for images of `shape` = (C, H, W)."""
    if arch == "mlp":
        return MLPEncoder(shape, out_dim, hidden)
    if arch == "conv":
        return ConvEncoder(shape, out_dim, width)
    raise ValueError(f"arch must be 'mlp' or 'conv', got {arch!r}")


def decoder_for(
    arch: str, z_dim: int, shape: Sequence[int], *, hidden=(400,), width: int = 32, out_channels=None
) -> nn.Module:
    """The decoder of `arch` ("mlp", hidden widths reversed by the caller if wanted, or "conv")."""
    if arch == "mlp":
        return MLPDecoder(z_dim, shape, hidden, out_channels)
    if arch == "conv":
        return ConvDecoder(z_dim, shape, width, out_channels)
    raise ValueError(f"arch must be 'mlp' or 'conv', got {arch!r}")
