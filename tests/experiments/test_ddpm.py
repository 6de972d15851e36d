"""The DDPM training-curve reproduction on a tiny budget: files, rows, and checks computed from rows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from helpers import run_contract
from kexue.diffusion.ddpm import DDPMConfig
from kexue.experiments import ddpm as repro
from kexue.train.trainer import TrainConfig


def test_tiny_run_writes_the_contract(tmp_path, monkeypatch):
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "cache"))
    cfg = replace(
        repro.QUICK,
        model=DDPMConfig(shape=(1, 8, 8), width=32, depth=1, steps=50),
        train=TrainConfig(steps=12, batch_size=32, ema_decay=0.9),
        eval_every=6,
        eval_steps=3,
        n=30,
    )
    on_disk = run_contract(repro.REPRODUCTION, cfg, tmp_path / "out")
    assert {(r["step"], r["weights"]) for r in on_disk["rows"]} == {
        (s, w) for s in (6, 12) for w in ("raw", "ema")
    }
    assert "final_ema_ddpm_ancestral_fid" in on_disk
    for name in ("report.md", "samples.png", "training_curve.png"):
        assert (tmp_path / "out" / name).is_file()


def test_checks_follow_the_rows():
    def rows(first, last_raw, last_ema):
        out = []
        for seed in (0, 1):
            out += [{"step": 100, "weights": w, "seed": seed, "fid": first} for w in ("raw", "ema")]
            out += [
                {"step": 900, "weights": "raw", "seed": seed, "fid": last_raw + seed},
                {"step": 900, "weights": "ema", "seed": seed, "fid": last_ema + seed},
            ]
        return out

    assert all(repro._checks(rows(60, 12, 9))[0].values())
    checks, found = repro._checks(rows(60, 9, 12))
    assert not checks["ema_beats_raw_at_the_end"] and found["raw_minus_ema_fid_at_end"] == pytest.approx(-3)
    assert not repro._checks(rows(60, 30, 29))[0]["fid_falls_with_training"]
