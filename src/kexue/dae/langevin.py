r"""Langevin dynamics with a learned score, single-scale and annealed.

Single-scale, [7038] eq. (sde) (unadjusted Langevin, ULA):

    x ← x + (ε/2)·∇log p̂(x) + √ε·z,  z ~ N(0, I)

whose stationary law tends to p̂ as ε → 0. For finite ε it is biased: on N(0, v) the chain is
x ← (1 − ε/(2v))x + √ε z, with stationary variance v/(1 − ε/(4v)) (solve V = (1 − ε/2v)²V + ε).

Annealed, [NCSN] Alg. 1: σ_1 > … > σ_L (geometric), T steps at each level with the step
α_i = ε·σ_i²/σ_L², so that the signal-to-noise ratio of the update is the same at every level; then the
final Tweedie jump x ← x + σ_L²·s(x, σ_L) ([7038] eq. 1: the DAE's output is E[x0 | x]; [JM21]).

Why anneal ([NCSN] Sec. 3.2). Near either mode of a well-separated mixture π_1 p_1 + π_2 p_2 the score is
∇log p_k, independent of π, and a chain cannot cross the low-density gap in any practical time, so
single-scale chains end in each mode in proportion to where they started, not to π. At large σ the modes
overlap and the chains equilibrate between them; lowering σ slowly keeps that split.

Sources:
  [7038]  kexue.fm/archives/7038 "从去噪自编码器到生成模型": eq. (sde) and the denoise-after-sampling step.
  [NCSN]  Song & Ermon, "Generative Modeling by Estimating Gradients of the Data Distribution", NeurIPS
          2019: Alg. 1 (annealed Langevin), Sec. 3.2 (the mixture weights), Sec. 4.2 (σ from 1 to 0.01,
          L = 10, ε = 2e-5, T = 100); its toy code: σ from 20 to 1, ε = 0.1, T = 100.
  [JM21]  Jolicoeur-Martineau, Piché-Taillefer, Tachet des Combes, Mitliagkas, "Adversarial Score
          Matching and Improved Sampling for Image Generation", ICLR 2021: the final denoising step.

Shapes: x is (B, …) in any floating dtype on any device; score_fn(x) (single-scale) or score_fn(x, σ)
(annealed, σ a Python float) returns (B, …) like x. The σ levels are a descending float64 tensor the caller
can print (style rule 2). Randomness: `generator` (on x's device).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from kexue.dae.nets import check_positive
from kexue.dae.tweedie import denoiser_from_score

ScoreFn = Callable[[Tensor], Tensor]  # x (B, …) → ∇log p̂(x), (B, …)
NoiseScoreFn = Callable[[Tensor, float], Tensor]  # (x (B, …), σ) → ∇log p_σ(x), (B, …)


def geometric_sigmas(sigma_max: float, sigma_min: float, levels: int) -> Tensor:
    """σ_1 = sigma_max > … > σ_L = sigma_min, geometric, (L,) float64.  [NCSN] Sec. 4.2"""
    where = "geometric_sigmas"
    hi, lo = check_positive(sigma_max, "sigma_max", where), check_positive(sigma_min, "sigma_min", where)
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"{where}: levels must be an int ≥ 1, got {levels!r}")
    if levels > 1 and not hi > lo:
        raise ValueError(f"{where}: sigma_max {hi} must exceed sigma_min {lo}; swap them or fix the range")
    if levels == 1:
        return torch.tensor([lo], dtype=torch.float64)
    sigmas = torch.exp(torch.linspace(math.log(hi), math.log(lo), levels, dtype=torch.float64))
    sigmas[0], sigmas[-1] = hi, lo  # the ends exactly, not through exp(log(·))
    check_sigmas(sigmas, where)  # a range too narrow for L levels rounds to equal σ's
    return sigmas


def check_sigmas(sigmas: Tensor, where: str) -> list[float]:
    """The σ levels as Python floats, after checking they are a strictly decreasing 1-D list of σ > 0."""
    s = torch.as_tensor(sigmas, dtype=torch.float64).cpu()
    if s.dim() != 1 or len(s) == 0:
        raise ValueError(f"{where}: sigmas must be a non-empty 1-D tensor, got shape {tuple(s.shape)}")
    if not (torch.isfinite(s).all() and (s > 0).all()):
        raise ValueError(f"{where}: every σ level must be finite and > 0, got {s.tolist()}")
    if len(s) > 1 and not bool((s[1:] < s[:-1]).all()):
        raise ValueError(
            f"{where}: sigmas must be strictly decreasing (σ_1 > … > σ_L), got {s.tolist()}; "
            "use geometric_sigmas(sigma_max, sigma_min, L)"
        )
    return s.tolist()


def _check_steps(n: int, name: str, where: str, minimum: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise ValueError(f"{where}: {name} must be an int ≥ {minimum}, got {n!r}")
    return n


def _check_x(x: Tensor, where: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1:
        got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{where}: x must be a floating (B, …) tensor of starting points, got a {got}")


def _score(s: Tensor, x: Tensor, where: str) -> Tensor:
    """The score's output, checked against x's shape and cast to x's dtype."""
    if not isinstance(s, Tensor) or s.shape != x.shape:
        got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
        raise ValueError(
            f"{where}: score_fn returned {got} for x of shape {tuple(x.shape)}; it must return ∇log p "
            "with x's shape"
        )
    return s.to(x.dtype)


def langevin(
    score_fn: ScoreFn,
    x: Tensor,
    step: float,
    n_steps: int,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""n_steps of x ← x + (ε/2)·s(x) + √ε·z with ε = step, from x (B, …).  [7038] eq. (sde)"""
    where = "langevin"
    _check_x(x, where)
    eps = check_positive(step, "step", where)
    _check_steps(n_steps, "n_steps", where, 0)
    for _ in range(n_steps):
        s = _score(score_fn(x), x, where)
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x + 0.5 * eps * s + math.sqrt(eps) * z  # [7038] eq. (sde)
    return x


def annealed_langevin(
    score_fn: NoiseScoreFn,
    x: Tensor,
    sigmas: Tensor,
    eps: float,
    steps_per_level: int,
    *,
    generator: torch.Generator | None = None,
    denoise: bool = True,
) -> Tensor:
    r"""Annealed Langevin dynamics over σ_1 > … > σ_L, then (if `denoise`) the Tweedie jump.  [NCSN] Alg. 1

    score_fn(x, σ) ≈ ∇log p_σ(x); eps is [NCSN]'s ε (the step at the last level σ_L); T = steps_per_level.
    NFE = L·T (+ 1 with denoise).
    """
    where = "annealed_langevin"
    _check_x(x, where)
    levels = check_sigmas(sigmas, where)
    eps = check_positive(eps, "eps", where)
    _check_steps(steps_per_level, "steps_per_level", where, 1)
    last = levels[-1]
    for sigma in levels:
        alpha = eps * sigma**2 / last**2  # α_i = ε·σ_i²/σ_L²  [NCSN] Alg. 1 line 3
        for _ in range(steps_per_level):
            s = _score(score_fn(x, sigma), x, where)
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = x + 0.5 * alpha * s + math.sqrt(alpha) * z  # [NCSN] Alg. 1 line 6
    if denoise:
        x = denoiser_from_score(_score(score_fn(x, last), x, where), x, last)  # x + σ_L²s  [7038] eq. 1
    return x


__all__ = ["annealed_langevin", "check_sigmas", "geometric_sigmas", "langevin"]
