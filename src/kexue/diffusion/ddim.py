r"""The reverse-step family of DDIM, which contains DDPM's ancestral sampler, and its samplers.

Sources:
  [DDIM] Song, Meng & Ermon, "Denoising Diffusion Implicit Models", ICLR 2021: eq. 12 (the step),
         eq. 16 (σ(η)), Sec. 4.2 (sub-trajectories), Table 1 (σ̂), Sec. 5.4 / Table 2 (encoding).
  [ADPM] Bao et al., "Analytic-DPM", ICLR 2022, Thm 1: the general γ and the optimal variance.
  [9181] kexue.fm/archives/9181 "DDIM = 高观点DDPM", eqs. 7–12 (in Su's notation, where ᾱ is √ᾱ here).
  [9164] kexue.fm/archives/9164: σ² = β̃ or β for DDPM.

One step t → s (s < t) of every sampler here, with x̂0 = (x_t − √β̄_t ε̂)/√ᾱ_t:

    x_s = γ·x̂0 + √((β̄_s − λ²)/β̄_t)·x_t + σ·z,      γ = √ᾱ_s − √((β̄_s − λ²)·ᾱ_t/β̄_t)

which is √ᾱ_s x̂0 + √(β̄_s − λ²) ε̂ + σz [DDIM eq. 12] written through x̂0 (so a clipped x̂0 enters both
terms). λ² is the variance of the forward process the mean belongs to, σ² the noise actually injected:

| variance        | λ²          | σ²                   | what it is                                   |
|-----------------|-------------|----------------------|----------------------------------------------|
| "ddim" (η)      | η²·β̃_{s|t}  | η²·β̃_{s|t}          | DDIM; η = 1 is DDPM with σ² = β̃ on any τ     |
| "beta_tilde"    | β̃_{s|t}     | β̃_{s|t}              | DDPM ancestral, "small" variance             |
| "beta"          | β̃_{s|t}     | β_{t|s}              | DDPM ancestral, "large" variance             |
| "sigma_hat"     | β̃_{s|t}     | β_{t|s}              | DDIM Table 1's σ̂ row (= "beta")              |
| + cov_x0        | as above    | λ² + γ²·cov_x0       | Analytic-DPM [ADPM] Thm 1 (cov_x0 ∈ [0, 1])   |

with β̃_{s|t} = β_{t|s}·β̄_s/β̄_t and β_{t|s} = 1 − ᾱ_t/ᾱ_s. The last step (s = 0) returns the mean x̂0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from kexue.diffusion import schedules
from kexue.diffusion.ddpm import x0_from_eps

VARIANCES = ("ddim", "beta_tilde", "beta", "sigma_hat")
EpsFn = Callable[[Tensor, Tensor], Tensor]  # ε_θ(x (B, …), t (B,) int64) → (B, …)
CovFn = Callable[[int, Tensor, Tensor], Tensor | float]  # (t, x_t, ε̂) → cov_x0, broadcastable to x


def beta_tilde(abar_t: Tensor, abar_s: Tensor) -> Tensor:
    """β̃_{s|t} = β_{t|s}·β̄_s/β̄_t: the variance of q(x_s|x_t, x0).  [DDPM] eq. 7"""
    return (1 - abar_t / abar_s) * (1 - abar_s) / (1 - abar_t)


def reverse_variances(
    abar_t: Tensor, abar_s: Tensor, variance: str, eta: float = 0.0
) -> tuple[Tensor, Tensor]:
    """(λ², σ²) of the table above for the step t → s."""
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; use one of {', '.join(VARIANCES)}")
    if variance == "ddim":
        if not (math.isfinite(eta) and eta >= 0):
            raise ValueError(f"η must be a finite number ≥ 0, got {eta}")
        lam2 = eta**2 * beta_tilde(abar_t, abar_s)  # [DDIM] eq. 16
        return lam2, lam2
    lam2 = beta_tilde(abar_t, abar_s)
    return lam2, (lam2 if variance == "beta_tilde" else 1 - abar_t / abar_s)


def gamma(abar_t: Tensor, abar_s: Tensor, lam2: Tensor) -> Tensor:
    """γ = √ᾱ_s − √((β̄_s − λ²)·ᾱ_t/β̄_t): the weight of x̂0 in the mean.  [ADPM] Thm 1"""
    return abar_s.sqrt() - ((1 - abar_s - lam2).clamp(min=0) * abar_t / (1 - abar_t)).sqrt()


def step_mean(x: Tensor, x0_hat: Tensor, abar_t: Tensor, abar_s: Tensor, lam2: Tensor) -> Tensor:
    """γ·x̂0 + √((β̄_s − λ²)/β̄_t)·x_t.  [DDIM] eq. 12 through x̂0"""
    c_x = ((1 - abar_s - lam2).clamp(min=0) / (1 - abar_t)).sqrt()
    return gamma(abar_t, abar_s, lam2) * x0_hat + c_x * x


def sample(
    eps_fn: EpsFn,
    x: Tensor,
    abar: Tensor,
    traj: Tensor,
    *,
    variance: str = "ddim",
    eta: float = 0.0,
    clip_x0: bool = False,
    cov_x0: CovFn | None = None,
    max_var_penultimate: float | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    r"""Run x_{τ_K} → … → x_{τ_1} → x_0 along the trajectory `traj` (ascending, in 1..N).

    x: (B, …) the start x_{τ_K} (pass float64 noise for a float64 loop; τ_K = N for a sample from the prior).
    variance, eta: the row of the module table. clip_x0: clip x̂0 to [−1, 1] before the mean.
    cov_x0(t, x_t, ε̂): Analytic-DPM's E[Cov(x0|x_t)]/d (scalar or per-element), clamped to [0, 1]; the
    step's σ² becomes λ² + γ²·cov_x0 [ADPM Thm 1 and Thm 2]. max_var_penultimate caps σ² of the step into
    τ_1 ([ADPM] App. F.2). The noise z comes from `generator`; with σ² = 0 everywhere the result is
    deterministic. callback(t, x̂0) sees each step's prediction.
    """
    _check_traj(traj, len(abar) - 1)
    pairs = schedules.steps(traj)
    # Every coefficient of every step, once, in float64 on the CPU (the loop then only scales tensors by
    # Python floats: the sampler's own time stays a small fraction of the network's, even at batch 1).
    t_idx, s_idx = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    a_t, a_s = abar.double().cpu()[t_idx], abar.double().cpu()[s_idx]
    lam2, var = reverse_variances(a_t, a_s, variance, eta)
    var = var.clone()  # λ² and σ² may be one tensor; the cap below must touch σ² only
    g = gamma(a_t, a_s, lam2)
    c_x = ((1 - a_s - lam2).clamp(min=0) / (1 - a_t)).sqrt()  # the x_t weight of step_mean
    if max_var_penultimate is not None and len(pairs) > 1:
        var[-2] = var[-2].clamp(max=max_var_penultimate)
    coef = torch.stack([a_t.sqrt(), (1 - a_t).sqrt(), lam2, var, g, c_x], 1).tolist()
    for i, ((t, s), (sqrt_a, sqrt_b, lam2_i, var_i, g_i, c_i)) in enumerate(zip(pairs, coef, strict=True)):
        eps = eps_fn(x, torch.full((len(x),), t, device=x.device, dtype=torch.int64))
        x0 = (x - sqrt_b * eps) / sqrt_a  # x̂0  [DDPM] eq. 15
        if clip_x0:
            x0 = x0.clamp(-1, 1)
        if callback is not None:
            callback(t, x0)
        mean = g_i * x0 + c_i * x  # step_mean  [DDIM] eq. 12
        if s == 0:  # the last step outputs the mean
            return mean
        std: Tensor | float = math.sqrt(var_i)
        if cov_x0 is not None:
            cov = torch.as_tensor(cov_x0(t, x, eps), dtype=x.dtype, device=x.device).clamp(0, 1)
            v = lam2_i + g_i**2 * cov  # [ADPM] Thm 1
            if max_var_penultimate is not None and i == len(pairs) - 2:
                v = v.clamp(max=max_var_penultimate)  # [ADPM] App. F.2
            std = v.sqrt()
        if isinstance(std, Tensor) or std > 0:
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = mean + std * z
        else:
            x = mean
    return x


def encode(eps_fn: EpsFn, x0: Tensor, abar: Tensor, traj: Tensor) -> Tensor:
    r"""DDIM inversion x_0 → x_{τ_1} → … → x_{τ_K}: the η = 0 step run upwards.  [DDIM] Sec. 5.4

    x_u = √ᾱ_u·x̂0 + √β̄_u·ε̂ with ε̂ = ε_θ(x_t, t) for t → u (u > t); the first step 0 → τ_1 uses
    ε_θ(x_0, τ_1), the network's value at the nearest trained level. `sample(..., eta=0)` on the same
    trajectory decodes it; the round-trip error falls as K grows ([DDIM] Table 2).
    """
    _check_traj(traj, len(abar) - 1)
    abar = abar.to(device=x0.device, dtype=x0.dtype)
    x, ts = x0, [int(t) for t in traj]
    for t, u in zip([0, *ts[:-1]], ts, strict=True):
        eps = eps_fn(x, torch.full((len(x),), max(t, ts[0]), device=x.device, dtype=torch.int64))
        x0_hat = x if t == 0 else x0_from_eps(x, eps, abar[t])
        x = abar[u].sqrt() * x0_hat + (1 - abar[u]).sqrt() * eps
    return x


def _check_traj(traj: Tensor, n: int) -> None:
    if traj.dim() != 1 or len(traj) == 0:
        raise ValueError(
            f"a trajectory is a non-empty 1-D tensor of timesteps, got shape {tuple(traj.shape)}"
        )
    if int(traj.min()) < 1 or int(traj.max()) > n:
        raise ValueError(
            f"trajectory timesteps must lie in 1..N={n}, got {int(traj.min())}..{int(traj.max())}"
        )
    if len(traj) > 1 and not bool((traj[1:] > traj[:-1]).all()):
        raise ValueError("a trajectory must be strictly increasing (τ_1 < … < τ_K)")
