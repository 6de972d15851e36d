"""scikit-learn's bundled 8×8 digits: the embedded default data set (no file, no download).

1,797 images of 8×8 pixels with 17 grey levels (0–16). The train/test split is fixed: a permutation
from the legacy `RandomState(0)` (stable across NumPy versions), first 1,500 for training, last 297 for test.
"""

from __future__ import annotations

import numpy as np
import torch

from kexue.data.images import ImageData

N_TRAIN = 1500


def load_digits(split: str = "train") -> ImageData:
    """split: "train" (1,500), "test" (297) or "all" (1,797)."""
    from sklearn.datasets import load_digits as sk_load_digits

    if split not in ("train", "test", "all"):
        raise ValueError(f"digits: split must be 'train', 'test' or 'all', got {split!r}")
    bunch = sk_load_digits()
    x = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)  # (1797, 1, 8, 8), levels 0..16
    y = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.from_numpy(np.random.RandomState(0).permutation(len(x)))
    index = {"train": order[:N_TRAIN], "test": order[N_TRAIN:], "all": order}[split]
    return ImageData("digits", x[index], y[index], levels=17, classes=tuple(str(d) for d in range(10)))
