"""The attention scale: 1/√d [4765], the entropy-invariant log-n scale [8823], gradient maximisation [9812].

- Standard: with unit-variance i.i.d. components, Var(q·k) = d, so 1/√d makes the logits unit-variance.
- log n [8823, 9034]: keeping the attention entropy roughly fixed as the number of visible keys n grows gives
  softmax((log_m n / √d)·QKᵀ): equal to 1/√d when n equals the training length m (Su uses m = 512).
  Here n is the number of keys a query row may see (bert4keras `softmax_plus`), not the absolute position.
- Gradient maximisation [9812] (equations numbered in order of appearance in the post). For p = softmax(αs)
  over n scores, ∂p_i/∂s_j = α(p_iδ_ij − p_ip_j) (eq. 2), and the post picks α to maximise
      ½‖∂p/∂s‖₁ = α(1 − Σ_i p_i²)                                   (eq. 3)   → `softmax_gradient_l1`
  Mean field (eq. 4): Σp² ≈ E[e^{2αs}] / (n E[e^{αs}]²); for s ~ N(0, 1), E[e^{αs}] = e^{α²/2} (eq. 5), so
      α(1 − Σp²) ≈ α(1 − e^{α²}/n)                                  (eq. 6)   → `mean_field_objective`
  The post maximises eq. 6 numerically and fits α* ≈ 0.84√(ln n) (→ `su_fit`), hence "2.5/√d". Here the
  maximiser is exact: d/dα = 1 − (1 + 2α²)e^{α²}/n = 0 ⇔ (α² + ½)e^{α² + ½} = n√e/2, so
      α*² = W(n√e/2) − ½   (W: Lambert's principal branch)                    → `mean_field_optimum`
  As n → ∞, W(x) = ln x − ln ln x + o(1) gives α*/√(ln n) → 1: the 0.84 is a least-squares coefficient over
  the post's range n = 40 … 20000, not an asymptote.
  Cosine scores (l2-normalised q, k in d dimensions, eq. 7): p(s) ∝ (1 − s²)^{(d−3)/2}; the same mean field
  with that distribution's E[e^{αs}] gives α* ≈ 3.5 ln n for d = 128 (the post's fit, → `su_cosine_fit`).
  Decoders [9812 §相关思考]: row i sees i + 1 keys, so no single α is optimal for every row; the post takes
  n = L_max/2 (→ `gradient_max_scale`).
- The sampled objective E[α(1 − Σp²)] with s ~ N(0, 1) is *not* eq. 6 at large α: eq. 4 needs the sums
  of e^{αs} to concentrate, which fails once α² ≳ ln n / 2 (a few top scores dominate). As α → ∞ only the
  top two scores matter, α(1 − Σp²) → α·2e^{−αΔ}/(1 + e^{−αΔ})² with Δ the top-two gap, whose expectation
  tends to f_Δ(0)·∫₀^∞ 2e^{−u}/(1 + e^{−u})² du = f_Δ(0), the density of Δ at 0:
      f_Δ(0) = n(n − 1) ∫ φ(x)² Φ(x)^{n−2} dx                                  → `sampled_objective_limit`
  So the sampled curve rises to a plateau instead of peaking; its arg-max is a noisy point on that plateau.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from kexue.errors import KexueError

SU_FIT = 0.84  # [9812]: α* ≈ 0.84√(ln n) for s ~ N(0, 1), fitted over n = 40, 80, …, 20000
SU_COSINE_FIT = 3.5  # [9812]: α* ≈ 3.5 ln n for cosine scores with d = 128 (the coefficient depends on d)


def standard_scale(head_dim: int) -> float:
    """1/√d_k [4765]."""
    return 1.0 / math.sqrt(head_dim)


def log_n_scale(n: Tensor | int, *, head_dim: int, base: int = 512, min_n: int = 1) -> Tensor | float:
    """log_base(n)/√d_k for n visible keys (clamped below at `min_n`; bert4keras clamps at 16) [8823].

    `n` may be a tensor of per-row counts, e.g. (T, 1) for a causal row i seeing i + 1 keys; the result then
    multiplies the queries row by row (float64, on n's device).
    """
    if base <= 1 or min_n < 1 or head_dim < 1:
        raise KexueError(
            f"log_n_scale needs base > 1, min_n ≥ 1, head_dim ≥ 1; got {base}, {min_n}, {head_dim}"
        )
    if isinstance(n, int):
        return math.log(max(n, min_n)) / math.log(base) / math.sqrt(head_dim)
    return torch.log(n.clamp(min=min_n).to(torch.float64)) / math.log(base) / math.sqrt(head_dim)


# ------------------------------------------------------------------------------------ the objective (eq. 3)
def softmax_gradient_l1(s: Tensor, alpha: Tensor | float) -> Tensor:
    """½‖∂p/∂s‖₁ = α(1 − Σp²) for p = softmax(αs) over the last dim [9812] eq. 3; s (..., n) → (...).

    Σp² = exp(logsumexp(2αs) − 2 logsumexp(αs)), stable for any α; `alpha` broadcasts against s.shape[:-1].
    """
    alpha = torch.as_tensor(alpha, dtype=s.dtype, device=s.device)
    a = alpha[..., None]  # (..., 1)
    log_sum_p2 = torch.logsumexp(2 * a * s, -1) - 2 * torch.logsumexp(a * s, -1)  # log Σp²
    return alpha * -torch.expm1(log_sum_p2)  # α(1 − Σp²), accurate when Σp² ≈ 1


def softmax_gradient_l1_autograd(s: Tensor, alpha: float) -> Tensor:
    """½Σ_ij |∂p_i/∂s_j| from the autograd Jacobian of s ↦ softmax(αs); s (..., n) → (...). For tests."""
    jac = torch.func.jacrev(lambda v: torch.softmax(alpha * v, -1))  # (n,) → (n, n)
    flat = s.reshape(-1, s.shape[-1])  # (M, n)
    j = torch.func.vmap(jac)(flat)  # (M, n, n)
    return 0.5 * j.abs().sum((-2, -1)).reshape(s.shape[:-1])


# ------------------------------------------------------------------------------------ mean field (eq. 4–6)
def gaussian_log_mgf(a: Tensor) -> Tensor:
    """log E[e^{as}] = a²/2 for s ~ N(0, 1) [9812] eq. 5."""
    return a * a / 2


@functools.lru_cache(maxsize=8)
def _gauss_legendre(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(nodes)  # an eigenproblem: computed once per node count


def cosine_log_mgf(a: Tensor, *, head_dim: int, nodes: int = 512) -> Tensor:
    """log E[e^{as}] for s the cosine of two random directions in ℝ^d, p(s) ∝ (1 − s²)^{(d−3)/2} [9812] eq. 7.

    With s = cos θ the density is ∝ sin^{d−2}θ on [0, π]: Gauss–Legendre in θ (smooth for every d ≥ 2;
    equals Γ(d/2)(2/a)^{d/2−1} I_{d/2−1}(a), the Bessel form, to ~1e-14 for a ≤ 300). a (...) → (...).
    """
    if head_dim < 2:
        raise KexueError(f"cosine_log_mgf needs head_dim ≥ 2 (a cosine of 1-D vectors is ±1); got {head_dim}")
    x, w = _gauss_legendre(nodes)
    a = torch.as_tensor(a, dtype=torch.float64)
    theta = torch.as_tensor((x + 1) * math.pi / 2, device=a.device)  # (K,) nodes in (0, π)
    log_w = torch.as_tensor(np.log(w), device=a.device) + (head_dim - 2) * torch.log(torch.sin(theta))  # (K,)
    log_z = torch.logsumexp(a[..., None] * torch.cos(theta) + log_w, -1)  # (...)
    return log_z - torch.logsumexp(log_w, -1)


def mean_field_objective(
    alpha: Tensor, n: Tensor | float, *, log_mgf: Callable[[Tensor], Tensor] = gaussian_log_mgf
) -> Tensor:
    """α(1 − E[e^{2αs}]/(n E[e^{αs}]²)) [9812] eq. 4 + 6; the default (Gaussian) is α(1 − e^{α²}/n)."""
    alpha = torch.as_tensor(alpha, dtype=torch.float64)
    return alpha * (1 - torch.exp(log_mgf(2 * alpha) - 2 * log_mgf(alpha)) / n)


def _lambert_w(x: Tensor) -> Tensor:
    """Principal-branch W(x), x > 0: Newton on w + ln w = ln x from log1p(x) ≥ W(x) (concave: converges)."""
    w = torch.log1p(x)
    for _ in range(40):  # quadratic convergence; 40 steps are far more than float64 needs
        w = w * (1 + torch.log(x) - torch.log(w)) / (1 + w)
    return w


def _as_counts(n: Tensor | float, name: str) -> Tensor:
    n = torch.as_tensor(n, dtype=torch.float64)
    if (n < 1).any() or not torch.isfinite(n).all():
        raise KexueError(f"{name} needs key counts n ≥ 1 (finite); got min {n.min().item():g}")
    return n


def mean_field_optimum(n: Tensor | float) -> Tensor:
    """argmax_α α(1 − e^{α²}/n): α* = √(W(n√e/2) − ½), exact (module docstring); n ≥ 1 → float64."""
    n = _as_counts(n, "mean_field_optimum")
    return (_lambert_w(n * math.exp(0.5) / 2) - 0.5).clamp(min=0).sqrt()  # n = 1 → α* = 0


def su_fit(n: Tensor | float) -> Tensor:
    """Su's fit of the mean-field optimum, 0.84√(ln n) [9812]."""
    return SU_FIT * torch.log(torch.as_tensor(n, dtype=torch.float64)).sqrt()


def su_cosine_fit(n: Tensor | float) -> Tensor:
    """Su's fit of the cosine mean-field optimum for d = 128, 3.5 ln n [9812]."""
    return SU_COSINE_FIT * torch.log(torch.as_tensor(n, dtype=torch.float64))


def cosine_mean_field_optimum(n: Tensor | float, *, head_dim: int = 128, iters: int = 80) -> Tensor:
    """argmax_α of the mean-field objective with cosine scores [9812] eq. 7: bisection on the sign of its
    autograd derivative (positive below the maximum, negative above), vectorised over n.

    The bracket [0, 4√d(√ln n + 1)] holds the optimum: the scores have variance ≈ 1/d, so the cosine α* is
    about √d times the Gaussian one (< √ln n + 1). Bisecting the derivative, not comparing values, reaches
    float64 precision in α (a flat maximum hides √ε-sized steps from a value comparison).
    """
    n = _as_counts(n, "cosine_mean_field_optimum")
    lo, hi = torch.zeros_like(n), 4 * math.sqrt(head_dim) * (n.log().sqrt() + 1)
    for _ in range(iters):  # the bracket halves each step
        mid = ((lo + hi) / 2).requires_grad_(True)
        with torch.enable_grad():
            f = mean_field_objective(mid, n, log_mgf=lambda a: cosine_log_mgf(a, head_dim=head_dim))
            (slope,) = torch.autograd.grad(f.sum(), mid)
        rising = slope > 0  # the maximum lies above mid
        lo, hi = torch.where(rising, mid.detach(), lo), torch.where(rising, hi, mid.detach())
    return torch.where(n > 1, (lo + hi) / 2, 0.0)  # n = 1: the objective only falls, α* = 0


def gradient_max_scale(n: Tensor | float, *, head_dim: int) -> Tensor:
    """α*(n)/√d_k: the mean-field gradient-maximising scale for n visible keys [9812].

    Encoders with fixed length L: n = L. Decoders: the post takes n = L_max/2, fair to most rows. Su's
    blind choice 2.5/√d is α* at n ≈ 7000 (α* ≈ 2.1–2.6 for n = 1k–16k).
    """
    return mean_field_optimum(n) / math.sqrt(head_dim)


# ------------------------------------------------------------------------------------ sampled objective
def sampled_objective(
    alpha: Tensor, n: int, *, samples: int, generator: torch.Generator, max_elements: int = 1 << 22
) -> Tensor:
    """α(1 − Σp²) for `samples` draws of s ~ N(0, 1)^n, the same draws for every α: (samples, A) float64.

    Its mean over draws estimates E[α(1 − Σp²)]; the common draws make differences between α's paired.
    Draws come from `generator` on its device, `max_elements` scores at a time.
    """
    if n < 1 or samples < 1:
        raise KexueError(f"sampled_objective needs n ≥ 1 and samples ≥ 1; got n={n}, samples={samples}")
    alpha = torch.as_tensor(alpha, dtype=torch.float64, device=generator.device).reshape(-1)  # (A,)
    rows = max(1, max_elements // n)
    out = []
    for start in range(0, samples, rows):  # blocks of draws bound the memory
        s = torch.randn(
            min(rows, samples - start), n, generator=generator, dtype=torch.float64, device=generator.device
        )  # (r, n)
        out.append(torch.stack([softmax_gradient_l1(s, a) for a in alpha], -1))  # (r, A)
    return torch.cat(out)  # (samples, A)


def sampled_objective_limit(n: int, *, points: int = 40001) -> float:
    """lim_{α→∞} E[α(1 − Σp²)] = f_Δ(0) = n(n−1)∫φ²Φ^{n−2}dx for s ~ N(0, 1)^n (module docstring)."""
    if n < 2:
        raise KexueError(f"sampled_objective_limit needs n ≥ 2 scores (one score has no gap); got {n}")
    x = torch.linspace(-12.0, 12.0, points, dtype=torch.float64)
    log_phi = -x * x / 2 - 0.5 * math.log(2 * math.pi)
    log_f = math.log(n) + math.log(n - 1) + 2 * log_phi + (n - 2) * torch.special.log_ndtr(x)
    return torch.trapezoid(log_f.exp(), x).item()


# ------------------------------------------------------------------------------------ log-n focus [8823]
def planted_key_focus(
    n: int, *, head_dim: int, cos: float, scale: float, trials: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """One query over n keys, one of them "planted" at cosine `cos` to it: (mass, entropy), each (trials,).

    q ~ N(0, I_d); n − 1 keys k ~ N(0, I_d); the planted key √d(cos·q̂ + √(1 − cos²)·u), u ⟂ q a unit
    vector. Then q·k = ‖q‖z with z ~ N(0, 1) exactly (k is isotropic and independent of q), and the planted
    logit is cos·√d·‖q‖, so only ‖q‖ and the z's are drawn. Logits are `scale`·q·k (1/√d: standard;
    log_n_scale(n, head_dim=d): log n). mass = p of the planted key; entropy = −Σp ln p in nats.
    """
    if n < 1 or trials < 1 or not -1 <= cos <= 1:
        raise KexueError(f"planted_key_focus needs n ≥ 1, trials ≥ 1, |cos| ≤ 1; got {n}, {trials}, {cos}")
    dev = generator.device
    q_norm = torch.randn(trials, head_dim, generator=generator, dtype=torch.float64, device=dev).norm(dim=-1)
    z = torch.randn(trials, n - 1, generator=generator, dtype=torch.float64, device=dev)  # (trials, n − 1)
    planted = torch.full((trials, 1), cos * math.sqrt(head_dim), dtype=torch.float64, device=dev)
    logits = scale * q_norm[:, None] * torch.cat([planted, z], -1)  # (trials, n), planted key first
    log_p = torch.log_softmax(logits, -1)
    return log_p[:, 0].exp(), -(log_p.exp() * log_p).sum(-1)


def planted_key_mass_mean_field(
    n: Tensor | float, *, head_dim: int, cos: float, scale: Tensor | float
) -> Tensor:
    """The planted key's mass with ‖q‖ = √d and Σ_j e^{λq·k_j} ≈ (n − 1)e^{λ²d/2} (eq. 4's mean field).

    With λ = ℓ/√d: e^{ℓ·cos·√d} / (e^{ℓ·cos·√d} + (n − 1)e^{ℓ²/2}).
    """
    ell = torch.as_tensor(scale, dtype=torch.float64) * math.sqrt(head_dim)  # ℓ = λ√d
    n = torch.as_tensor(n, dtype=torch.float64)
    return torch.sigmoid(ell * cos * math.sqrt(head_dim) - torch.log(n - 1) - ell * ell / 2)
