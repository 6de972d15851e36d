"""The [9812] reproduction end to end on a micro preset: files, keys, and a verdict computed from rows."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from helpers import run_contract
from kexue.experiments import attention_scale as repro
from kexue.nn.attention_scale import mean_field_optimum

MICRO = replace(
    repro.QUICK,
    ns=(64, 512, 1024),
    fit_range=(512, 1024),
    samples=4,
    seeds=(0, 1),
    alpha_max=8.0,
    multiples=(1, 16),
    trials=32,
    curve_ns=(64, 512),
)


def _checks(cfg):
    lo, hi = cfg.fit_range
    return (
        repro.CHECK_MF.format(tol=cfg.tolerance, lo=lo, hi=hi),
        repro.CHECK_FIT.format(tol=cfg.fit_tolerance),
        repro.CHECK_SAMPLED.format(k=cfg.sampled_sigmas),
        repro.CHECK_FOCUS.format(mult=cfg.check_multiple, base=cfg.base, ratio=cfg.mass_ratio),
    )


def test_micro_run_writes_the_contract(tmp_path):
    on_disk = run_contract(repro.REPRODUCTION, MICRO, tmp_path)
    assert on_disk["name"] == "attention-scale" and on_disk["systems"] == [6]
    rows, focus = on_disk["rows"], on_disk["focus_rows"]
    assert [r["n"] for r in rows] == list(MICRO.ns) and [r["n"] for r in focus] == [512, 8192]
    grid = repro.alpha_grid(MICRO)
    assert on_disk["alpha_grid"] == grid.tolist() and {1.0, 2.5, 8.0} <= set(grid.tolist())
    for r in rows:  # the mean-field columns are the library's exact values
        assert r["alpha_mf"] == pytest.approx(mean_field_optimum(r["n"]).item(), rel=1e-12)
        assert r["su_fit"] == pytest.approx(0.84 * math.sqrt(math.log(r["n"])))
        assert len(r["sampled_argmax_per_seed"]) == len(MICRO.seeds) == len(r["diff_per_seed"])
        assert set(r["sampled_argmax_per_seed"]) <= set(grid.tolist())
        assert len(r["curve_mean"]) == len(grid)
    assert focus[0]["mass_std"] == focus[0]["mass_log_n"]  # n = base: the two scales coincide
    mf, fit, sampled, foc = _checks(MICRO)
    checks = on_disk["checks"]
    assert checks[mf] and checks[fit]  # deterministic: exact α* and the post's own grid
    assert checks[sampled] == all(
        d > MICRO.sampled_sigmas * se
        for r in rows
        if r["n"] >= 512
        for d, se in zip(r["diff_per_seed"], r["diff_se_per_seed"])
    )
    assert checks[foc] == (focus[1]["mass_log_n"] >= 2 * focus[1]["mass_std"])
    assert on_disk["fit"]["c_post_grid"] == pytest.approx(0.8413, abs=5e-4)
    report = (tmp_path / "report.md").read_text()
    assert "## Verdict" in report and "plateau f_Δ(0)" in report and "| log n | 43.11 |" in report
    assert (tmp_path / "attention_scale.png").stat().st_size > 1000


def _row(n, rel_dev=0.0, diffs=(1.0, 1.0), ses=(0.1, 0.1)):
    return {"n": n, "rel_dev": rel_dev, "diff_per_seed": list(diffs), "diff_se_per_seed": list(ses)}


def test_checks_follow_the_rows():
    cfg = MICRO
    mf, fit, sampled, foc = _checks(cfg)
    rows = [_row(64, rel_dev=-0.3), _row(512, 0.05), _row(1024, -0.02)]  # n = 64 lies outside fit_range
    focus = [{"multiple": 1, "mass_ratio": 1.0}, {"multiple": 16, "mass_ratio": 2.5}]
    good = {"c_post_grid": 0.842}
    assert all(repro.checks_from(cfg, rows, focus, good).values())
    assert not repro.checks_from(cfg, [*rows[:2], _row(1024, 0.11)], focus, good)[mf]
    assert not repro.checks_from(cfg, rows, focus, {"c_post_grid": 0.82})[fit]
    noisy = [*rows[:2], _row(1024, diffs=(1.0, 0.2), ses=(0.1, 0.1))]  # one seed within 3 standard errors
    assert not repro.checks_from(cfg, noisy, focus, good)[sampled]
    weak = [focus[0], {"multiple": 16, "mass_ratio": 1.9}]
    assert not repro.checks_from(cfg, rows, weak, good)[foc]
    assert not repro.checks_from(cfg, rows, focus[:1], good)[foc]  # no row at the checked length


def test_config_refuses_checks_that_could_not_run():
    with pytest.raises(ValueError, match="≥ 2 seeds"):
        replace(MICRO, seeds=(0,))
    with pytest.raises(ValueError, match="check_multiple"):
        replace(MICRO, multiples=(1, 2))
    with pytest.raises(ValueError, match="ns must include"):
        replace(MICRO, ns=(64, 128), curve_ns=(64,))
    with pytest.raises(ValueError, match="alpha_max"):
        replace(MICRO, alpha_max=4.0)


def test_alpha_grid_is_increasing_and_ends_at_alpha_max():
    g = repro.alpha_grid(repro.QUICK)
    assert (g.diff() > 0).all() and g[-1] == repro.QUICK.alpha_max and g[0] == 0.25
    assert torch.isin(torch.tensor([1.0, 2.5, 8.0, 16.0], dtype=torch.float64), g).all()
