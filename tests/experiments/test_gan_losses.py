"""The gan-losses reproduction end to end on a tiny budget: files, the metrics contract, checks from rows."""

from __future__ import annotations

from dataclasses import replace

import helpers
from helpers import run_contract
from kexue.experiments import gan_losses as repro

TINY = replace(
    repro.QUICK,
    toy_points=512,
    toy_steps=8,
    toy_seeds=(0,),
    losses=("ns", "wgan-gp", "gan-qp-l1", "gan-qp-l2", "hinge-sn"),
    eval_n=200,
    bound_pairs=16,
    bound_steps=30,
    mnist=False,
)


class FakeFidProxy(helpers.FakeFidProxy):
    stat, classes = "mean", False


def test_tiny_run_writes_the_contract(tmp_path):
    on_disk = run_contract(repro.REPRODUCTION, TINY, tmp_path / "out")
    assert on_disk["name"] == "gan-losses"
    rows, summary = on_disk["rows"], on_disk["toy_summary"]
    assert [r["loss"] for r in rows] == list(TINY.losses)
    for r in rows:
        assert {"modes", "hq", "kl", "sw2", "grad_max", "ms_step_cpu", "ms_step_wall", "steps"} <= set(r)
        assert r["steps"] == TINY.toy_steps and r["ms_step_cpu"] > 0 and 0 <= r["hq"] <= 1
        assert r["checkpoints"] == len(repro.checkpoints(TINY.toy_steps, 5, 0.4)) == 4  # steps 5, 6, 7, 8
    checks = on_disk["checks"]
    modes = {s["loss"]: s["modes"] for s in summary}
    best = max(m for name, m in modes.items() if name not in repro.QP_ROWS)
    for qp in repro.QP_ROWS:  # ring8: K = 8, so the tolerance is max(1, 0.8) = 1 mode
        assert checks[f"{qp} (no GP, no SN) covers within 1 of the best other loss's modes"] == (
            modes[qp] >= best - 1
        )
    init, trained = on_disk["bound"]
    assert init["G"] == "G at initialisation" and trained["G"].startswith("G trained")
    bound = next(v for k, v in checks.items() if k.startswith("at the critic's optimum"))
    assert bound == (init["rel_gap"] < 0.01 and init["max_ratio"] <= 1.1)
    assert all(b["loss"] >= b["infimum"] - 1e-6 for b in on_disk["bound"])  # −E[λd]/2 is the infimum
    cpu = {r["loss"]: r["ms_step_cpu"] for r in rows}
    ratio = cpu["wgan-gp"] / cpu["gan-qp-l1"]
    assert on_disk["speed_ratio_wgan_gp_over_qp"] == {"mnist": None, "toy": ratio}
    assert checks["WGAN-GP is slower per step than GAN-QP-L1 (2-D, CPU-time ratio > 1.1)"] == (ratio > 1.1)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Verdict" in report and "45.0" in report and "55.5" in report  # the paper's FIDs beside ours
    assert (
        "modes (mean over seeds and checkpoints) against" in report
        and "WGAN-GP / GAN-QP-L1 CPU time" in report
    )
    assert (tmp_path / "out" / "gan_losses_2d.png").stat().st_size > 1000


def test_mnist_part(tmp_path, monkeypatch):
    """The MNIST path with a stand-in FID-proxy, whose random "training images" (the run trains on the
    proxy's copy of the training set) stand in for MNIST: no data set is needed."""
    monkeypatch.setattr("kexue.metrics.fid_proxy.FidProxy", FakeFidProxy)
    cfg = replace(
        TINY,
        losses=("gan-qp-l1",),
        toy_steps=4,
        bound_steps=4,
        mnist=True,
        mnist_losses=("wgan-gp", "gan-qp-l1"),
        mnist_steps=3,
        mnist_width=4,
        train_limit=256,
        fid_n=40,
    )
    on_disk = run_contract(repro.REPRODUCTION, cfg, tmp_path / "out")
    floor, *runs = on_disk["mnist"]
    assert floor["loss"] == "real vs real (floor)" and [r["loss"] for r in runs] == ["wgan-gp", "gan-qp-l1"]
    for r in on_disk["mnist"]:
        assert {"fid_proxy", "kid_proxy", "classes_5pct", "class_kl"} <= set(r) and 1 <= r[
            "classes_5pct"
        ] <= 10
    ratio = runs[0]["ms_step_cpu"] / runs[1]["ms_step_cpu"]
    assert on_disk["checks"]["WGAN-GP is slower per step than GAN-QP-L1 (MNIST, CPU-time ratio > 1.1)"] == (
        ratio > 1.1
    )
    assert (tmp_path / "out" / "gan_losses_mnist.png").stat().st_size > 1000


def test_coverage_checks_follow_the_summary():
    summary = [
        {"loss": "ns", "modes": 20.0},
        {"loss": "gan-qp-l1", "modes": 17.6},
        {"loss": "gan-qp-l2", "modes": 17},
    ]
    checks, text = repro.coverage_checks(summary, k=25, tol_frac=0.1)  # tolerance 2.5 modes of 25
    assert list(checks.values()) == [True, False] and "best other loss, ns" in text
