"""Small generator / critic / encoder networks for 2-D toys and 28×28 (or any H, W divisible by 4) images.

Sized for a CPU. The conv pair is "DCGAN-lite" (Radford et al. 2016): the generator is
Linear → (4w, H/4, W/4) → ConvT(4,2,1) → BN → ReLU → ConvT(4,2,1) → tanh, so images live in [−1, 1];
the critic/encoder mirrors it with strided convs and LeakyReLU(0.2). The critic has **no batch norm**: the
single-loss trick ([6387]) and the relativistic losses ([6110]) put real and fake samples through the critic
in one batch, and BN would mix their statistics. Spectral normalisation ([6051]) is a constructor flag that
wraps every weight layer with torch's own `spectral_norm` parametrization (`spectral_norm_all`).

Every critic/encoder has `features(x) -> (B, F)` (the flattened body) and `head`, so a critic of (x, z)
(BiGAN) can concatenate z to the features, and an encoder (O-GAN) is a critic with `out_dim = z_dim`.
"""

from __future__ import annotations

import itertools
import math

from torch import Tensor, nn

from kexue.nn.lipschitz import spectral_norm_all


class MLPGenerator(nn.Module):
    """z (B, z_dim) → x (B, *shape): `depth` hidden ReLU layers of `width`; a linear output for 2-D toys,
    tanh for images (which live in [−1, 1])."""

    def __init__(
        self, z_dim: int, shape: tuple[int, ...], width: int = 128, depth: int = 3, *, tanh: bool = False
    ) -> None:
        super().__init__()
        self.shape = tuple(shape)
        dims = [z_dim] + [width] * depth
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.ReLU()]
        out = [nn.Linear(dims[-1], math.prod(self.shape))] + ([nn.Tanh()] if tanh else [])
        self.net = nn.Sequential(*layers, *out)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(len(z), *self.shape)


class MLPCritic(nn.Module):
    """x (B, *shape) → (B, out_dim): `depth` hidden LeakyReLU(0.2) layers of `width`."""

    def __init__(
        self,
        shape: tuple[int, ...],
        out_dim: int = 1,
        width: int = 128,
        depth: int = 3,
        *,
        extra_dim: int = 0,  # a second input concatenated to the features before the head (BiGAN's z)
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        dims = [math.prod(shape)] + [width] * depth
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.feature_dim = width
        self.head = nn.Linear(width + extra_dim, out_dim)
        if spectral_norm:
            spectral_norm_all(self)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)  # (B, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, out_dim)


def _check_image_shape(shape: tuple[int, ...], where: str) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
        raise ValueError(
            f"{where}: the conv nets take (C, H, W) images with H and W divisible by 4, got {shape}"
        )
    return shape  # type: ignore[return-value]


class ConvGenerator(nn.Module):
    """DCGAN-lite generator: z (B, z_dim) → images (B, C, H, W) in [−1, 1] (tanh)."""

    def __init__(self, z_dim: int, shape: tuple[int, int, int] = (1, 28, 28), width: int = 64) -> None:
        super().__init__()
        c, h, w = _check_image_shape(tuple(shape), "ConvGenerator")
        self.shape, self.base = (c, h, w), (4 * width, h // 4, w // 4)
        self.project = nn.Sequential(
            nn.Linear(z_dim, math.prod(self.base)), nn.BatchNorm1d(math.prod(self.base)), nn.ReLU()
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1),  # (2w, H/2, W/2)
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * width, c, 4, 2, 1),  # (C, H, W)
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.up(self.project(z).view(len(z), *self.base))


class ConvCritic(nn.Module):
    """DCGAN-lite critic / encoder: images (B, C, H, W) → (B, out_dim); no batch norm (see module doc)."""

    def __init__(
        self,
        shape: tuple[int, int, int] = (1, 28, 28),
        out_dim: int = 1,
        width: int = 64,
        *,
        extra_dim: int = 0,  # a second input concatenated to the features before the head (BiGAN's z)
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        c, h, w = _check_image_shape(tuple(shape), "ConvCritic")
        self.body = nn.Sequential(
            nn.Conv2d(c, width, 4, 2, 1),  # (w, H/2, W/2)
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1),  # (2w, H/4, W/4)
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * (h // 4) * (w // 4), 4 * width),
            nn.LeakyReLU(0.2),
        )
        self.feature_dim = 4 * width
        self.head = nn.Linear(4 * width + extra_dim, out_dim)
        if spectral_norm:
            spectral_norm_all(self)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)  # (B, 4w)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, out_dim)


def generator_for(shape: tuple[int, ...], z_dim: int, width: int) -> nn.Module:
    """The conv generator for images with H, W ≥ 16, else the MLP one (2-D toys, 8×8 digits)."""
    if len(shape) == 3 and shape[1] >= 16:
        return ConvGenerator(z_dim, shape, width)  # type: ignore[arg-type]
    return MLPGenerator(z_dim, shape, width, tanh=len(shape) == 3)


def critic_for(
    shape: tuple[int, ...], width: int, out_dim: int = 1, *, extra_dim: int = 0, spectral_norm: bool = False
) -> nn.Module:
    """The conv critic for images with H, W ≥ 16, else the MLP one."""
    if len(shape) == 3 and shape[1] >= 16:
        return ConvCritic(shape, out_dim, width, extra_dim=extra_dim, spectral_norm=spectral_norm)  # type: ignore[arg-type]
    return MLPCritic(shape, out_dim, width, extra_dim=extra_dim, spectral_norm=spectral_norm)
