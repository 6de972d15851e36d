"""`kexue bench samplers`: kexue's samplers against diffusers' schedulers on one trained ε-net, by NFE.

The net is the cached digits ε-net (`kexue.experiments.pretrained_ddpm.pretrained("digits")`, EMA weights,
8×8 in [−1, 1], linear β, N = 1000). Every row starts from the SAME float64 noise x_N (diffusers gets it
cast to float32), draws n samples in one batch with K network evaluations (NFE, counted, not assumed), and
scores them with the digits FID-proxy at the same n (`kexue.metrics.fid_proxy`; comparable only at equal n,
and `fid_floor` is the real-vs-real value at min(n, the 1,500 real training images)). Samples are
clamped to [−1, 1] before scoring.

Rows (trajectories are 1-based kexue timesteps; diffusers' 0-based t is kexue's t − 1):
  diffusers-ddpm       DDPMScheduler, its defaults (σ² = β̃ "fixed_small", clip_sample, "leading")
  diffusers-ddim       DDIMScheduler, its defaults (η = 0, clip_sample, "leading", set_alpha_to_one)
  diffusers-dpmsolver  DPMSolverMultistepScheduler, its defaults (dpmsolver++, order 2, midpoint,
                       lower_order_final, final_sigmas_type="zero", "linspace": 101, 201, …, 1000 at K = 10)
  diffusers-dpmsolver-even   the same scheduler on kexue's "even" trajectory (set_timesteps(timesteps=τ − 1))
  kexue-ddpm           ddim.sample(variance="beta_tilde") on "leading"
  kexue-ddim           ddim.sample(η = 0) on "leading"
  kexue-dpmpp-2m       dpm_solver.sample_dpmpp_2m on "even" (1, 112, …, 1000 at K = 10)
  kexue-analytic-ddim  ddim.sample(η = 0, cov_x0 from analytic.estimate_ms_eps, the App. F.2 cap, clip_x0) on
                       "leading" — only when kexue.diffusion.analytic provides it (else listed in "skipped")
Each library runs with its own defaults (diffusers clips x̂0 in DDPM/DDIM, kexue does not); every diffusers
scheduler gets trained_betas = the net's β (its default linear β, to float32). The two DPM-Solver++ rows on
"even" are the same solver on the same trajectory and should score alike; against "linspace" they show what
the trajectory is worth: on "even" the last second-order step lands at t = 1 and the final evaluation only
removes the √β̄_1 = 0.01 noise, while "linspace" jumps from t = 101 to x̂0 with a first-order step.
`best_at_min_nfe` compares kexue's best with the best of all diffusers rows (goal: ≤) and, separately,
with diffusers as constructed by default.

Timing: `seconds` is the wall time of a row's sampling call (median over seeds); the network's share is
measured by a clock around each ε-net call (synchronised on a GPU), and `overhead` = 1 − network/total is
the time spent in the sampler's own arithmetic and bookkeeping. Overhead is measured at the FID batch (n)
and at batch 1 (median of repeats at the largest NFE); the headline `overhead` is the worst kexue sampler
at either batch size (goal ≤ 0.02). At batch 1 the loop's per-step bookkeeping competes with a ~1–2 ms
network call (ddim.sample spends ~200 µs a step in small scalar-tensor ops, sample_dpmpp_2m ~16 µs); at
large batch the stochastic kexue samplers pay for drawing float64 noise each step. On a shared CPU the
batch-1 figures scatter by several percent between runs.
`ddim_parity_max_abs`: kexue DDIM (float64) against diffusers' DDIMScheduler (float32) with
clip_sample=False, timestep_spacing="leading", steps_offset=0, set_alpha_to_one=True, from the same noise on
the same trajectory, the max over NFEs (goal ≤ 1e-4); `dpmpp_parity_max_abs` likewise for sample_dpmpp_2m
against DPMSolverMultistepScheduler on "linspace" and "even".

diffusers is a bench extra (`pip install -e '.[bench]'`), imported here only, never by the library.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from kexue.diffusion import ddim, schedules
from kexue.diffusion.dpm_solver import sample_dpmpp_2m
from kexue.errors import KexueError

GOAL_OVERHEAD = 0.02
GOAL_PARITY = 1e-4
NFES = (10, 20, 50)
EpsFn = Callable[[Tensor, Tensor], Tensor]
# sampler(eps_fn, x_N float64, K, generator) → samples; eps_fn takes 1-based int64 t (B,)
Sampler = Callable[[EpsFn, Tensor, int, torch.Generator], Tensor]


def _diffusers():
    try:
        import diffusers
    except ImportError:
        raise KexueError(
            "kexue bench samplers compares against diffusers, which is not installed: "
            "pip install -e '.[bench]'"
        ) from None
    return diffusers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _NetClock:
    """Wraps an ε-net: counts calls and accumulates the seconds spent inside it."""

    def __init__(self, eps_fn: EpsFn, device: torch.device) -> None:
        self.eps_fn, self.device = eps_fn, device
        self.calls, self.seconds = 0, 0.0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        _sync(self.device)
        start = time.perf_counter()
        out = self.eps_fn(x, t)
        _sync(self.device)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def _timed(sampler: Sampler, eps_fn: EpsFn, x: Tensor, k: int, seed: int) -> tuple[Tensor, dict]:
    """Run one sampler; return its samples and {nfe, seconds, net_seconds, overhead}."""
    clock = _NetClock(eps_fn, x.device)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    _sync(x.device)
    start = time.perf_counter()
    with torch.no_grad():
        out = sampler(clock, x, k, gen)
    _sync(x.device)
    total = time.perf_counter() - start
    return out, {
        "nfe": clock.calls,
        "seconds": total,
        "net_seconds": clock.seconds,
        "overhead": 1 - clock.seconds / total,
    }


# --------------------------------------------------------------------------------------------- trajectories
def linspace_trajectory(n: int, k: int) -> Tensor:
    """diffusers' DPMSolverMultistep "linspace" timesteps, 1-based: 1 + round(linspace(0, N − 1, K + 1))[1:],
    ascending (N = 1000, K = 10: 101, 201, …, 1000); the solver then steps into t = 0."""
    u = torch.linspace(0, n - 1, k + 1, dtype=torch.float64).round().to(torch.int64)  # round half to even
    return 1 + u[1:]


# --------------------------------------------------------------------------------------------- samplers
def kexue_samplers(abar: Tensor, *, analytic: Callable[[int], dict] | None = None) -> dict[str, Sampler]:
    """kexue's rows, each with the library's defaults (no x̂0 clipping) except Analytic-DDIM, which clips x̂0
    as [ADPM] does; `analytic(k)` gives its extra ddim.sample keywords at K steps (None: no row)."""
    n = len(abar) - 1
    table: dict[str, Sampler] = {
        "kexue-ddpm": lambda eps, x, k, g: ddim.sample(
            eps, x, abar, schedules.trajectory("leading", n, k), variance="beta_tilde", generator=g
        ),
        "kexue-ddim": lambda eps, x, k, g: ddim.sample(eps, x, abar, schedules.trajectory("leading", n, k)),
        "kexue-dpmpp-2m": lambda eps, x, k, g: sample_dpmpp_2m(
            eps, x, abar, schedules.trajectory("even", n, k)
        ),
    }
    if analytic is not None:
        table["kexue-analytic-ddim"] = lambda eps, x, k, g: ddim.sample(
            eps, x, abar, schedules.trajectory("leading", n, k), clip_x0=True, generator=g, **analytic(k)
        )
    return table


def _diffusers_loop(scheduler, eps: EpsFn, x: Tensor, k: int, g: torch.Generator, traj=None) -> Tensor:
    """Sample with a diffusers scheduler: its own spacing for K steps, or the 1-based kexue `traj(k)`."""
    if traj is None:
        scheduler.set_timesteps(k, device=x.device)
    else:
        scheduler.set_timesteps(timesteps=(traj(k).flip(0) - 1).tolist(), device=x.device)
    y = x.float()
    for t in scheduler.timesteps:
        t1 = (t + 1).to(torch.int64).expand(len(y))  # diffusers' 0-based t → kexue's 1-based
        y = scheduler.step(eps(y, t1), t, y, generator=g).prev_sample
    return y


def diffusers_samplers(abar: Tensor, *, parity: bool = False) -> dict[str, Sampler]:
    """diffusers' rows: constructor defaults + the net's β, and DPM-Solver++ also on kexue's "even" trajectory
    (passed as custom timesteps). parity=True: DDIM and DPM-Solver++ with the settings under which they are
    textbook DDIM (reference/diffusion.md, calibration) and kexue's sample_dpmpp_2m (final x0)."""
    d = _diffusers()
    n = len(abar) - 1
    common = {"num_train_timesteps": n, "trained_betas": schedules.betas(abar).numpy()}
    even = lambda k: schedules.trajectory("even", n, k)  # noqa: E731
    if parity:
        ddim_kw = {
            "clip_sample": False,
            "timestep_spacing": "leading",
            "steps_offset": 0,
            "set_alpha_to_one": True,
        }
        return {
            "diffusers-ddim": lambda eps, x, k, g: _diffusers_loop(
                d.DDIMScheduler(**common, **ddim_kw), eps, x, k, g
            ),
            "diffusers-dpmsolver-even": lambda eps, x, k, g: _diffusers_loop(
                d.DPMSolverMultistepScheduler(**common), eps, x, k, g, traj=even
            ),
        }
    return {
        "diffusers-ddpm": lambda eps, x, k, g: _diffusers_loop(d.DDPMScheduler(**common), eps, x, k, g),
        "diffusers-ddim": lambda eps, x, k, g: _diffusers_loop(d.DDIMScheduler(**common), eps, x, k, g),
        "diffusers-dpmsolver": lambda eps, x, k, g: _diffusers_loop(
            d.DPMSolverMultistepScheduler(**common), eps, x, k, g
        ),
        "diffusers-dpmsolver-even": lambda eps, x, k, g: _diffusers_loop(
            d.DPMSolverMultistepScheduler(**common), eps, x, k, g, traj=even
        ),
    }


TRAJECTORY = {  # what each row walks (1-based); "linspace" is diffusers' DPM-Solver default spacing
    "kexue-ddpm": "leading",
    "kexue-ddim": "leading",
    "kexue-analytic-ddim": "leading",
    "kexue-dpmpp-2m": "even",
    "diffusers-ddpm": "leading",
    "diffusers-ddim": "leading",
    "diffusers-dpmsolver": "linspace",
    "diffusers-dpmsolver-even": "even (custom timesteps)",
}
DEFAULTS = ("diffusers-ddpm", "diffusers-ddim", "diffusers-dpmsolver")  # diffusers as constructed by default


def analytic_hook(eps_fn: EpsFn, abar: Tensor, train_x0: Tensor, nfes, *, levels: int, seed: int = 0):
    """Analytic-DDIM's ddim.sample keywords per K, from kexue.diffusion.analytic (ms_eps estimated once on
    the training data at the timesteps of every "leading" trajectory used, m = 10 per timestep, [ADPM]
    Table 5). Returns (fn or None, info): None with the reason when the module is not there (yet)."""
    try:
        from kexue.diffusion import analytic
    except ImportError as e:
        return None, {"skipped": f"kexue.diffusion.analytic is not importable ({e})"}
    needed = ("estimate_ms_eps", "cov_fn", "penultimate_max_var")
    if not all(hasattr(analytic, name) for name in needed):
        return None, {"skipped": f"kexue.diffusion.analytic lacks one of {', '.join(needed)}"}
    n = len(abar) - 1
    ts = torch.unique(torch.cat([schedules.trajectory("leading", n, k) for k in nfes]))
    start = time.perf_counter()
    gen = torch.Generator(device=train_x0.device).manual_seed(seed)
    with torch.no_grad():
        ms = analytic.estimate_ms_eps(eps_fn, train_x0, abar, ts, m_per_t=10, generator=gen)
    cov = analytic.cov_fn(ms, abar)
    cap = analytic.penultimate_max_var(1.0, levels=levels)  # [ADPM] App. F.2, y = 1 grey level
    info = {"ms_eps_seconds": round(time.perf_counter() - start, 3), "penultimate_max_var": cap}
    return (lambda k: {"cov_x0": cov, "max_var_penultimate": cap}), info


# --------------------------------------------------------------------------------------------- the bench
def compare(
    eps_fn: EpsFn,
    abar: Tensor,
    shape: tuple[int, ...],
    fid: Callable[[Tensor], float],
    *,
    n: int,
    nfes=NFES,
    seeds=(0,),
    repeats_batch1: int = 5,
    analytic: Callable[[int], dict] | None = None,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Rows for every sampler × NFE, parity and overhead, on the ε-net `eps_fn` (1-based t, any float dtype).

    fid(samples in [−1, 1], (n, *shape)) → a number (lower is better). The seed s draws x_N and the
    samplers' noise; all samplers share x_N per seed.
    """
    device = device or torch.device("cpu")
    samplers = {**diffusers_samplers(abar), **kexue_samplers(abar, analytic=analytic)}
    rows = []
    for k in nfes:
        for name, sampler in samplers.items():
            fids, times = [], []
            for seed in seeds:
                g = torch.Generator(device=device).manual_seed(seed)
                x = torch.randn(n, *shape, generator=g, device=device, dtype=torch.float64)
                out, t = _timed(sampler, eps_fn, x, k, seed + 1)
                if t["nfe"] != k:
                    raise KexueError(f"{name} made {t['nfe']} network evaluations at K = {k}, expected {k}")
                fids.append(float(fid(out.double().clamp(-1, 1))))
                times.append(t)
            rows.append(
                {
                    "impl": name,
                    "nfe": k,
                    "fid": round(statistics.mean(fids), 4),
                    "fid_per_seed": [round(f, 4) for f in fids],
                    "seconds": round(statistics.median(t["seconds"] for t in times), 4),
                    "overhead": round(statistics.median(t["overhead"] for t in times), 5),
                    "trajectory": TRAJECTORY[name],
                }
            )
    batch1 = _overhead_batch1(samplers, eps_fn, shape, max(nfes), repeats_batch1, device)
    large = {name: max(r["overhead"] for r in rows if r["impl"] == name) for name in samplers}
    kexue = [name for name in samplers if name.startswith("kexue")]
    worst = max(max(batch1[name], large[name]) for name in kexue)
    at_min = [r for r in rows if r["nfe"] == min(nfes)]
    best = {
        "kexue": min((r for r in at_min if r["impl"].startswith("kexue")), key=lambda r: r["fid"]),
        "diffusers": min((r for r in at_min if r["impl"].startswith("diffusers")), key=lambda r: r["fid"]),
        "diffusers_defaults": min((r for r in at_min if r["impl"] in DEFAULTS), key=lambda r: r["fid"]),
    }
    ddim_parity, dpmpp_parity = _parity(eps_fn, abar, shape, nfes, device)
    return {
        "rows": rows,
        "best_at_min_nfe": {
            "nfe": min(nfes),
            **{key: {"impl": r["impl"], "fid": r["fid"]} for key, r in best.items()},
            "meets_goal": best["kexue"]["fid"] <= best["diffusers"]["fid"],
            "meets_goal_against_diffusers_defaults": best["kexue"]["fid"]
            <= best["diffusers_defaults"]["fid"],
        },
        "ddim_parity_max_abs": ddim_parity,
        "ddim_parity_goal": GOAL_PARITY,
        "dpmpp_parity_max_abs": dpmpp_parity,
        "overhead": round(worst, 5),
        "overhead_goal": GOAL_OVERHEAD,
        "meets_overhead_goal": worst <= GOAL_OVERHEAD,
        "overhead_detail": {
            "batch_1": {name: round(v, 5) for name, v in batch1.items()},
            f"batch_{n}": {name: round(v, 5) for name, v in large.items()},
        },
    }


def _overhead_batch1(samplers, eps_fn, shape, k, repeats, device) -> dict[str, float]:
    """Median overhead over `repeats` runs of one sample at K = k (after one warm-up run)."""
    out = {}
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(123), dtype=torch.float64).to(device)
    for name, sampler in samplers.items():
        _timed(sampler, eps_fn, x, k, 0)  # warm-up: first-call allocations, diffusers' lazy imports
        out[name] = statistics.median(_timed(sampler, eps_fn, x, k, r)[1]["overhead"] for r in range(repeats))
    return out


def _parity(eps_fn, abar, shape, nfes, device, n: int = 256) -> tuple[float, float]:
    """max |kexue − diffusers| from the same noise on the same trajectory, over NFEs: DDIM ("leading", the
    parity settings) and DPM-Solver++(2M) (diffusers' default "linspace", and kexue's "even")."""
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(device)
    n_steps = len(abar) - 1
    ours = {
        "diffusers-ddim": lambda k: ddim.sample(eps_fn, x, abar, schedules.trajectory("leading", n_steps, k)),
        "diffusers-dpmsolver": lambda k: sample_dpmpp_2m(eps_fn, x, abar, linspace_trajectory(n_steps, k)),
        "diffusers-dpmsolver-even": lambda k: sample_dpmpp_2m(
            eps_fn, x, abar, schedules.trajectory("even", n_steps, k)
        ),
    }
    theirs = {**diffusers_samplers(abar), **diffusers_samplers(abar, parity=True)}  # parity DDIM wins
    worst = dict.fromkeys(ours, 0.0)
    for k in nfes:
        for name, fn in ours.items():
            with torch.no_grad():
                other = theirs[name](eps_fn, x, k, torch.Generator(device=device).manual_seed(0))
                worst[name] = max(worst[name], (fn(k) - other.double()).abs().max().item())
    return worst["diffusers-ddim"], max(worst["diffusers-dpmsolver"], worst["diffusers-dpmsolver-even"])


def run(*, quick: bool = False, device: torch.device | None = None, say=lambda message: None) -> dict:
    """The benchmark on the cached digits ε-net (trained first if missing: minutes)."""
    from kexue.experiments.pretrained_ddpm import pretrained
    from kexue.metrics.fid_proxy import FidProxy
    from kexue.registry import load_data

    diffusers = _diffusers()  # fail in one line before minutes of work when the extra is missing
    start = time.perf_counter()
    device = device or torch.device("cpu")
    model = pretrained("digits", device=device, progress=False, say=say)
    shape = tuple(model.config.shape)
    n, seeds = (1000, (0,)) if quick else (2000, (0, 1))
    proxy = FidProxy("digits")
    train = load_data("digits", split="train")
    x0 = train.floats("symmetric").reshape(-1, *shape).double().to(device)
    hook, analytic_info = analytic_hook(model.eps, model.abar, x0, NFES, levels=train.levels)

    def fid(samples: Tensor) -> float:
        return proxy(((samples + 1) / 2).float().cpu(), generator=torch.Generator().manual_seed(0))[
            "fid_proxy"
        ]

    result = compare(
        model.eps,
        model.abar,
        shape,
        fid,
        n=n,
        seeds=seeds,
        repeats_batch1=7 if quick else 15,
        analytic=hook,
        device=device,
    )
    floor = proxy.floor(n, generator=torch.Generator().manual_seed(0))["fid_proxy"]
    return {
        "benchmark": "samplers",
        "model": "digits ε-net (kexue.experiments.pretrained_ddpm, EMA), linear β, N = 1000",
        "n": n,
        "seeds": list(seeds),
        "nfes": list(NFES),
        "fid_floor": round(floor, 4),
        **result,
        "analytic": analytic_info,
        "skipped": {"kexue-analytic-ddim": analytic_info["skipped"]} if hook is None else {},
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "quick": quick,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
