"""The flows reproduction end to end on a tiny budget: files, the metrics contract, checks from rows."""

from __future__ import annotations

from dataclasses import replace

import torch

from helpers import run_contract
from kexue.experiments import flows as repro

TINY = replace(
    repro.QUICK,
    seeds=(0,),
    eval_every=5,
    train_limit=400,
    test_limit=100,
    valid=50,
    temperatures=(0.7, 1.0),
    overrides={"nice": {"hidden": 8, "depth": 1}, "realnvp": {"hidden": 8}, "glow": {"K": 1, "hidden": 8}},
    seconds=0.5,
)


def test_tiny_run_writes_the_contract(tmp_path):
    on_disk = run_contract(repro.REPRODUCTION, TINY, tmp_path / "out")
    assert on_disk["name"] == "flows" and on_disk["systems"] == [34]
    rows = on_disk["rows"]
    assert [r["model"] for r in rows] == ["gaussian", *repro.MODELS]
    bpd = {s["model"]: s["test_bpd"] for s in on_disk["summary"]}
    checks = on_disk["checks"]
    assert checks["every flow beats the full-covariance Gaussian"] == all(
        bpd[m] < on_disk["gaussian_bpd"] for m in repro.MODELS
    )
    assert checks["Glow: reverse > shuffle > 1×1 conv in bits/dim"] == (
        bpd["glow-reverse"] > bpd["glow-shuffle"] > bpd["glow"]
    )
    shuffled = next(r for r in rows if r["model"] == "glow-shuffle")
    assert shuffled["params"] < next(r for r in rows if r["model"] == "glow")["params"]  # no 1×1 conv weights
    assert checks["NICE > RealNVP in bits/dim"] == (bpd["nice"] > bpd["realnvp"])
    assert checks["RealNVP > Glow in bits/dim"] == (bpd["realnvp"] > bpd["glow"])
    assert checks["exact inverse (float64 error < 1e-8)"]
    for r in rows[1:]:
        assert r["steps"] >= r["best_step"] >= 5 and r["inverse_error"] < 1e-8
    assert (tmp_path / "out" / "samples.png").stat().st_size > 1000


def test_gaussian_baseline_uses_the_correlation():
    """With one pixel a function of another, the full-covariance MLE Gaussian beats the independent uniform
    model of the 17 levels (log2 17 bits/dim) by a wide margin."""
    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, 17, (400, 1, 2, 2), generator=g, dtype=torch.uint8)
    k[:, 0, 1, 1] = (k[:, 0, 0, 0] // 2 + 3).to(torch.uint8)  # correlated pixels
    bpd = repro.gaussian_bpd(k, k, 17, copies=200)
    uniform = 4.087  # log2(17): an independent uniform model of the 17 levels
    assert 2.0 < bpd < uniform, bpd
