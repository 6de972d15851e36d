"""The [6051] reproduction end to end on a tiny budget: files, keys, and a verdict computed from rows."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from helpers import run_contract
from kexue.experiments import lipschitz as repro

TINY = replace(
    repro.QUICK,
    n_train=40,
    n_valid=20,
    hidden=(16,),
    steps=20,
    seeds=(0, 1),
    spectral_lambdas=(0.01, 0.1),  # a grid of two: the λ selection and its table run too
    pairs=30,
    sn_refresh=300,
)


def test_tiny_run_writes_the_contract(tmp_path):
    on_disk = run_contract(repro.REPRODUCTION, TINY, tmp_path)
    assert on_disk["name"] == "lipschitz" and on_disk["systems"] == [38]
    rows = on_disk["rows"]
    assert len(rows) == 2 * (1 + 2 + 1 + 1)  # seeds × (none, spectral ×2 λ, l2, sn)
    keys = {"regime", "lambda", "seed", "train_acc", "valid_acc", "test_acc", "gap", "bound", "max_ratio"}
    assert keys | {f"max_ratio_{k}" for k in repro.PAIR_KINDS} <= set(rows[0])
    assert {"bound_converged", "max_ratio_converged"} <= set(next(r for r in rows if r["regime"] == "sn"))
    assert {r["regime"] for r in on_disk["init_rows"]} == {"init", "init+sn"}
    assert on_disk["chosen_lambda"]["spectral"] in (0.01, 0.1)
    assert {s["regime"] for s in on_disk["summary"]} == set(repro.REGIMES)
    assert set(on_disk["gap_change"]) == {"mean", "stderr", "per_seed"}
    checks = on_disk["checks"]
    assert checks[repro.CHECK_BOUND]  # a theorem: it holds on any net, trained or not
    assert checks[repro.CHECK_SN] == all(
        max(r["bound_converged"], r["max_ratio_converged"]) <= 1 + TINY.sn_tolerance
        for r in rows + on_disk["init_rows"]
        if "bound_converged" in r
    )
    chosen = [r for r in rows if r["lambda"] == on_disk["chosen_lambda"][r["regime"]]]
    gap = [
        next(r["gap"] for r in chosen if r["regime"] == "spectral" and r["seed"] == s)
        - next(r["gap"] for r in chosen if r["regime"] == "none" and r["seed"] == s)
        for s in TINY.seeds
    ]
    assert on_disk["gap_change"]["per_seed"] == pytest.approx(gap)
    report = (tmp_path / "report.md").read_text()
    assert "## Verdict" in report and "The post's claims beside the measurements" in report
    assert "λ‖W‖₂² improves generalisation" in report and "Validation accuracy over the λ grids" in report
    assert (tmp_path / "lipschitz.png").stat().st_size > 1000


def test_measurements_are_tight_on_a_linear_net():
    """A net that is one Linear layer: its near pairs reach ‖W‖₂ exactly, and the bound equals it."""
    cfg = replace(repro.QUICK, pairs=20)
    torch.manual_seed(0)
    net = repro.mlp(16, (), 3)
    images = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    m = repro.lipschitz_measurements(net, images, cfg, seed=0)
    exact = torch.linalg.matrix_norm(net[1].weight.double(), 2).item()
    assert m["bound"] == pytest.approx(exact, rel=1e-12)
    assert m["max_ratio_near"] == pytest.approx(exact, rel=1e-9)
    assert m["max_ratio_random"] <= exact and "bound_converged" not in m


def test_checks_follow_the_rows():
    cfg = replace(repro.QUICK, seeds=(0, 1, 2))

    def rows(gaps_none, gaps_spec, tests_none, tests_spec):
        out = []
        for s, (gn, gs, tn, ts) in enumerate(zip(gaps_none, gaps_spec, tests_none, tests_spec)):
            for regime, gap, test in (("none", gn, tn), ("spectral", gs, ts)):
                out.append({"regime": regime, "lambda": 0.0, "seed": s, "gap": gap, "test_acc": test})
                out[-1] |= {"bound": 2.0, "max_ratio": 1.0}
        return out

    sn = [{"regime": "init+sn", "seed": 0, "bound": 1.1, "max_ratio": 0.5}]
    sn[0] |= {"bound_converged": 1.0, "max_ratio_converged": 0.4}
    good = rows([0.1, 0.1, 0.1], [0.05, 0.06, 0.05], [0.9] * 3, [0.95, 0.94, 0.95])
    checks, _ = repro.checks_from(cfg, good, sn, good)
    assert all(checks.values()), checks
    noisy = rows([0.1, 0.1, 0.1], [0.05, 0.14, 0.08], [0.9] * 3, [0.95, 0.86, 0.92])
    checks, _ = repro.checks_from(cfg, noisy, sn, noisy)
    assert not checks[repro.CHECK_GAP.format(k=cfg.gap_sigmas)]
    worse = rows(
        [0.1, 0.1, 0.1], [0.05, 0.06, 0.05], [0.9] * 3, [0.85, 0.86, 0.85]
    )  # gap shrinks by underfit
    checks, _ = repro.checks_from(cfg, worse, sn, worse)
    assert not checks[repro.CHECK_TEST]
    over = [dict(good[0], max_ratio=2.5), *good[1:]]
    assert not repro.checks_from(cfg, over, sn, good)[0][repro.CHECK_BOUND]
    lagging = [dict(sn[0], bound_converged=1.01)]
    assert not repro.checks_from(cfg, good, lagging, good)[0][repro.CHECK_SN]


def test_config_refuses_checks_that_could_not_run():
    with pytest.raises(ValueError, match="at least two seeds"):
        replace(repro.QUICK, seeds=(0,))
    with pytest.raises(ValueError, match="'none' and 'spectral'"):
        replace(repro.QUICK, regimes=("none", "l2"))
    with pytest.raises(ValueError, match="λ grids"):
        replace(repro.QUICK, spectral_lambdas=())
