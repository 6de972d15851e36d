r"""The negative ELBO of a diffusion model along any sampling trajectory, with a discrete (or continuous)
decoder: the likelihood bound of Analytic-DPM's Table 1.

Sources:
  [DDPM] Ho, Jain & Abbeel, NeurIPS 2020, eq. 5 (the bound as a sum of KLs) and Sec. 3.3 (the discrete
         decoder with open edge bins).
  [ADPM] Bao et al., "Analytic-DPM", ICLR 2022, App. F.2 (the bound on a sub-trajectory; one decoder with
         fixed variance β̃ at (s, t) = (1, 2) for every method).
  [DDIM] Song, Meng & Ermon, ICLR 2021, eq. 7 (the non-Markovian forward process q_λ).
  [9152] kexue.fm/archives/9152 "DDPM = 自回归式VAE": the bound as KL between the two joint distributions.

For a trajectory τ_1 < … < τ_K and data x0 (B, …) with d elements per example:

    NELBO(x0) = KL(q(x_{τ_K}|x0) ‖ N(0, I))                                   prior term
              + Σ_{k=2..K} KL(q_λ(x_{τ_{k−1}}|x_{τ_k}, x0) ‖ p(x_{τ_{k−1}}|x_{τ_k}))   one fresh x_t each
              − log p(x0|x_{τ_1})                                             decoder

With τ_K = N the prior term is the usual KL(q(x_N|x0) ‖ N(0, I)). Each step t → s compares q_λ =
N(γx0 + c·x_t, λ²) with p = N(γx̂0 + c·x_t, σ²) (kexue.diffusion.ddim's step, x̂0 from ε_θ(x_t, t)):

    KL = Σ_i ½(λ²/σ_i² − 1 − log(λ²/σ_i²)) + γ²(x0 − x̂0)_i²/(2σ_i²)

σ² may differ per element (a `cov_x0` callable returning a tensor, as NPR/SN heads do). The variance
choices (λ², σ²) are those of the sampler:

| variance        | λ²          | σ²                          |
|-----------------|-------------|-----------------------------|
| "beta_tilde"    | β̃_{s|t}     | β̃_{s|t}                     |
| "beta"          | β̃_{s|t}     | β_{t|s}                     |
| "ddim" (η > 0)  | η²β̃_{s|t}   | η²β̃_{s|t}                  |
| "analytic"      | β̃_{s|t}     | λ² + γ²·cov_x0 (Analytic-DDPM, [ADPM] Table 1) |
| "analytic_ddim" | η²β̃_{s|t}   | λ² + γ²·cov_x0 (η > 0)      |

η = 0 makes q_λ deterministic: its KL to any Gaussian is +∞, so the bound is undefined there.

Decoder, the same for every choice ([ADPM] App. F.2): mean x̂0(x_{τ_1}), variance β̃_{1|2} (unless
`decoder_var` is given).
- levels = L (discrete data on L equally spaced levels in [−1, 1]): the discretised Gaussian of [DDPM]
  Sec. 3.3, P(x) = Φ((x − μ + h)/σ) − Φ((x − μ − h)/σ) with bin half-width h = 1/(L − 1) (8-bit: 1/255;
  17-level digits: 1/16), and open edge bins at ±1. The result bounds −log P(x0), a discrete NLL.
- levels = None (continuous data): the Gaussian density N(x0; x̂0, σ_dec²), a bound on −log p(x0) in nats.
  This is the "one shared decoder" of the 2-D oracle table (reference/diffusion.md §2.6), which it
  reproduces with the default σ_dec² = β̃_{1|2} (tests/diffusion/test_likelihood.py).
x̂0 is clipped to [−1, 1] by default (clip_x0) for every choice, as the official ELBO code does for
Analytic-DPM; for data in [−1, 1] the clip can only shrink ‖x0 − x̂0‖. Pass clip_x0=False for
unbounded (continuous toy) data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from kexue.diffusion import ddim, schedules
from kexue.diffusion.analytic import cov_fn
from kexue.diffusion.ddpm import q_sample, x0_from_eps

VARIANCES = ("beta_tilde", "beta", "ddim", "analytic", "analytic_ddim")


@dataclass(frozen=True)
class VarianceChoice:
    """One reverse-variance choice of the module table."""

    variance: str = "beta_tilde"  # a row of the module table
    eta: float = 0.0  # DDIM's η, for "ddim" and "analytic_ddim" (must be > 0 there)
    cov_x0: ddim.CovFn | None = None  # "analytic*": (t, x_t, ε̂) → E[Cov(x0|x_t)]/d, scalar or per element

    def __post_init__(self) -> None:
        if self.variance not in VARIANCES:
            raise ValueError(f"unknown variance {self.variance!r}; use one of {', '.join(VARIANCES)}")
        if not (math.isfinite(self.eta) and self.eta >= 0):
            raise ValueError(f"η must be a finite number ≥ 0, got {self.eta}")
        if self.variance in ("ddim", "analytic_ddim") and self.eta == 0:
            raise ValueError(
                f"variance {self.variance!r} with η = 0: the forward process q_λ is deterministic "
                "(λ² = 0), so every KL term and the NELBO are +∞; use η > 0"
            )
        if self.variance == "analytic" and self.eta != 0:
            raise ValueError("'analytic' is Analytic-DDPM (λ² = β̃); use 'analytic_ddim' for η > 0")
        if self.variance.startswith("analytic") != (self.cov_x0 is not None):
            raise ValueError(
                "the analytic variances need cov_x0 (or ms_eps), and the others take none; "
                f"got variance={self.variance!r} with cov_x0={'given' if self.cov_x0 else 'None'}"
            )

    def variances(self, t: int, x: Tensor, eps: Tensor, abar_t: Tensor, abar_s: Tensor) -> tuple:
        """(λ², σ²) of the step t → s; σ² is a scalar or, from a per-element cov_x0, shaped like x."""
        if self.variance in ("beta_tilde", "beta", "ddim"):
            return ddim.reverse_variances(abar_t, abar_s, self.variance, self.eta)
        lam2, _ = ddim.reverse_variances(abar_t, abar_s, "ddim" if self.eta > 0 else "beta_tilde", self.eta)
        cov = torch.as_tensor(self.cov_x0(t, x, eps), dtype=x.dtype, device=x.device).clamp(0, 1)
        return lam2, lam2 + ddim.gamma(abar_t, abar_s, lam2) ** 2 * cov  # [ADPM] Thm 1 + Thm 2


def choice(
    variance: str = "beta_tilde",
    *,
    eta: float = 0.0,
    ms_eps: Tensor | None = None,
    cov_x0: ddim.CovFn | None = None,
    abar: Tensor | None = None,
) -> VarianceChoice:
    """A VarianceChoice; for "analytic" and "analytic_ddim", ms_eps (with abar) or cov_x0 gives cov_x0."""
    if ms_eps is not None:
        if cov_x0 is not None or abar is None:
            raise ValueError("pass either ms_eps (with abar) or cov_x0, not both")
        if not variance.startswith("analytic"):
            raise ValueError(f"ms_eps is only used by the analytic variances, not {variance!r}")
        cov_x0 = cov_fn(ms_eps, abar)
    if variance == "analytic" and eta != 0:
        raise ValueError("'analytic' is Analytic-DDPM (λ² = β̃); use 'analytic_ddim' for η > 0")
    return VarianceChoice(variance, eta, cov_x0)


# --------------------------------------------------------------------------------------------- terms
def normal_kl(mean_q: Tensor, var_q: Tensor, mean_p: Tensor | float, var_p: Tensor) -> Tensor:
    """KL(N(mean_q, var_q) ‖ N(mean_p, var_p)) per element, in nats."""
    r = var_q / var_p
    return 0.5 * (r - 1 - torch.log(r) + (mean_q - mean_p) ** 2 / var_p)


def prior_kl(x0: Tensor, abar_t: Tensor) -> Tensor:
    """KL(q(x_t|x0) ‖ N(0, I)) = KL(N(√ᾱ_t x0, β̄_t) ‖ N(0, 1)) summed per example, (B, …) → (B,)."""
    return normal_kl(abar_t.sqrt() * x0, 1 - abar_t, 0.0, torch.ones_like(abar_t)).flatten(1).sum(1)


def _log_ndtr_diff(a: Tensor, b: Tensor) -> Tensor:
    """log(Φ(b) − Φ(a)) for a < b, stable in both tails (mirrored to the left tail where a > 0)."""
    flip = a > 0
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    lhi = torch.special.log_ndtr(hi)
    return lhi + torch.log1p(-torch.exp(torch.special.log_ndtr(lo) - lhi))


def discretized_gaussian_log_prob(
    x: Tensor, mean: Tensor, var: Tensor | float, *, half_width: float
) -> Tensor:
    r"""log P(x) per element for data on levels spaced 2h apart in [−1, 1], edge bins open.  [DDPM] Sec. 3.3

    P(x) = Φ((x − μ + h)/σ) − Φ((x − μ − h)/σ); at the lowest level the lower limit is −∞, at the highest
    the upper limit is +∞, so the probabilities of all levels sum to 1.
    """
    std = torch.as_tensor(var, dtype=x.dtype, device=x.device).sqrt()
    a, b = (x - mean - half_width) / std, (x - mean + half_width) / std
    lowest, highest = x < -1 + half_width, x > 1 - half_width
    a = a.masked_fill(lowest, -math.inf)  # open edge bins
    b = b.masked_fill(highest, math.inf)
    inner = _log_ndtr_diff(a, b)
    return torch.where(
        lowest, torch.special.log_ndtr(b), torch.where(highest, torch.special.log_ndtr(-a), inner)
    )


def gaussian_log_density(x: Tensor, mean: Tensor, var: Tensor | float) -> Tensor:
    """log N(x; mean, var) per element."""
    var = torch.as_tensor(var, dtype=x.dtype, device=x.device)
    return -0.5 * (torch.log(2 * math.pi * var) + (x - mean) ** 2 / var)


def _decoder_nll(x0: Tensor, x0_hat: Tensor, var: Tensor, levels: int | None) -> Tensor:
    if levels is None:
        lp = gaussian_log_density(x0, x0_hat, var)
    else:
        lp = discretized_gaussian_log_prob(x0, x0_hat, var, half_width=1 / (levels - 1))
    return -lp.flatten(1).sum(1)  # (B,)


@torch.no_grad()
def nelbo_terms(
    eps_fn: ddim.EpsFn,
    x0: Tensor,
    abar: Tensor,
    traj: Tensor,
    choices: Mapping[str, VarianceChoice],
    *,
    levels: int | None = 256,
    decoder_var: float | None = None,
    clip_x0: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    r"""The NELBO's terms for several variance choices from the same draws, in nats.

    x0: (B, …) data (in [−1, 1] on `levels` levels, or continuous with levels=None); traj: ascending (K,).
    Each step's x_t ~ q(x_t|x0) is drawn once from `generator` and its ε_θ(x_t, t) is shared by all
    choices (common random numbers: differences between choices have a much smaller Monte Carlo error).
    Returns name → (K + 1, B): row 0 the prior term at τ_K, rows 1..K−1 the KL of the steps
    τ_K → τ_{K−1}, …, τ_2 → τ_1, row K the decoder's −log p(x0|x_{τ_1}).
    """
    n = len(abar) - 1
    ddim._check_traj(traj, n)
    if levels is not None and (not isinstance(levels, int) or levels < 2):
        raise ValueError(f"levels must be an integer ≥ 2 (or None for continuous data), got {levels!r}")
    if n < 2:
        raise ValueError("the decoder variance β̃_{1|2} needs N ≥ 2 diffusion steps")
    abar = abar.to(device=x0.device, dtype=x0.dtype)
    dec_var = ddim.beta_tilde(abar[2], abar[1]) if decoder_var is None else torch.as_tensor(decoder_var)
    terms = {name: [prior_kl(x0, abar[int(traj[-1])])] for name in choices}
    for t, s in schedules.steps(traj):
        a_t, a_s = abar[t], abar[s]
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x = q_sample(x0, t, abar, noise)  # one fresh x_t per term
        eps = eps_fn(x, torch.full((len(x),), t, device=x.device, dtype=torch.int64))
        x0_hat = x0_from_eps(x, eps, a_t)
        if clip_x0:
            x0_hat = x0_hat.clamp(-1, 1)
        if s == 0:  # the decoder, identical for every choice ([ADPM] App. F.2)
            nll = _decoder_nll(x0, x0_hat, dec_var.to(x0), levels)
            for name in choices:
                terms[name].append(nll)
            break
        for name, c in choices.items():
            lam2, var = c.variances(t, x, eps, a_t, a_s)
            g = ddim.gamma(a_t, a_s, lam2)
            kl = normal_kl(g * x0, lam2, g * x0_hat, var)  # means differ by γ(x0 − x̂0); c·x_t cancels
            terms[name].append(kl.flatten(1).sum(1))
    return {name: torch.stack(ts) for name, ts in terms.items()}


def nelbo_many(eps_fn, x0, abar, traj, choices: Mapping[str, VarianceChoice], **kw) -> dict[str, Tensor]:
    """name → per-example NELBO (B,) in nats; keywords as in `nelbo_terms`."""
    return {name: t.sum(0) for name, t in nelbo_terms(eps_fn, x0, abar, traj, choices, **kw).items()}


def nelbo(
    eps_fn: ddim.EpsFn,
    x0: Tensor,
    abar: Tensor,
    traj: Tensor,
    *,
    variance: str = "beta_tilde",
    eta: float = 0.0,
    ms_eps: Tensor | None = None,
    cov_x0: ddim.CovFn | None = None,
    levels: int | None = 256,
    decoder_var: float | None = None,
    clip_x0: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-example NELBO (B,) in nats for one variance choice (see the module docstring)."""
    c = choice(variance, eta=eta, ms_eps=ms_eps, cov_x0=cov_x0, abar=abar)
    kw = dict(levels=levels, decoder_var=decoder_var, clip_x0=clip_x0, generator=generator)
    return nelbo_many(eps_fn, x0, abar, traj, {variance: c}, **kw)[variance]


def bits_per_dim(nelbo_nats: Tensor | float, dims: int) -> Tensor | float:
    """NELBO/(d·ln 2): bits per dimension of a discrete-decoder bound ([ADPM] App. F.2); no offset."""
    return nelbo_nats / (dims * math.log(2))


def nats_per_dim(nelbo_nats: Tensor | float, dims: int) -> Tensor | float:
    """NELBO/d: the unit of the continuous 2-D oracle table (reference/diffusion.md §2.6)."""
    return nelbo_nats / dims
