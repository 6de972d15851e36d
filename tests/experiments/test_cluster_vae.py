"""The cluster-vae reproduction end to end on a tiny budget: files, the metrics contract, checks from rows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from helpers import run_contract
from kexue.experiments import cluster_vae as repro

TINY = replace(
    repro.QUICK,
    data="digits",  # 8×8, embedded: no download
    seeds=(0, 1),
    steps=20,
    batch_size=50,
    model={"arch": "mlp", "mlp": (32,), "hidden": 16},
    kmeans_n_init=1,
    samples_per_cluster=3,
)


def test_tiny_run_writes_the_contract(tmp_path):
    on_disk = run_contract(repro.REPRODUCTION, TINY, tmp_path / "out")
    assert on_disk["name"] == "cluster-vae" and on_disk["systems"] == [19]
    rows = on_disk["rows"]
    assert [(r["method"], r["seed"]) for r in rows] == [
        ("k-means (pixels)", 0),
        ("cluster VAE", 0),
        ("cluster VAE", 1),
    ]
    vae = rows[1:]
    for r in rows:
        assert 0 < r["hungarian_accuracy"] <= r["accuracy"] <= 1 and 0 <= r["nmi"] <= 1
        assert len(r["sizes"]) == 10 and sum(r["sizes"]) == 297  # the digits test split
    assert on_disk["accuracy"] == pytest.approx(sum(r["accuracy"] for r in vae) / 2)  # the mean over seeds
    assert on_disk["accuracy_min"] == min(r["accuracy"] for r in vae)
    assert on_disk["accuracy_max"] == max(r["accuracy"] for r in vae)
    assert on_disk["kmeans_accuracy"] == rows[0]["accuracy"]
    checks = on_disk["checks"]
    assert checks["mean majority accuracy above k-means on pixels"] == (
        on_disk["accuracy"] > on_disk["kmeans_accuracy"]
    )
    assert checks["mean majority accuracy within 5% of the post's 83% or above"] == (
        on_disk["accuracy"] >= 0.78
    )
    assert all(r["steps"] == 20 for r in vae)
    for name in ("samples.png", "members.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000


def test_kmeans_baseline_separates_obvious_blobs():
    """Two well-separated groups of 'images' are split perfectly by k-means (accuracy 1 both ways)."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = 0.05 * torch.randn(20, 1, 2, 2, generator=g)
    b = 1 + 0.05 * torch.randn(20, 1, 2, 2, generator=g)
    x, y = torch.cat([a, b]), torch.cat([torch.zeros(20), torch.ones(20)]).long()
    pred = repro.kmeans_clusters(x, x, 2, n_init=2, seed=0)
    s = repro.scores(pred, y, 2)
    assert s["accuracy"] == s["hungarian_accuracy"] == 1.0 and s["sizes"] == [20, 20]


def test_mnist_quick_data_loads(shared_data):
    """The quick preset's data is MNIST from the shared folder (skipped when ../shared/data is absent)."""
    if not (shared_data / "mnist").is_dir():
        pytest.skip(f"{shared_data / 'mnist'} is absent: the MNIST preset cannot run here")
    x_train, x_test, y_test, _ = repro._load(replace(repro.QUICK, data_dir=str(shared_data), test_limit=100))
    assert x_train.shape == (60_000, 1, 28, 28) and x_test.shape == (100, 1, 28, 28) and len(y_test) == 100
    assert 0 <= float(x_train.min()) and float(x_train.max()) <= 1
