"""Normalizing flows: NICE, RealNVP and Glow with exact bits/dim (posts 5776 and 5807).

Every layer maps x → (y, log|det ∂y/∂x|) and back (kexue.flows.base). Modules:
  base        — the interface, Chain, Reverse
  coupling    — additive (NICE) and affine (RealNVP, Glow) couplings; checkerboard coupling
  actnorm     — ActNorm with data-dependent init                          [Glow] Sec. 3.1
  invconv     — invertible 1×1 convolution in LU form                     [Glow] Sec. 3.2
  squeeze     — space-to-channel                                          [RNVP] Sec. 3.6
  multiscale  — split with the learned conditional prior, top prior       [5807] eqs. 3–5
  preprocess  — logit / centre maps of dequantized data with their Jacobian
  density     — a flow as a density: loss, bits/dim, temperature sampling
  nice, realnvp, glow — the three models
"""

from kexue.flows.actnorm import ActNorm
from kexue.flows.base import Chain, Reverse, Shuffle
from kexue.flows.coupling import AffineCoupling, CheckerboardCoupling, checkerboard
from kexue.flows.density import FlowDensity, standard_normal_log_prob
from kexue.flows.glow import Glow, GlowConfig
from kexue.flows.invconv import InvConv1x1
from kexue.flows.multiscale import MultiScale, Split, TopPrior
from kexue.flows.nice import NICE, NICEConfig, Scaling
from kexue.flows.realnvp import RealNVP, RealNVPConfig
from kexue.flows.squeeze import Squeeze

__all__ = [
    "NICE",
    "ActNorm",
    "AffineCoupling",
    "Chain",
    "CheckerboardCoupling",
    "FlowDensity",
    "Glow",
    "GlowConfig",
    "InvConv1x1",
    "MultiScale",
    "NICEConfig",
    "RealNVP",
    "RealNVPConfig",
    "Reverse",
    "Scaling",
    "Shuffle",
    "Split",
    "Squeeze",
    "TopPrior",
    "checkerboard",
    "standard_normal_log_prob",
]
