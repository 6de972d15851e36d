"""Unsupervised clustering accuracy: majority-label purity ([5887]), Hungarian accuracy and NMI.

A clustering assigns each of N points a cluster id; the ids are arbitrary, so a score must not depend on
how the clusters are numbered. Given the K×L contingency table n_{kl} = #{i : pred_i = k, label_i = l}:

    majority   = (1/N) Σ_k max_l n_{kl}                   [5887] "以每一类对应的数目最多的那个真实标签"
    Hungarian  = (1/N) max_{π one-to-one} Σ_k n_{k π(k)}   [DEC] eq. (10), solved by linear_sum_assignment
    NMI        = I(pred; label) / mean(H(pred), H(label))  sklearn's arithmetic-mean normalisation

Majority purity lets two clusters share a label, so it is ≥ the Hungarian accuracy (the maximum over the
wider set of maps k → l); with one cluster per point it reaches 1. [5887] reports the majority number
(≈ 83% on MNIST), which is not comparable with papers that report Hungarian accuracy (reference/
generative.md §2.3, §5 gotcha 4): report both.

scipy and sklearn are imported inside the functions (style rule 14).

Sources: [5887] kexue.fm/archives/5887; [DEC] Xie, Girshick, Farhadi, "Unsupervised Deep Embedding for
Clustering Analysis", ICML 2016 (arXiv:1511.06335).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _labels(a: Any, name: str) -> np.ndarray:
    """A 1-D array of non-negative integer ids from a tensor, array or sequence."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of ids, got shape {a.shape}")
    if a.size == 0:  # np.asarray([]) is float64; an empty input is reported as empty, not as floats
        return a.astype(np.int64)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer ids, got dtype {a.dtype}")
    if a.min() < 0:
        raise ValueError(f"{name} ids must be ≥ 0, got {int(a.min())}")
    return a.astype(np.int64)


def contingency(pred: Any, labels: Any) -> np.ndarray:
    """n_{kl} = #{i : pred_i = k, labels_i = l}: a (K, L) int64 table, K = max pred + 1, L = max label + 1."""
    p, y = _labels(pred, "pred"), _labels(labels, "labels")
    if len(p) != len(y):
        raise ValueError(f"pred and labels must have the same length, got {len(p)} and {len(y)}")
    if len(p) == 0:
        raise ValueError("pred and labels are empty: there is nothing to score")
    table = np.zeros((p.max() + 1, y.max() + 1), dtype=np.int64)
    np.add.at(table, (p, y), 1)
    return table


def majority_accuracy(pred: Any, labels: Any) -> float:
    """Each cluster takes its majority label: (1/N) Σ_k max_l n_{kl}.  [5887] (Su's "test acc")"""
    table = contingency(pred, labels)
    return float(table.max(1).sum() / table.sum())


def hungarian_accuracy(pred: Any, labels: Any) -> float:
    """Best one-to-one map clusters → labels: (1/N) max_π Σ_k n_{kπ(k)}.  [DEC] eq. (10)

    With more clusters than labels (or fewer), the unmatched clusters count as wrong.
    """
    from scipy.optimize import linear_sum_assignment

    table = contingency(pred, labels)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def nmi(pred: Any, labels: Any) -> float:
    """Normalised mutual information (arithmetic-mean normalisation, sklearn's default); in [0, 1]."""
    from sklearn.metrics import normalized_mutual_info_score

    contingency(pred, labels)  # the same input checks as the accuracies
    return float(normalized_mutual_info_score(_labels(labels, "labels"), _labels(pred, "pred")))


def cluster_sizes(pred: Any, k: int) -> list[int]:
    """How many points fall in each of the clusters 0..k−1 (empty clusters count 0)."""
    p = _labels(pred, "pred")
    top = int(p.max()) if p.size else -1
    if k < 1 or top >= k:
        raise ValueError(f"k must be ≥ 1 and exceed every cluster id, got k={k} and largest id {top}")
    return np.bincount(p, minlength=k).tolist()
