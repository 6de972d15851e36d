r"""Noise schedules ᾱ_t and sampling trajectories τ_1 < … < τ_K, as plain float64 / int64 tensors.

Sources:
  [DDPM]  Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020, Sec. 4.
  [IDDPM] Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021, eq. 17.
  [DDIM]  Song, Meng & Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, App. D.3.
  [ADPM]  Bao et al., "Analytic-DPM", ICLR 2022, Sec. 6 ("even trajectory").
  [9119]  kexue.fm/archives/9119 — Su writes x_t = ᾱ_t x0 + β̄_t ε with ᾱ_t² + β̄_t² = 1: his ᾱ_t is √ᾱ_t here.

Every schedule returns abar of length N + 1 with abar[0] = 1 (t = 0 is the data), float64. A trajectory is
an ascending int64 tensor of timesteps in 1..N; samplers walk it downwards and finish at t = 0.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

TRAJECTORIES = ("even", "quadratic", "leading")


def _with_zero(abar: Tensor) -> Tensor:
    return torch.cat([torch.ones(1, dtype=torch.float64), abar])  # (N + 1,), abar[0] = 1


def linear_abar(n: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2) -> Tensor:
    """ᾱ_t = ∏_{i≤t}(1 − β_i) with β linear from beta_start to beta_end over N steps.  [DDPM] Sec. 4"""
    _check_n(n)
    beta = torch.linspace(beta_start, beta_end, n, dtype=torch.float64)  # β_1..β_N
    return _with_zero(torch.cumprod(1 - beta, 0))


def cosine_abar(n: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """ᾱ_t = f(t)/f(0), f(t) = cos²((t/N + s)/(1 + s)·π/2), each β_t clipped at max_beta.  [IDDPM] eq. 17"""
    _check_n(n)
    t = torch.arange(n + 1, dtype=torch.float64)
    f = torch.cos((t / n + s) / (1 + s) * math.pi / 2) ** 2
    beta = (1 - f[1:] / f[:-1]).clamp(max=max_beta)  # β_t = 1 − ᾱ_t/ᾱ_{t−1}, clipped
    return _with_zero(torch.cumprod(1 - beta, 0))


def betas(abar: Tensor) -> Tensor:
    """β_t = 1 − ᾱ_t/ᾱ_{t−1} for t = 1..N (index 0 of the result is β_1)."""
    return 1 - abar[1:] / abar[:-1]


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of diffusion steps N must be a positive integer, got {n!r}")


def trajectory(kind: str, n: int, k: int) -> Tensor:
    r"""K timesteps τ_1 < … < τ_K in 1..N (int64, ascending); samplers go τ_K → … → τ_1 → 0.

    - "even":      τ_k = round(1 + (N − 1)(k − 1)/(K − 1)), so τ_1 = 1 and τ_K = N.  [ADPM] "ET"
    - "quadratic": τ_k = round(1 + (N − 1)((k − 1)/(K − 1))²), made strictly increasing; τ_1 = 1, τ_K = N.
                   (the DDIM paper's CIFAR-10 variant, ⌊linspace(0, √(0.8N), K)²⌋ + 1, stops at 0.8N + 1)
    - "leading":   τ_k = 1 + (k − 1)⌊N/K⌋: the DDIM paper's linear stride and diffusers'
                   timestep_spacing="leading" (0-based 900, 800, …, 0 for N = 1000, K = 10). τ_K < N.
    K = 1 gives [N] for "even" and "quadratic" and [1] for "leading".
    """
    _check_n(n)
    if kind not in TRAJECTORIES:
        raise ValueError(f"unknown trajectory {kind!r}; use one of {', '.join(TRAJECTORIES)}")
    if not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"the number of sampling steps K must be an integer in 1..N={n}, got {k!r}")
    if kind == "leading":
        return 1 + torch.arange(k, dtype=torch.int64) * (n // k)
    if k == 1:
        return torch.tensor([n], dtype=torch.int64)
    u = torch.linspace(0, 1, k, dtype=torch.float64)
    tau = torch.round(1 + (n - 1) * (u if kind == "even" else u**2)).to(torch.int64)
    # Quadratic spacing crowds the start: push repeats up, then pull down from τ_K = N (exact when K ≤ N).
    for i in range(1, k):
        tau[i] = max(int(tau[i]), int(tau[i - 1]) + 1)
    for i in range(k - 2, -1, -1):
        tau[i] = min(int(tau[i]), int(tau[i + 1]) - 1)
    return tau


def steps(traj: Tensor) -> list[tuple[int, int]]:
    """The (t, s) pairs a sampler walks: (τ_K, τ_{K−1}), …, (τ_1, 0). No pair repeats a timestep."""
    ts = [int(t) for t in traj.flip(0)] + [0]
    return list(itertools.pairwise(ts))
