"""A folder of PNG/JPEG images, eagerly as `ImageData` or lazily as a map-style torch Dataset.

Layout (class sub-folders are optional, as in torchvision's ImageFolder, but never mixed with loose images):

    root/cat/001.png, root/dog/a/002.jpg, …   labelled: classes = sorted folder names, y = class index
    root/001.png, root/002.JPEG, …            unlabelled: y = None

Files are read with Pillow. Every image is 8-bit (levels = 256); alpha channels are dropped, and mode="L" on
colour images uses Pillow's ITU-R 601-2 luma; palette ("P") images count as colour. Class folders may nest
images at any depth; a sub-folder without images is not a class. Hidden files and folders (a leading ".")
and other extensions are ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from kexue.data.images import ImageData
from kexue.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg")
GREY_MODES = ("1", "L", "LA", "La")  # 8-bit (or 1-bit) modes with a single colour band
WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")  # 16/32-bit: "L" would clip them, so refuse


@dataclass(frozen=True)
class _Plan:
    """What a folder holds, found from file names and image headers (no pixels decoded)."""

    paths: tuple[Path, ...]
    labels: tuple[int, ...] | None
    classes: tuple[str, ...] | None
    mode: str  # "L" or "RGB": the mode every image is converted to
    size: tuple[int, int]  # (H, W) every image has after an optional resize
    resize: bool


def load_image_folder(
    root: str | os.PathLike, *, size: tuple[int, int] | None = None, mode: str | None = None
) -> ImageData:
    """All images under `root` in memory: x (N, C, H, W) uint8 with C = 1 ("L") or 3 ("RGB").

    size: (H, W) to resize every image to (bilinear); None requires all images to share one size.
    mode: "L", "RGB", or None for "L" when every image is greyscale and "RGB" otherwise.
    """
    plan = _plan(root, size, mode)
    x = np.stack([_read(path, plan) for path in plan.paths])  # (N, H, W, C)
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
    y = None if plan.labels is None else torch.tensor(plan.labels, dtype=torch.int64)
    return ImageData(Path(root).name or str(root), x, y, levels=256, classes=plan.classes)


class ImageFolderDataset(Dataset):
    """The same images read one at a time: item i is (x, y) with x float32 (C, H, W) in [0, 1], y int64.

    Like `ImageData.tensor_dataset()`, an unlabelled folder gives (x,) only. The dataset holds file paths and
    labels only, and opens a file in `__getitem__`, so it pickles cheaply into DataLoader worker processes.
    Mode and size are fixed at construction from the image headers; a corrupt file raises when it is read.
    """

    def __init__(
        self, root: str | os.PathLike, *, size: tuple[int, int] | None = None, mode: str | None = None
    ) -> None:
        self.plan = _plan(root, size, mode)
        self.classes = self.plan.classes

    def __len__(self) -> int:
        return len(self.plan.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        x = torch.from_numpy(_read(self.plan.paths[i], self.plan)).permute(2, 0, 1)  # (C, H, W)
        x = x.to(torch.float32) / 255  # level k ↦ k / 255, as `kexue.data.transforms.to_unit`
        if self.plan.labels is None:
            return (x,)
        return x, torch.tensor(self.plan.labels[i], dtype=torch.int64)


def _plan(root: str | os.PathLike, size: tuple[int, int] | None, mode: str | None) -> _Plan:
    if mode not in (None, "L", "RGB"):
        raise ValueError(f"image folder: mode must be None, 'L' or 'RGB', got {mode!r}")
    if size is not None and (len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size)):
        raise ValueError(f"image folder: size must be (H, W) with two positive ints, got {size!r}")
    paths, labels, classes = _scan(Path(root).expanduser())
    headers = [_header(path) for path in paths]  # [(mode, (H, W))]
    if mode is None:
        mode = "L" if all(m in GREY_MODES for m, _ in headers) else "RGB"
    first = headers[0][1]
    odd = next(((p, hw) for p, (_, hw) in zip(paths, headers) if hw != first), None)
    if size is None and odd is not None:
        raise DataError(
            f"image folder {root} has images of different sizes: {paths[0]} is {first[0]}×{first[1]} "
            f"(H×W) but {odd[0]} is {odd[1][0]}×{odd[1][1]}; pass size=(H, W) to resize them all"
        )
    return _Plan(tuple(paths), labels, classes, mode, tuple(size or first), resize=size is not None)


def _scan(root: Path) -> tuple[list[Path], tuple[int, ...] | None, tuple[str, ...] | None]:
    """Image paths in a fixed (sorted) order, with labels and classes when they sit in class sub-folders."""
    if not root.is_dir():
        raise DataError(
            f"image folder {root} does not exist or is not a folder; pass the folder that holds "
            f"the images (or their class sub-folders)"
        )
    loose = sorted(p for p in root.iterdir() if _is_image(p))
    folders = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = sorted(p for p in folder.rglob("*") if _is_image(p) and not _hidden(p, folder))
        if found:
            folders[folder.name] = found
    if loose and folders:
        raise DataError(
            f"image folder {root} mixes images directly in it (e.g. {loose[0].name}) with class "
            f"sub-folders ({', '.join(list(folders)[:3])}); move every image into a class "
            f"sub-folder for labelled data, or all of them into {root} for unlabelled data"
        )
    if loose:
        return loose, None, None
    if not folders:
        raise DataError(
            f"image folder {root} holds no {'/'.join(EXTENSIONS)} images (looked in it and its "
            f"sub-folders); pass the folder that holds the images"
        )
    classes = tuple(folders)  # sorted names, as inserted
    paths = [p for name in classes for p in folders[name]]
    labels = tuple(k for k, name in enumerate(classes) for _ in folders[name])
    return paths, labels, classes


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in EXTENSIONS and not path.name.startswith(".") and path.is_file()


def _hidden(path: Path, top: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(top).parts)


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    """(PIL mode, (H, W)) from the file header alone."""
    try:
        with Image.open(path) as img:
            mode, (w, h) = img.mode, img.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"image file {path} cannot be read ({e}); replace or delete it") from None
    if mode in WIDE_MODES:
        raise DataError(
            f"image file {path} has {mode} pixels (16/32 bit); kexue reads 8-bit images only "
            f"(levels=256): convert it to 8 bit"
        )
    return mode, (h, w)


def _read(path: Path, plan: _Plan) -> np.ndarray:
    """One image as uint8 (H, W, C) in the plan's mode and size."""
    try:
        with Image.open(path) as img:
            img = img.convert(plan.mode)  # decodes the pixels: a truncated or corrupt file fails here
            if plan.resize and (img.height, img.width) != plan.size:
                img = img.resize(plan.size[::-1], Image.Resampling.BILINEAR)  # PIL takes (W, H)
            x = np.array(img, dtype=np.uint8)  # a writable copy, as torch.from_numpy wants
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"image file {path} cannot be read ({e}); replace or delete it") from None
    if (x.shape[0], x.shape[1]) != plan.size:  # the file changed since the header was read
        raise DataError(
            f"image file {path} is {x.shape[0]}×{x.shape[1]}, expected {plan.size[0]}×"
            f"{plan.size[1]} (H×W); pass size=(H, W) to resize all images"
        )
    return x.reshape(*plan.size, -1)  # (H, W, C): "L" gives (H, W) → (H, W, 1)
