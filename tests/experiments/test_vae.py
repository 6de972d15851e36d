"""The vae reproduction end to end on a tiny budget: files, the metrics contract, checks from rows."""

from __future__ import annotations

from dataclasses import replace

from helpers import run_contract
from kexue.experiments import vae as repro

TINY = replace(
    repro.QUICK,
    data="digits",
    test_limit=120,
    epochs=2.0,
    hidden=(32,),
    z_dim=4,
    k_eval=20,
    k_curve=(1, 5),
    iwae_k=2,  # exercises the full preset's branches
    published_tolerance=3.0,
    geometry_hidden=(32,),
    geometry_epochs=2.0,
    geometry_points=60,
)


def test_tiny_run_writes_the_contract(tmp_path):
    on_disk = run_contract(repro.REPRODUCTION, TINY, tmp_path / "out")
    assert on_disk["name"] == "vae" and on_disk["systems"] == [4]
    rows, checks = on_disk["rows"], on_disk["checks"]
    assert [r["model"] for r in rows] == ["vae", "iwae-k2", "vae-2d (figure)"]
    vae, iwae, flat = rows
    assert vae["nll"] == vae["nll_k20"] == on_disk["nll"] and 0 <= vae["au"] <= 4
    assert checks["IWAE bound tighter than the ELBO: NLL (K=20) < test −ELBO"] == (
        vae["nll"] < vae["neg_elbo"]
    )
    assert checks["−L_K non-increasing in K ∈ [1, 5, 20] [BGS16] Thm 1"] == (
        vae["nll_k1"] >= vae["nll_k5"] >= vae["nll_k20"]
    )
    assert checks["IWAE (K=2) training beats the VAE in NLL at equal epochs"] == (iwae["nll"] < vae["nll"])
    assert checks["NLL within 3 nats of the published 89.9"] == (abs(vae["nll"] - 89.9) <= 3)
    assert checks[
        "[7725] each image is a patch, neither a point nor the whole circle: 0.01 < mean σ(x) < 0.5"
    ] == (0.01 < flat["mean_sigma"] < 0.5)
    assert checks[
        "[7725] together the patches fill the unit circle: KL(q(z) ‖ p(z)) < ¼ E_x KL(q(z|x) ‖ p(z))"
    ] == (flat["marginal_kl"] < flat["mean_kl"] / 4)
    assert flat["marginal_kl"] >= -0.1 and flat["mean_kl"] > 0
    assert vae["steps"] == iwae["steps"] == round(2 * 1500 / 100)  # equal epochs
    assert on_disk["binarization"]["train"] == "dynamic"
    for figure in ("geometry.png", "samples.png"):
        assert (tmp_path / "out" / figure).stat().st_size > 1000


def test_mnist_is_binarised_as_stated(shared_data):
    """On MNIST: the test images are one fixed {0, 1} draw (`static_binarize`, seeded), the training images
    stay grey levels for the dynamic binarisation inside the loss."""
    cfg = replace(repro.QUICK, data_dir=str(shared_data), train_limit=50, test_limit=50)
    _, x_train, x_test, y_test = repro._binarised(cfg)
    assert x_test.shape == (50, 1, 28, 28) and set(x_test.unique().tolist()) == {0.0, 1.0}
    assert len(y_test) == 50
    assert len(x_train.unique()) > 2
