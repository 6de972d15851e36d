"""Adversarial training and the gradient penalty on a model's embedding layer, for token models whose input
cannot be perturbed (token ids are discrete), with bert4keras / bert4torch semantics in eager PyTorch.

Sources: [7234] 对抗训练浅谈：意义、方法和思考 (kexue.fm/archives/7234) and its bert4keras examples
task_iflytek_adversarial_training.py (FGM on the token-embedding matrix, ε = 0.5) and
task_iflytek_gradient_penalty.py; bert4torch's FGM and PGD (repository Tongjilibo/bert4torch); [FGM]
Miyato et al., ICLR 2017; [PGD] Madry et al., ICLR 2018. The input-space versions (FGM, VAT, noise) of
[7466] are `kexue.train.adversarial`.

E is the embedding matrix (V, D), L the loss, g = ∇_E L; norms are Frobenius norms of the whole matrix.

- FGM: δ = ε g/‖g‖ (δ = 0 when ‖g‖ is 0 or not finite). Train on L(E) + L(E + δ): backward the clean loss,
  then backward the loss computed inside `with fgm(E): …`, then step.
- PGD, K steps: r₀ = 0, r_{t+1} = Π_ε(r_t + α g_t/‖g_t‖), g_t = ∇_E L(E + r_t), g₀ the clean gradient;
  Π_ε(r) = r·min(1, ε/‖r‖) projects onto the ball ‖r‖ ≤ ε. K − 1 extra forward/backward passes, through
  `torch.autograd.grad`, so no other parameter's .grad is touched (bert4torch backs up every .grad
  and restores it instead). Train on L(E) + L(E + r_K).
- Gradient penalty: L + ½ε‖∇_e L‖², e the embedding layer's OUTPUT (B, T, D). That is what bert4keras
  penalises: the `.values` of the gradient w.r.t. the matrix hold one row per token occurrence. The
  gradient w.r.t. E itself sums the rows of repeated tokens first. To first order a perturbation along
  the gradient adds a multiple of ‖g‖ to the loss, which is how [7234] relates the penalty to adversarial
  training; bert4keras trains on the smooth ½ε‖g‖² form.
- FGM's zero-gradient guard: bert4keras divides by ‖g‖ + 1e-8; bert4torch skips the attack when ‖g‖ = 0
  (or NaN), as here.

Usage (FGM):

    loss_fn(model(x), y).backward()                      # g in E.grad
    with fgm(embedding_weight(model, "embedding"), epsilon=0.5):
        loss_fn(model(x), y).backward()                  # adds ∇L(E + δ) to every .grad
    opt.step(); opt.zero_grad()                          # E is back to its exact bits
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from kexue.errors import KexueError


def embedding_weight(model: nn.Module, name: str) -> nn.Parameter:
    """The single parameter of `model` whose name contains `name` (e.g. "word_embeddings")."""
    found = [(n, p) for n, p in model.named_parameters() if name in n]
    if len(found) != 1:
        names = ", ".join(n for n, _ in (found or list(model.named_parameters()))[:6])
        raise KexueError(
            f"embedding_weight: {len(found)} parameters have a name containing {name!r} (need exactly one); "
            f"candidates: {names}"
        )
    return found[0][1]


def _check_epsilon(value: float, what: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise KexueError(f"{what} must be a finite number > 0, got {value!r}")


def _along(g: Tensor, length: float | Tensor) -> Tensor:
    """length · g/‖g‖, and 0 when ‖g‖ is 0 or not finite (bert4torch skips the attack there)."""
    norm = torch.linalg.vector_norm(g, dtype=torch.promote_types(g.dtype, torch.float32))
    ok = torch.isfinite(norm) & (norm > 0)
    scale = (length / norm.clamp_min(torch.finfo(norm.dtype).tiny)).to(g.dtype)
    return torch.where(ok, g * scale, torch.zeros((), dtype=g.dtype, device=g.device))


def _project(r: Tensor, epsilon: float) -> Tensor:
    """Π_ε(r) = r·min(1, ε/‖r‖): the nearest point of the ball ‖r‖ ≤ ε."""
    norm = torch.linalg.vector_norm(r, dtype=torch.promote_types(r.dtype, torch.float32))
    return r * (epsilon / norm.clamp_min(epsilon)).to(r.dtype)


def _grad_of(weight: Tensor, grad: Tensor | None, who: str) -> Tensor:
    g = weight.grad if grad is None else grad
    if g is None:
        raise KexueError(f"{who}: the embedding weight has no gradient; call loss.backward() first")
    if g.is_sparse:
        g = g.to_dense()  # nn.Embedding(sparse=True)
    if g.shape != weight.shape:
        raise KexueError(
            f"{who}: gradient shape {tuple(g.shape)} differs from the weight's {tuple(weight.shape)}"
        )
    return g.detach()


def fgm_delta(grad: Tensor, *, epsilon: float = 0.5) -> Tensor:
    """δ = ε g/‖g‖ over the whole matrix [FGM]; bert4keras's example uses ε = 0.5."""
    _check_epsilon(epsilon, "fgm: epsilon")
    return _along(grad.detach(), epsilon)


@contextmanager
def perturbed(weight: Tensor, delta: Tensor) -> Iterator[Tensor]:
    """E ← E + δ inside the block; on exit (even on error) E gets its exact original bits back."""
    if delta.shape != weight.shape:
        raise KexueError(f"perturbed: δ has shape {tuple(delta.shape)}, the weight {tuple(weight.shape)}")
    backup = weight.detach().clone()
    with torch.no_grad():
        weight.add_(delta.to(weight.dtype))
    try:
        yield weight
    finally:
        with torch.no_grad():
            weight.copy_(backup)


@contextmanager
def fgm(weight: Tensor, *, epsilon: float = 0.5, grad: Tensor | None = None) -> Iterator[Tensor]:
    """Perturb the embedding weight by δ = ε g/‖g‖, g = `grad` or weight.grad (the clean loss's)."""
    delta = fgm_delta(_grad_of(weight, grad, "fgm"), epsilon=epsilon)
    with perturbed(weight, delta):
        yield weight


def pgd_delta(
    loss_fn: Callable[[], Tensor],
    weight: Tensor,
    *,
    epsilon: float = 1.0,
    alpha: float = 0.3,
    steps: int = 3,
    grad: Tensor | None = None,
) -> Tensor:
    """r_K of K = `steps` projected steps (bert4torch's defaults ε = 1, α = 0.3, K = 3), detached.

    loss_fn() recomputes the loss with the current weights (e.g. `lambda: ce(model(x), y)`); g₀ is `grad`
    or weight.grad. The weight is restored bit-for-bit after each evaluation.
    """
    _check_epsilon(epsilon, "pgd: epsilon")
    _check_epsilon(alpha, "pgd: alpha")
    if not (isinstance(steps, int) and steps >= 1):
        raise KexueError(f"pgd: steps must be an int ≥ 1, got {steps!r}")
    g = _grad_of(weight, grad, "pgd")
    r = _project(_along(g, alpha), epsilon)  # r₁ from g₀
    for _ in range(steps - 1):
        with perturbed(weight, r):
            (g,) = torch.autograd.grad(loss_fn(), weight)  # g_t = ∇_E L(E + r_t)
        r = _project(r + _along(g, alpha), epsilon)  # Π_ε(r_t + α g_t/‖g_t‖)
    return r.detach()


@contextmanager
def pgd(
    loss_fn: Callable[[], Tensor],
    weight: Tensor,
    *,
    epsilon: float = 1.0,
    alpha: float = 0.3,
    steps: int = 3,
    grad: Tensor | None = None,
) -> Iterator[Tensor]:
    """Perturb the embedding weight by the PGD r_K (see `pgd_delta`); restore it on exit."""
    delta = pgd_delta(loss_fn, weight, epsilon=epsilon, alpha=alpha, steps=steps, grad=grad)
    with perturbed(weight, delta):
        yield weight


def embedding_gradient_penalty(loss: Tensor, embedded: Tensor, *, epsilon: float = 1.0) -> Tensor:
    """L + ½ε‖∇_e L‖² (bert4keras's `loss_with_gradient_penalty`, default ε = 1), differentiable.

    embedded: the embedding layer's output (B, T, D) that `loss` was computed from, e.g. captured by
    `kexue.train.intermediates.capture_outputs(model, ["embed"], detach=False)`. Passing the matrix E
    penalises ∇_E L instead (repeated tokens' rows summed first).
    """
    _check_epsilon(epsilon, "embedding_gradient_penalty: epsilon")
    if loss.dim() != 0:
        raise KexueError(f"embedding_gradient_penalty: loss must be a scalar, got shape {tuple(loss.shape)}")
    if not embedded.requires_grad:
        raise KexueError(
            "embedding_gradient_penalty: `embedded` does not require grad; capture the embedding output "
            "inside the graph (capture_outputs(..., detach=False)), not a detached copy"
        )
    (g,) = torch.autograd.grad(loss, embedded, create_graph=True, allow_unused=True)
    if g is None:
        raise KexueError(
            "embedding_gradient_penalty: the loss does not depend on `embedded`; pass the embedding "
            "output of the same forward pass"
        )
    return loss + 0.5 * epsilon * g.pow(2).sum()


__all__ = [
    "embedding_gradient_penalty",
    "embedding_weight",
    "fgm",
    "fgm_delta",
    "perturbed",
    "pgd",
    "pgd_delta",
]
