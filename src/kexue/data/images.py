"""Image data kept as the integer grey levels it was stored with.

Keeping the levels (not floats) means every later step knows the data's true resolution: bits/dim needs
the number of bins, dequantization adds noise inside a bin, and scaling to [0, 1] or [−1, 1] is one helper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from kexue.data.transforms import to_symmetric, to_unit


@dataclass(frozen=True)
class ImageData:
    """A labelled (or unlabelled) image set in memory.

    x: (N, C, H, W) uint8 grey levels in [0, levels − 1];  y: (N,) int64 class ids, or None.
    """

    name: str
    x: Tensor
    y: Tensor | None
    levels: int  # number of grey levels: 17 for sklearn digits, 256 for MNIST
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.x.dim() != 4 or self.x.dtype != torch.uint8:
            raise ValueError(
                f"{self.name}: x must be a (N, C, H, W) uint8 tensor, got {tuple(self.x.shape)} "
                f"{self.x.dtype}"
            )
        if self.y is not None and (self.y.shape != (len(self.x),) or self.y.dtype != torch.int64):
            raise ValueError(f"{self.name}: y must be an (N,) int64 tensor matching x")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return int(self.y.max()) + 1 if self.y is not None and len(self.y) else 0

    def floats(self, scale: str = "unit") -> Tensor:
        """The images as float32: scale="unit" gives [0, 1], "symmetric" gives [−1, 1]."""
        if scale == "unit":
            return to_unit(self.x, self.levels)
        if scale == "symmetric":
            return to_symmetric(self.x, self.levels)
        raise ValueError(f"scale must be 'unit' or 'symmetric', got {scale!r}")

    def tensor_dataset(self, scale: str = "unit") -> TensorDataset:
        """(x, y) pairs for training; x scaled as in `floats`. Unlabelled data gives (x,) only."""
        x = self.floats(scale)
        return TensorDataset(x) if self.y is None else TensorDataset(x, self.y)

    def subset(self, index: Tensor | slice) -> ImageData:
        return ImageData(
            self.name, self.x[index], None if self.y is None else self.y[index], self.levels, self.classes
        )
