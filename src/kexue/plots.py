"""Figures written by `kexue sample` and the reproductions (matplotlib, imported only when drawing)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(
    images: Tensor, path: str | Path, *, nrow: int | None = None, title: str | None = None
) -> None:
    """Save (N, C, H, W) images with values in [0, 1] as one PNG grid."""
    plt = _plt()
    x = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = torch.ones(c, ncol * (h + 1) + 1, nrow * (w + 1) + 1)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[:, 1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = x[i]
    fig, ax = plt.subplots(figsize=(max(2.0, nrow * w / 14), max(2.0, ncol * h / 14)))
    pixels = (grid[0] if c == 1 else grid.permute(1, 2, 0)).numpy()
    ax.imshow(pixels, cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def scatter2d(
    samples: Tensor, path: str | Path, *, reference: Tensor | None = None, title: str | None = None
) -> None:
    """Save a scatter plot of (N, 2) samples, optionally over reference points."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    if reference is not None:
        r = reference.detach().cpu()
        ax.scatter(r[:, 0], r[:, 1], s=2, alpha=0.3, c="tab:gray", label="data")
    s = samples.detach().cpu()
    ax.scatter(s[:, 0], s[:, 1], s=2, alpha=0.5, c="tab:blue", label="samples")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4)
    if title:
        ax.set_title(title)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
