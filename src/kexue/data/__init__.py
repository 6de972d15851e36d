"""Data: the embedded digits, MNIST idx files, image folders, exact 2-D toys, transforms, resumable batches.

Loaders read from a path the user gives (`--data-dir`, KEXUE_DATA); nothing is fetched unless asked.
"""

from kexue.data.digits import load_digits
from kexue.data.image_folder import ImageFolderDataset, load_image_folder
from kexue.data.images import ImageData
from kexue.data.loader import BatchStream, epoch_permutation
from kexue.data.mnist import download_mnist, load_mnist
from kexue.data.toy2d import Banana, Checkerboard, GaussianMixture2D, grid25, imbalanced, ring8
from kexue.data.transforms import (
    binarize_dynamic,
    binarize_static,
    dequantize,
    from_symmetric,
    to_symmetric,
    to_unit,
)

__all__ = [
    "Banana",
    "BatchStream",
    "Checkerboard",
    "GaussianMixture2D",
    "ImageData",
    "ImageFolderDataset",
    "binarize_dynamic",
    "binarize_static",
    "dequantize",
    "download_mnist",
    "epoch_permutation",
    "from_symmetric",
    "grid25",
    "imbalanced",
    "load_digits",
    "load_image_folder",
    "load_mnist",
    "ring8",
    "to_symmetric",
    "to_unit",
]
