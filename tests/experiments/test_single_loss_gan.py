"""The single-loss-gan reproduction: the stop-gradient identity exactly, λ under SGD and Adam, and the
contract end to end on a tiny budget (a stand-in FID-proxy whose random "training images" stand in for
MNIST, so no data set is needed)."""

from __future__ import annotations

from dataclasses import replace

import pytest

import helpers
from helpers import run_contract
from kexue.experiments import single_loss_gan as repro
from kexue.gan import LOSSES

TINY = replace(
    repro.QUICK,
    toy_points=512,
    steps=8,
    seeds=(0, 1),
    losses=("hinge",),
    batch=64,
    eval_n=200,
    ratio_steps=3,
    mnist_losses=("hinge",),
    mnist_steps=2,
    mnist_width=4,
    train_limit=None,
    fid_n=40,
)


class FakeFidProxy(helpers.FakeFidProxy):
    stat, classes = "mean", False


@pytest.mark.parametrize("loss", list(LOSSES))
def test_single_loss_gradient_is_the_alternating_pair(loss):
    """[6387]: ∇[L_D(sg G) + L_G(G) − L_G(sg G)] = (∇_D L_D, ∇_G L_G), exactly up to rounding in float64."""
    r = repro.gradient_identity(loss, (2,))
    assert r["max_abs_diff"] <= 1e-14 * max(1.0, r["max_abs_grad"]) and r["max_abs_grad"] > 1e-3
    assert r["value_diff"] == 0.0 and r["phases_separate"]  # the bracket is 0; each phase trains one net


def test_identity_on_the_conv_nets():
    r = repro.gradient_identity("hinge", (1, 28, 28), width=4, batch=4)
    assert r["max_abs_diff"] <= 1e-14 and r["phases_separate"]


def test_lambda_scales_sgd_steps_but_not_adam_steps():
    """One single-loss update from one state: SGD moves G λ times as far; Adam's step does not see λ
    (it divides by the gradient's RMS) except through ε = 1e-8, for the few weights whose gradient is
    that small (each Adam step moves every weight by about lr, whatever its gradient)."""
    cfg = replace(TINY, ratio_steps=1, ratios=(2.0,))
    sgd, adam = repro.ratio_effects(cfg)
    assert sgd["effect_on_G"] == pytest.approx(1.0, rel=1e-6)  # θ(2) − θ(1) = θ(1) − θ(start) under SGD
    assert adam["effect_on_G"] < 0.01


def test_tiny_run_writes_the_contract(tmp_path, monkeypatch):
    monkeypatch.setattr("kexue.metrics.fid_proxy.FidProxy", FakeFidProxy)
    on_disk = run_contract(repro.REPRODUCTION, TINY, tmp_path / "out")
    assert on_disk["name"] == "single-loss-gan" and on_disk["systems"] == [22]
    rows = on_disk["rows"]
    assert [(r["mode"], r["seed"]) for r in rows] == [
        ("alternating", 0),
        ("single", 0),
        ("alternating", 1),
        ("single", 1),
    ]
    for r in rows:
        assert {"modes", "hq", "sw2", "ms_step_cpu", "ms_step_wall"} <= set(r) and r["steps"] == TINY.steps
    checks = on_disk["checks"]
    ratios = [a["ms_step_cpu"] / s["ms_step_cpu"] for a, s in zip(rows[::2], rows[1::2])]
    mean, se = repro.speedups(rows)["hinge"]
    assert mean == pytest.approx(sum(ratios) / 2)
    assert checks["hinge: a single-loss step is faster (2-D; alternating/single CPU time − 2 SE > 1)"] == (
        mean - 2 * se > 1
    )
    assert checks["single-loss gradient = (∇_D L_D, ∇_G L_G), every loss (float64, max |Δ| ≤ 1e-12)"]
    assert len(on_disk["gradient_identity"]) == len(LOSSES) + 2
    assert {r["optimizer"] for r in on_disk["lambda_effect"]} == {"sgd", "adam"}
    assert [(r["mode"], r["loss"]) for r in on_disk["mnist"]] == [
        ("alternating", "hinge"),
        ("single", "hinge"),
    ]
    assert all("fid_proxy" in r and "classes_5pct" in r for r in on_disk["mnist"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Verdict" in report and "1:λ" in report and "alternating / single CPU time" in report
    for f in ("single_loss_2d.png", "single_loss_mnist.png"):
        assert (tmp_path / "out" / f).stat().st_size > 1000
