"""sklearn's 8×8 digits: shapes, levels, and a fixed train/test split that partitions the full set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kexue.data.digits import load_digits


def rows(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Each (image, label) as one row of 65 ints, rows sorted: the data as a multiset, order ignored."""
    flat = np.concatenate([x.reshape(len(x), -1).numpy(), y.numpy()[:, None]], axis=1)
    return flat[np.lexsort(flat.T[::-1])].astype(np.int64)


@pytest.mark.parametrize(("split", "n"), [("train", 1500), ("test", 297), ("all", 1797)])
def test_shapes_and_levels(split, n):
    data = load_digits(split)
    assert data.x.shape == (n, 1, 8, 8) and data.x.dtype == torch.uint8
    assert data.y.shape == (n,) and data.y.dtype == torch.int64
    assert data.levels == 17 and data.classes == tuple("0123456789") and data.num_classes == 10
    assert data.x.min() == 0 and data.x.max() == 16  # 17 grey levels 0..16: both ends are used
    assert set(data.y.tolist()) == set(range(10))


def test_splits_partition_the_data_set_and_are_fixed():
    train, test, full = load_digits("train"), load_digits("test"), load_digits("all")
    # train ⊎ test == all as multisets of (image, label): disjoint parts that together are everything
    both = rows(torch.cat([train.x, test.x]), torch.cat([train.y, test.y]))
    assert np.array_equal(both, rows(full.x, full.y))
    # "all" is the first 1,500 then the last 297 of one permutation
    assert torch.equal(full.x[:1500], train.x) and torch.equal(full.x[1500:], test.x)
    assert torch.equal(full.y[1500:], test.y)
    again = load_digits("train")  # fixed across calls (RandomState(0) is stable across NumPy versions)
    assert torch.equal(again.x, train.x) and torch.equal(again.y, train.y)


def test_all_is_a_permutation_of_sklearn():
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    full = load_digits("all")
    x = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)  # (1797, 1, 8, 8)
    assert np.array_equal(rows(full.x, full.y), rows(x, torch.from_numpy(bunch.target)))
    assert np.array_equal(
        bunch.images, bunch.images.round()
    )  # sklearn stores integers as floats: no rounding lost


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_digits("validation")
