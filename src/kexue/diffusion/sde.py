r"""Score SDEs: the forward SDEs VP / sub-VP / VE, the reverse SDE, predictor–corrector and the PF-ODE.

Sources:
  [SDE]  Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole, "Score-Based Generative Modeling through
         Stochastic Differential Equations", ICLR 2021: eq. 5 (forward), eq. 6 (reverse), eq. 13 (PF-ODE),
         eqs. 9–11 (VE, VP), Sec. 3.4 (sub-VP), eq. 29/33 (marginals), eq. 47 (reverse-diffusion predictor),
         Alg. 4–5 (Langevin corrector, snr r), App. D.2 (RK45 ODE sampler).
  [9209] kexue.fm/archives/9209 "一般框架之SDE篇": the reverse SDE (his eq. 10) and f_t = d ln ᾱ/dt,
         g_t² = ᾱ² d(β̄²/ᾱ²)/dt (his last equations, in his notation where ᾱ is √ᾱ here).
  [9228] kexue.fm/archives/9228 "一般框架之ODE篇": the PF-ODE (his eq. 13) and DDIM as its Euler scheme.

Notation: every SDE here is linear, dx = f(t)·x dt + g(t) dw on t ∈ [0, T], with the marginal

    q_t(x | x0) = N(m(t)·x0, s(t)² I),     m = `mean_coef` (= √ᾱ(t) for VP), s = `std`,

| kind    | β(t) or σ(t)                 | f(t) | g(t)²                        | m(t)    | s(t)²         |
|---------|------------------------------|------|------------------------------|---------|---------------|
| "vp"    | β = β_min + t(β_max − β_min) | −½β  | β                            | e^{−½B} | 1 − e^{−B}    |
| "subvp" | the same β                   | −½β  | β(1 − e^{−2B})               | e^{−½B} | (1 − e^{−B})² |
| "ve"    | σ = σ_min(σ_max/σ_min)^t     | 0    | dσ²/dt = 2σ² ln(σ_max/σ_min) | 1       | σ² − σ_min²   |

with B(t) = ∫₀ᵗ β = β_min t + ½(β_max − β_min)t², so ᾱ(t) = e^{−B(t)} [SDE] eq. 33. The VE std is the
exact one of its SDE, √(σ(t)² − σ(0)²); [SDE]'s code writes σ(t) (data pre-smoothed by σ_min) — the two
differ by σ_min² = 1e-4 in variance, which matters for likelihoods at t → 0 and for nothing else.

DDPM in the limit [SDE] App. B: the linear schedule β_i = 1e-4 → 0.02 over N = 1000 steps is the VP SDE
with β_min = N·1e-4 = 0.1, β_max = N·0.02 = 20 (`vp_from_ddpm`), step i ↔ time t = i/N.

Shapes: x is (B, …) float64; t is a Python float (one time for the whole batch); a score function is
score_fn(x (B, …), t: float) → (B, …) ≈ ∇_x log q_t(x). Time grids `ts` are descending float64 tensors
(T = ts[0] > … > ts[-1] = ε) that the caller can print (style rule 2). Randomness: `generator`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

KINDS = ("vp", "subvp", "ve")
ScoreFn = Callable[[Tensor, float], Tensor]  # (x (B, …), t) → ∇_x log q_t(x), (B, …)
EpsFn = Callable[[Tensor, Tensor], Tensor]  # DDPM ε̂(x (B, …), t (B,) in 1..N, may be fractional)


@dataclass(frozen=True)
class SDE:
    """One forward SDE of the module table; the defaults are [SDE]'s CIFAR-10 settings (App. C)."""

    kind: str = "vp"  # "vp", "subvp" or "ve"
    beta_min: float = 0.1  # β(0) for VP / sub-VP: DDPM's β_1·N = 1e-4·1000
    beta_max: float = 20.0  # β(1): DDPM's β_N·N = 0.02·1000
    sigma_min: float = 0.01  # VE σ(0)
    sigma_max: float = 50.0  # VE σ(1); [SDE] App. C: about the largest pairwise data distance
    T: float = 1.0  # the end of the forward process

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown SDE {self.kind!r}; use one of {', '.join(KINDS)}")
        if not (0 < self.beta_min <= self.beta_max and math.isfinite(self.beta_max)):
            raise ValueError(f"need 0 < beta_min ≤ beta_max < ∞, got {self.beta_min}, {self.beta_max}")
        if not (0 < self.sigma_min < self.sigma_max and math.isfinite(self.sigma_max)):
            raise ValueError(f"need 0 < sigma_min < sigma_max < ∞, got {self.sigma_min}, {self.sigma_max}")
        if not (self.T > 0 and math.isfinite(self.T)):
            raise ValueError(f"T must be a positive finite time, got {self.T}")

    # -- coefficients (t: float or float64 tensor) -------------------------------------------------------
    def int_beta(self, t):
        """B(t) = ∫₀ᵗ β(u) du = β_min t + ½(β_max − β_min)t²."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def beta(self, t):
        """β(t) = β_min + t(β_max − β_min).  [SDE] eq. 11 (with β̄ there written β here)"""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def sigma(self, t):
        """VE σ(t) = σ_min(σ_max/σ_min)^t.  [SDE] eq. 9 (geometric, App. C)"""
        return self.sigma_min * _as64(self.sigma_max / self.sigma_min) ** t

    def mean_coef(self, t) -> Tensor:
        """m(t): E[x_t | x0] = m(t)·x0; √ᾱ(t) = e^{−½B(t)} for VP and sub-VP, 1 for VE."""
        t = _as64(t)
        return torch.ones_like(t) if self.kind == "ve" else torch.exp(-0.5 * self.int_beta(t))

    def std(self, t) -> Tensor:
        """s(t): the std of q_t(x|x0), from the module table.  [SDE] eq. 29 (VP), eq. 33 (sub-VP)"""
        t = _as64(t)
        if self.kind == "ve":  # σ_min √((σ_max/σ_min)^{2t} − 1), expm1 keeps t → 0 accurate
            return self.sigma_min * torch.expm1(2 * t * math.log(self.sigma_max / self.sigma_min)).sqrt()
        bbar = -torch.expm1(-self.int_beta(t))  # β̄(t) = 1 − ᾱ(t)
        return bbar.sqrt() if self.kind == "vp" else bbar

    def drift(self, x: Tensor, t) -> Tensor:
        """f(x, t) = f(t)·x: −½β(t)x for VP / sub-VP, 0 for VE.  [SDE] eqs. 9, 11"""
        return torch.zeros_like(x) if self.kind == "ve" else -0.5 * float(self.beta(t)) * x

    def diffusion(self, t) -> Tensor:
        """g(t), from the module table.  [SDE] eqs. 9, 11 and Sec. 3.4"""
        t = _as64(t)
        if self.kind == "ve":
            return self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))
        g2 = self.beta(t) * (1 if self.kind == "vp" else -torch.expm1(-2 * self.int_beta(t)))
        return g2.sqrt()

    # -- the prior p_T ---------------------------------------------------------------------------------
    def prior_std(self) -> float:
        """p_T = N(0, prior_std² I): 1 for VP / sub-VP, σ_max for VE, as in [SDE]'s code (≈ s(T))."""
        return self.sigma_max if self.kind == "ve" else 1.0

    def prior_sample(self, shape, *, generator: torch.Generator | None = None, device=None) -> Tensor:
        z = torch.randn(shape, generator=generator, dtype=torch.float64, device=device)
        return self.prior_std() * z

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """log p_T(z) summed over all but the first axis, (B, …) → (B,)."""
        s, d = self.prior_std(), z[0].numel()
        return -0.5 * z.reshape(len(z), -1).pow(2).sum(1) / s**2 - d * (
            math.log(s) + 0.5 * math.log(2 * math.pi)
        )


def _as64(t) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


def check_eps(sde: SDE, eps: float) -> None:
    if not (0 < eps < sde.T):
        raise ValueError(f"need 0 < eps < T = {sde.T}, got eps = {eps}")


def vp_from_ddpm(n: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2) -> SDE:
    """The VP SDE that DDPM's linear schedule becomes as N → ∞: β(t) = N·β_{1 + t(N−1)}.  [SDE] App. B"""
    return SDE("vp", beta_min=n * beta_start, beta_max=n * beta_end)


def time_grid(sde: SDE, n: int, eps: float = 1e-3) -> Tensor:
    """n + 1 descending times T = t_0 > … > t_n = eps (uniform, [SDE]'s samplers; eps = 1e-3 there)."""
    check_eps(sde, eps)
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"the number of steps must be a positive integer, got {n!r}")
    return torch.linspace(sde.T, eps, n + 1, dtype=torch.float64)  # (n + 1,)


def _check_grid(sde: SDE, ts: Tensor) -> list[float]:
    if ts.dim() != 1 or len(ts) < 2:
        raise ValueError(f"a time grid is a 1-D tensor of at least 2 times, got shape {tuple(ts.shape)}")
    if not bool((ts[1:] < ts[:-1]).all()) or float(ts[-1]) <= 0 or float(ts[0]) > sde.T:
        raise ValueError(f"a reverse-time grid must descend strictly within (0, T = {sde.T}]")
    return [float(t) for t in ts]


# ------------------------------------------------------------------------------------------ score adapters
def score_from_eps(eps_fn: EpsFn, sde: SDE, n: int = 1000, *, abar: Tensor | None = None) -> ScoreFn:
    r"""∇log q_t(x) ≈ −ε̂(x, i(t))/s(t) from a DDPM ε-net trained on 1-based integer steps i.  [9209] last eq.

    The net learned ε at the discrete levels ᾱ_i = ∏_{j≤i}(1 − β_j); it embeds i sinusoidally, so it can be
    queried at a fractional step. Two maps from continuous t ∈ (0, T] to a step:

    - abar=None: i(t) = t·N. The approximation, precisely: log ᾱ_i = −Σ_{j≤i}β_j − ½Σ_{j≤i}β_j² − … against
      log ᾱ(i/N) = −∫₀^{i/N}β. The first sums differ by ½(β_N − β_1)·i/N·(1 + O(1/N)) (the discrete β_j is
      the left end of its step), which is 10% of β̄ at i = 1 (the noise std √β̄ is off by 4.9%), 5% at
      i = 10, 0.7% at i = 100; the ½Σβ_j² term grows to 0.068 in log ᾱ at i = N, where ᾱ ≈ e^{−10}. Both
      vanish as N → ∞ (tests/diffusion/test_sde.py measures them).
    - abar = the net's (N + 1,) schedule: i(t) solves log ᾱ_i = log ᾱ(t) by linear interpolation of the
      table in i (below i = 1 between ᾱ_0 = 1 and ᾱ_1), so the net is asked at the noise level the SDE is at.

    Either way the output is divided by the continuous s(t) = √(1 − ᾱ(t)). Times with i(t) < 1 (t·N < 1,
    e.g. ε = 1e-5 ↦ 0.01) lie below the trained range 1..N: the net extrapolates there.
    """
    if sde.kind != "vp":
        raise ValueError(f"a DDPM ε-net is a VP model; got a {sde.kind!r} SDE")
    neg_log_abar = None if abar is None else -abar.to(torch.float64).log()  # (N + 1,) increasing from 0
    if abar is not None and len(abar) - 1 != n:
        raise ValueError(f"abar has N = {len(abar) - 1} steps but n = {n}; pass n=len(abar) - 1")

    def step_of(t: float) -> float:
        if neg_log_abar is None:
            return float(t) * n
        target = float(sde.int_beta(t))  # −log ᾱ(t)
        hi = int(torch.searchsorted(neg_log_abar, torch.tensor(target, dtype=torch.float64)).clamp(1, n))
        lo_v, hi_v = float(neg_log_abar[hi - 1]), float(neg_log_abar[hi])
        return hi - 1 + (target - lo_v) / (hi_v - lo_v)

    def score(x: Tensor, t: float) -> Tensor:
        steps = torch.full((len(x),), step_of(t), dtype=torch.float64, device=x.device)  # (B,)
        return -eps_fn(x, steps) / sde.std(t).item()

    return score


def _vp_equivalent(sde: SDE, t: float) -> tuple[Tensor, Tensor]:
    """(ᾱ', c): x_t ~ q_t maps to the VP-marginal point c·x_t at ᾱ' = m²/(m² + s²), with c = √ᾱ'/m."""
    m, s = sde.mean_coef(t), sde.std(t)
    abar = m**2 / (m**2 + s**2)
    return abar, abar.sqrt() / m


def mixture_score(gm, sde: SDE) -> ScoreFn:
    """The exact score of q_t for Gaussian-mixture data (kexue.diffusion.oracle.GaussianMixture), any SDE.

    x_t = m·x0 + s·z, so c·x_t = √ᾱ'·x0 + √(1 − ᾱ')·z is a VP marginal, and ∇log q_t(x) = c·∇log q'(c·x).
    """

    def score(x: Tensor, t: float) -> Tensor:
        abar, c = _vp_equivalent(sde, t)
        return c * gm.score(c * x, abar)

    return score


def mixture_log_prob(gm, sde: SDE, x: Tensor, t: float) -> Tensor:
    """log q_t(x), (B, D) → (B,), exact for Gaussian-mixture data: log q'(c·x) + D·log c."""
    abar, c = _vp_equivalent(sde, t)
    return gm.log_prob(c * x, abar) + x.shape[1] * c.log()


# ------------------------------------------------------------------------------------------ forward SDE
def simulate_forward(sde: SDE, x0: Tensor, ts: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Euler–Maruyama on the forward SDE along ascending times ts: x += f·dt + g·√dt·z.  [SDE] eq. 5"""
    if ts.dim() != 1 or len(ts) < 2 or not bool((ts[1:] > ts[:-1]).all()):
        raise ValueError("a forward time grid is a strictly ascending 1-D tensor of at least 2 times")
    x = x0
    for t, u in itertools.pairwise(float(v) for v in ts):
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x + sde.drift(x, t) * (u - t) + float(sde.diffusion(t)) * math.sqrt(u - t) * z
    return x


# ------------------------------------------------------------------------------------------ reverse SDE
def sample_euler_maruyama(
    score_fn: ScoreFn, sde: SDE, x: Tensor, ts: Tensor, *, generator: torch.Generator | None = None
) -> Tensor:
    r"""The reverse SDE dx = [f − g²∇log q_t]dt + g dw̄ by Euler–Maruyama along ts (descending).  [SDE] eq. 6

    x: (B, …) a draw from the prior at ts[0] (`sde.prior_sample`). NFE = len(ts) − 1. As in [SDE]'s code the
    last step adds no noise (its mean is returned).
    """
    ts_ = _check_grid(sde, ts)
    for t, s in itertools.pairwise(ts_):
        dt = s - t  # < 0: time runs backwards
        g = float(sde.diffusion(t))
        mean = x + (sde.drift(x, t) - g**2 * score_fn(x, t)) * dt  # [SDE] eq. 6, [9209] eq. 10
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = mean + g * math.sqrt(-dt) * z
    return mean


def reverse_diffusion_step(
    score_fn: ScoreFn, sde: SDE, x: Tensor, t: float, s: float, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    r"""The reverse-diffusion predictor t → s (s < t); returns (x_s, its mean).  [SDE] eq. 47

    Discretise the forward SDE on the grid exactly: x_t = a·x_s + G·z with a = m(t)/m(s) and
    G² = s(t)² − a²s(s)². Then x_s = x_t − (a − 1)x_t + G²·∇log q_t(x_t) + G·z. For VP this is DDPM's
    ancestral step to first order (a = √α_{t|s}, G² = β_{t|s}); for VE, G² = σ(t)² − σ(s)² (SMLD).
    """
    a = float(sde.mean_coef(t) / sde.mean_coef(s))
    g2 = float(sde.std(t) ** 2 - a**2 * sde.std(s) ** 2)
    mean = x - (a - 1) * x + g2 * score_fn(x, t)
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return mean + math.sqrt(g2) * z, mean


def langevin_step(
    score_fn: ScoreFn,
    sde: SDE,
    x: Tensor,
    t: float,
    s: float,
    snr: float,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""One Langevin corrector step at time t: x ← x + ε·∇log q_t + √(2ε)·z.  [SDE] Alg. 4–5

    ε = 2α(r‖z‖/‖∇log q_t‖)² with r = snr, the norms averaged over the batch as in [SDE]'s code, and
    α = 1 for VE, α_t = ᾱ(t)/ᾱ(s) for VP / sub-VP (the grid's keep factor 1 − β_i of [SDE]'s code; s is the
    next predictor time).
    """
    alpha = 1.0 if sde.kind == "ve" else float((sde.mean_coef(t) / sde.mean_coef(s)) ** 2)
    grad = score_fn(x, t)
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    grad_norm = grad.reshape(len(x), -1).norm(dim=1).mean()
    z_norm = z.reshape(len(x), -1).norm(dim=1).mean()
    step = 2 * alpha * (snr * z_norm / grad_norm) ** 2
    return x + step * grad + (2 * step).sqrt() * z


def sample_pc(
    score_fn: ScoreFn,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    snr: float = 0.16,
    corrector_steps: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Predictor–corrector sampling along ts: at each t, `corrector_steps` Langevin steps, then the
    reverse-diffusion predictor t → s.  [SDE] Alg. 1 (the order of [SDE]'s code: corrector first)

    corrector_steps = 0 is the predictor alone ("P"); snr r = 0.16 is [SDE]'s CIFAR-10 VE setting.
    NFE = (1 + corrector_steps)·(len(ts) − 1). Returns the last predictor mean (no final noise).
    """
    if not (math.isfinite(snr) and snr >= 0):
        raise ValueError(f"the corrector's signal-to-noise ratio snr must be finite and ≥ 0, got {snr}")
    if not (isinstance(corrector_steps, int) and corrector_steps >= 0):
        raise ValueError(f"corrector_steps must be an integer ≥ 0, got {corrector_steps!r}")
    ts_ = _check_grid(sde, ts)
    for t, s in itertools.pairwise(ts_):
        for _ in range(corrector_steps):
            x = langevin_step(score_fn, sde, x, t, s, snr, generator=generator)
        x, mean = reverse_diffusion_step(score_fn, sde, x, t, s, generator=generator)
    return mean


# ------------------------------------------------------------------------------------------ PF-ODE
def ode_drift(score_fn: ScoreFn, sde: SDE, x: Tensor, t: float) -> Tensor:
    """f̃(x, t) = f(x, t) − ½g(t)²∇log q_t(x).  [SDE] eq. 13, [9228] eq. 13"""
    return sde.drift(x, t) - 0.5 * float(sde.diffusion(t)) ** 2 * score_fn(x, t)


ODE_METHODS = ("euler", "heun", "rk45")


def sample_ode(
    score_fn: ScoreFn,
    sde: SDE,
    x: Tensor,
    ts: Tensor,
    *,
    method: str = "rk45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> tuple[Tensor, int]:
    r"""Integrate the PF-ODE dx/dt = f̃ from ts[0] down to ts[-1]; returns (x, NFE).  [SDE] Sec. 4.3

    "euler" and "heun" (2nd order, [EDM]-style trapezoid) step along the grid ts; "rk45" hands the whole
    interval (ts[0], ts[-1]) to scipy's adaptive Dormand–Prince solver on the flattened batch with
    rtol, atol ([SDE] App. D.2: 1e-5 each), and the interior of ts is ignored.
    """
    if method not in ODE_METHODS:
        raise ValueError(f"unknown ODE method {method!r}; use one of {', '.join(ODE_METHODS)}")
    ts_ = _check_grid(sde, ts)
    if method == "rk45":
        return _rk45(lambda y, t: ode_drift(score_fn, sde, y, t), x, ts_[0], ts_[-1], rtol, atol)
    nfe = 0
    for t, s in itertools.pairwise(ts_):
        d1 = ode_drift(score_fn, sde, x, t)
        if method == "euler":
            x, nfe = x + (s - t) * d1, nfe + 1
        else:
            d2 = ode_drift(score_fn, sde, x + (s - t) * d1, s)
            x, nfe = x + 0.5 * (s - t) * (d1 + d2), nfe + 2
    return x, nfe


def _rk45(fn, x: Tensor, t0: float, t1: float, rtol: float, atol: float) -> tuple[Tensor, int]:
    from scipy.integrate import solve_ivp

    shape, device = x.shape, x.device

    def rhs(t: float, y):
        xt = torch.from_numpy(y).to(device=device, dtype=torch.float64).reshape(shape)  # (B, …)
        return fn(xt, t).reshape(-1).detach().cpu().numpy()

    y0 = x.detach().reshape(-1).cpu().double().numpy()
    sol = solve_ivp(rhs, (t0, t1), y0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"the PF-ODE solver failed: {sol.message}")
    return torch.from_numpy(sol.y[:, -1]).to(device).reshape(shape), int(sol.nfev)
