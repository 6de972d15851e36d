r"""Coupling layers: additive (NICE), affine (RealNVP, Glow), and the checkerboard-masked affine coupling.

Split x along axis 1 (features, or channels of an image) into a conditioning part x_a and a transformed
part x_b; a net m sees only x_a, so the Jacobian is triangular:

    additive  y_a = x_a,  y_b = x_b + t(x_a)                  log|det| = 0          [5776] eq. 9, [NICE] eq. 6
    affine    y_a = x_a,  y_b = x_b ⊙ exp(s(x_a)) + t(x_a)    log|det| = Σ s(x_a)   [5807] eq. 1, [RNVP] eq. 7

`parity` chooses which half conditions (0: the first ⌊C/2⌋ channels), so alternating parity lets every
dimension be transformed ([5776]: "reverse the partition between layers").

The log-scale is s = γ·tanh(h) with a learned per-channel γ (initialised at 1): RealNVP's bounded scale
([RNVP] Sec. 4.1 "tanh … with a learned scale"), which keeps exp(s) within [e^{−γ}, e^{γ}] — Su's and the
Glow issues' first stability fix. Nets end in a zero-initialised layer ([Glow] Sec. 3.3), so every
coupling starts as the identity.

The checkerboard coupling of [RNVP] Sec. 3.4 uses a spatial mask b: y = b⊙x + (1 − b)⊙(x⊙exp(s(b⊙x))
+ t(b⊙x)), log|det| = Σ (1 − b)⊙s(b⊙x).

Sources:
  [5776] kexue.fm/archives/5776;  [5807] kexue.fm/archives/5807 (细水长flow之RealNVP与Glow).
  [NICE] Dinh et al. 2015;  [RNVP] Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP",
  ICLR 2017;  [Glow] Kingma & Dhariwal, NeurIPS 2018.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kexue.flows.base import sum_per_example, zeros_logdet


def split_sizes(channels: int) -> tuple[int, int]:
    """(C_a, C_b) of the two halves along axis 1 for parity 0: ⌊C/2⌋ and the rest."""
    if channels < 2:
        raise ValueError(f"a coupling needs at least 2 channels/features to split, got {channels}")
    return channels // 2, channels - channels // 2


class AffineCoupling(nn.Module):
    """Coupling over the two halves of axis 1; `net` maps x_a (B, C_cond, …) to t (additive) or [s, t].

    channels: C of the input; parity 0 conditions on the first ⌊C/2⌋ channels, parity 1 on the rest.
    net: a module with C_cond input and C_out output channels, C_out = C_trans (additive) or 2·C_trans.
    """

    def __init__(self, channels: int, net: nn.Module, *, parity: int = 0, additive: bool = False) -> None:
        super().__init__()
        if parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1, got {parity}")
        first, second = split_sizes(channels)
        self.sizes = (first, second)
        self.parity = parity
        self.additive = additive
        self.net = net
        n_trans = second if parity == 0 else first
        self.gamma = None if additive else nn.Parameter(torch.ones(n_trans))

    def _halves(self, x: Tensor) -> tuple[Tensor, Tensor]:
        first, second = x.split(self.sizes, dim=1)
        return (first, second) if self.parity == 0 else (second, first)  # (conditioning, transformed)

    def _join(self, cond: Tensor, trans: Tensor) -> Tensor:
        return torch.cat((cond, trans) if self.parity == 0 else (trans, cond), dim=1)

    def _shift_logscale(self, cond: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.net(cond)
        if self.additive:
            return h, None
        raw_s, t = h.chunk(2, dim=1)
        gamma = self.gamma.view(1, -1, *[1] * (h.dim() - 2))
        return t, gamma * torch.tanh(raw_s)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        cond, trans = self._halves(x)
        t, s = self._shift_logscale(cond)
        if s is None:
            return self._join(cond, trans + t), zeros_logdet(x)
        return self._join(cond, trans * s.exp() + t), sum_per_example(s)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        cond, trans = self._halves(y)
        t, s = self._shift_logscale(cond)
        if s is None:
            return self._join(cond, trans - t), zeros_logdet(y)
        return self._join(cond, (trans - t) * (-s).exp()), -sum_per_example(s)


def checkerboard(height: int, width: int, parity: int) -> Tensor:
    """(1, 1, H, W) mask b with b = 1 where (i + j + parity) is even: the pixels that condition."""
    i = torch.arange(height).view(-1, 1)
    j = torch.arange(width).view(1, -1)
    return ((i + j + parity) % 2 == 0).to(torch.float32).view(1, 1, height, width)


class CheckerboardCoupling(nn.Module):
    """RealNVP's spatial checkerboard affine coupling on images (B, C, H, W)  [RNVP] Sec. 3.4.

    net: C input channels → 2C output channels ([s, t] for every pixel; only the unmasked ones are used).
    """

    def __init__(self, channels: int, height: int, width: int, net: nn.Module, *, parity: int = 0) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mask", checkerboard(height, width, parity))
        self.gamma = nn.Parameter(torch.ones(channels))

    def _shift_logscale(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b = self.mask.to(x.dtype)
        raw_s, t = self.net(x * b).chunk(2, dim=1)
        s = self.gamma.view(1, -1, 1, 1) * torch.tanh(raw_s) * (1 - b)
        return t * (1 - b), s

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        t, s = self._shift_logscale(x)  # b⊙y = b⊙x, so the net sees the same input in both directions
        return x * s.exp() + t, sum_per_example(s)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        t, s = self._shift_logscale(y)
        return (y - t) * (-s).exp(), -sum_per_example(s)
