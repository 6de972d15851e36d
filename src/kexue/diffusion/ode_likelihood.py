r"""Exact log-likelihood through the probability-flow ODE, and bits/dim of dequantised discrete data.

Sources:
  [SDE]   Song et al., ICLR 2021: Sec. 4.3 and App. D.2 (log p_0 = log p_T(x_T) + ∫_ε^T ∇·f̃ dt, ε = 1e-5,
          RK45 with rtol = atol = 1e-5, Hutchinson's estimator), Table 2 (bits/dim on CIFAR-10).
  [FFJORD] Grathwohl et al., ICLR 2019, eq. 4 and Sec. 3.1 (instantaneous change of variables; Hutchinson's
          trace estimator with a noise vector held fixed for one solve).
  [H89]   Hutchinson, "A stochastic estimator of the trace of the influence matrix", 1989: E[vᵀAv] = tr A
          for Rademacher v.
  [TOB16] Theis, van den Oord, Bethge, ICLR 2016, Sec. 3.1 (uniform dequantisation bounds the discrete NLL).
  [9228]  kexue.fm/archives/9228: the PF-ODE makes a diffusion model a flow, hence exact likelihoods.

The change of variables along dx/dt = f̃(x, t) gives d log q_t(x(t))/dt = −∇·f̃, so for a data point x
(started at t = ε, where the data are smoothed by s(ε) ≈ 1e-3 for VP):

    log q_ε(x) = log p_T(x(T)) + ∫_ε^T ∇·f̃(x(t), t) dt.     [SDE] eq. 39, [FFJORD] eq. 4

With the exact score and p_T = q_T this is log q_ε exactly — not log p_0; the two differ by the ε-smoothing,
O(s(ε)²/data variance). Shapes: x (B, …) float64; the solve runs on the flattened batch (B·D + B numbers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from kexue.diffusion.sde import SDE, ScoreFn, check_eps, ode_drift

EXACT_MAX_DIM = 10  # exact trace (D backward passes) up to this D; Hutchinson above it ([SDE] uses it always)


class ODENLL(NamedTuple):
    nll: Tensor  # (B,) −log q_ε(x) in nats per example
    nfe: int  # evaluations of f̃ (each one score call plus its divergence)


def rademacher(shape, *, generator: torch.Generator | None = None, device=None) -> Tensor:
    """v with i.i.d. ±1 entries (float64): E[v] = 0, E[vvᵀ] = I."""
    bits = torch.randint(0, 2, shape, generator=generator, device=device)
    return (2 * bits - 1).to(torch.float64)


def divergence_exact(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """(fn(x), ∇·fn(x)) with the trace of the Jacobian summed over D backward passes; (B, …) → (B,).

    fn must act on each example separately (no batch coupling), so ∂Σ_b fn(x)_b,i/∂x_b,i is example b's.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = fn(x)
        flat = out.reshape(len(x), -1)  # (B, D)
        div = torch.zeros(len(x), dtype=torch.float64, device=x.device)
        for i in range(flat.shape[1]):
            (grad,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=i + 1 < flat.shape[1])
            div = div + grad.reshape(len(x), -1)[:, i]
    return out.detach(), div


def divergence_hutchinson(fn: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """(fn(x), vᵀ(∂fn/∂x)v) per example with one vector–Jacobian product; v (B, …).  [H89], [FFJORD] 3.1"""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = fn(x)
        (vjp,) = torch.autograd.grad((out * v).sum(), x)  # vᵀJ, (B, …)
    return out.detach(), (vjp * v).reshape(len(x), -1).sum(1)


def ode_nll(
    score_fn: ScoreFn,
    sde: SDE,
    x: Tensor,
    *,
    eps: float = 1e-5,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    exact: bool | None = None,
    generator: torch.Generator | None = None,
    prior_log_prob: Callable[[Tensor], Tensor] | None = None,
) -> ODENLL:
    r"""−log q_ε(x) per example through the PF-ODE, solved by RK45 from ε to T.  [SDE] App. D.2

    x: (B, …) data points (float64). exact: trace of ∂f̃/∂x by autograd (D passes per evaluation); None
    picks it when D ≤ 10, else Hutchinson's vᵀ(∂f̃/∂x)v with one Rademacher v per example drawn from
    `generator` and held fixed for the whole solve ([FFJORD] Sec. 3.1: then the integral is an unbiased
    estimate of the exact one). rtol, atol: scipy's RK45 on the state (x, ∫∇·f̃) of all examples at once,
    so its error control is an RMS over the batch and one example can be off by more than rtol.
    prior_log_prob: log p_T(x_T), (B, …) → (B,); default `sde.prior_log_prob`, N(0, I) for VP, which is
    not q_T exactly: q_T = N(m(T)·x0, s(T)²) mixed over the data, and for data with mean μ the gap is
    ≈ m(T)·⟨μ, x_T⟩ nats, with VP's m(1) = 6.6e-3 (pass the exact q_T to remove it).
    """
    from scipy.integrate import solve_ivp

    check_eps(sde, eps)
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be > 0, got {rtol}, {atol}")
    shape, b = x.shape, len(x)
    d = x[0].numel()
    exact = d <= EXACT_MAX_DIM if exact is None else exact
    v = None if exact else rademacher(shape, generator=generator, device=x.device)
    nfe = 0

    def rhs(t: float, y):
        nonlocal nfe
        nfe += 1
        xt = torch.from_numpy(y[: b * d]).to(device=x.device, dtype=torch.float64).reshape(shape)  # (B, …)
        fn = lambda z: ode_drift(score_fn, sde, z, t)  # noqa: E731
        drift, div = divergence_exact(fn, xt) if exact else divergence_hutchinson(fn, xt, v)
        return torch.cat([drift.reshape(-1), div]).detach().cpu().numpy()  # d/dt (x, ∫∇·f̃)

    y0 = torch.cat([x.detach().reshape(-1).double().cpu(), torch.zeros(b, dtype=torch.float64)]).numpy()
    sol = solve_ivp(rhs, (eps, sde.T), y0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"the PF-ODE likelihood solve failed: {sol.message}")
    y = torch.from_numpy(sol.y[:, -1]).to(x.device)
    z, delta = y[: b * d].reshape(shape), y[b * d :]  # x(T), ∫_ε^T ∇·f̃ dt
    prior = sde.prior_log_prob if prior_log_prob is None else prior_log_prob
    return ODENLL(-(prior(z) + delta), nfe)  # [SDE] eq. 39


# ------------------------------------------------------------------------------------------ discrete data
def dequantize_symmetric(
    levels_int: Tensor, levels: int, *, generator: torch.Generator | None = None
) -> Tensor:
    r"""Uniform dequantisation of integer levels k ∈ {0, …, L−1} in the [−1, 1] model space, float64.

    The model was trained on the points x_k = 2k/(L − 1) − 1 (`kexue.data.transforms.to_symmetric`), so each
    bin is centred on its level: y = x_k + Δ(u − ½), u ~ U[0, 1)^D, Δ = 2/(L − 1) (digits: L = 17, Δ = 1/8).
    `kexue.data.transforms.dequantize` is not reused: its bins [k/L, (k+1)/L) on [0, 1] have width 1/L, not
    1/(L − 1), and mapped to [−1, 1] they leave the level x_k off-centre (for k = L − 1 outside its own bin).
    """
    if levels < 2:
        raise ValueError(f"discrete data need at least 2 levels, got {levels}")
    delta = 2 / (levels - 1)
    u = torch.rand(levels_int.shape, generator=generator, dtype=torch.float64, device=levels_int.device)
    return levels_int.to(torch.float64) * delta - 1 + delta * (u - 0.5)


def bits_per_dim(nll_nats: Tensor | float, d: int, delta: float) -> Tensor | float:
    r"""An upper bound on the discrete NLL in bits/dim from −log p(y) on uniformly dequantised data.

    Derivation [TOB16] Sec. 3.1: the discrete mass of a bin is P(k) = ∫_{bin k} p(y)dy = Δ^D·E_u p(y), and
    Jensen gives log P(k) ≥ D·log Δ + E_u log p(y). So
        −log₂ P(k)/D ≤ E_u[−log p(y)]/(D ln 2) + log₂(1/Δ).
    Offsets log₂(1/Δ): 17-level digits in [−1, 1] with bins centred on the levels (Δ = 2/16) → +3;
    8-bit data as (k + u)/256 scaled to [−1, 1] (Δ = 2/256, [SDE]'s code) → +7. This is
    `kexue.metrics.bits_per_dim` with num_bins/interval = 1/Δ.
    """
    if not (d >= 1 and delta > 0):
        raise ValueError(f"need d ≥ 1 and a bin width delta > 0, got d = {d}, delta = {delta}")
    return nll_nats / (d * math.log(2)) + math.log2(1 / delta)


def ode_bits_per_dim(
    score_fn: ScoreFn,
    sde: SDE,
    levels_int: Tensor,
    levels: int,
    *,
    draws: int = 1,
    generator: torch.Generator | None = None,
    **solver,
) -> tuple[Tensor, int]:
    """Per-example bits/dim bound of discrete data, (B, …) integer levels → ((B,) float64, total NFE).

    Each of `draws` dequantisations y = x_k + Δ(u − ½) gets one PF-ODE solve (its own Hutchinson v when
    D > 10); the bound E_u[−log p(y)] is estimated by the mean over draws. solver: ode_nll's keywords.
    """
    if not (isinstance(draws, int) and draws >= 1):
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    d, delta = levels_int[0].numel(), 2 / (levels - 1)
    total, nfe = torch.zeros(len(levels_int), dtype=torch.float64), 0
    for _ in range(draws):
        y = dequantize_symmetric(levels_int, levels, generator=generator)
        res = ode_nll(score_fn, sde, y, generator=generator, **solver)
        total, nfe = total + res.nll.cpu(), nfe + res.nfe
    return bits_per_dim(total / draws, d, delta), nfe
