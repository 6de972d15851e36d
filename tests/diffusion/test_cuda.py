"""The diffusion paths on a GPU: the same numbers as on the CPU where they are deterministic, and every
stochastic path runs with a CUDA generator. Skipped without CUDA (`make test` on a GPU machine runs them)."""

from __future__ import annotations

import math

import pytest
import torch

from kexue.diffusion import analytic, ddim, dpm_solver, likelihood, schedules
from kexue.diffusion.ddpm import DDPM, DDPMConfig
from kexue.diffusion.extended import ExtendedDPM
from kexue.diffusion.ode_likelihood import ode_nll
from kexue.diffusion.oracle import GaussianMixture
from kexue.diffusion.sde import SDE, mixture_score, sample_pc

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
CUDA = torch.device("cuda")


@pytest.fixture
def models():
    torch.manual_seed(0)
    cpu = DDPM(DDPMConfig(shape=(1, 8, 8), width=32, depth=1, dropout=0.0)).eval()
    gpu = DDPM(cpu.config).eval()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.to(CUDA)


def test_deterministic_samplers_agree_across_devices(models):
    cpu, gpu = models
    x = torch.randn(32, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    traj = schedules.trajectory("even", 1000, 10)
    with torch.no_grad():
        a = ddim.sample(cpu.eps, x, cpu.abar, traj, eta=0.0)
        b = ddim.sample(gpu.eps, x.to(CUDA), gpu.abar, traj, eta=0.0)
        c = dpm_solver.sample_dpmpp_2m(cpu.eps, x, cpu.abar, traj)
        d = dpm_solver.sample_dpmpp_2m(gpu.eps, x.to(CUDA), gpu.abar, traj)
    assert torch.allclose(a, b.cpu(), atol=1e-4) and torch.allclose(c, d.cpu(), atol=1e-4)


def test_stochastic_paths_run_with_a_cuda_generator(models):
    _, gpu = models
    g = torch.Generator(device=CUDA).manual_seed(0)
    x0 = torch.rand(64, 1, 8, 8, device=CUDA, generator=g) * 2 - 1
    assert torch.isfinite(gpu.loss((x0,)))
    traj = schedules.trajectory("even", 1000, 5)
    with torch.no_grad():
        ms = analytic.estimate_ms_eps(gpu.eps, x0, gpu.abar, traj, m_per_t=4, generator=g)
        x = torch.randn(16, 1, 8, 8, device=CUDA, dtype=torch.float64, generator=g)
        out = ddim.sample(
            gpu.eps,
            x,
            gpu.abar,
            traj,
            variance="beta_tilde",
            cov_x0=analytic.cov_fn(ms, gpu.abar),
            clip_x0=True,
            max_var_penultimate=0.02,
            generator=g,
        )
        nll = likelihood.nelbo(
            gpu.eps, x0.double(), gpu.abar, traj, variance="analytic", ms_eps=ms, levels=17, generator=g
        )
    assert out.device.type == "cuda" and bool(torch.isfinite(out).all()) and bool(torch.isfinite(nll).all())
    heads = ExtendedDPM(gpu).to(CUDA)
    assert math.isfinite(float(heads.loss((x0,), generator=g)["loss"]))
    assert gpu.sample(4, generator=g).device.type == "cuda"


def test_sde_paths_on_cuda():
    gm, sde = GaussianMixture.ring(), SDE("vp")
    score = mixture_score(gm, sde)
    g = torch.Generator(device=CUDA).manual_seed(0)
    x = sde.prior_sample((64, 2), generator=g, device=CUDA)
    out = sample_pc(score, sde, x, torch.linspace(1, 1e-3, 50, dtype=torch.float64), generator=g)
    assert out.device.type == "cuda" and bool(torch.isfinite(out).all())
    nll = ode_nll(score, sde, gm.sample(16).to(CUDA))
    assert bool(torch.isfinite(nll.nll).all())
