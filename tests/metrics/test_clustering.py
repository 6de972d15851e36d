"""Clustering scores: hand-computed tables, invariance to renumbering, majority ≥ Hungarian, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.metrics.clustering import (
    cluster_sizes,
    contingency,
    hungarian_accuracy,
    majority_accuracy,
    nmi,
)

# Two clusters that both hold mostly label 0:
#   cluster 0: labels 0,0,0,1    cluster 1: labels 0,0,2
# contingency [[3,1,0],[2,0,1]]; majority = (3 + 2)/7 (both clusters say "0");
# Hungarian must give label 0 to one cluster only: best is 3 (k0→0) + 1 (k1→2) = 4/7.
PRED = [0, 0, 0, 0, 1, 1, 1]
LABELS = [0, 0, 0, 1, 0, 0, 2]


def test_hand_computed_table():
    assert contingency(PRED, LABELS).tolist() == [[3, 1, 0], [2, 0, 1]]
    assert majority_accuracy(PRED, LABELS) == pytest.approx(5 / 7)
    assert hungarian_accuracy(PRED, LABELS) == pytest.approx(4 / 7)
    assert cluster_sizes(PRED, 3) == [4, 3, 0]


def test_perfect_and_singleton_clusterings():
    y = torch.tensor([2, 0, 1, 1, 0, 2])
    renamed = (y + 1) % 3  # the same partition under other ids
    assert majority_accuracy(renamed, y) == hungarian_accuracy(renamed, y) == 1.0
    assert nmi(renamed, y) == pytest.approx(1.0)
    singletons = torch.arange(6)  # one cluster per point: purity 1, but Hungarian matches only 3 of 6
    assert majority_accuracy(singletons, y) == 1.0
    assert hungarian_accuracy(singletons, y) == pytest.approx(3 / 6)
    one = torch.zeros(6, dtype=torch.long)  # a single cluster: both pick the largest class (2 of 6)
    assert majority_accuracy(one, y) == hungarian_accuracy(one, y) == pytest.approx(2 / 6)
    assert nmi(one, y) == pytest.approx(0.0)


def test_nmi_hand_computed():
    # pred splits {a,a,b,b} as {0,0,1,1} against labels {0,1,0,1}: independent, so I = 0
    assert nmi([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0)
    # pred = [0,0,1], labels = [0,1,1]: H(p) = H(l) = H(1/3) and I = H(l) − H(l|p) = H(1/3) − (2/3) ln 2
    h = -(1 / 3 * np.log(1 / 3) + 2 / 3 * np.log(2 / 3))
    assert nmi([0, 0, 1], [0, 1, 1]) == pytest.approx((h - 2 / 3 * np.log(2)) / h)


ids = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 4)), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(pairs=ids, perm=st.permutations(range(6)), perm_y=st.permutations(range(5)))
def test_renumbering_invariance_and_majority_bound(pairs, perm, perm_y):
    pred = np.array([p for p, _ in pairs])
    y = np.array([t for _, t in pairs])
    maj, hun, mi = majority_accuracy(pred, y), hungarian_accuracy(pred, y), nmi(pred, y)
    pred2, y2 = np.array(perm)[pred], np.array(perm_y)[y]  # rename clusters and labels
    assert majority_accuracy(pred2, y2) == pytest.approx(maj)
    assert hungarian_accuracy(pred2, y2) == pytest.approx(hun)
    assert nmi(pred2, y2) == pytest.approx(mi, abs=1e-12)
    assert 0 < hun <= maj <= 1  # majority maximises over all maps k → l, Hungarian over one-to-one ones
    assert maj >= np.bincount(y).max() / len(y) - 1e-12  # never below "everything is the largest class"


@pytest.mark.parametrize(
    ("pred", "labels", "message"),
    [
        ([0, 1], [0], "same length"),
        ([], [], "empty"),
        ([0, -1], [0, 1], "≥ 0"),
        ([0.0, 1.0], [0, 1], "integer"),
        ([[0, 1]], [[0, 1]], "1-D"),
    ],
)
def test_bad_input(pred, labels, message):
    for fn in (majority_accuracy, hungarian_accuracy, nmi):
        with pytest.raises(ValueError, match=message):
            fn(np.asarray(pred), np.asarray(labels))


def test_cluster_sizes_rejects_small_k():
    with pytest.raises(ValueError, match="exceed every cluster id"):
        cluster_sizes([0, 3], 3)
