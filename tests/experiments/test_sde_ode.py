"""The SDE/ODE reproduction end to end on a tiny ε-net: files, the metrics contract, and checks from rows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from helpers import run_contract
from kexue.experiments import sde_ode as repro


def test_tiny_run_writes_the_contract(tiny_recipe, tmp_path):
    cfg = replace(
        repro.QUICK, recipe=tiny_recipe, images=6, toy_points=40, pc_nfe=(4,), pc_seeds=(0, 1), pc_samples=30
    )
    on_disk = run_contract(repro.REPRODUCTION, cfg, tmp_path / "out")
    for key in ("ode_nll_bpd", "elbo_bpd", "toy_ode_nll_error_nats"):  # the contract names (issue #3)
        assert isinstance(on_disk[key], float), key
    parts = [r["part"] for r in on_disk["rows"]]
    assert parts == ["digits", "digits", "digits", "toy", "pc"]
    ode, elbo = on_disk["rows"][0], on_disk["rows"][1]
    assert ode["bpd"] == on_disk["ode_nll_bpd"] and elbo["bpd"] == on_disk["elbo_bpd"] and ode["nfe"] > 0
    assert on_disk["rows"][3]["mean_abs_error_nats"] == on_disk["toy_ode_nll_error_nats"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Verdict" in report and "3.28" in report and "3.75" in report  # Table 2 beside ours
    assert (tmp_path / "out" / "ode_nll.png").stat().st_size > 1000


def _rows(ode: float, elbo: float, elbo_tilde: float, gap_se: float, toy_err: float) -> list[dict]:
    return [
        {"part": "digits", "method": repro.ODE_LABEL, "bpd": ode},
        *(
            {
                "part": "digits",
                "method": repro.ELBO_LABELS[v],
                "bpd": e,
                "gap_to_ode_bpd": e - ode,
                "gap_stderr": gap_se,
            }
            for v, e in (("beta", elbo), ("beta_tilde", elbo_tilde))
        ),
        {"part": "toy", "mean_abs_error_nats": toy_err},
    ]


def test_checks_follow_the_rows():
    cfg = repro.QUICK
    checks, found = repro._checks(cfg, _rows(3.28, 3.75, 3.73, 0.01, 1e-4))  # Table 2's shape
    assert all(checks.values()), checks
    assert found == {
        "ode_nll_bpd": 3.28,
        "elbo_bpd": 3.75,
        "elbo_bpd_beta_tilde": 3.73,
        "toy_ode_nll_error_nats": 1e-4,
    }
    checks, _ = repro._checks(cfg, _rows(3.80, 3.75, 3.9, 0.01, 1e-4))  # ODE above the σ² = β ELBO
    assert not checks[
        "(i) the PF-ODE NLL is below the σ² = β ELBO of the same weights by > 3 paired standard errors"
    ]
    checks, _ = repro._checks(cfg, _rows(3.74, 3.75, 3.76, 0.01, 1e-4))  # below, but within the noise
    assert not all(checks.values())
    checks, _ = repro._checks(cfg, _rows(3.28, 3.75, 3.73, 0.01, 0.05))  # the toy misses the density
    assert not checks["(ii) ring: mean |ODE NLL − (−log p_0)| < 0.01 nats per point"]


def test_config_refuses_unusable_settings():
    with pytest.raises(ValueError, match="even budgets"):
        replace(repro.QUICK, pc_nfe=(3,))
    with pytest.raises(ValueError, match="time_map"):
        replace(repro.QUICK, time_map="quadratic")
    with pytest.raises(ValueError, match="≥ 2"):
        replace(repro.QUICK, images=1)
