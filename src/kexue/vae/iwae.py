"""The importance-weighted bound [BGS16]: test log-likelihood of a VAE, and a tighter training objective.

With K samples z_k ~ q(z|x) and weights w_k = p(x|z_k) p(z_k) / q(z_k|x),

    log p(x) ≥ L_K(x) = E[ log (1/K) Σ_k w_k ]                         ([BGS16] eq. 8)
    L_1 = ELBO ≤ L_K ≤ L_{K+1} → log p(x)  as K → ∞                    ([BGS16] Thm 1)

so −L_K with K large (hundreds to thousands) is the standard "test NLL in nats" of binarised MNIST
(reference/generative.md §1.1, §2.1). The sum is a logsumexp over chunks of K, so memory stays
O(chunk · B · D) whatever K is. Active units [BGS16] §5.2: AU = #{d : Var_x E_q[z_d|x] > 0.01}.

Any model with a diagonal-Gaussian posterior fits: it must provide

    encode(x) -> (μ, log σ²)          each (B, Z): q(z|x) = N(μ, diag σ²)
    log_joint(x, z) -> log p(x, z)    z (K, B, Z) → (K, B); x (B, …) broadcasts over K

(the plain VAE's prior is N(0, I); a mixture or learned prior only changes its `log_joint`).
Su's [5343] names the encoder p(z|x) and the decoder q(x|z), the reverse of [BGS16]; here q is the encoder.

Sources: [BGS16] Burda, Grosse & Salakhutdinov, ICLR 2016; [5343] kexue.fm/archives/5343.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

from kexue.estimators.gaussian import gaussian_log_prob, reparameterize


class GaussianPosteriorModel(Protocol):
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]: ...  # (μ, log σ²), each (B, Z)
    def log_joint(self, x: Tensor, z: Tensor) -> Tensor: ...  # log p(x|z) + log p(z): (K, B, Z) → (K, B)


def log_weights(model: GaussianPosteriorModel, x: Tensor, mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """log w_k = log p(x, z_k) − log q(z_k|x) with z_k = μ + σ⊙ε_k; eps (K, B, Z) → (K, B)."""
    z = reparameterize(mu.expand_as(eps), logvar.expand_as(eps), eps=eps)  # (K, B, Z)
    return model.log_joint(x, z) - gaussian_log_prob(z, mu, logvar)  # [BGS16] eq. 8, inside the log-mean


def iwae_bound(
    model: GaussianPosteriorModel,
    x: Tensor,
    k: int,
    *,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
    chunk: int = 128,
) -> Tensor:
    """L_K(x) = log (1/K) Σ_k w_k per example, (B,), in nats; differentiable (the IWAE training loss).

    eps: the K standard-normal draws (K, B, Z), or None to draw them from `generator`, `chunk` at a time.
    K = 1 with the same ε is the single-sample ELBO log p(x, z) − log q(z|x).
    """
    if k < 1 or chunk < 1:
        raise ValueError(f"the IWAE bound needs k ≥ 1 samples and chunk ≥ 1, got k={k}, chunk={chunk}")
    mu, logvar = model.encode(x)  # (B, Z) each
    if eps is not None and eps.shape != (k, *mu.shape):
        raise ValueError(f"eps must have shape {(k, *mu.shape)} (K, B, Z), got {tuple(eps.shape)}")
    parts = []
    for start in range(0, k, chunk):
        m = min(chunk, k - start)
        e = (
            eps[start : start + m]
            if eps is not None
            else torch.randn((m, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        )  # (m, B, Z)
        parts.append(torch.logsumexp(log_weights(model, x, mu, logvar, e), 0))  # (B,): log Σ over this chunk
    return torch.logsumexp(torch.stack(parts), 0) - math.log(k)  # (B,)  [BGS16] eq. 8


def _batches(model, x: Tensor, batch_size: int):
    p = next(model.parameters())
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size].to(p.device, p.dtype)


def nll(
    model: GaussianPosteriorModel,
    x: Tensor,
    k: int,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 100,
    chunk: int = 128,
) -> float:
    """Test NLL in nats: mean over examples of −L_K(x) ([BGS16] §5, K = 5000 there; 200–500 is usual).

    x: (N, C, H, W) already in the model's data convention (e.g. a static binarisation, see
    `kexue.data.binarize`). Batches go to the model's device; `generator` must live there too.
    """
    total = 0.0
    with torch.no_grad():
        for xb in _batches(model, x, batch_size):
            total += float(iwae_bound(model, xb, k, generator=generator, chunk=chunk).sum())
    return -total / len(x)


def posterior_mean_variance(model: GaussianPosteriorModel, x: Tensor, *, batch_size: int = 500) -> Tensor:
    """Var_x E_q[z|x] per latent dimension, (Z,): how much each posterior mean moves with the data."""
    with torch.no_grad():
        mu = torch.cat([model.encode(xb)[0] for xb in _batches(model, x, batch_size)])  # (N, Z)
    return mu.var(0)


def active_units(
    model: GaussianPosteriorModel, x: Tensor, *, threshold: float = 0.01, batch_size: int = 500
) -> int:
    """AU = #{d : Var_x E_q[z_d|x] > threshold} ([BGS16] §5.2, threshold 10⁻²)."""
    return int((posterior_mean_variance(model, x, batch_size=batch_size) > threshold).sum())
