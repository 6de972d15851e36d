"""MNIST read from the four canonical idx files, with every way they can be broken turned into a DataError.

[LeCun] Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits", 1998.

The idx format (as documented with the data): a big-endian header, then the items as unsigned bytes.

    offset  type     value
    0       int32    magic: 2051 (0x00000803) for images, 2049 (0x00000801) for labels
    4       int32    number of items N (60,000 train, 10,000 test)
    8, 12   int32    rows, columns (28, 28; images only)
    16 / 8  uint8    N·28·28 pixels (0 = background, 255 = ink), or N labels in 0..9

Each file may be gzipped (`.gz`, as distributed) or raw, in `root`, `root/mnist` or torchvision's
`root/MNIST/raw`. `download=True` fetches missing `.gz` files from the canonical mirrors and checks their md5
before anything is written.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kexue.data.images import ImageData
from kexue.errors import DataError

SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
COUNTS = {"train": 60_000, "test": 10_000}
ROWS = COLS = 28
MAGIC = {"images": 2051, "labels": 2049}  # [LeCun] 0x00000803 / 0x00000801: ubyte data, 3 or 1 dims
HEADER = {"images": 16, "labels": 8}
# md5 of the uncompressed files: the canonical values, independent of how a copy was gzipped
RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# md5 of the .gz files exactly as the mirrors serve them (checked on download only: a re-gzipped copy differs)
GZ_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MAX_BYTES = HEADER["images"] + COUNTS["train"] * ROWS * COLS  # the largest real file; bounds decompression
FIX = "delete it and re-download it (kexue.data.load_mnist(root, download=True))"


def load_mnist(
    root: str | os.PathLike,
    split: str = "train",
    *,
    download: bool = False,
    verify: bool = False,
    mirrors: Sequence[str] = MIRRORS,
) -> ImageData:
    """MNIST `split` ("train": 60,000 images, "test": 10,000) as x (N, 1, 28, 28) uint8, y (N,) int64.

    root: the folder with the idx files (or its `mnist/` or `MNIST/raw/` sub-folder).
    download: first fetch the split's missing files into `root` (see `download_mnist`).
    mirrors: base URLs tried in order; the defaults are the canonical ones (a local mirror works too).
    verify: also require the md5 of each file's uncompressed bytes to equal the canonical value.
    """
    if split not in SPLITS:
        raise DataError(f"mnist: split must be 'train' or 'test', got {split!r}")
    root = Path(root).expanduser()
    if download:
        download_mnist(root, (split,), mirrors=mirrors)
    paths = [_find(root, stem) for stem in SPLITS[split]]
    if None in paths:
        names = " and ".join(f"{stem}[.gz]" for stem in SPLITS[split])
        raise DataError(
            f"MNIST {split} files not found: expected {names} in {root} (or {root / 'mnist'}, "
            f"{root / 'MNIST' / 'raw'}); pass the folder that holds them (root / --data-dir / "
            f"KEXUE_DATA) or fetch them with kexue.data.load_mnist(root, download=True)"
        )
    images_path, labels_path = paths
    return _load_pair(images_path, labels_path, count=COUNTS[split], verify=verify)


def download_mnist(
    root: str | os.PathLike,
    splits: Sequence[str] = ("train", "test"),
    *,
    mirrors: Sequence[str] = MIRRORS,
    timeout: float = 60.0,
) -> list[Path]:
    """Fetch the `.gz` files of `splits` that `root` lacks; returns the paths written (none if all present).

    Each file is taken from the first mirror that serves it with the canonical md5, then written atomically
    (a temporary file in `root`, then `os.replace`), so an interrupted or rejected download leaves nothing.
    """
    if unknown := set(splits) - set(SPLITS):
        raise ValueError(f"mnist: splits must be 'train' and/or 'test', got {sorted(unknown)}")
    root = Path(root).expanduser()
    written = []
    for stem in (stem for split in splits for stem in SPLITS[split]):
        if _find(root, stem) is not None:
            continue
        blob = _fetch(stem + ".gz", GZ_MD5[stem], mirrors, timeout)
        root.mkdir(parents=True, exist_ok=True)
        written.append(_write_atomic(root / (stem + ".gz"), blob))
    return written


def _find(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "mnist", root / "MNIST" / "raw"):
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def _fetch(name: str, md5: str, mirrors: Sequence[str], timeout: float) -> bytes:
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                blob = response.read()
        except (OSError, http.client.HTTPException) as e:  # HTTPError, refused, timeout, cut short
            why = (
                f"HTTP {e.code} {e.reason}"
                if isinstance(e, urllib.error.HTTPError)
                else getattr(e, "reason", e)
            )
            failures.append(f"{url}: {why}")
            continue
        got = hashlib.md5(blob).hexdigest()
        if got == md5:
            return blob
        failures.append(f"{url}: md5 {got}, expected {md5}")
    raise DataError(
        f"MNIST download of {name} failed ({'; '.join(failures) or 'no mirrors given'}); check "
        f"the internet connection, or download it by hand into the data folder"
    )


def _write_atomic(path: Path, blob: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see no file or the whole file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _load_pair(images_path: Path, labels_path: Path, *, count: int | None, verify: bool = False) -> ImageData:
    """Both files of a split, checked against each other. count=None accepts any item count (tests)."""
    images = _read_idx(images_path, "images", count=count, verify=verify)  # (N, 28, 28)
    labels = _read_idx(labels_path, "labels", count=count, verify=verify)  # (N,)
    if len(images) != len(labels):
        raise DataError(
            f"MNIST files {images_path} and {labels_path} disagree: {len(images)} images but "
            f"{len(labels)} labels; {FIX}"
        )
    x = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, 28, 28); copy: frombuffer is read-only
    y = torch.from_numpy(labels.astype(np.int64))
    return ImageData("mnist", x, y, levels=256, classes=tuple(str(d) for d in range(10)))


def _read_idx(path: Path, kind: str, *, count: int | None, verify: bool = False) -> np.ndarray:
    """One idx file (gzip or raw) → uint8 array (N, 28, 28) for kind="images", (N,) for "labels"."""
    data = _read_bytes(path)
    header = HEADER[kind]
    if len(data) < header:
        raise DataError(
            f"MNIST file {path} is truncated: {len(data)} bytes after decompression is shorter "
            f"than the {header}-byte idx header; {FIX}"
        )
    magic, n, *dims = (int(v) for v in np.frombuffer(data, dtype=">u4", count=header // 4))
    if magic != MAGIC[kind]:
        raise DataError(
            f"MNIST file {path} has magic number {magic}, expected {MAGIC[kind]} for {kind}: it is "
            f"not an idx {kind} file; {FIX}"
        )
    if count is not None and n != count:
        raise DataError(f"MNIST file {path} holds {n} {kind}, expected {count}; {FIX}")
    if kind == "images" and dims != [ROWS, COLS]:
        raise DataError(f"MNIST file {path} holds {dims[0]}×{dims[1]} images, expected {ROWS}×{COLS}; {FIX}")
    expected = header + n * (ROWS * COLS if kind == "images" else 1)
    if len(data) != expected:
        what = "is truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"MNIST file {path} {what}: expected {expected} bytes after decompression, got {len(data)}; {FIX}"
        )
    if verify:
        stem = path.name.removesuffix(".gz")
        got, want = hashlib.md5(data).hexdigest(), RAW_MD5.get(stem)
        if got != want:
            raise DataError(
                f"MNIST file {path} fails verification: md5 of its uncompressed bytes is {got}, "
                f"expected {want or f'one of the canonical files {sorted(RAW_MD5)}'}; {FIX}"
            )
    items = np.frombuffer(data, dtype=np.uint8, offset=header)
    if kind == "labels":
        if n and items.max() > 9:
            raise DataError(
                f"MNIST file {path} has label {int(items.max())} at index "
                f"{int(np.argmax(items > 9))}, expected 0..9; {FIX}"
            )
        return items
    return items.reshape(n, ROWS, COLS)  # (N, 28, 28)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip (by name or by its 1f 8b magic), at most MAX_BYTES + 1."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"MNIST file {path} cannot be read ({e.strerror}); check its permissions") from None
    with f:
        gzipped = path.suffix == ".gz" or f.read(2) == b"\x1f\x8b"
        f.seek(0)
        if not gzipped:
            return f.read(MAX_BYTES + 1)  # one byte more than any real file: the length check catches it
        try:
            with gzip.GzipFile(fileobj=f) as g:
                return g.read(MAX_BYTES + 1)  # reaching the end also checks the gzip CRC and length
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
            raise DataError(f"MNIST file {path} is not a valid gzip file ({e}); {FIX}") from None
