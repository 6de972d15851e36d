"""Likelihood metrics: negative log-likelihood in nats and bits per dimension.

Sources:
  [TOB16] Theis, van den Oord, Bethge, "A note on the evaluation of generative models", ICLR 2016,
          Sec. 3.1: a density p on uniformly dequantized data lower-bounds the discrete likelihood.
  [ODK16] van den Oord, Kalchbrenner, Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016
          (bits/dim for models with an exact discrete likelihood).

Bits/dim is −log₂ P(x) / D for a D-dimensional discrete x. Density models see dequantized data
y = (k + u)·Δ with u ~ U[0, 1)^D and bin width Δ = interval / num_bins; by Jensen's inequality on each bin,
    log P(k) = log ∫_{bin k} p(y) dy = D·log Δ + log E_u p(y) ≥ D·log Δ + E_u log p(y),
so E[−log p(y)] − D·log Δ upper-bounds the discrete NLL, and `bits_per_dim` converts it [TOB16] Sec. 3.1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def bits_per_dim(
    nll_nats: float | Tensor, num_dims: int, *, num_bins: int, interval: float = 1.0
) -> float | Tensor:
    """Discrete NLL bound in bits/dim from a continuous NLL on dequantized data.

    nll_nats: −log p(y) in nats for one D-dimensional example (a float), or per example (B,) (a Tensor,
        returned per example), where p is a density on data whose every coordinate spans an interval of
        width `interval` that was split into `num_bins` equal bins.
    bpd = (nll + D·ln(num_bins / interval)) / (D·ln 2)   [TOB16] Sec. 3.1, with Δ = interval / num_bins.

    Conventions: 8-bit images scaled to [0, 1] → interval=1, num_bins=256; the same images in [−1, 1]
    → interval=2 (the density is 2^{−D} times smaller there, and the ln(1/Δ) term makes up for it).
    """
    if num_dims < 1 or num_bins < 1 or not interval > 0:
        raise ValueError(
            f"bits_per_dim: need num_dims ≥ 1, num_bins ≥ 1 and interval > 0, got "
            f"num_dims={num_dims}, num_bins={num_bins}, interval={interval}"
        )
    log_inv_delta = math.log(num_bins / interval)  # −ln Δ per dimension
    if isinstance(nll_nats, Tensor):
        return (nll_nats.to(torch.float64) + num_dims * log_inv_delta) / (num_dims * math.log(2))
    return (float(nll_nats) + num_dims * log_inv_delta) / (num_dims * math.log(2))


def nll_bits_per_dim_discrete(log_probs_nats: Tensor, num_dims: int) -> float:
    """Bits/dim of a model with an exact discrete likelihood: −mean_b log P(x_b) / (D·ln 2)  [ODK16].

    log_probs_nats: (B,) log P(x_b) in nats, each summed over the D = num_dims coordinates of x_b.
    """
    lp = torch.as_tensor(log_probs_nats, dtype=torch.float64)
    if lp.dim() != 1 or lp.numel() == 0 or num_dims < 1:
        raise ValueError(
            f"nll_bits_per_dim_discrete: need non-empty (B,) log-probabilities and num_dims ≥ 1, "
            f"got shape {tuple(lp.shape)} and num_dims={num_dims}"
        )
    if (lp > 0).any():
        raise ValueError(
            "nll_bits_per_dim_discrete: a discrete log-probability is > 0 (P > 1); "
            "pass log P in nats, not a log-density"
        )
    return float(-lp.mean() / (num_dims * math.log(2)))


def exact_nll(log_prob_fn: Callable[[Tensor], Tensor], x: Tensor) -> float:
    """Mean negative log-density −mean_n log p(x_n) in nats, for toy densities with an exact log p.

    log_prob_fn: maps x (N, ...) to log p(x) of shape (N,);  x: (N, ...) evaluation points.
    Raises ValueError when some log p is −inf, +inf or NaN (a point outside the support, say).
    """
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"exact_nll: x must be a non-empty (N, ...) tensor, got shape {tuple(x.shape)}")
    lp = log_prob_fn(x)
    if lp.shape != (x.shape[0],):
        raise ValueError(
            f"exact_nll: log_prob_fn must return shape ({x.shape[0]},) for x of shape "
            f"{tuple(x.shape)}, got {tuple(lp.shape)}; sum log p over the event dimensions"
        )
    lp = lp.to(torch.float64)
    bad = ~torch.isfinite(lp)
    if bad.any():
        n_ninf, n_nan = int((lp == -math.inf).sum()), int(lp.isnan().sum())
        n_pinf = int(bad.sum()) - n_ninf - n_nan
        raise ValueError(
            f"exact_nll: log p is not finite at {int(bad.sum())} of {len(lp)} points "
            f"({n_ninf} −inf, {n_nan} NaN, {n_pinf} +inf); check the support of the density "
            "and the points passed"
        )
    return float(-lp.mean())


@torch.no_grad()
def dequantized_bits_per_dim(
    log_prob_fn: Callable[[Tensor], Tensor],
    k: Tensor,
    levels: int,
    *,
    seed: int = 0,
    batch_size: int = 500,
    device: torch.device | str | None = None,
) -> float:
    """Bits/dim bound of a density on discrete images, with fixed dequantization noise (comparable runs).

    k: (N, …) integer grey levels in [0, levels − 1]; log_prob_fn maps y = (k + u)/levels, u ~ U[0, 1)
    (a (B, …) float32 batch on `device`), to log p(y) of shape (B,). Returns [TOB16]'s bound
    (E[−log p(y)] + D·ln levels)/(D·ln 2), averaged over the N images; `seed` fixes u.
    """
    from kexue.data.transforms import dequantize

    if k.dim() < 2 or len(k) == 0:
        raise ValueError(
            f"dequantized_bits_per_dim: k must be a non-empty (N, …) tensor, got {tuple(k.shape)}"
        )
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for chunk in k.split(batch_size):
        y = dequantize(chunk, levels, generator=g).to(device or "cpu")
        lp = log_prob_fn(y)
        if lp.shape != (len(chunk),):
            raise ValueError(f"log_prob_fn must return shape ({len(chunk)},), got {tuple(lp.shape)}")
        total += float(-lp.double().sum())
    return float(bits_per_dim(total / len(k), k[0].numel(), num_bins=levels))
