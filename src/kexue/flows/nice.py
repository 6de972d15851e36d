r"""NICE: additive couplings and a final scaling layer.  [5776], [NICE]

    h = couplings(x) (additive, alternating halves),   z = exp(s) ⊙ h
    −log p(x) = Σ ½ z² − Σ s + (D/2) log 2π                                    [5776] eq. 13, [NICE] eq. 7

Su's configuration ([5776]): 4 couplings, m = 5 × Dense(1000, ReLU); kexue's default is the smaller
4 × (3 × 256) of reference/generative.md's quick experiment. Images are flattened (NICE is an MLP flow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kexue.flows import nets
from kexue.flows.base import Chain
from kexue.flows.coupling import AffineCoupling, split_sizes
from kexue.flows.density import FlowDensity, check_shape
from kexue.flows.preprocess import check_alpha


class Scaling(nn.Module):
    """z = exp(s) ⊙ h, log|det| = Σ s  ([NICE] Sec. 3.3; [5776] "尺度变换层")."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return h * self.log_scale.exp(), self.log_scale.sum().expand(len(h)).to(h.dtype)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * (-self.log_scale).exp(), (-self.log_scale.sum()).expand(len(z)).to(z.dtype)


@dataclass(frozen=True)
class NICEConfig:
    shape: tuple[int, ...] = (2,)  # one example: (D,) or (C, H, W), flattened to D
    levels: int | None = None  # grey levels of image data (dequantize + bits/dim); None: continuous data
    logit: float | None = 0.05  # α of the logit preprocessing (None: y − ½); images only
    couplings: int = 4  # additive coupling layers, alternating halves
    hidden: int = 256  # width of each coupling's MLP
    depth: int = 3  # hidden layers of each coupling's MLP

    def __post_init__(self) -> None:
        check_shape(self.shape, self.levels)
        check_alpha(self.logit)
        split_sizes(math.prod(self.shape))
        if self.couplings < 1 or self.hidden < 1 or self.depth < 1:
            raise ValueError("couplings, hidden and depth must all be ≥ 1")


class NICE(FlowDensity):
    flat = True

    def __init__(self, config: NICEConfig) -> None:
        super().__init__()
        self.config = config
        d = math.prod(config.shape)
        first, second = split_sizes(d)
        layers: list[nn.Module] = []
        for i in range(config.couplings):
            parity = i % 2
            d_in, d_out = (first, second) if parity == 0 else (second, first)
            net = nets.mlp(d_in, d_out, hidden=config.hidden, depth=config.depth)
            layers.append(AffineCoupling(d, net, parity=parity, additive=True))
        layers.append(Scaling(d))
        self.flow = Chain(layers)
