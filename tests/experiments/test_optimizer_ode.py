"""The [6234] reproduction end to end on a tiny budget (files, rows, verdict computed from rows), its ODE
solver against a closed form, the curvature invariance it reports, and checks that fail when they should."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import run_contract
from kexue.experiments import optimizer_ode as repro

TINY = replace(
    repro.QUICK,
    exact_cases=2,
    rmsprop_lrs=(0.02, 0.01, 0.005),
    sgd_lrs=(0.004, 0.002, 0.001),
    figure_steps=40,
    sgd_time=0.5,
    dim=8,
    steps=120,
)


def test_tiny_run_writes_the_contract(tmp_path):
    on_disk = run_contract(repro.REPRODUCTION, TINY, tmp_path)
    assert on_disk["name"] == "optimizer-ode" and on_disk["systems"] == [37]
    rows = on_disk["rows"]
    parts = [r["part"] for r in rows]
    assert parts.count("a") == 2 * len(TINY.exact_eps)  # (RMSprop, Adam) × ε
    assert parts.count("b-track") == len(TINY.rmsprop_lrs) + len(TINY.sgd_lrs)
    assert parts.count("b-progress") == 2 * len(TINY.seeds) * (len(repro.METHODS) + 1)  # + the SGD bound
    checks = on_disk["checks"]
    # the math parts hold on any budget: exactness and first-order convergence
    assert checks[repro.CHECK_EXACT.format(tol=TINY.exact_tolerance)]
    assert checks[repro.CHECK_TRACK.format(s=TINY.slope_tolerance)]
    assert checks[repro.CHECK_SGD.format(s=TINY.slope_tolerance)]
    assert checks == repro.checks_from(TINY, rows)
    assert on_disk["slope_rmsprop"] == pytest.approx(repro.slope(rows, "rmsprop"))
    report = (tmp_path / "report.md").read_text()
    assert "## Verdict" in report and "Progress along the flat directions" in report
    assert (tmp_path / "optimizer_ode.png").stat().st_size > 1000


def test_ode_solver_against_a_closed_form():
    """With c = 0 the average stays at G₀ = (aθ₀)², so θ̇ = −aθ/|aθ₀| and θ(τ) = θ₀ e^{−τ/|θ₀|}."""
    a, theta0 = np.array([100.0, 1.0]), np.array([0.6, -1.5])
    taus = np.linspace(0, 1.0, 11)
    got = repro.solve_rescaled(np.diag(a), theta0, 0.0, taus, repro.QUICK)
    np.testing.assert_allclose(
        got, theta0 * np.exp(-np.outer(taus, 1 / np.abs(theta0))), rtol=1e-8, atol=1e-12
    )


def test_rmsprop_is_curvature_free_on_a_diagonal_quadratic():
    """ε = 0, G₀ = g₀⊗g₀: coordinates with the same start and curvatures 1, 10, 1000 follow one path."""
    A = torch.diag(torch.tensor([1.0, 10.0, 1000.0], dtype=torch.float64))
    theta0 = torch.full((3,), 0.7, dtype=torch.float64)
    it = repro.run_torch("rmsprop", A, theta0, 0.01, 80, alpha=0.9, eps=0.0, square_avg=(A @ theta0).pow(2))
    torch.testing.assert_close(it[:, 1], it[:, 0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(it[:, 2], it[:, 0], rtol=1e-12, atol=1e-14)
    sgd = repro.run_torch("sgd", A, theta0, 1e-3, 80)
    assert not torch.allclose(sgd[:, 2], sgd[:, 0])  # SGD's path does depend on the curvature


def test_euler_steps_are_the_post_recursions(gen):
    """G₁ = λG + (1−λ)g², θ₁ = θ − γ̃g/√G₁ (the post's RMSprop), written as Euler steps of size h."""
    theta, G, g = (torch.rand(4, generator=gen, dtype=torch.float64).numpy() + 0.1 for _ in range(3))
    h, lam = 0.03, 0.9
    theta1, G1 = repro.euler_rmsprop(theta, G, g, h, lam, 0.0)
    np.testing.assert_allclose(G1, lam * G + (1 - lam) * g**2, rtol=1e-14)
    np.testing.assert_allclose(theta1, theta - h * g / np.sqrt(lam * G + (1 - lam) * g**2), rtol=1e-14)


def _rows(errs_rms, errs_sgd, flat, exact=0.0):
    rows = [{"part": "a", "optimizer": o, "eps": 0.0, "max_rel_error": exact} for o in ("rmsprop", "adam")]
    lrs = (0.02, 0.01, 0.005)
    rows += [
        {"part": "b-track", "method": "rmsprop", "lr": lr, "max_error": e} for lr, e in zip(lrs, errs_rms)
    ]
    rows += [{"part": "b-track", "method": "sgd", "lr": lr, "max_error": e} for lr, e in zip(lrs, errs_sgd)]
    for seed in TINY.seeds:
        for method, value in flat.items():
            rows.append(
                {
                    "part": "b-progress",
                    "quadratic": "diagonal",
                    "seed": seed,
                    "method": method,
                    "flat_remaining": value,
                }
            )
    return rows


def test_checks_follow_the_rows():
    first = (0.04, 0.02, 0.01)
    good_flat = {"rmsprop": 0.01, "sgd": 0.5, "sgd-bound": 0.5, "rmsprop-scalar": 0.9}
    checks = repro.checks_from(TINY, _rows(first, first, good_flat))
    assert all(checks.values()), checks
    s, m = TINY.slope_tolerance, TINY.margin
    assert not repro.checks_from(TINY, _rows(first, first, good_flat, exact=1e-9))[
        repro.CHECK_EXACT.format(tol=TINY.exact_tolerance)
    ]
    second = (0.04, 0.01, 0.0025)  # error ∝ lr²: not the first order the Euler picture predicts
    assert not repro.checks_from(TINY, _rows(second, first, good_flat))[repro.CHECK_TRACK.format(s=s)]
    assert not repro.checks_from(TINY, _rows(first, (0.01, 0.02, 0.04), good_flat))[
        repro.CHECK_SGD.format(s=s)
    ]
    close = dict(good_flat, rmsprop=0.08)  # 6× below the bound, 11× below the scalar variant
    checks = repro.checks_from(TINY, _rows(first, first, close))
    assert not checks[repro.CHECK_FLAT.format(m=m)] and checks[repro.CHECK_VECTOR.format(m=m)]
    scalar = dict(good_flat, **{"rmsprop-scalar": 0.05})
    assert not repro.checks_from(TINY, _rows(first, first, scalar))[repro.CHECK_VECTOR.format(m=m)]


def test_config_refuses_checks_that_could_not_run():
    with pytest.raises(ValueError, match="three learning rates"):
        replace(repro.QUICK, rmsprop_lrs=(0.01, 0.005))
    with pytest.raises(ValueError, match="η·a_max"):
        replace(repro.QUICK, sgd_lrs=(0.02, 0.01, 0.005))
    with pytest.raises(ValueError, match="λ"):
        replace(repro.QUICK, rmsprop_lrs=(0.2, 0.1, 0.05))
    with pytest.raises(ValueError, match="seeds"):
        replace(repro.QUICK, seeds=(0, 1))
