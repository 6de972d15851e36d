"""`kexue bench samplers`: the JSON contract on a tiny ε-net, diffusers' trajectories, clear errors."""

import math
import sys

import pytest
import torch

from kexue.bench import samplers
from kexue.diffusion import schedules
from kexue.errors import KexueError

# diffusers 0.42 with numpy 2 warns inside set_timesteps; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
ABAR = schedules.linear_abar(1000)
SHAPE = (1, 2, 2)


def _tiny_eps(x, t):
    """ε* of N(0.3, 0.5²) data plus a small fixed nonlinearity: a deterministic stand-in for a trained net."""
    a = ABAR.to(x.dtype)[t].reshape(-1, 1, 1, 1)
    return (1 - a).sqrt() * (x - a.sqrt() * 0.3) / (0.25 * a + 1 - a) + 0.05 * torch.tanh(3 * x)


def _fake_fid(samples):
    """Distance of the sample mean and std from the data's (0.3, 0.5): lower is better, like a FID."""
    return abs(samples.mean().item() - 0.3) + abs(samples.std().item() - 0.5)


def test_compare_fills_the_json_contract():
    pytest.importorskip("diffusers")
    # not K = 3: on "even" its one second-order step 500 → 1 amplifies diffusers' float32 β̄_1 (1 − ᾱ_1 = 1e-4
    # carries ~1e-3 relative error in float32) to 1.1e-4; K = 2, 4, 5, 10 stay ≤ 4e-5, the digits net ≤ 3e-5
    nfes = (2, 4)
    out = samplers.compare(
        _tiny_eps,
        ABAR,
        SHAPE,
        _fake_fid,
        n=16,
        nfes=nfes,
        seeds=(0,),
        repeats_batch1=1,
        analytic=lambda k: {},
    )
    impls = {
        "kexue-ddpm",
        "kexue-ddim",
        "kexue-dpmpp-2m",
        "kexue-analytic-ddim",
        "diffusers-ddpm",
        "diffusers-ddim",
        "diffusers-dpmsolver",
        "diffusers-dpmsolver-even",
    }
    assert {r["impl"] for r in out["rows"]} == impls
    assert sorted({r["nfe"] for r in out["rows"]}) == list(nfes)  # counted network calls, not the request
    for r in out["rows"]:
        assert set(r) >= {"impl", "nfe", "fid", "seconds", "overhead"}
        assert math.isfinite(r["fid"]) and r["seconds"] > 0 and 0 <= r["overhead"] < 1
    assert out["ddim_parity_max_abs"] <= out["ddim_parity_goal"] == 1e-4
    assert out["dpmpp_parity_max_abs"] <= 1e-4  # same solver, same trajectory, float64 against float32
    assert 0 <= out["overhead"] < 1 and out["overhead_goal"] == 0.02
    assert set(out["overhead_detail"]["batch_1"]) == set(out["overhead_detail"]["batch_16"]) == impls
    best = out["best_at_min_nfe"]
    assert best["nfe"] == 2 and best["kexue"]["impl"].startswith("kexue")
    assert best["meets_goal"] == (best["kexue"]["fid"] <= best["diffusers"]["fid"])
    assert best["diffusers_defaults"]["impl"] in samplers.DEFAULTS
    rows = {(r["impl"], r["nfe"]): r["fid"] for r in out["rows"]}  # one solver, one trajectory: one score
    assert rows["kexue-dpmpp-2m", 4] == pytest.approx(rows["diffusers-dpmsolver-even", 4], abs=1e-4)


@pytest.mark.parametrize("k", [2, 3, 10, 20, 50])
def test_linspace_trajectory_is_diffusers_dpm_solver_default(k):
    diffusers = pytest.importorskip("diffusers")
    sch = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000)
    sch.set_timesteps(k)
    assert (sch.timesteps.flip(0) + 1).tolist() == samplers.linspace_trajectory(1000, k).tolist()


def test_missing_diffusers_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` raise ImportError
    with pytest.raises(KexueError, match=r"pip install -e '\.\[bench\]'"):
        samplers.run(quick=True)


def test_analytic_hook_gives_ddim_keywords_or_a_reason(gen):
    x0 = 0.3 + 0.5 * torch.randn(64, *SHAPE, generator=gen, dtype=torch.float64)
    fn, info = samplers.analytic_hook(_tiny_eps, ABAR, x0, (2, 3), levels=17)
    if fn is None:
        assert "skipped" in info
    else:
        kw = fn(3)
        assert set(kw) == {"cov_x0", "max_var_penultimate"} and kw["max_var_penultimate"] > 0
