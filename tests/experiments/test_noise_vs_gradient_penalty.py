"""The reproduction's machinery end to end on a tiny budget: files, keys, and a verdict computed from rows."""

from __future__ import annotations

from dataclasses import replace

import torch

from helpers import run_contract
from kexue.experiments import noise_vs_gradient_penalty as nvgp


def test_tiny_run_writes_the_contract(tmp_path):
    cfg = replace(
        nvgp.QUICK,
        steps=30,
        width=32,
        seeds=(0, 1),
        noise_reps=2,
        test_sigmas=(0.15, 0.3),
        attack_epsilons=(1.0,),
        expansion_sigmas=(0.01, 0.3),
        expansion_points=8,
        expansion_pairs=50,
    )
    on_disk = run_contract(nvgp.REPRODUCTION, cfg, tmp_path)
    assert {r["regime"] for r in on_disk["rows"]} == set(nvgp.REGIMES) and len(on_disk["rows"]) == 10
    assert {"clean_acc", "noise_acc@0.15", "fgm_acc@1"} <= set(on_disk["rows"][0])
    assert [e["sigma"] for e in on_disk["expansion"]] == [0.01, 0.3]
    report = (tmp_path / "report.md").read_text()
    assert "## Verdict" in report and "88.93%" in report  # the post's own table stands beside ours
    for fig in ("expansion.png", "noise_robustness.png"):
        assert (tmp_path / fig).stat().st_size > 1000


def test_expansion_matches_at_small_sigma_even_untrained(tmp_path):
    """(i) is a property of any smooth model: check it on an untrained one, in float64."""
    from kexue.data.digits import load_digits

    cfg = replace(nvgp.QUICK, expansion_sigmas=(0.005, 0.01), expansion_points=16, expansion_pairs=400)
    torch.manual_seed(0)
    model = nvgp._model(cfg, "none", (1, 8, 8))
    rows, _ = nvgp._expansion(cfg, model, load_digits("test"))
    for r in rows:
        # KL(f(x)‖f(x+ε)) ≥ 0 draw by draw: its Monte Carlo is precise, and the match is tight
        assert r["ratio_kl_mc_stderr"] < 0.02 and abs(r["ratio_kl"] - 1) < 0.05, r
        # the loss increase ½εᵀHε has an indefinite H before training: noisier, judged against its error
        assert abs(r["ratio_loss"] - 1) < 3 * r["ratio_loss_mc_stderr"], r


def _fabricated(noise_gain: float, gp_gain: float, spread: float = 0.0):
    """Rows and per-point results for 2 seeds on 100 test points with chosen accuracy gains."""
    cfg = replace(nvgp.QUICK, seeds=(0, 1), test_sigmas=(0.15,), attack_epsilons=())
    base = {"none": 0.80, "noise": 0.80 + noise_gain, "gp": 0.80 + gp_gain, "fgm": 0.85, "vat": 0.9}
    rows, per_point = [], {}
    g = torch.Generator().manual_seed(0)
    for seed in cfg.seeds:
        for regime, acc in base.items():
            p = (
                (torch.rand(100, generator=g) < acc).float() * 0
                + acc
                + spread * torch.randn(100, generator=g)
            )
            per_point[regime, seed] = p
            rows.append(
                {
                    "regime": regime,
                    "seed": seed,
                    "clean_acc": 0.97 + (regime != "none") * 0.01,
                    "noise_acc@0.15": p.mean().item(),
                }
            )
    expansion = [
        {
            "sigma": 0.01,
            "ratio_loss": 1.02,
            "ratio_loss_mc_stderr": 0.01,
            "ratio_kl": 0.99,
            "ratio_kl_mc_stderr": 0.01,
        }
    ]
    return cfg, rows, expansion, per_point


def test_verdict_follows_the_measurements():
    """The same _checks say yes to rows where the claim holds and no where it does not."""
    cfg, rows, expansion, per_point = _fabricated(0.05, 0.045, spread=0.05)
    checks, _ = nvgp._checks(cfg, rows, expansion, 0.97, per_point)
    assert all(checks.values()), checks
    # penalty far from the noise: the "similar" check fails
    cfg, rows, expansion, per_point = _fabricated(0.10, 0.01, spread=0.05)
    checks, _ = nvgp._checks(cfg, rows, expansion, 0.97, per_point)
    assert not all(checks.values())
    # no gain at all: the "beats (a)" check fails
    cfg, rows, expansion, per_point = _fabricated(0.0, 0.0, spread=0.05)
    checks, _ = nvgp._checks(cfg, rows, expansion, 0.97, per_point)
    assert not checks[
        "(ii) under test noise σ=0.15, (b) and (c) each beat (a) by more than 3 standard errors"
    ]
    # an expansion that misses, or Monte Carlo too noisy to tell, fails (i)
    expansion[0]["ratio_loss"] = 1.3
    checks, _ = nvgp._checks(cfg, rows, expansion, 0.97, per_point)
    assert not any(v for k, v in checks.items() if "noisy-loss" in k)
    expansion[0]["ratio_loss"], expansion[0]["ratio_loss_mc_stderr"] = 1.0, 0.2
    checks, _ = nvgp._checks(cfg, rows, expansion, 0.97, per_point)
    assert not any(v for k, v in checks.items() if "noisy-loss" in k)
    checks, _ = nvgp._checks(cfg, rows, expansion, 0.7, per_point)  # penalty far from the Laplacian
    assert not any(v for k, v in checks.items() if "carries the Laplacian" in k)


def test_config_refuses_checks_that_could_not_fail():
    import pytest

    with pytest.raises(ValueError, match=r"must include some σ ≤ 0\.03"):
        replace(nvgp.QUICK, expansion_sigmas=(0.1, 0.3))
    with pytest.raises(ValueError, match="at least two seeds"):
        replace(nvgp.QUICK, seeds=(0,))
