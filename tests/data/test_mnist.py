"""MNIST loader: the real files load and verify; any corruption of a small synthetic idx file is a DataError.

Downloads are tested against a local http.server on 127.0.0.1 (this machine has no internet).
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import struct
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kexue.data import mnist
from kexue.data.mnist import _load_pair, _read_idx, download_mnist, load_mnist
from kexue.errors import DataError

TEST_STEMS = mnist.SPLITS["test"]
SPLITS_TRAIN = mnist.SPLITS["train"]


def idx_images(x: np.ndarray, *, magic: int = 2051, count: int | None = None, dims=(28, 28)) -> bytes:
    """An idx3 file: big-endian header (magic, N, rows, cols) then the pixels; fields overridable."""
    n = len(x) if count is None else count
    return struct.pack(">4I", magic, n, *dims) + x.astype(np.uint8).tobytes()


def idx_labels(y: np.ndarray, *, magic: int = 2049, count: int | None = None) -> bytes:
    n = len(y) if count is None else count
    return struct.pack(">2I", magic, n) + y.astype(np.uint8).tobytes()


def synthetic(n: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write(path: Path, blob: bytes, *, gz: bool = False) -> Path:
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(blob) if gz else blob)
    return path


def one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# ---- the real files ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_train(shared_data: Path):
    return load_mnist(shared_data / "mnist", "train", verify=True)  # ~0.5 s, once per module


@pytest.fixture(scope="module")
def real_test(shared_data: Path):
    return load_mnist(shared_data / "mnist", "test", verify=True)


@pytest.mark.parametrize(("split", "n", "first"), [("train", 60_000, 5), ("test", 10_000, 7)])
def test_real_files(split, n, first, request):
    data = request.getfixturevalue(f"real_{split}")  # loaded with verify=True: canonical md5s matched
    assert data.x.shape == (n, 1, 28, 28) and data.x.dtype == torch.uint8
    assert data.y.shape == (n,) and data.y.dtype == torch.int64
    assert data.levels == 256 and data.classes == tuple("0123456789") and data.name == "mnist"
    hist = torch.bincount(data.y, minlength=10)
    assert len(hist) == 10 and hist.sum() == n and (hist > 0).all()
    assert data.y[0] == first  # [LeCun] the well-known first digits: a 5 (train) and a 7 (test)
    assert data.x.min() == 0 and data.x.max() == 255


def test_layouts_and_raw_files_equal_gz(shared_data, real_test, tmp_path):
    src = shared_data / "mnist"
    for folder in (tmp_path / "a" / "MNIST" / "raw", tmp_path / "b" / "mnist"):  # torchvision's, ours
        folder.mkdir(parents=True)
        for stem in TEST_STEMS:
            (folder / f"{stem}.gz").symlink_to(src / f"{stem}.gz")
    raw = tmp_path / "c"  # uncompressed copies, as left by `gunzip`
    raw.mkdir()
    for stem in TEST_STEMS:
        (raw / stem).write_bytes(gzip.decompress((src / f"{stem}.gz").read_bytes()))
    for root in (tmp_path / "a", tmp_path / "b", raw):
        data = load_mnist(root, "test", verify=True)
        assert torch.equal(data.x, real_test.x) and torch.equal(data.y, real_test.y)


def test_missing_files_name_the_expected_files_and_both_fixes(tmp_path):
    for root in (tmp_path, tmp_path / "absent"):
        with pytest.raises(DataError) as excinfo:
            load_mnist(root, "test")
        one_line_error(
            excinfo,
            str(root),
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
            "--data-dir",
            "KEXUE_DATA",
            "download=True",
        )


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_mnist(".", "validation")


# ---- synthetic idx files: parsing and every corruption ------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_synthetic_roundtrip_raw_and_gz(tmp_path, gz):
    x, y = synthetic(5)
    data = _load_pair(
        write(tmp_path / "img", idx_images(x), gz=gz), write(tmp_path / "lab", idx_labels(y), gz=gz), count=5
    )
    assert torch.equal(data.x, torch.from_numpy(x).unsqueeze(1)) and data.x.shape == (5, 1, 28, 28)
    assert torch.equal(data.y, torch.from_numpy(y).long())


def test_gzip_detected_by_content_without_gz_suffix(tmp_path):
    x, _ = synthetic(2)
    path = tmp_path / "img"
    path.write_bytes(gzip.compress(idx_images(x)))
    assert np.array_equal(_read_idx(path, "images", count=2), x)


x3, y3 = synthetic(3)
IMAGES_OK, LABELS_OK = idx_images(x3), idx_labels(y3)
CORRUPT = {  # name: (images bytes, labels bytes, fragment the message must contain)
    "image magic": (idx_images(x3, magic=2049), LABELS_OK, "magic number 2049, expected 2051"),
    "label magic": (IMAGES_OK, idx_labels(y3, magic=2051), "magic number 2051, expected 2049"),
    "truncated images": (
        IMAGES_OK[:-1],
        LABELS_OK,
        "truncated: expected 2368 bytes after decompression, got 2367",
    ),
    "truncated labels": (IMAGES_OK, LABELS_OK[:-2], "truncated: expected 11 bytes"),
    "trailing bytes": (IMAGES_OK + b"\0", LABELS_OK, "trailing bytes: expected 2368"),
    "short header": (IMAGES_OK[:10], LABELS_OK, "shorter than the 16-byte idx header"),
    "empty file": (b"", LABELS_OK, "shorter than the 16-byte idx header"),
    "27 rows": (idx_images(x3[:, :27], dims=(27, 28)), LABELS_OK, "27×28 images, expected 28×28"),
    "label 10": (IMAGES_OK, idx_labels(np.array([1, 10, 2])), "label 10 at index 1, expected 0..9"),
    "count mismatch": (IMAGES_OK, idx_labels(np.array([1, 2, 3, 4])), "3 images but 4 labels"),
    "header count lies": (idx_images(x3, count=4), LABELS_OK, "truncated: expected 3152"),
}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_files_raise_one_line_data_error(tmp_path, case, gz):
    images, labels, fragment = CORRUPT[case]
    images_path = write(tmp_path / "img", images, gz=gz)
    with pytest.raises(DataError) as excinfo:
        _load_pair(images_path, write(tmp_path / "lab", labels, gz=gz), count=None)
    one_line_error(excinfo, fragment, "re-download")
    assert str(tmp_path) in str(excinfo.value)


@pytest.mark.parametrize("damage", ["truncated stream", "flipped byte", "not gzip at all"])
def test_bad_gzip_names_the_file(tmp_path, damage):
    blob = gzip.compress(IMAGES_OK)
    blob = {
        "truncated stream": blob[: len(blob) // 2],
        "flipped byte": blob[:-6] + bytes([blob[-6] ^ 0xFF]) + blob[-5:],  # inside the CRC32 trailer
        "not gzip at all": b"hello, this was an html error page",
    }[damage]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(blob)
    with pytest.raises(DataError) as excinfo:
        _read_idx(path, "images", count=None)
    one_line_error(excinfo, str(path), "not a valid gzip file")


def test_public_loader_checks_the_item_count(tmp_path):
    x, y = synthetic(3)  # well-formed idx files, but MNIST's train split has 60,000 items
    write(tmp_path / SPLITS_TRAIN[0], idx_images(x), gz=True)
    write(tmp_path / SPLITS_TRAIN[1], idx_labels(y), gz=True)
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path, "train")
    one_line_error(excinfo, "holds 3 images, expected 60000", "train-images-idx3-ubyte.gz")


def test_verify_rejects_wellformed_but_noncanonical_files(tmp_path):
    x, y = synthetic(3)
    images = write(tmp_path / "t10k-images-idx3-ubyte", idx_images(x), gz=True)
    labels = write(tmp_path / "t10k-labels-idx1-ubyte", idx_labels(y), gz=True)
    _load_pair(images, labels, count=None)  # structurally fine ...
    with pytest.raises(DataError) as excinfo:  # ... but not the canonical bytes
        _load_pair(images, labels, count=None, verify=True)
    want = hashlib.md5(idx_images(x)).hexdigest()
    one_line_error(
        excinfo, f"md5 of its uncompressed bytes is {want}", mnist.RAW_MD5["t10k-images-idx3-ubyte"]
    )


def test_unreadable_file(tmp_path):
    with pytest.raises(DataError, match="cannot be read"):
        _read_idx(tmp_path, "images", count=None)  # a directory: open() fails with IsADirectoryError


# ---- fuzzing: arbitrary bytes give valid data or a DataError, never another exception -----------------


@st.composite
def idx_like(draw) -> bytes:
    """Random bytes, half the time behind a plausible header so the parser's later checks are reached."""
    body = draw(st.binary(max_size=3 * 784 + 40))
    if draw(st.booleans()):
        magic = draw(st.sampled_from([2049, 2051, 0, 2**32 - 1]))
        n = draw(st.sampled_from([0, 1, 2, 3, 2**31, 2**32 - 1]))
        dims = draw(st.sampled_from([(28, 28), (28, 0), (2**32 - 1, 28)]))
        body = struct.pack(">4I", magic, n, *dims)[: draw(st.sampled_from([8, 16]))] + body
    if draw(st.booleans()):
        body = gzip.compress(body)
        if draw(st.booleans()):  # damage the compressed stream somewhere
            i = draw(st.integers(0, len(body) - 1))
            body = body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1 :]
    return body


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "file.gz"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blob=idx_like(), kind=st.sampled_from(["images", "labels"]), gz_name=st.booleans())
def test_fuzz_idx_bytes(fuzz_file, blob, kind, gz_name):
    path = fuzz_file if gz_name else fuzz_file.with_suffix("")
    path.write_bytes(blob)
    try:
        items = _read_idx(path, kind, count=None)
    except DataError as e:
        assert "\n" not in str(e)
        return
    assert items.dtype == np.uint8
    assert items.shape[1:] == ((28, 28) if kind == "images" else ())
    if kind == "labels":
        assert (items <= 9).all()


# ---- downloading from a local mirror -------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server(shared_data, tmp_path_factory):
    """Serves good/ (the real test-split .gz files), bad/ (damaged copies) and empty/ (every file 404s)."""
    site = tmp_path_factory.mktemp("site")
    for name in ("good", "bad", "empty"):
        (site / name).mkdir()
    for stem in TEST_STEMS:
        blob = (shared_data / "mnist" / f"{stem}.gz").read_bytes()
        (site / "good" / f"{stem}.gz").write_bytes(blob)
        (site / "bad" / f"{stem}.gz").write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def url(server, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # talk to 127.0.0.1 directly
    return server


def test_download_writes_verified_files_atomically(url, tmp_path, real_test):
    root = tmp_path / "fresh" / "data"  # does not exist yet
    data = load_mnist(root, "test", download=True, mirrors=[url + "good/"], verify=True)
    assert torch.equal(data.x, real_test.x) and torch.equal(data.y, real_test.y)
    assert sorted(p.name for p in root.iterdir()) == sorted(f"{stem}.gz" for stem in TEST_STEMS)  # no .part


def test_download_falls_back_to_the_next_mirror(url, tmp_path):
    written = download_mnist(tmp_path, ["test"], mirrors=[url + "empty/", url + "bad/", url + "good/"])
    assert sorted(written) == sorted(tmp_path / f"{stem}.gz" for stem in TEST_STEMS)
    for path in written:
        assert hashlib.md5(path.read_bytes()).hexdigest() == mnist.GZ_MD5[path.name.removesuffix(".gz")]


def test_download_checksum_mismatch_leaves_nothing(url, tmp_path):
    with pytest.raises(DataError) as excinfo:
        load_mnist(tmp_path, "test", download=True, mirrors=[url + "bad/"])
    one_line_error(excinfo, "t10k-images-idx3-ubyte.gz", "expected 9fb629c4189551a2d022fa330f9573f3")
    assert list(tmp_path.iterdir()) == []


def test_download_from_unreachable_and_missing_mirrors(url, tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    with pytest.raises(DataError) as excinfo:
        download_mnist(tmp_path, ["test"], mirrors=[dead, url + "empty/"], timeout=5)
    one_line_error(excinfo, "download of t10k-images-idx3-ubyte.gz failed", dead, "HTTP 404")
    assert list(tmp_path.iterdir()) == []


def test_download_skips_files_already_present(shared_data, tmp_path):
    for stem in TEST_STEMS:
        (tmp_path / f"{stem}.gz").symlink_to(shared_data / "mnist" / f"{stem}.gz")
    assert download_mnist(tmp_path, ["test"], mirrors=[]) == []  # no mirror needed: nothing fetched
    assert len(load_mnist(tmp_path, "test", download=True, mirrors=[])) == 10_000


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(mnist.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        mnist._write_atomic(tmp_path / "t10k-labels-idx1-ubyte.gz", b"payload")
    assert list(tmp_path.iterdir()) == []
