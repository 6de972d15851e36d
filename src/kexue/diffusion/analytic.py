r"""Analytic-DPM: the optimal isotropic reverse variance from one moment of a trained ε-net, and the
trajectory that minimises the ELBO under it.

Sources:
  [ADPM] Bao, Li, Zhu & Zhang, "Analytic-DPM: an Analytic Estimate of the Optimal Reverse Variance in
         Diffusion Probabilistic Models", ICLR 2022: Eq. 8 (Γ_t), Thm 1 (σ*² for any λ²), Corollary 2
         (DDPM form), Thm 2 (bounds), Sec. 4 (optimal trajectory by dynamic programming), App. F.2
         (the penultimate-step clip), Table 5 (10 Monte Carlo samples per timestep suffice).
  [9245] kexue.fm/archives/9245 "最优扩散方差估计（上）": σ̄_t² = (β̄_t²/ᾱ_t²)(1 − E‖ε_θ‖²/d), his eq. for
         Σ_t (in Su's notation his ᾱ_t is √ᾱ_t here, so his β̄²/ᾱ² is β̄_t/ᾱ_t here).
  Official code: github.com/baofff/Analytic-DPM, core/inference/utils.py (`_split`, `_dp_seg`).

Notation (DDPM's, as in kexue.diffusion): abar is the (N + 1,) float64 ᾱ with abar[0] = 1; a step goes
t → s < t with β_{t|s} = 1 − ᾱ_t/ᾱ_s, α_{t|s} = 1 − β_{t|s}, β̃_{s|t} = β_{t|s}·β̄_s/β̄_t.

    ms_eps_t  = E_{q_t}‖ε_θ(x_t, t)‖²/d                       the only statistic of the net needed
    Γ_t       = ms_eps_t/β̄_t = E‖∇log q_t‖²/d                 [ADPM] Eq. 8
    cov_x0(t) = (β̄_t/ᾱ_t)(1 − ms_eps_t), clamped to [0, 1]    E[Cov(x0|x_t)]/d; [ADPM] Thm 2 for [−1, 1]^d
    σ*²_{s|t} = λ² + γ²·cov_x0(t)                             [ADPM] Thm 1, γ as in kexue.diffusion.ddim

`ms_eps` is always the (N + 1,) float64 table indexed by timestep (entry 0 is 0: x_0 has no noise);
entries that were not estimated are NaN, and using one raises.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kexue.diffusion import ddim
from kexue.diffusion.ddpm import q_sample


# --------------------------------------------------------------------------------------------- the moment
@torch.no_grad()
def estimate_ms_eps(
    eps_fn: ddim.EpsFn,
    x0: Tensor,
    abar: Tensor,
    timesteps: Tensor | None = None,
    *,
    m_per_t: int = 10,
    generator: torch.Generator | None = None,
    batch_size: int = 4096,
    control_variate: bool = True,
    with_stderr: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Monte Carlo ms_eps_t = E_{x0, ε}‖ε_θ(√ᾱ_t x0 + √β̄_t ε, t)‖²/d at each t in `timesteps`.

    x0: (M, …) data (the paper uses the training set); each of the m_per_t draws per timestep takes a
    uniformly random row of x0 and fresh noise from `generator` ([ADPM] Table 5: m = 10 is enough).
    timesteps: (T,) int64 in 1..N; None means all of 1..N. Draws of different timesteps share network
    batches of up to `batch_size` rows, so eps_fn must accept a (B,) tensor of mixed timesteps.
    control_variate: subtract c·(‖ε‖²/d − 1), where ε is the draw's true noise (E‖ε‖²/d = 1 exactly, so
    the expectation is unchanged). For Gaussian data the best c is ms_eps_t² (ε_θ = ρz with ρ² = ms_eps,
    and corr(z, ε) = ρ); kexue uses c = ms_eps_t² estimated on the other half of the same timestep's draws
    (cross-fitting keeps the estimate unbiased). It matters at large t, where ε_θ ≈ ε and the plain
    estimate's noise √(2/d)/√m swamps 1 − ms_eps and pushes it above 1 (and, for discrete data, at small
    t). False (or m_per_t = 1) gives the paper's plain average. Estimates are clamped at 0.
    Returns the (N + 1,) table (NaN where not estimated, 0 at t = 0), and with with_stderr also the
    Monte Carlo standard error of each entry (same layout).
    """

    def stats(noise: Tensor, eps: Tensor) -> Tensor:  # (B, 2): ‖ε_θ‖²/d and ‖ε‖²/d (E = 1: control variate)
        return torch.stack([eps.flatten(1).pow(2).mean(1), noise.flatten(1).pow(2).mean(1)], 1)

    ts, values = monte_carlo_per_t(
        stats, eps_fn, x0, abar, timesteps, m_per_t=m_per_t, generator=generator, batch_size=batch_size
    )
    v, w = values.unbind(-1)  # (T, m) each
    if control_variate and m_per_t > 1:
        half = torch.arange(m_per_t) % 2  # cross-fitting: c for one half from the other half
        c = torch.stack([v[:, half == h].mean(1).clamp(0, 1) ** 2 for h in (1, 0)], 1)  # (T, 2)
        v = v - c[:, half] * (w - 1)  # same expectation, far less variance where ε_θ ≈ ε
    return timestep_table(ts, v, len(abar) - 1, with_stderr=with_stderr, clamp_min=0.0)


def monte_carlo_per_t(
    stats,
    eps_fn: ddim.EpsFn,
    x0: Tensor,
    abar: Tensor,
    timesteps: Tensor | None,
    *,
    m_per_t: int,
    generator: torch.Generator | None,
    batch_size: int,
) -> tuple[Tensor, Tensor]:
    """m_per_t draws (x0 row, ε) per timestep of stats(ε, ε_θ(x_t, t)) → (B, C): returns ts (T,), (T, m, C).

    Each draw takes a uniformly random row of x0 and fresh noise from `generator`; draws of different
    timesteps share network batches of up to `batch_size` rows (eps_fn gets a (B,) tensor of mixed t).
    """
    n = len(abar) - 1
    ts = torch.arange(1, n + 1) if timesteps is None else timesteps.to(torch.int64).cpu()
    if ts.dim() != 1 or len(ts) == 0 or int(ts.min()) < 1 or int(ts.max()) > n:
        raise ValueError(f"timesteps must be a non-empty 1-D tensor of values in 1..N={n}")
    if not (isinstance(m_per_t, int) and m_per_t >= 1) or batch_size < 1:
        raise ValueError(f"m_per_t and batch_size must be integers ≥ 1, got {m_per_t}, {batch_size}")
    flat_t = ts.repeat_interleave(m_per_t)  # (T·m,) every timestep m times
    chunks = []
    for lo in range(0, len(flat_t), batch_size):
        t = flat_t[lo : lo + batch_size].to(x0.device)  # (B,)
        idx = torch.randint(len(x0), (len(t),), generator=generator, device=x0.device)
        noise = torch.randn((len(t), *x0.shape[1:]), generator=generator, device=x0.device, dtype=x0.dtype)
        eps = eps_fn(q_sample(x0[idx], t, abar, noise), t)
        chunks.append(stats(noise, eps).double().cpu())  # (B, C)
    return ts, torch.cat(chunks).view(len(ts), m_per_t, -1)


def timestep_table(
    ts: Tensor, per_t: Tensor, n: int, *, with_stderr: bool, clamp_min: float | None = None
) -> Tensor | tuple[Tensor, Tensor]:
    """(T, m) draws → the (N + 1,) float64 table of their means (NaN where not estimated, 0 at t = 0),
    and with with_stderr the standard error of each entry in the same layout."""
    m = per_t.shape[1]
    table = torch.full((n + 1,), math.nan, dtype=torch.float64)
    table[0] = 0.0
    table[ts] = per_t.mean(1) if clamp_min is None else per_t.mean(1).clamp(min=clamp_min)
    if not with_stderr:
        return table
    se = torch.full((n + 1,), math.nan, dtype=torch.float64)
    se[0] = 0.0
    se[ts] = per_t.std(1, correction=1) / math.sqrt(m) if m > 1 else math.inf
    return table, se


def check_mean_square_table(table: Tensor, abar: Tensor, name: str, what: str, source: str) -> Tensor:
    """A per-timestep mean-square table in float64: shape (N + 1,) like abar, no negative entries (NaN marks
    a timestep not estimated). name / what / source word the error, e.g. "ms_eps" / "E‖ε_θ‖²/d" /
    "estimate_ms_eps"."""
    if not isinstance(table, Tensor) or table.shape != abar.shape:
        shape = tuple(table.shape) if isinstance(table, Tensor) else type(table).__name__
        raise ValueError(
            f"{name} must be the ({len(abar)},) table indexed by t = 0..N like abar, got {shape}; "
            f"{source} returns it"
        )
    ms = table.to(torch.float64)
    if bool((ms[~ms.isnan()] < 0).any()):
        raise ValueError(f"{name} is a mean square {what} and cannot be negative")
    return ms


def _check_ms_eps(ms_eps: Tensor, abar: Tensor) -> Tensor:
    return check_mean_square_table(ms_eps, abar, "ms_eps", "E‖ε_θ‖²/d", "estimate_ms_eps")


def cov_x0_from_ms_eps(ms_eps: Tensor, abar: Tensor) -> Tensor:
    r"""cov_x0(t) = (β̄_t/ᾱ_t)(1 − ms_eps_t), clamped to [0, 1]: the (N + 1,) table of E[Cov(x0|x_t)]/d.

    The clamp is [ADPM] Thm 2: 0 ≤ cov (ms_eps > 1 only from Monte Carlo or model error) and cov ≤ 1
    for data in [−1, 1]^d (the variance of anything in [a, b] is ≤ ((b − a)/2)², [9245]). With ms_eps ≥ 0,
    cov ≤ β̄_t/ᾱ_t holds by itself. NaN (not estimated) stays NaN.
    """
    ms = _check_ms_eps(ms_eps, abar)
    abar = abar.to(torch.float64)
    return ((1 - abar) / abar * (1 - ms)).clamp(0, 1)  # [9245] σ̄_t², [ADPM] Thm 2 bounds


def cov_fn(ms_eps: Tensor, abar: Tensor) -> ddim.CovFn:
    """The `cov_x0(t, x_t, ε̂)` callable that `ddim.sample` and `likelihood.nelbo` take, from ms_eps."""
    return table_cov_fn(cov_x0_from_ms_eps(ms_eps, abar), "ms_eps", "estimate_ms_eps")


def table_cov_fn(cov: Tensor, moment: str, estimator: str) -> ddim.CovFn:
    """A scalar-per-timestep (N + 1,) cov_x0 table as the sampler's `cov_x0(t, x_t, ε̂)` callable; a NaN
    entry (the moment was not estimated at t) raises, naming the moment and its estimator."""

    def cov_x0(t: int, x: Tensor, eps: Tensor) -> Tensor:
        c = cov[int(t)]
        if bool(c.isnan()):
            raise ValueError(f"{moment} was not estimated at t = {int(t)}; pass that timestep to {estimator}")
        return c

    return cov_x0


# --------------------------------------------------------------------------------------------- σ*²
def optimal_variance(abar_t: Tensor, abar_s: Tensor, lam2: Tensor, cov_x0: Tensor | float) -> Tensor:
    """σ*² = λ² + γ²·cov_x0 for the step t → s of the forward process with variance λ².  [ADPM] Thm 1"""
    return lam2 + ddim.gamma(abar_t, abar_s, lam2) ** 2 * cov_x0


def optimal_variance_ddpm(abar_t: Tensor, abar_s: Tensor, ms_eps_t: Tensor | float) -> Tensor:
    """Analytic-DDPM: λ² = β̃_{s|t}, cov_x0 clamped to [0, 1].  [ADPM] Thm 1 + Thm 2"""
    lam2 = ddim.beta_tilde(abar_t, abar_s)
    return optimal_variance(abar_t, abar_s, lam2, _cov(abar_t, ms_eps_t))


def optimal_variance_ddim(abar_t: Tensor, abar_s: Tensor, ms_eps_t: Tensor | float, eta: float) -> Tensor:
    """Analytic-DDIM: λ² = η²β̃_{s|t}; with η = 0 it still injects γ²·cov_x0.  [ADPM] Thm 1 + Thm 2"""
    if not (math.isfinite(eta) and eta >= 0):
        raise ValueError(f"η must be a finite number ≥ 0, got {eta}")
    lam2 = eta**2 * ddim.beta_tilde(abar_t, abar_s)
    return optimal_variance(abar_t, abar_s, lam2, _cov(abar_t, ms_eps_t))


def optimal_variance_cor2(abar_t: Tensor, abar_s: Tensor, ms_eps_t: Tensor | float) -> Tensor:
    """σ*² = (β_{t|s}/α_{t|s})(1 − β_{t|s}Γ_t), Γ_t = ms_eps_t/β̄_t, unclamped.  [ADPM] Corollary 2

    Equal to `optimal_variance_ddpm` wherever the Thm 2 clamp is inactive (0 ≤ cov_x0 ≤ 1).
    """
    b_ts = 1 - abar_t / abar_s
    # 1 − β_{t|s}Γ_t written as ((1 − ms) + ᾱ_t(ms/ᾱ_s − 1))/β̄_t: the same number without the cancellation
    # of two terms near 1 when ᾱ_t → 0 and ms → 1 (relative error 6e-9 at ᾱ_t = 4e-6 in the direct form)
    ms = torch.as_tensor(ms_eps_t, dtype=abar_t.dtype)
    return b_ts / (1 - b_ts) * ((1 - ms) + abar_t * (ms / abar_s - 1)) / (1 - abar_t)  # [ADPM] Corollary 2


def _cov(abar_t: Tensor, ms_eps_t: Tensor | float) -> Tensor:
    return ((1 - abar_t) / abar_t * (1 - torch.as_tensor(ms_eps_t, dtype=abar_t.dtype))).clamp(0, 1)


def penultimate_max_var(y: float = 1.0, *, levels: int = 256, interval: float = 2.0) -> float:
    r"""The App. F.2 cap on σ² of the step into τ_1: σ² ≤ (y·Δ·√(π/2))², so that E|σε| = σ√(2/π) ≤ y·Δ.

    Δ = interval/(levels − 1) is the spacing of the data's grey levels in model units. The paper's
    8-bit images in [−1, 1] have Δ = 2/255: y = 2 gives 3.87e-4 (Analytic-DDPM on CIFAR-10 LS, CelebA)
    and y = 1 gives 9.66e-5 (everything else) [ADPM] App. F.2 — "the noise may move a pixel by at most
    y grey levels on average". kexue keeps that meaning: for the 17-level digits in [−1, 1], Δ = 1/8 and
    y = 1 gives 2.45e-2 (σ ≤ 0.157). Pass levels=256 to get the paper's literal number instead.
    """
    if levels < 2 or not interval > 0 or not y > 0:
        raise ValueError(f"need levels ≥ 2, interval > 0 and y > 0, got {levels}, {interval}, {y}")
    return (y * interval / (levels - 1) * math.sqrt(math.pi / 2)) ** 2  # [ADPM] App. F.2


# --------------------------------------------------------------------------------------------- trajectory
def trajectory_cost(ms_eps: Tensor, abar: Tensor) -> Tensor:
    r"""J (N + 1, N + 1): J[s, t] = log(1 − β_{t|s}Γ_t) for 1 ≤ s < t ≤ N, +inf elsewhere.  [ADPM] Sec. 4

    Γ_t = ms_eps_t/β̄_t. For the DDPM forward process, log(σ*²_{s|t}/λ²) = J(s, t) + log(β̄_t/β̄_s) −
    log α_{t|s}, whose last two terms telescope along any trajectory; with an optimal mean the expected
    KL of a step is (d/2)·log(σ*²/λ²), so Σ_k J(τ_{k−1}, τ_k) is the trajectory-dependent part of the
    NELBO. Entries where 1 − β_{t|s}Γ_t ≤ 0 (ms_eps_t > 1) are NaN; `optimal_trajectory` avoids them.
    """
    ms = _check_ms_eps(ms_eps, abar)
    a = abar.to(torch.float64)
    b_ts = 1 - a[None, :] / a[:, None]  # (N + 1, N + 1): [s, t] → β_{t|s}
    gamma_t = ms / (1 - a)  # Γ_t (entry 0 is 0/0: masked below)
    j = torch.log1p(-b_ts * gamma_t[None, :])  # [ADPM] Sec. 4, J(s, t)
    s, t = torch.meshgrid(torch.arange(len(a)), torch.arange(len(a)), indexing="ij")
    return j.masked_fill((s < 1) | (s >= t), math.inf)


def _dp(j: Tensor, n: int, k: int) -> list[int]:
    """argmin over 1 = τ_1 < … < τ_k = n of Σ J(τ_{i−1}, τ_i), vectorised over s: O(k·n²)."""
    if k == n:
        return list(range(1, n + 1))
    j = j[: n + 1, : n + 1]
    cost = torch.full((n + 1,), math.inf, dtype=torch.float64)
    cost[1] = 0.0  # C[1, 1] = 0: τ_1 = 1
    back = []
    for _ in range(2, k + 1):
        total = cost[:, None] + j  # (n + 1, n + 1): [s, t] → C[k − 1, s] + J(s, t)
        cost, arg = total.min(0)  # C[k, t] = min_s …, and its argmin
        back.append(arg)
    path = [n]
    for arg in reversed(back):  # backtrack from τ_k = n
        path.append(int(arg[path[-1]]))
    if path[-1] != 1 or not math.isfinite(float(cost[n])):
        raise ValueError(f"no finite-cost trajectory with K={k} steps on 1..{n}")
    return path[::-1]


def _split(ms: Tensor, n: int, k: int) -> tuple[int, int, int]:
    """The official split: (K1, N1, K2). DP on 1..N1 with K1 steps, K2 even steps on (N1, N]."""
    over = (ms[1:] > 1).nonzero()
    first = int(over[0]) + 1 if len(over) else n + 1  # first t with ms_eps_t > 1
    num_bad = 2 * (n - first + 1)  # official: twice the tail after it is dropped
    n1 = n - num_bad
    if n1 < 2 or (num_bad > 0 and k < 3):
        raise ValueError(
            f"ms_eps exceeds 1 from t = {first} on: too early for the official split (it would keep "
            f"1..{n1}) with K = {k}; re-estimate ms_eps with more draws per timestep"
        )
    k1 = math.ceil((1 - 0.8 * num_bad / n) * k)
    k1 = min(k1, n1, k - (num_bad > 0))  # at least one even step on the dropped tail
    k1 = max(k1, k - num_bad, 2)
    return k1, n1, k - k1


def optimal_trajectory(ms_eps: Tensor, abar: Tensor, k: int) -> Tensor:
    r"""The K-step trajectory 1 = τ_1 < … < τ_K = N minimising Σ_k J(τ_{k−1}, τ_k).  [ADPM] Sec. 4

    Dynamic programming: C[1, 1] = 0, C[k, n] = min_s C[k−1, s] + J(s, n), backtracked from τ_K = N.
    Theoretically ms_eps ≤ 1; an estimate above 1 (Monte Carlo or model error, at late t) makes J
    undefined there, and — worse — ms_eps ≥ 1 claims cov_x0 = 0, i.e. x0 known from x_t, which the DP
    would exploit by jumping straight to that t (tried: a clamp of ms_eps to 1 gave [1, 770, …] on the
    digits net, whose x̂0(x_770) is far from x0, and a NELBO of thousands of bits/dim). So kexue does what
    the official code (`_dp_seg`) does: find the first t with ms_eps_t > 1, drop the last 2(N − t + 1)
    timesteps, run the DP with K1 = ⌈(1 − 0.8·dropped/N)·K⌉ steps on 1..N1 = N − dropped, and put the
    other K2 = K − K1 steps evenly on (N1, N] (round(N − i·(N − N1)/K2), i = 0..K2−1). K1 is kept
    ≥ K − dropped and, when something was dropped, ≤ K − 1. Raises when too little remains (an exceedance
    before about t = N/2): re-estimate ms_eps with more draws.
    Returns (K,) int64, ascending. K = N gives 1..N.
    """
    ms = _check_ms_eps(ms_eps, abar)
    n = len(abar) - 1
    if not isinstance(k, int) or not 2 <= k <= n:
        raise ValueError(f"the number of sampling steps K must be an integer in 2..N={n}, got {k!r}")
    if bool(ms[1:].isnan().any()):
        raise ValueError(
            "the optimal trajectory needs ms_eps at every t = 1..N (estimate_ms_eps(timesteps=None))"
        )
    if k == n:
        return torch.arange(1, n + 1, dtype=torch.int64)
    if k == 2:  # the only trajectory with τ_1 = 1 and τ_K = N
        return torch.tensor([1, n], dtype=torch.int64)
    k1, n1, k2 = _split(ms, n, k)
    steps = _dp(trajectory_cost(ms, abar), n1, k1)
    frac = (n - n1) / max(k2, 1)
    steps += [round(n - frac * i) for i in range(k2)][::-1]  # official: even steps on the dropped tail
    return torch.tensor(steps, dtype=torch.int64)
