"""The nvae reproduction end to end on a tiny budget: files, the metrics contract, checks from rows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from helpers import run_contract
from kexue.experiments import nvae as repro


def tiny(shared_data) -> repro.Config:
    return replace(
        repro.QUICK,
        data_dir=str(shared_data),
        seconds=0.6,
        train_limit=300,
        test_limit=12,
        k=3,
        nvae={"channels": 4, "latent": 2, "groups": (1, 1)},
        vae={"hidden": (16,), "z_dim": 3},
        ablations=("nvae-no-sr",),
        temperatures=(1.0,),
    )


def test_tiny_run_writes_the_contract(tmp_path, shared_data):
    """MNIST parts skip (via the shared_data fixture) when ../shared/data is absent."""
    on_disk = run_contract(repro.REPRODUCTION, tiny(shared_data), tmp_path / "out")
    assert on_disk["name"] == "nvae" and on_disk["systems"] == [9]
    rows = on_disk["rows"]
    assert [r["model"] for r in rows] == ["nvae", "vae", "nvae-no-sr"]
    for r in rows:
        assert r["steps"] >= 1 and r["nll"] > 0 and r["au"] <= r["dims"]
    nll = {s["model"]: s["nll"] for s in on_disk["summary"]}
    assert all(0 <= s["collapsed"] <= 2 for s in on_disk["summary"])
    checks = on_disk["checks"]
    assert checks["NVAE's test NLL is below the plain VAE's at an equal budget"] == (nll["nvae"] < nll["vae"])
    assert checks["no training stopped on a non-finite loss"] == (not any(r["nan_stop"] for r in rows))
    groups = on_disk["groups"]
    assert [(g["model"], g["group"], g["scale"]) for g in groups] == [
        ("nvae", 0, 7),
        ("nvae", 1, 14),
        ("nvae-no-sr", 0, 7),
        ("nvae-no-sr", 1, 14),
    ]
    assert sum(g["kl"] for g in groups[:2]) == pytest.approx(rows[0]["kl"])
    assert (tmp_path / "out" / "samples.png").stat().st_size > 1000


def test_bad_config_raises():
    with pytest.raises(ValueError, match="ablations"):
        replace(repro.QUICK, ablations=("no-such-trick",))
    with pytest.raises(ValueError, match="clock"):
        replace(repro.QUICK, clock="gpu")
