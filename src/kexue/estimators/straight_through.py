"""The straight-through estimator (Bengio, Léonard & Courville 2013; [6705]): the forward pass uses the
discrete one-hot argmax, the backward pass the gradient of the soft probabilities,

    y_st = onehot(argmax p) + p − sg(p)   (value: the one-hot; gradient: ∂p)
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def straight_through(probs: Tensor) -> Tensor:
    """One-hot of argmax over the last axis in value, with the gradient of `probs`."""
    hard = F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
    return hard + probs - probs.detach()
