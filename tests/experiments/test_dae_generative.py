"""The DAE-generative reproduction end to end on tiny nets: files, the metrics contract, checks from rows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from helpers import run_contract
from kexue.experiments import dae_generative as repro

TINY = replace(
    repro.QUICK,
    train_points=300,
    chains=60,
    seeds=(0, 1),
    width=16,
    depth=1,
    train_steps=20,
    single_steps=10,
    steps_per_level=2,
    dde_train_points=200,
    dde_test_points=100,
    dde_train_steps=10,
    dde_cells=40,
    dde_langevin_steps=3,
    digits_train_steps=5,
    digits_width=16,
    digits_depth=1,
    digits_samples=16,
    fid_proxy=False,  # the cached classifier is not needed for the contract
)


def test_tiny_run_writes_the_contract(tmp_path):
    on_disk = run_contract(repro.REPRODUCTION, TINY, tmp_path / "out")
    assert on_disk["name"] == "dae-generative" and on_disk["systems"] == [3]
    for key in ("single_scale_mode_weight_error", "annealed_mode_weight_error", "dde_nll", "kde_nll"):
        assert isinstance(on_disk[key], float), key
    rows = on_disk["rows"]
    assert [r["part"] for r in rows].count("modes") == 5
    single = next(r for r in rows if r.get("sampler") == repro.SINGLE and r.get("score") == repro.TRAINED)
    assert single["mode_weight_tv"] == on_disk["single_scale_mode_weight_error"]
    assert 0 <= single["mode_weight_tv"] <= 1 and 0 <= single["near_mode_fraction"] <= 1
    dde = next(r for r in rows if r.get("method") == "DDE, grid-normalised")
    assert dde["nll_nats"] == on_disk["dde_nll"]
    assert any(r["part"] == "digits" for r in rows)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Verdict" in report and "NCSN" in report and "KDE" in report
    for name in ("modes.png", "dde_density.png", "digits_samples.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000, name


def _rows(tv_single, tv_annealed, near, change, change_se, dde_minus_kde, kde_mass=0.0) -> list[dict]:
    def mode(kind, source, tv, nf=1.0, ch=-1.0, se=0.1):
        return {
            "part": "modes",
            "sampler": kind,
            "score": source,
            "mode_weight_tv": tv,
            "near_mode_fraction": nf,
            "mmd2_x1e3": 5.0,
            "mmd2_denoised_x1e3": 5.0 + ch,
            "tweedie_change_x1e3": ch,
            "tweedie_change_stderr": se,
        }

    def dens(method, nll, diff, mass):
        return {
            "part": "density",
            "method": method,
            "nll_nats": nll,
            "minus_kde_nats": diff,
            "grid_log_mass": mass,
        }

    return [
        mode(repro.SINGLE, repro.ORACLE, 0.3),
        mode(repro.SINGLE, repro.TRAINED, tv_single, nf=near),
        mode(repro.ANNEALED, repro.ORACLE, 0.01),
        mode(repro.ANNEALED, repro.TRAINED, tv_annealed, ch=change, se=change_se),
        dens("true p (exact)", -0.1, -0.3, float("nan")),
        dens("p_σ = p * N(0, σ²I) (exact)", 0.21, 0.0, 0.0),
        dens("KDE of the training sample, bandwidth σ", 0.21, 0.0, kde_mass),
        dens("DDE, grid-normalised", 0.21 + dde_minus_kde, dde_minus_kde, 0.0),
    ]


def test_checks_follow_the_rows():
    cfg = repro.QUICK
    checks, found = repro._checks(cfg, _rows(0.25, 0.02, 0.99, -2.0, 0.5, 0.004))  # the expected shape
    assert all(checks.values()), checks
    assert found["single_scale_mode_weight_error"] == 0.25 and found["annealed_mode_weight_error"] == 0.02
    assert found["dde_nll"] == pytest.approx(0.214) and found["kde_nll"] == 0.21
    failing = {
        "annealed TV too large": _rows(0.25, 0.06, 0.99, -2.0, 0.5, 0.004),
        "single-scale misses the modes": _rows(0.25, 0.02, 0.9, -2.0, 0.5, 0.004),
        "single-scale weights not worse": _rows(0.05, 0.02, 0.99, -2.0, 0.5, 0.004),
        "jump within the noise": _rows(0.25, 0.02, 0.99, -0.5, 0.5, 0.004),
        "jump raises MMD": _rows(0.25, 0.02, 0.99, 2.0, 0.5, 0.004),
        "DDE far from the KDE": _rows(0.25, 0.02, 0.99, -2.0, 0.5, 0.08),
        "grid quadrature off": _rows(0.25, 0.02, 0.99, -2.0, 0.5, 0.004, kde_mass=0.01),
    }
    for why, rows in failing.items():
        checks, _ = repro._checks(cfg, rows)
        assert sum(not ok for ok in checks.values()) == 1, why


def test_config_refuses_unusable_settings():
    with pytest.raises(ValueError, match="≥ 2 seeds"):
        replace(repro.QUICK, seeds=(0,))
    with pytest.raises(ValueError, match="must exceed"):
        replace(repro.QUICK, sigma_min=30.0)
    with pytest.raises(ValueError, match="digits_samples"):
        replace(repro.QUICK, digits_samples=1)
