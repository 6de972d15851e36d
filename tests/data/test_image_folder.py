"""Image folders: labels from class folders, modes, sizes, corrupt files; lazy Dataset equals eager load."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from kexue.data.image_folder import ImageFolderDataset, load_image_folder
from kexue.errors import DataError


def save(path: Path, pixels: np.ndarray) -> np.ndarray:
    """Write uint8 pixels (H, W) or (H, W, 3) with PIL; returns them for comparison."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def pixels(seed: int, h: int = 5, w: int = 4, c: int | None = None) -> np.ndarray:
    shape = (h, w) if c is None else (h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def labelled(tmp_path) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """cat/ and dog/ with 3 and 2 grey PNGs (one nested, one named .PNG), plus files that must be ignored."""
    root = tmp_path / "pets"
    images = {
        "cat": [save(root / "cat" / f"{i}.png", pixels(i)) for i in range(3)],
        "dog": [save(root / "dog" / "0.PNG", pixels(10)), save(root / "dog" / "deep" / "1.png", pixels(11))],
    }
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()  # a folder without images is not a class
    save(root / ".hidden" / "x.png", pixels(99))  # hidden folders are ignored
    return root, images


def test_labels_and_classes_from_sorted_folder_names(labelled):
    root, images = labelled
    data = load_image_folder(root)
    assert data.classes == ("cat", "dog") and data.levels == 256 and data.name == "pets"
    assert data.y.tolist() == [0, 0, 0, 1, 1]
    assert data.x.shape == (5, 1, 5, 4) and data.x.dtype == torch.uint8
    expected = np.stack(images["cat"] + images["dog"])[:, None]  # (5, 1, 5, 4), files in sorted order
    assert np.array_equal(data.x.numpy(), expected)


def test_unlabelled_folder(tmp_path):
    expected = [save(tmp_path / name, pixels(i)) for i, name in enumerate(["a.png", "b.PNG", "c.png"])]
    data = load_image_folder(tmp_path)
    assert data.y is None and data.classes is None
    assert np.array_equal(data.x[:, 0].numpy(), np.stack(expected))


def test_jpeg_extensions_any_case(tmp_path):
    for i, name in enumerate(["a.jpg", "b.JPG", "c.jpeg", "d.JpEg", "e.png"]):
        save(tmp_path / name, pixels(i))
    assert len(load_image_folder(tmp_path)) == 5  # JPEG is lossy: only the count is exact here


def test_mode_none_picks_grey_or_rgb(tmp_path):
    save(tmp_path / "grey" / "a.png", pixels(0))
    save(tmp_path / "grey" / "b.png", pixels(1))
    assert load_image_folder(tmp_path / "grey").shape == (1, 5, 4)
    rgb = save(tmp_path / "mixed" / "c.png", pixels(2, c=3))
    grey = save(tmp_path / "mixed" / "d.png", pixels(3))
    data = load_image_folder(tmp_path / "mixed")  # one colour image makes the whole set RGB
    assert data.shape == (3, 5, 4)
    assert np.array_equal(data.x[0].permute(1, 2, 0).numpy(), rgb)
    assert np.array_equal(data.x[1].numpy(), np.broadcast_to(grey, (3, 5, 4)))  # grey → RGB copies the band


def test_forced_modes_match_pil_conversion(tmp_path):
    rgb = save(tmp_path / "a.png", pixels(0, c=3))
    data = load_image_folder(tmp_path, mode="L")
    assert np.array_equal(data.x[0, 0].numpy(), np.asarray(Image.fromarray(rgb).convert("L")))
    rgba = np.concatenate([rgb, np.full((5, 4, 1), 7, np.uint8)], axis=2)
    save(tmp_path / "a.png", rgba)
    assert np.array_equal(load_image_folder(tmp_path).x[0].permute(1, 2, 0).numpy(), rgb)  # alpha dropped


def test_mixed_sizes_raise_unless_resized(tmp_path):
    save(tmp_path / "a.png", pixels(0, 5, 4))
    save(tmp_path / "b.png", pixels(1, 6, 3))
    with pytest.raises(DataError) as excinfo:
        load_image_folder(tmp_path)
    message = str(excinfo.value)
    assert (
        "\n" not in message
        and "a.png is 5×4" in message
        and "b.png is 6×3" in message
        and "size=(H, W)" in message
    )
    data = load_image_folder(tmp_path, size=(8, 7))
    assert data.x.shape == (2, 1, 8, 7)
    img = Image.open(tmp_path / "b.png")
    assert np.array_equal(data.x[1, 0].numpy(), np.asarray(img.resize((7, 8), Image.Resampling.BILINEAR)))


def test_corrupt_and_truncated_images_name_the_file(tmp_path):
    save(tmp_path / "ok.png", pixels(0))
    (tmp_path / "junk.png").write_bytes(b"definitely not a png")
    with pytest.raises(DataError, match=r"junk\.png cannot be read"):
        load_image_folder(tmp_path)
    (tmp_path / "junk.png").unlink()
    save(tmp_path / "cut.png", pixels(1, 64, 64))
    blob = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(blob[: len(blob) // 2])  # header intact, pixel data cut short
    with pytest.raises(DataError, match=r"cut\.png cannot be read"):
        load_image_folder(tmp_path, size=(5, 4))
    dataset = ImageFolderDataset(tmp_path, size=(5, 4))  # lazy: the header is fine, so it fails on reading
    with pytest.raises(DataError, match=r"cut\.png cannot be read"):
        dataset[0]


def test_sixteen_bit_images_are_refused(tmp_path):
    Image.fromarray(np.full((3, 3), 1000, np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(DataError, match="8-bit images only"):
        load_image_folder(tmp_path)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"holds no \.png/\.jpg/\.jpeg images"):
        load_image_folder(tmp_path)
    save(tmp_path / "loose.png", pixels(0))
    save(tmp_path / "cls" / "a.png", pixels(1))
    with pytest.raises(
        DataError, match=r"mixes images directly in it \(e\.g\. loose\.png\) with class sub-folders"
    ):
        load_image_folder(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"mode": "RGBA"}, "mode"),
        ({"size": (0, 3)}, "size"),
        ({"size": (3,)}, "size"),
        ({"size": (2.5, 3)}, "size"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        load_image_folder(tmp_path, **kwargs)


@pytest.mark.parametrize("size", [None, (3, 6)])
def test_lazy_dataset_equals_eager(labelled, size):
    root, _ = labelled
    eager = load_image_folder(root, size=size).tensor_dataset()
    lazy = ImageFolderDataset(root, size=size)
    assert len(lazy) == len(eager) and lazy.classes == ("cat", "dog")
    for i in range(len(lazy)):
        (x, y), (x_ref, y_ref) = lazy[i], eager[i]
        assert x.dtype == torch.float32 and torch.equal(x, x_ref) and torch.equal(y, y_ref)
    roundtrip = pickle.loads(pickle.dumps(lazy))  # what a spawned worker receives
    assert torch.equal(roundtrip[4][0], lazy[4][0])


def test_lazy_unlabelled_gives_x_only(tmp_path):
    save(tmp_path / "a.png", pixels(0))
    (x,) = ImageFolderDataset(tmp_path)[0]
    assert x.shape == (1, 5, 4) and float(x.max()) <= 1.0


def test_dataloader_workers_see_every_sample_once(tmp_path):
    n = 23
    for i in range(n):  # image i is constant i: the pixel value identifies the sample
        save(tmp_path / f"c{i % 3}" / f"{i:02d}.png", np.full((2, 2), i, np.uint8))
    loader = DataLoader(
        ImageFolderDataset(tmp_path),
        batch_size=4,
        shuffle=True,
        num_workers=2,
        generator=torch.Generator().manual_seed(0),
    )
    seen = []
    for x, y in loader:
        ids = (x[:, 0, 0, 0] * 255).round().long()
        assert torch.equal(y, ids % 3)  # each sample keeps its own label
        seen += ids.tolist()
    assert sorted(seen) == list(range(n))
