"""The SiD reproduction end to end on tiny teachers: files, the rows contract, and checks from rows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from helpers import run_contract
from kexue.diffusion.ddpm import DDPMConfig
from kexue.experiments import pretrained_ddpm
from kexue.experiments import sid as repro
from kexue.train.trainer import TrainConfig


@pytest.fixture
def tiny_ring(monkeypatch, tiny_recipe) -> str:
    ring = pretrained_ddpm.DDPMRecipe(
        "ring",
        DDPMConfig(shape=(2,), width=16, depth=1, dropout=0.0),
        TrainConfig(steps=20, batch_size=64, ema_decay=0.9, progress=False),
    )
    monkeypatch.setitem(pretrained_ddpm.RECIPES, "tiny-ring", ring)
    return "tiny-ring"


def test_tiny_run_writes_the_contract(tiny_ring, tiny_recipe, tmp_path):
    # the tiny digits recipe has N = 100 steps, whose largest σ is below 2.5: start the generator lower
    cfg = replace(
        repro.QUICK,
        toy_recipe=tiny_ring,
        image_recipe=tiny_recipe,
        sigma_init=1.0,
        teacher_steps=(1, 3),
        toy_steps=4,
        toy_batch=16,
        toy_eval_every=2,
        toy_samples=50,
        toy_seeds=(0, 1),
        sweep_alphas=(0.0, 1.2),
        sweep_steps=2,
        image_steps=2,
        image_batch=8,
        image_eval_every=1,
        image_samples=20,
        image_seeds=(0,),
    )
    on_disk = run_contract(repro.REPRODUCTION, cfg, tmp_path / "out")
    for key in ("one_step_mmd", "teacher_mmd", "one_step_fid", "teacher_fid", "early_drop_factor"):
        assert isinstance(on_disk[key], float), key
    assert set(on_disk["teacher_mmd_by_steps"]) == {"1", "3"}
    sweep = [r for r in on_disk["rows"] if r["part"] == "sweep"]
    assert [r["method"] for r in sweep] == ["α = 0", "α = 1.2", repro.L1_ONLY]
    assert [c["step"] for c in on_disk["toy_curve"]] == [0, 2, 4]
    for name in ("report.md", "sid_curve.png", "ring_samples.png", "digits_one_step.png"):
        assert (tmp_path / "out" / name).is_file()


def _rows(one: float, teacher: float) -> list[dict]:
    return [
        {"part": "toy", "method": "teacher DDIM, 50 steps", "nfe": 50, "mmd2_x1e3": teacher},
        {"part": "toy", "method": "SiD one-step", "nfe": 1, "mmd2_x1e3": one},
    ]


def test_checks_follow_the_rows():
    cfg = replace(repro.QUICK, image_recipe=None)
    fast = [{"step": s, "metric": m} for s, m in ((0, 500.0), (100, 40.0), (500, 30.0))]
    slow = [{"step": s, "metric": m} for s, m in ((0, 500.0), (100, 400.0), (500, 30.0))]
    checks, found = repro._checks(cfg, _rows(40.0, 30.0), fast)
    assert all(checks.values()) and found["early_drop_factor"] == pytest.approx(12.5)
    checks, _ = repro._checks(cfg, _rows(46.0, 30.0), fast)  # 1.53× the teacher
    assert not checks["ring: one-step MMD² ≤ 1.5 × the teacher's at 50 steps"]
    checks, _ = repro._checks(cfg, _rows(40.0, 30.0), slow)
    assert not checks["ring: MMD² falls ≥ 10× within the first 20% of the iterations"]
