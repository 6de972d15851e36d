"""The gumbel-estimators reproduction on a tiny budget (digits), its toy's exact gradient, and its errors."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from helpers import run_contract
from kexue.experiments import gumbel_estimators as repro

TINY = replace(
    repro.QUICK,
    data="digits",
    taus=(1.0, 0.1),
    draws=300,
    thetas=2,
    latents=4,
    classes=3,
    hidden=(16,),
    steps=6,
    batch_size=32,
    eval_every=3,
    curve_limit=50,
    test_limit=100,
)


def test_tiny_run_writes_the_contract(tmp_path):
    on_disk = run_contract(repro.REPRODUCTION, TINY, tmp_path / "out")
    assert on_disk["name"] == "gumbel-estimators" and on_disk["systems"] == [1]
    toy = [r for r in on_disk["rows"] if "theta" in r]
    vae = [r for r in on_disk["rows"] if "test_nelbo" in r]
    assert len(toy) == TINY.thetas * (2 * len(TINY.taus) + 2)
    assert [r["estimator"] for r in vae] == list(repro.ESTIMATORS)
    for r in vae:  # the discrete −ELBO is a KL (≥ 0) plus a Bernoulli NLL (> 0); curve points at 3 and 6
        assert r["test_nelbo"] > 0 and r["steps"] == 6 and [s for s, _ in r["curve"]] == [3, 6]
    checks = on_disk["checks"]
    expected = repro.toy_checks(on_disk["toy_summary"], TINY.taus)
    expected |= repro.vae_checks({s["estimator"]: s["test_nelbo"] for s in on_disk["vae_summary"]})
    assert checks == expected and len(checks) == 6 + 4
    for name in ("bias_variance.png", "nelbo_curves.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000


def test_mnist_vae_part_runs(tmp_path, shared_data):
    """The MNIST path (skipped without ../shared/data): 784 pixels, two estimators, a few steps."""
    cfg = replace(
        TINY,
        data="mnist",
        data_dir=str(shared_data),
        estimators=("gumbel", "sf"),
        train_limit=256,
        test_limit=64,
        steps=2,
        eval_every=2,
    )
    on_disk = run_contract(repro.REPRODUCTION, cfg, tmp_path / "out")
    assert [s["estimator"] for s in on_disk["vae_summary"]] == ["gumbel", "sf"]
    assert all(s["test_nelbo"] > 0 for s in on_disk["vae_summary"])


def test_exact_gradient_is_the_enumerated_covariance(gen):
    """∇_o Σ_k p_k f_k = p ⊙ (f − p·f) — the enumeration's closed form."""
    o = torch.randn(10, generator=gen, dtype=torch.float64)
    x = torch.rand(6, generator=gen, dtype=torch.float64)
    w = torch.randn(6, 10, generator=gen, dtype=torch.float64)
    f = repro._f(torch.eye(10, dtype=torch.float64), x, w)
    p = o.softmax(-1)
    assert torch.allclose(repro.exact_gradient(o, x, w), p * (f - p @ f))


def test_toy_estimators_bias_and_unbiasedness(gen):
    o, x, w = repro.toy_problems(replace(TINY, thetas=1))[0]
    exact = repro.exact_gradient(o, x, w)
    stats = {
        (name, tau): repro.bias_variance(
            repro.estimator_draws(name, o, x, w, 4000, tau=tau, generator=gen), exact
        )
        for name, tau in [("gumbel", 2.0), ("gumbel", 0.1), ("sf-plain", 1.0), ("sf", 1.0)]
    }
    assert stats[("gumbel", 0.1)]["rel_bias"] < stats[("gumbel", 2.0)]["rel_bias"]  # bias shrinks as τ → 0
    for name in ("sf-plain", "sf"):  # unbiased up to Monte Carlo noise
        assert stats[(name, 1.0)]["rel_bias"] < 4 * stats[(name, 1.0)]["noise_floor"]
    assert stats[("sf", 1.0)]["log10_var"] < stats[("sf-plain", 1.0)]["log10_var"]


def test_bad_inputs_are_value_errors(tmp_path, gen):
    o, x, w = repro.toy_problems(replace(TINY, thetas=1))[0]
    with pytest.raises(ValueError, match="unknown toy estimator"):
        repro.estimator_draws("reinforce", o, x, w, 10, generator=gen)
    with pytest.raises(ValueError, match="estimators from"):
        repro.run(replace(TINY, estimators=("rebar",)), None)
    with pytest.raises(ValueError, match="temperatures > 0"):
        repro.run(replace(TINY, taus=(1.0, 0.0)), None)
