"""The O-GAN reproduction end to end on digits in a few steps: files, the metrics contract, checks."""

from __future__ import annotations

from dataclasses import replace

import pytest

from helpers import FakeFidProxy, run_contract
from kexue.experiments import o_gan as repro

TINY = replace(
    repro.QUICK,
    data="digits",
    train_limit=300,
    test_limit=100,
    probe_train=200,
    steps=4,
    batch_size=32,
    model={"width": 16, "z_dim": 8},
    runs=tuple(repro.VARIANTS),
    fid_n=60,
)


def test_tiny_run_writes_the_contract(tmp_path, monkeypatch):
    monkeypatch.setattr("kexue.metrics.fid_proxy.FidProxy", FakeFidProxy)
    on_disk = run_contract(repro.REPRODUCTION, TINY, tmp_path / "out")
    assert on_disk["name"] == "o-gan" and on_disk["systems"] == [11]
    rows = on_disk["rows"]
    assert [r["run"] for r in rows] == list(repro.VARIANTS)
    for r in rows:
        assert {
            "rho",
            "rho_start",
            "recon_mse",
            "probe_acc",
            "fid_proxy",
            "classes_covered",
            "steps",
            "diverged",
        } <= set(r)
        assert -1 <= r["rho"] <= 1 and 0 <= r["probe_acc"] <= 1 and r["steps"] == 4
    assert {"random_e_probe_acc", "random_pair_mse", "fid_proxy_floor"} <= set(on_disk)
    assert set(on_disk["history"]) == set(repro.VARIANTS)  # the trainer's logged terms, every 1 of 4 steps
    assert [h["step"] for h in on_disk["history"]["o-gan"]] == [1, 2, 3, 4]
    assert {"rho", "t1", "qp", "loss"} <= set(on_disk["history"]["o-gan"][0])
    by = {r["run"]: r for r in rows}
    assert by["rho-weight-0"]["rho_weight"] == 0.0 and by["mse"]["objective"] == "mse"
    checks = on_disk["checks"]
    assert len(checks) == 7
    main = by["o-gan"]
    assert checks["ρ(z, E(G(z))) rises high (≥ 0.8)"] == (main["rho"] >= 0.8)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "ρ(z, E(G(z))) during training" in report
    for name, ok in checks.items():
        assert f"- {'✓' if ok else '✗'} {name}" in report  # every claim line, with its verdict
    for fig in ("samples_o-gan.png", "samples_mse.png", "reconstructions.png"):
        assert (tmp_path / "out" / fig).stat().st_size > 1000


def test_checks_follow_the_rows():
    rows = [
        {
            "run": "o-gan",
            "rho": 0.9,
            "probe_acc": 0.9,
            "recon_mse": 0.03,
            "diverged": False,
            "fid_proxy": 10.0,
            "classes_covered": 10,
        },
        {"run": "rho-weight-0", "rho": 0.1, "fid_proxy": 9.0},
        {"run": "mse", "rho": 0.5, "diverged": False, "fid_proxy": 11.0},
    ]
    base = {"random_e_probe_acc": 0.8, "random_pair_mse": 0.1}
    checks = repro._checks(repro.FULL, rows, base)
    assert all(v for k, v in checks.items() if "ablation" not in k) and len(checks) == 7
    assert checks["the ‖z − E(G(z))‖² ablation fails (diverges, or FID-proxy ≥ 1.5× or ρ ≥ 0.1 lower)"]
    rows[2]["rho"] = 0.85
    checks = repro._checks(repro.FULL, rows, base)
    assert not checks["the ‖z − E(G(z))‖² ablation fails (diverges, or FID-proxy ≥ 1.5× or ρ ≥ 0.1 lower)"]
    rows[0]["probe_acc"] = 0.84
    assert not repro._checks(repro.FULL, rows, base)[
        "E is a useful encoder: probe accuracy ≥ random-E probe + 0.05"
    ]


def test_runs_must_include_the_model():
    with pytest.raises(ValueError, match="runs"):
        repro.run(replace(TINY, runs=("mse",)), None)
