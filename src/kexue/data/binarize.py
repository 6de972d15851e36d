"""Binarised MNIST: pixel intensities x ∈ [0, 1] read as Bernoulli probabilities, one draw per pixel.

Two conventions exist and their likelihoods are NOT comparable (reference/generative.md §2.1):

- dynamic [SM08]: a fresh draw b ~ Bernoulli(x) every time an image is used, so training never sees the
  same binary image twice (a data augmentation; the IWAE paper's "stochastic binarization");
- static [LM11]: one draw, fixed once (Larochelle & Murray's binarized MNIST is one such draw), so a model
  can over-fit its particular pixels; published static numbers run a few nats worse than dynamic ones.

The convention kexue's VAEs use: train dynamically (`VAEConfig(binarize="dynamic")` redraws inside the
model's `loss`, so any in-memory `TensorDataset` of [0, 1] floats works with the trainer unchanged), and
evaluate on ONE fixed static draw of the test set (`static_binarize(x_test, seed)`), so that every model
and every k of the IWAE bound sees the same binary images. This is not Larochelle's file: it is the same
procedure applied to the standard MNIST test images.

`kexue.data.transforms.binarize_static` is different again: a deterministic threshold x > ½ (no draw).

Sources: [SM08] Salakhutdinov & Murray, ICML 2008; [LM11] Larochelle & Murray, AISTATS 2011.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kexue.data.transforms import binarize_dynamic


def check_unit(x: Tensor, what: str = "binarization") -> None:
    """Raise a one-line ValueError unless x is a floating tensor with values in [0, 1]."""
    if not x.is_floating_point():
        raise ValueError(f"{what} needs float intensities in [0, 1], got dtype {x.dtype}")
    if x.numel() and (bool(x.min() < 0) or bool(x.max() > 1) or bool(x.isnan().any())):
        lo, hi = float(x.min()), float(x.max())
        raise ValueError(
            f"{what} needs intensities in [0, 1], got values in [{lo:g}, {hi:g}] (scale with .floats('unit'))"
        )


def dynamic_binarize(x_unit: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """b ~ Bernoulli(x) per pixel, redrawn on every call [SM08]; any shape, same dtype as x (0. or 1.).

    With `generator=None` the draw comes from torch's global generator (which the trainer checkpoints).
    """
    check_unit(x_unit, "dynamic binarization")
    return binarize_dynamic(x_unit, generator=generator).to(x_unit.dtype)


def static_binarize(x_unit: Tensor, seed: int) -> Tensor:
    """One fixed Bernoulli(x) draw per pixel [LM11], the same for the same (x, seed) on any device.

    The draw is made on the CPU from a generator seeded with `seed`, then moved to x's device.
    """
    g = torch.Generator().manual_seed(seed)
    return dynamic_binarize(x_unit.cpu(), generator=g).to(x_unit.device)
