"""Discrete distributions built from perturbations: p_i = P[argmax(μ + ε) = i] ([9085]).

With ε_1..ε_n i.i.d. with density φ and CDF Φ, the argmax of the perturbed scores is i with probability

    p_i = ∫ φ(ε) Π_{j≠i} Φ(μ_i − μ_j + ε) dε = ∫_0^1 Π_{j≠i} Φ(μ_i − μ_j + Φ⁻¹(t)) dt      ([9085] eq. 6, 10)

which depends only on the differences μ_i − μ_j (shift-invariant like softmax) and preserves the order of
μ. Gumbel noise gives exactly softmax(μ) ([9085] eq. 8); for the others the integral is computed by
quadrature in t: the post's rule (1/K)Σ_k at t_k = k/(K+1), or Gauss–Legendre nodes on (0, 1) (default:
far fewer nodes for the same accuracy, because the integrand is smooth in t).

Each `Noise` has a sampler, Φ and Φ⁻¹. `sample_argmax` draws from the distribution; `argmax_probabilities`
is its closed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Noise:
    name: str
    sample: Callable[..., Tensor]  # (shape, generator, dtype) → ε
    cdf: Callable[[Tensor], Tensor]  # Φ
    ppf: Callable[[Tensor], Tensor]  # Φ⁻¹ on (0, 1)


def _uniform(shape, generator, dtype) -> Tensor:
    u = torch.rand(shape, generator=generator, dtype=dtype)
    eps = torch.finfo(dtype).eps
    return u.clamp(eps, 1 - eps)


NOISES: dict[str, Noise] = {
    n.name: n
    for n in (
        Noise(  # Φ(ε) = exp(−e^{−ε}) ([9085]): argmax gives softmax exactly
            "gumbel",
            lambda shape, g, dt: -torch.log(-torch.log(_uniform(shape, g, dt))),
            lambda x: torch.exp(-torch.exp(-x)),
            lambda t: -torch.log(-torch.log(t)),
        ),
        Noise(  # Φ(ε) = ½(1 + erf(ε/√2)) ([9085]): a "probit" alternative to softmax
            "normal",
            lambda shape, g, dt: torch.randn(shape, generator=g, dtype=dt),
            lambda x: 0.5 * (1 + torch.erf(x / math.sqrt(2))),
            torch.special.ndtri,
        ),
        Noise(  # Φ(ε) = σ(ε)
            "logistic",
            lambda shape, g, dt: torch.logit(_uniform(shape, g, dt)),
            torch.sigmoid,
            torch.logit,
        ),
        Noise(  # Φ(ε) = ε on [0, 1]: bounded noise, so scores further apart than 1 are never swapped
            "uniform",
            lambda shape, g, dt: torch.rand(shape, generator=g, dtype=dt),
            lambda x: x.clamp(0, 1),
            lambda t: t,
        ),
    )
}


def _noise(name: str) -> Noise:
    if name not in NOISES:
        raise ValueError(f"unknown perturbation noise {name!r}; use one of {', '.join(NOISES)}")
    return NOISES[name]


def sample_argmax(mu: Tensor, noise: str, n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """n draws of argmax(μ + ε) for μ of shape (..., K): indices of shape (n, ...)."""
    eps = _noise(noise).sample((n, *mu.shape), generator, mu.dtype).to(mu.device)
    return (mu + eps).argmax(-1)


def quadrature(nodes: int, rule: str = "gauss-legendre") -> tuple[Tensor, Tensor]:
    """Nodes t_k in (0, 1) and weights w_k (Σ w = 1) for ∫_0^1 · dt, float64."""
    if nodes < 1:
        raise ValueError(f"the quadrature needs ≥ 1 node, got {nodes}")
    if rule == "post":  # [9085] eq. 10: t_k = k/(K+1), equal weights 1/K
        t = torch.arange(1, nodes + 1, dtype=torch.float64) / (nodes + 1)
        return t, torch.full((nodes,), 1 / nodes, dtype=torch.float64)
    if rule == "gauss-legendre":
        x, w = np.polynomial.legendre.leggauss(nodes)  # on (−1, 1)
        return torch.from_numpy((x + 1) / 2), torch.from_numpy(w / 2)
    raise ValueError(f"the quadrature rule is 'gauss-legendre' or 'post', got {rule!r}")


def argmax_probabilities(
    mu: Tensor, noise: str, *, nodes: int = 256, rule: str = "gauss-legendre", closed_form: bool = True
) -> Tensor:
    """p_i = P[argmax(μ + ε) = i] over the last axis of μ (..., K), in float64. Gumbel: softmax exactly
    (unless closed_form=False); other noises: quadrature of [9085] eq. 10 over t = Φ(ε_i)."""
    noise_ = _noise(noise)
    mu = mu.to(torch.float64)
    if noise_.name == "gumbel" and closed_form:
        return torch.softmax(mu, -1)
    t, w = quadrature(nodes, rule)
    t, w = t.to(mu.device), w.to(mu.device)
    diff = mu[..., :, None] - mu[..., None, :]  # (..., K, K): μ_i − μ_j
    eps = noise_.ppf(t)  # (T,) Φ⁻¹(t_k)
    phi = noise_.cdf(diff[..., None] + eps)  # (..., K, K, T)
    k = mu.shape[-1]
    eye = torch.eye(k, dtype=torch.bool, device=mu.device)[..., None]  # the j = i factor is left out
    prod = torch.where(eye, torch.ones((), dtype=phi.dtype, device=phi.device), phi).prod(-2)  # (..., K, T)
    return (prod * w).sum(-1)
