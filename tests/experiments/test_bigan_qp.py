"""The BiGAN-QP reproduction end to end on digits in a few steps: files, the metrics contract, checks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from helpers import FakeFidProxy, run_contract
from kexue.experiments import bigan_qp as repro

TINY = replace(
    repro.QUICK,
    data="digits",
    train_limit=300,
    test_limit=100,
    probe_train=200,
    steps=3,
    batch_size=32,
    model={"width": 16, "z_dim": 8, "hidden": 16},
    runs=tuple(repro.VARIANTS),
    fid_n=60,
)


def test_tiny_run_writes_the_contract(tmp_path, monkeypatch):
    monkeypatch.setattr("kexue.metrics.fid_proxy.FidProxy", FakeFidProxy)
    on_disk = run_contract(repro.REPRODUCTION, TINY, tmp_path / "out")
    assert on_disk["name"] == "bigan-qp" and on_disk["systems"] == [10]
    rows = on_disk["rows"]
    assert [r["run"] for r in rows] == list(repro.VARIANTS)
    for r in rows:
        keys = {
            "recon_mse",
            "probe_acc",
            "sharpness_samples",
            "sharpness_recon",
            "fid_proxy",
            "fid_proxy_recon",
        }
        assert keys <= set(r) and r["steps"] == 3
    assert {"random_e_probe_acc", "random_pair_mse", "fid_proxy_floor"} <= set(on_disk)
    assert {"d/loss", "d/gap", "g/adv", "g/rec_x", "g/rec_z"} <= set(on_disk["history"]["bigan-qp"][0])
    by = {r["run"]: r for r in rows}
    assert by["no-stop-gradient"]["stop_gradient"] is False and by["ali"]["objective"] == "ali"
    checks = on_disk["checks"]
    assert len(checks) == 6 and repro.WORSE in checks and repro.BLURRY in checks
    main = by["bigan-qp"]
    name = "reconstructions G(E(x)) resemble their inputs (MSE < 0.5 × random-pair MSE)"
    assert checks[name] == (main["recon_mse"] < 0.5 * on_disk["random_pair_mse"])
    report = (tmp_path / "out" / "report.md").read_text()
    for name, ok in checks.items():
        assert f"- {'✓' if ok else '✗'} {name}" in report
    for fig in ("samples_bigan-qp.png", "reconstructions_no-stop-gradient.png"):
        assert (tmp_path / "out" / fig).stat().st_size > 1000


def test_sharpness_drops_under_blur():
    """A 3×3 box blur lowers the mean |finite difference| (the measure of the ablation's blur)."""
    x = (torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    assert repro.sharpness(blurred) < 0.6 * repro.sharpness(x)
    assert repro.sharpness(torch.full((1, 1, 5, 5), 0.3)) == 0.0


def test_ablation_checks_follow_the_rows():
    main = {
        "run": "bigan-qp",
        "recon_mse": 0.03,
        "probe_acc": 0.9,
        "diverged": False,
        "sharpness_samples": 0.9,
        "sharpness_recon": 0.8,
        "fid_proxy": 50.0,
        "fid_proxy_recon": 30.0,
        "classes_covered": 10,
    }
    nsg = dict(main, run="no-stop-gradient", sharpness_samples=0.7, sharpness_recon=0.6, fid_proxy=80.0)
    nsg["fid_proxy_recon"] = 40.0
    base = {"random_e_probe_acc": 0.7, "random_pair_mse": 0.1}
    checks = repro._checks(repro.FULL, [main, nsg], base)
    assert checks[repro.BLURRY] and checks[repro.WORSE] and all(checks.values())
    sharper = repro._checks(repro.FULL, [main, dict(nsg, sharpness_recon=0.85)], base)
    assert not sharper[repro.BLURRY]
    assert not repro._checks(repro.FULL, [main, dict(nsg, fid_proxy_recon=20.0)], base)[repro.WORSE]
    nan = dict(nsg, fid_proxy=float("nan"), fid_proxy_recon=float("nan"))
    assert repro._checks(repro.FULL, [main, nan], base)[repro.WORSE]  # non-finite samples are worse


def test_runs_must_include_the_model():
    with pytest.raises(ValueError, match="runs"):
        repro.run(replace(TINY, runs=("ali",)), None)
