"""DPM-Solver++(2M): order 2 against the exact PF-ODE on Gaussian data, its DDIM first step, diffusers."""

import itertools
import math

import pytest
import torch

from kexue.diffusion import ddim, schedules
from kexue.diffusion.ddpm import x0_from_eps
from kexue.diffusion.dpm_solver import (
    first_order_update,
    half_log_snr,
    plan,
    sample_dpmpp_2m,
    second_order_update,
)
from kexue.diffusion.oracle import GaussianMixture

# diffusers 0.42 with numpy 2 warns inside set_timesteps; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
F64 = torch.float64
ABAR = schedules.linear_abar(1000)
MU, S = torch.tensor([[0.5, -0.3, 0.2]], dtype=F64), 0.4
GAUSS = GaussianMixture(MU, torch.tensor([S], dtype=F64), torch.ones(1, dtype=F64))


def _oracle(abar):
    """ε*(x_t) of the Gaussian data N(μ, s²I) under the schedule abar."""
    return lambda x, t: GAUSS.eps(x, abar[int(t[0])])


def _lambda_uniform_abar(n=1281, lam_max=5.0, lam_min=-5.0):
    """ᾱ_t with λ_t linear in t from λ_max (t = 1) to λ_min (t = N), ᾱ_0 = 1: an "even" trajectory with
    (K − 1) | (N − 1) is then a uniform grid in λ, where the order of a solver shows cleanly."""
    lam = torch.linspace(lam_max, lam_min, n, dtype=F64)
    return torch.cat([torch.ones(1, dtype=F64), torch.sigmoid(2 * lam)])  # ᾱ = e^{2λ}/(1 + e^{2λ})


def _exact_flow(x, abar_t, abar_u):
    """The PF-ODE map t → u for N(μ, s²I) data: x_u = √ᾱ_u μ + √(v_u/v_t)(x_t − √ᾱ_t μ), v = ᾱs² + β̄."""
    v_t, v_u = abar_t * S**2 + 1 - abar_t, abar_u * S**2 + 1 - abar_u
    return abar_u.sqrt() * MU + (v_u / v_t).sqrt() * (x - abar_t.sqrt() * MU)


def _errors(solver, abar, ks, x):
    """Max error of the output against the exact flow N → τ_1 = 1 followed by the same last step
    x̂0(x_{τ_1}) both solvers take (first order into ᾱ_0 = 1: it would add a K-independent floor)."""
    n = len(abar) - 1
    x1 = _exact_flow(x, abar[n], abar[1])
    ref = x0_from_eps(x1, GAUSS.eps(x1, abar[1]), abar[1])
    return [(solver(x, schedules.trajectory("even", n, k)) - ref).abs().max().item() for k in ks]


def test_dpmpp_2m_is_second_order_and_ddim_first_order_against_the_exact_pf_ode(gen):
    abar = _lambda_uniform_abar()
    x = torch.randn(64, 3, generator=gen, dtype=F64)
    ks = [11, 21, 41, 81]  # uniform steps h = 10/(K − 1) in λ, halved each time
    dpm = _errors(lambda x, tr: sample_dpmpp_2m(_oracle(abar), x, abar, tr), abar, ks, x)
    dd = _errors(lambda x, tr: ddim.sample(_oracle(abar), x, abar, tr), abar, ks, x)
    order_dpm = [math.log2(a / b) for a, b in itertools.pairwise(dpm)]
    order_ddim = [math.log2(a / b) for a, b in itertools.pairwise(dd)]
    assert 1.9 < order_dpm[-1] < 2.1, (dpm, order_dpm)  # measured 1.98
    assert 0.9 < order_ddim[-1] < 1.1, (dd, order_ddim)  # measured 0.98
    assert all(a < b for a, b in zip(dpm, dd))  # and smaller at every K
    assert dpm[-1] < dd[-1] / 20  # measured: 1.2e-3 against 3.9e-2 at K = 81


def test_first_order_update_is_the_ddim_eta_zero_step(gen):
    """DPM-Solver++(1) = DDIM (σ = 0), including the step into ᾱ_0 = 1 that returns x̂0.  [DPM++] Sec. 4.1"""
    x, x0 = torch.randn(5, 3, generator=gen, dtype=F64), torch.randn(5, 3, generator=gen, dtype=F64)
    zero = torch.zeros((), dtype=F64)
    for t, s in [(1000, 900), (101, 1), (2, 1), (37, 12), (250, 0)]:
        ours = first_order_update(x, x0, ABAR[t], ABAR[s])
        assert torch.allclose(ours, ddim.step_mean(x, x0, ABAR[t], ABAR[s], zero), rtol=1e-12, atol=1e-12)
    assert torch.equal(first_order_update(x, x0, ABAR[5], ABAR[0]), x0)
    assert half_log_snr(ABAR[:1]).item() == math.inf


def test_first_step_equals_ddim_and_the_second_does_not(gen):
    """Alg. 2 starts without history: the second evaluation sees the state DDIM reaches; the third not."""
    x = torch.randn(16, 3, generator=gen, dtype=F64)
    traj = schedules.trajectory("leading", 1000, 10)
    seen = {"ddim": [], "dpm": []}
    ddim.sample(_oracle(ABAR), x, ABAR, traj, callback=lambda t, x0: seen["ddim"].append(x0))
    sample_dpmpp_2m(_oracle(ABAR), x, ABAR, traj, callback=lambda t, x0: seen["dpm"].append(x0))
    assert len(seen["dpm"]) == len(traj)  # one network evaluation per timestep
    assert torch.allclose(seen["dpm"][1], seen["ddim"][1], rtol=0, atol=1e-13)
    assert not torch.allclose(seen["dpm"][2], seen["ddim"][2], rtol=0, atol=1e-6)
    # two timesteps: both steps are first order (the last goes into ᾱ_0 = 1), so the whole run is DDIM
    short = torch.tensor([300, 700])
    a = sample_dpmpp_2m(_oracle(ABAR), x, ABAR, short)
    assert torch.allclose(a, ddim.sample(_oracle(ABAR), x, ABAR, short), rtol=0, atol=1e-12)


def test_the_sampler_is_alg2_written_with_the_step_functions(gen):
    """The precomputed plan (coefficients as floats) equals Alg. 2 step by step with the tensor formulas."""
    x = torch.randn(8, 3, generator=gen, dtype=F64)
    traj = schedules.trajectory("quadratic", 1000, 12)
    eps = _oracle(ABAR)
    y, prev = x, None
    for i, (t, s) in enumerate(schedules.steps(traj)):
        x0 = x0_from_eps(y, eps(y, torch.full((8,), t)), ABAR[t])
        if i == 0 or s == 0:
            y = first_order_update(y, x0, ABAR[t], ABAR[s])
        else:
            y = second_order_update(y, x0, prev[1], ABAR[t], ABAR[s], ABAR[prev[0]])
        prev = (t, x0)
    assert torch.allclose(sample_dpmpp_2m(eps, x, ABAR, traj), y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "k, final, lower_order_final, orders",
    [
        (5, "x0", True, [1, 2, 2, 2, 1]),
        (5, "x0", False, [1, 2, 2, 2, 1]),  # the step into ᾱ_0 = 1 is first order regardless
        (5, "t1", True, [1, 2, 2, 2, 1]),
        (5, "t1", False, [1, 2, 2, 2, 2]),
        (15, "t1", True, [1] + [2] * 14),  # diffusers: lower-order final steps only when K < 15
    ],
)
def test_plan_orders_follow_diffusers(k, final, lower_order_final, orders):
    traj = schedules.trajectory("even", 1000, k + 1)[1:]  # τ_1 > 1
    steps = plan(ABAR, traj, final=final, lower_order_final=lower_order_final)
    assert [st.order for st in steps] == orders
    assert [st.t for st in steps] == traj.flip(0).tolist()
    assert steps[-1].s == (0 if final == "x0" else 1)


def test_final_t1_stops_at_tau1_without_an_extra_evaluation(gen):
    x = torch.randn(4, 3, generator=gen, dtype=F64)
    calls = []
    eps = _oracle(ABAR)

    def counting(x, t):
        calls.append(int(t[0]))
        return eps(x, t)

    traj = schedules.trajectory("even", 1000, 6)  # τ_1 = 1: the step τ_1 → 1 is empty
    out = sample_dpmpp_2m(counting, x, ABAR, traj, final="t1")
    assert calls == [int(t) for t in traj.flip(0)][:-1]
    # the t1 result is x_1 (noise std √β̄_1 = 0.01 left); x0 denoises it with one more evaluation
    full = sample_dpmpp_2m(eps, x, ABAR, traj)
    x1_hat = x0_from_eps(out, eps(out, torch.ones(4, dtype=torch.int64)), ABAR[1])
    assert torch.allclose(full, x1_hat, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"final": "zero"}, "unknown final 'zero'"),
        ({"traj": torch.tensor([5, 3])}, "strictly increasing"),
        ({"traj": torch.tensor([0, 3])}, "must lie in 1..N=1000"),
        ({"traj": torch.tensor([], dtype=torch.int64)}, "non-empty 1-D"),
        ({"abar": ABAR[1:]}, "abar[0] must be 1"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    args = {"abar": ABAR, "traj": torch.tensor([10, 500])} | kwargs
    abar, traj = args.pop("abar"), args.pop("traj")
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sample_dpmpp_2m(_oracle(ABAR), torch.zeros(2, 3, dtype=F64), abar, traj, **args)


# ------------------------------------------------------------------------- parity with diffusers
class _TinyEpsNet(torch.nn.Module):
    """A deterministic float32 ε-net on 0-based timesteps: ε* of N(0.3, 0.5²) data plus a random tanh MLP
    term, so that x̂0 stays O(1) (a bare random MLP makes x̂0 ~ 1/√ᾱ_N ≈ 150 and hides order errors)."""

    def __init__(self, dim=16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(dim + 1, 64, generator=g) / math.sqrt(dim + 1))
        self.w2 = torch.nn.Parameter(torch.randn(64, dim, generator=g) / 8)
        self.register_buffer("abar", ABAR[1:].float())  # diffusers' alphas_cumprod, 0-based

    def forward(self, x, t0):
        a = self.abar[t0.long()].reshape(-1, 1)
        h = torch.cat([x.float(), (t0.float() / 1000).reshape(-1, 1).expand(len(x), 1)], 1)
        exact = (1 - a).sqrt() * (x.float() - a.sqrt() * 0.3) / (0.25 * a + 1 - a)
        return exact + 0.1 * torch.tanh(torch.tanh(h @ self.w1) @ self.w2)


def _run_diffusers(scheduler, net, x):
    y = x.float()
    with torch.no_grad():
        for t in scheduler.timesteps:
            y = scheduler.step(net(y, t.expand(len(y))), t, y).prev_sample
    return y.double()


@pytest.mark.parametrize("k", [10, 20, 50])
def test_ddim_matches_diffusers_ddim_scheduler(k, gen):
    """Parity settings: timestep_spacing="leading", steps_offset=0, clip_sample=False, set_alpha_to_one=True
    (reference/diffusion.md, calibration); kexue runs in float64, diffusers in float32."""
    diffusers = pytest.importorskip("diffusers")
    net = _TinyEpsNet()
    x = torch.randn(32, 16, generator=gen, dtype=F64)
    sch = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        trained_betas=schedules.betas(ABAR).numpy(),
        timestep_spacing="leading",
        steps_offset=0,
        clip_sample=False,
        set_alpha_to_one=True,
    )
    sch.set_timesteps(k)
    traj = schedules.trajectory("leading", 1000, k)
    assert (sch.timesteps.flip(0) + 1).tolist() == traj.tolist()  # 1-based kexue t = diffusers t + 1
    with torch.no_grad():
        ours = ddim.sample(lambda x, t: net(x, t - 1).double(), x, ABAR, traj)
    assert (ours - _run_diffusers(sch, net, x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("final, lower_order_final", [("x0", True), ("t1", True), ("t1", False)])
@pytest.mark.parametrize("k", [5, 10, 14, 15, 20])
def test_dpmpp_2m_matches_diffusers_dpm_solver_multistep(k, final, lower_order_final, gen):
    """Parity settings: DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
    solver_type="midpoint", thresholding=False, final_sigmas_type="zero" for final="x0" / "sigma_min" for
    final="t1", the same lower_order_final), trained_betas = kexue's β, and set_timesteps(timesteps=τ − 1)
    descending. K = 14/15 straddles diffusers' lower-order threshold; a wrong order would differ by O(1)."""
    diffusers = pytest.importorskip("diffusers")
    net = _TinyEpsNet()
    x = torch.randn(32, 16, generator=gen, dtype=F64)
    traj = schedules.trajectory("even", 1000, k + 1)[1:]  # τ_1 > 1, so final="t1" takes a real last step
    sch = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        trained_betas=schedules.betas(ABAR).numpy(),
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        thresholding=False,
        lower_order_final=lower_order_final,
        final_sigmas_type="zero" if final == "x0" else "sigma_min",
    )
    sch.set_timesteps(timesteps=(traj.flip(0) - 1).tolist())
    with torch.no_grad():
        ours = sample_dpmpp_2m(
            lambda x, t: net(x, t - 1).double(),
            x,
            ABAR,
            traj,
            final=final,
            lower_order_final=lower_order_final,
        )
    assert (ours - _run_diffusers(sch, net, x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("k", [10, 20, 50])
def test_dpmpp_2m_matches_diffusers_on_the_even_trajectory(k, gen):
    """τ_1 = 1 (diffusers' timestep 0): the last second-order step lands at t = 1, then x̂0 at t = 1."""
    diffusers = pytest.importorskip("diffusers")
    net = _TinyEpsNet()
    x = torch.randn(32, 16, generator=gen, dtype=F64)
    traj = schedules.trajectory("even", 1000, k)
    sch = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, trained_betas=schedules.betas(ABAR).numpy()
    )  # its defaults are the parity settings for final="x0"
    sch.set_timesteps(timesteps=(traj.flip(0) - 1).tolist())
    with torch.no_grad():
        ours = sample_dpmpp_2m(lambda x, t: net(x, t - 1).double(), x, ABAR, traj)
    assert (ours - _run_diffusers(sch, net, x)).abs().max().item() <= 1e-4
