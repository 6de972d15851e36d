r"""RealNVP: affine couplings with checkerboard and channel masks, squeeze, multi-scale.  [RNVP], [5807]

Images, per scale but the last ([RNVP] Sec. 4.1):
    3 checkerboard couplings (alternating) → squeeze → 3 channel couplings (alternating) → split
and at the last scale 4 checkerboard couplings, then the learned top prior. The split uses the learned
conditional prior that [5807] reads from the source code (kexue.flows.multiscale).

Differences from [RNVP], kept small and stated: the s/t nets are Glow's three-layer conv (not deep
ResNets) and there is no batch normalisation (an inverse that depends on batch statistics complicates
exact evaluation; the bounded tanh scale of kexue.flows.coupling keeps training stable without it).
On flat data (D,) it is a stack of affine couplings with MLP nets and alternating halves.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from kexue.flows import nets
from kexue.flows.base import Chain
from kexue.flows.coupling import AffineCoupling, CheckerboardCoupling, split_sizes
from kexue.flows.density import FlowDensity, check_shape
from kexue.flows.multiscale import MultiScale
from kexue.flows.preprocess import check_alpha
from kexue.flows.squeeze import Squeeze


@dataclass(frozen=True)
class RealNVPConfig:
    shape: tuple[int, ...] = (2,)  # one example: (D,) or (C, H, W)
    levels: int | None = None  # grey levels of image data; None: continuous data
    logit: float | None = 0.05  # α of the logit preprocessing ([RNVP] Sec. 4.1); images only
    scales: int = 2  # images: number of scales (each but the last halves H and W)
    hidden: int = 64  # channels (images) or units (flat) of the s/t nets
    couplings: int = 8  # flat data only: affine couplings, alternating halves
    depth: int = 2  # flat data only: hidden layers of each MLP

    def __post_init__(self) -> None:
        check_shape(self.shape, self.levels)
        check_alpha(self.logit)
        if self.hidden < 1 or self.couplings < 1 or self.depth < 1 or self.scales < 1:
            raise ValueError("scales, hidden, couplings and depth must all be ≥ 1")
        if len(self.shape) == 1:
            split_sizes(self.shape[0])
        else:
            _, h, w = self.shape
            if h % 2 ** (self.scales - 1) or w % 2 ** (self.scales - 1):
                raise ValueError(
                    f"{self.scales} scales squeeze {self.scales - 1} times: H and W must be divisible by "
                    f"{2 ** (self.scales - 1)}, got {h}×{w}"
                )


def _checkerboards(c: int, h: int, w: int, n: int, hidden: int) -> list[nn.Module]:
    return [CheckerboardCoupling(c, h, w, nets.conv(c, 2 * c, hidden=hidden), parity=i % 2) for i in range(n)]


def _channel_couplings(c: int, n: int, hidden: int) -> list[nn.Module]:
    first, second = split_sizes(c)
    out = []
    for i in range(n):
        c_in, c_out = (first, second) if i % 2 == 0 else (second, first)
        out.append(AffineCoupling(c, nets.conv(c_in, 2 * c_out, hidden=hidden), parity=i % 2))
    return out


class RealNVP(FlowDensity):
    def __init__(self, config: RealNVPConfig) -> None:
        super().__init__()
        self.config = config
        if len(config.shape) == 1:
            d = config.shape[0]
            first, second = split_sizes(d)
            layers = []
            for i in range(config.couplings):
                d_in, d_out = (first, second) if i % 2 == 0 else (second, first)
                net = nets.mlp(d_in, 2 * d_out, hidden=config.hidden, depth=config.depth)
                layers.append(AffineCoupling(d, net, parity=i % 2))
            self.flow = Chain(layers)
            return
        c, h, w = config.shape
        levels = []
        for _ in range(config.scales - 1):
            layers = _checkerboards(c, h, w, 3, config.hidden)
            c, h, w = 4 * c, h // 2, w // 2
            layers += [Squeeze(), *_channel_couplings(c, 3, config.hidden)]
            levels.append(Chain(layers))
            c = c // 2  # the split keeps ⌊C/2⌋ channels
        levels.append(Chain(_checkerboards(c, h, w, 4, config.hidden)))
        self.flow = MultiScale(levels, config.shape)
