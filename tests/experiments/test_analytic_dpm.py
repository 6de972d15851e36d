"""The Analytic-DPM reproduction end to end on a tiny ε-net: files, the rows contract, checks from rows."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from helpers import run_contract
from kexue.experiments import analytic_dpm as repro


class FakeFidProxy:
    """Stands in for the FID-proxy (whose classifier takes too long to train in a test)."""

    def __init__(self, data, *, data_dir=None, device="cpu"):
        self.data = data

    def __call__(self, images, *, generator=None):
        assert images.min() >= 0 and images.max() <= 1  # images reach the metric in [0, 1]
        return {"fid_proxy": float(images.std()), "n": len(images)}

    def floor(self, n, *, generator=None):
        return {"fid_proxy": 0.0, "n": n}


@pytest.fixture
def tiny_recipe(monkeypatch, tmp_path):
    from helpers import install_tiny_recipe

    monkeypatch.setattr("kexue.metrics.fid_proxy.FidProxy", FakeFidProxy)
    return install_tiny_recipe(monkeypatch, tmp_path, steps=40)


def test_tiny_run_writes_the_contract(tiny_recipe, tmp_path):
    cfg = replace(repro.QUICK, recipe=tiny_recipe, ks=(3, 8, 40), small_ks=(3,), fid_k=5, fid_n=16, m_per_t=2)
    on_disk = run_contract(repro.REPRODUCTION, cfg, tmp_path / "out")
    rows = on_disk["rows"]
    assert len(rows) == 3 * 4 and {r["variance"] for r in rows} == set(repro.VARIANCES)
    assert all({"variance", "K", "bpd"} <= set(r) and isinstance(r["bpd"], float) for r in rows)
    assert {r["K"] for r in rows} == {3, 8, 40}
    at_n = {r["variance"]: r["bpd"] for r in rows if r["K"] == 40}
    assert at_n["analytic_ot"] == at_n["analytic"]  # K = N: the only trajectory
    ot = on_disk["optimal_trajectories"]["3"]
    assert ot[0] == 1 and ot[-1] == 40 and len(ot) == 3
    assert {r["sampler"] for r in on_disk["fid"]} == set(repro.SAMPLERS) and on_disk["fid_n"] == 16
    assert len(on_disk["ms_eps"]) == 41
    report = (tmp_path / "out" / "report.md").read_text()
    assert "74.95" in report and "## Verdict" in report  # the paper's Table 1 stands beside ours
    assert (tmp_path / "out" / "analytic_dpm.png").stat().st_size > 1000


def _per_image(table: dict) -> dict:
    """Fabricated per-image bits/dim: (variance, K) → tensor, with a little spread."""
    g = torch.Generator().manual_seed(0)
    return {key: v + 0.01 * torch.randn(200, generator=g, dtype=torch.float64) for key, v in table.items()}


def test_checks_follow_the_rows():
    cfg = replace(repro.QUICK, ks=(10, 100, 1000), small_ks=(10,), fid_seeds=(0, 1))
    paper = {10: (75.0, 7.0, 5.5, 4.1), 100: (7.1, 4.9, 4.1, 3.6), 1000: (3.73, 3.75, 3.59, 3.59)}
    table = {(v, k): vals[i] for k, vals in paper.items() for i, v in enumerate(repro.VARIANCES)}
    fid = [
        {"sampler": s, "seed": seed, "fid": 14.0 if s == "analytic_ddim" else 21.0}
        for s in repro.SAMPLERS
        for seed in (0, 1)
    ]
    checks, _ = repro._checks(cfg, _per_image(table), fid, 1000)
    assert all(checks.values()), checks
    worse = dict(table)
    worse["analytic", 100] = 5.5  # Analytic above β at K = 100
    checks, _ = repro._checks(cfg, _per_image(worse), fid, 1000)
    assert not checks["at every K: Analytic ≤ β within 3 paired standard errors"]
    fid_bad = [dict(r, fid=10.0) if r["sampler"] == "ddim" and r["seed"] == 0 else r for r in fid]
    checks, _ = repro._checks(cfg, _per_image(table), fid_bad, 1000)
    assert not checks["FID-proxy at K = 10: Analytic-DDIM below DDIM on every sampling seed"]
