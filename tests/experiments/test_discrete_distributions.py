"""The discrete-distributions reproduction ([9085]) end to end on a small sample."""

from __future__ import annotations

from dataclasses import replace

from helpers import run_contract
from kexue.experiments import discrete_distributions as dd


def test_reproduction_runs_and_states_each_condition(tmp_path):
    cfg = replace(dd.QUICK, samples=20_000, num_mu=1, post_nodes=2000)
    metrics = run_contract(dd.REPRODUCTION, cfg, tmp_path)
    assert metrics["holds"], metrics["checks"]
    assert {r["noise"] for r in metrics["rows"]} == {"gumbel", "normal", "logistic", "uniform"}
    assert len(metrics["rows"]) == 8 and metrics["gumbel_quadrature_error"] < 1e-9
    report = (tmp_path / "report.md").read_text()
    assert "condition 4" in report and "χ²" in report and (tmp_path / "distributions.png").is_file()
