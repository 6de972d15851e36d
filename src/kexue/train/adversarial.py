"""Input noise, the gradient penalty it amounts to, and adversarial training. [7466] kexue.fm/archives/7466.

Notation of the post: f(x) the model's output distribution p = softmax(z(x)), l the loss, ε ~ N(0, σ²I).

- Random noise (eq. 3): train on E_ε l(f(x+ε), y). To second order (eq. 6)
      E_ε l(f(x+ε), y) ≈ l(f(x), y) + ½σ² Δ_x l(f(x), y)                        → `laplacian`
- Moving the target (eq. 7): l(f(x+ε), f(x)) + l(f(x), y). For l = KL the noise term integrates to
  the gradient penalty (eq. 13, λ_i = 1/f_i)
      E_ε KL(f(x) ‖ f(x+ε)) ≈ ½σ² Σ_i f_i ‖∇_x log f_i‖²                          → `fisher_penalty`
  which is tr(Jᵀ(diag p − ppᵀ)J) with J = ∂z/∂x, the trace of the input Fisher information, i.e. the
  Gauss–Newton part of Δ_x(−log p_y); the rest, Σ_k (p_k − y_k) Δ_x z_k, vanishes where the fit is exact.
- Sampling (eq. 14): Σ_i ‖∇g_i‖² = E_η ‖∇ Σ_i η_i g_i‖² for η_i = ±1, one backward pass instead of K.
- Supervised adversarial training, FGM (eq. 15–16): perturb along ∇_x l, r = ε ∇_x l / ‖∇_x l‖.
- Virtual adversarial training (eq. 17, the finite difference eq. 18 and the box): perturb along the top
  eigenvector of the Hessian of KL(f(x) ‖ f(x+·)), found by `iters` power steps with differences of size ξ.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def _per_sample_sq_norm(g: Tensor) -> Tensor:
    return g.flatten(1).pow(2).sum(1)


def _unit(g: Tensor) -> Tensor:
    """Normalise each sample's perturbation to unit L2 norm."""
    return g / (g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (g.dim() - 1)))


def gaussian_noise(x: Tensor, sigma: float, *, generator: torch.Generator | None = None) -> Tensor:
    """x + ε, ε ~ N(0, σ²I) — the post's random-noise regulariser (eq. 2)."""
    return x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def fisher_penalty(
    logits: Tensor, x: Tensor, *, sampled: bool = False, generator: torch.Generator | None = None
) -> Tensor:
    """Σ_i p_i ‖∇_x log p_i‖² per sample, shape (B,) — eq. (13) of [7466] with λ_i = 1/f_i (KL loss).

    logits: (B, K), computed from x (which must require grad). Differentiable (create_graph), so it can
    be trained on. exact: K backward passes (one per class); sampled: one backward pass with Rademacher η
    (eq. 14): the vector-Jacobian product v = Σ_i η_i √p_i ∇_x log p_i, so that E_η‖v‖² = Σ_i p_i‖∇ log p_i‖².
    The weights η_i √p_i enter as grad_outputs, not through a stop-gradient, so the parameter gradient of
    ‖v‖² is exact and its mean over η is the exact penalty's gradient (a stop-gradient on √p_i would keep
    the value but bias the training signal).
    """
    if not x.requires_grad:
        raise ValueError(
            "fisher_penalty needs the logits' input x to require grad: "
            "x = x.detach().requires_grad_(True) before computing the logits"
        )
    log_p = F.log_softmax(logits, dim=-1)  # (B, K)
    p = log_p.exp()
    if sampled:
        eta = torch.randint(0, 2, p.shape, generator=generator, device=p.device).to(p.dtype) * 2 - 1
        (grad,) = torch.autograd.grad(log_p, x, grad_outputs=eta * p.sqrt(), create_graph=True)  # (16)
        return _per_sample_sq_norm(grad)
    total = torch.zeros(len(x), device=x.device, dtype=log_p.dtype)
    for k in range(log_p.shape[1]):
        (grad,) = torch.autograd.grad(log_p[:, k].sum(), x, create_graph=True)  # rows are per-sample grads
        total = total + p[:, k] * _per_sample_sq_norm(grad)
    return total


def laplacian(fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor) -> Tensor:
    """Δ_x fn(x_b, y_b) for each sample, shape (B,): the exact Hessian trace (eq. 6), via torch.func.

    fn(x_b, y_b) takes ONE sample (no batch dimension) and returns a scalar. Cost grows with the input
    dimension squared — an analysis tool for small inputs (8×8 digits), not a training loss.
    """
    from torch.func import hessian, vmap

    def trace_hessian(xb: Tensor, yb: Tensor) -> Tensor:
        h = hessian(fn, argnums=0)(xb, yb)
        d = xb.numel()
        return h.reshape(d, d).diagonal().sum()

    return vmap(trace_hessian)(x, y)


def fgm_perturbation(loss_fn: Callable[[Tensor], Tensor], x: Tensor, epsilon: float) -> Tensor:
    """r = ε ∇_x l / ‖∇_x l‖ per sample (FGM, eq. 15–16), detached. loss_fn maps a batch to a scalar."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(x), x)
    return epsilon * _unit(grad).detach()


def kl_logits(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """KL(softmax(p) ‖ softmax(q)) per sample, shape (B,)."""
    log_p, log_q = F.log_softmax(p_logits, -1), F.log_softmax(q_logits, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def vat_perturbation(
    logits_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    epsilon: float,
    *,
    xi: float = 1e-3,
    iters: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The post's VAT box: u ~ N(0, I); repeat `iters` times u ← ∇_u KL(f_ng(x) ‖ f(x + ξu)) at unit u;
    return ε u/‖u‖ (detached). With iters = 0 it is Gaussian noise of norm ε.

    ξ must keep x + ξu in the quadratic regime of eq. 18: small against the data's scale. The post's
    ξ = 10 was for embedding matrices; on pixels (‖x‖ ≈ 4 for 8×8 digits) ξ = 10 leaves it, and the
    direction found is far from the Hessian's top eigenvector. Miyato et al. use 1e-6; 1e-3 keeps the
    difference q − p that the gradient carries well above float32 resolution.
    """
    with torch.no_grad():
        target = logits_fn(x)
    u = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    for _ in range(iters):
        u = (xi * _unit(u)).requires_grad_(True)
        (u,) = torch.autograd.grad(kl_logits(target, logits_fn(x + u)).sum(), u)
    return epsilon * _unit(u).detach()
