r"""Glow: ActNorm → invertible 1×1 conv → coupling, K steps per level, L levels.  [Glow], [5807] "Glow"

Images ([Glow] Fig. 2; [5807] "encoder", "revnet", "split2d"):
    for each of the L levels:  squeeze → K × [ActNorm, InvConv1x1 (LU), coupling] → split (not the last)
then the learned top prior. The coupling is affine, or additive with `additive=True` ([5807]: with
ActNorm the affine scale gains little, and Glow's 256×256 faces used additive couplings). The coupling
net is Glow's f (kexue.flows.nets.conv); the split is the learned conditional prior of [5807] eq. 4.
[Glow]'s defaults are L = 3, K = 32, 512 hidden channels; kexue's are sized for a CPU.
On flat data (D,), L must be 1: K × [ActNorm, invertible linear, coupling with an MLP].
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from kexue.flows import nets
from kexue.flows.actnorm import ActNorm
from kexue.flows.base import Chain, Reverse, Shuffle
from kexue.flows.coupling import AffineCoupling, split_sizes
from kexue.flows.density import FlowDensity, check_shape
from kexue.flows.invconv import InvConv1x1
from kexue.flows.multiscale import MultiScale
from kexue.flows.preprocess import check_alpha
from kexue.flows.squeeze import Squeeze

PERMUTATIONS = ("invconv", "shuffle", "reverse")


@dataclass(frozen=True)
class GlowConfig:
    shape: tuple[int, ...] = (2,)  # one example: (D,) or (C, H, W)
    levels: int | None = None  # grey levels of image data; None: continuous data
    logit: float | None = 0.05  # α of the logit preprocessing; None: y − ½ as [Glow]'s code
    L: int = 2  # levels (each squeezes; all but the last split)
    K: int = 4  # flow steps per level
    hidden: int = 64  # channels (images) or units (flat) of the coupling net
    depth: int = 2  # flat data only: hidden layers of each coupling MLP
    additive: bool = False  # additive instead of affine couplings
    permutation: str = "invconv"  # between couplings: "invconv" (1×1 conv), "shuffle" or "reverse"

    def __post_init__(self) -> None:
        check_shape(self.shape, self.levels)
        check_alpha(self.logit)
        if self.permutation not in PERMUTATIONS:
            raise ValueError(
                f"permutation must be one of {', '.join(PERMUTATIONS)}, got {self.permutation!r}"
            )
        if self.L < 1 or self.K < 1 or self.hidden < 1 or self.depth < 1:
            raise ValueError("L, K, hidden and depth must all be ≥ 1")
        if len(self.shape) == 1:
            if self.L != 1:
                raise ValueError(f"flat data has one level: set L=1 (got L={self.L})")
            split_sizes(self.shape[0])
        elif self.shape[1] % 2**self.L or self.shape[2] % 2**self.L:
            raise ValueError(
                f"L={self.L} levels squeeze {self.L} times: H and W must be divisible by {2**self.L}, "
                f"got {self.shape[1]}×{self.shape[2]}"
            )


def flow_step(
    channels: int, net: nn.Module, *, parity: int, additive: bool, permutation: str = "invconv"
) -> list[nn.Module]:
    """One step of flow ([Glow] Fig. 2a): ActNorm, invertible 1×1 conv, coupling.

    permutation "shuffle" / "reverse" put RealNVP's fixed shuffle / NICE's reversal in place of the 1×1
    conv: the ablation of [Glow] Fig. 3, which [5807] repeats ("shuffle beats reversal, the 1×1 conv beats
    shuffle").
    """
    if permutation == "invconv":
        mix: nn.Module = InvConv1x1(channels)
    elif permutation == "shuffle":
        mix = Shuffle(channels)
    else:
        mix = Reverse()
    return [ActNorm(channels), mix, AffineCoupling(channels, net, parity=parity, additive=additive)]


class Glow(FlowDensity):
    def __init__(self, config: GlowConfig) -> None:
        super().__init__()
        self.config = config
        width = 1 if config.additive else 2  # the net outputs t, or [s, t]
        if len(config.shape) == 1:
            d = config.shape[0]
            first, second = split_sizes(d)
            layers: list[nn.Module] = []
            for _ in range(config.K):
                net = nets.mlp(first, width * second, hidden=config.hidden, depth=config.depth)
                layers += flow_step(
                    d, net, parity=0, additive=config.additive, permutation=config.permutation
                )
            self.flow = Chain(layers)
            return
        c = config.shape[0]
        levels = []
        for _ in range(config.L):
            c *= 4
            first, second = split_sizes(c)
            layers = [Squeeze()]
            for _ in range(config.K):
                net = nets.conv(first, width * second, hidden=config.hidden)
                layers += flow_step(
                    c, net, parity=0, additive=config.additive, permutation=config.permutation
                )
            levels.append(Chain(layers))
            c //= 2
        self.flow = MultiScale(levels, config.shape)
