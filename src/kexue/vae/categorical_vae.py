"""The categorical (discrete-latent) VAE of [6705] and [GS], with a selectable gradient estimator.

Sources: [6705] kexue.fm/archives/6705 (漫谈重参数: Gumbel-softmax, the score function and its variance);
[GS] Jang, Gu & Poole, "Categorical Reparameterization with Gumbel-Softmax", ICLR 2017, and its reference
code (github.com/ericjang/gumbel-softmax: 784-512-256-(20×10) MLPs, dynamic binarization, analytic KL);
[NVIL] Mnih & Gregor, "Neural Variational Inference and Learning in Belief Networks", ICML 2014.

Model. z = (z_1..z_N), each z_n a one-hot over K classes; prior p(z) uniform; encoder q(z|x) = Π_n
Cat(softmax(o_n(x))); decoder p(x|z) Bernoulli over D pixels with logits dec(z). The bound, in nats:

    −ELBO(x) = E_{z~q}[−log p(x|z)] + KL(q(z|x) ‖ p(z))                                       [GS] eq. 7
    KL(q ‖ uniform) = Σ_n Σ_k q_nk log q_nk + N log K          (Su's code drops the constant)   [6705]

The KL is analytic; only the reconstruction term needs a gradient estimator (`estimator`):

- "gumbel":    z̃ = softmax((o + g)/τ), g ~ Gumbel; pathwise gradient of the *relaxed* objective   [6705]
- "st-gumbel": forward onehot(argmax(o + g)), backward through z̃ (straight-through Gumbel)         [GS] §2.2
- "sf":        score function (f − b)∇log q(z|x) with b = c + b_ψ(x): a moving average c plus, by
               default, a learned input-dependent residual b_ψ(x) fitted to f − c by squared error  [NVIL]
- "sf-plain":  the score function with b = 0                                                 [6705] eq. 17

Whatever the estimator, `loss(batch)` reports the −ELBO of the *discrete* model ("nelbo": the decoder fed
the exact Gumbel-max sample onehot(argmax(o + g)), the same noise as the relaxed sample), beside the
surrogate actually minimised ("loss"). For "gumbel" the two differ (the relaxed decoder input); for the
other estimators the surrogate's *value* is the discrete −ELBO (the score term and b_ψ's regression loss
enter with value 0 and only their gradients; the regression loss is logged as "baseline_mse").

Notation: o = `logits` (B, N, K); q = softmax(o); τ = `tau`; f = −log p(x|z) per sample (B,).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.data.transforms import binarize_dynamic
from kexue.estimators.gumbel import gumbel_noise
from kexue.estimators.score_function import MovingAverageBaseline, score_function_surrogate
from kexue.estimators.straight_through import straight_through

ESTIMATORS = ("gumbel", "st-gumbel", "sf", "sf-plain")


@dataclass(frozen=True)
class CategoricalVAEConfig:
    in_dim: int = 784  # D: pixels of a flattened image (28×28 MNIST)
    latents: int = 20  # N categorical latents ([GS] Table 1: 20×10; [6705]'s Keras example: 32×10)
    classes: int = 10  # K classes per latent
    hidden: tuple[int, ...] = (512, 256)  # encoder widths; the decoder mirrors them ([GS] reference code)
    estimator: str = "gumbel"  # gumbel | st-gumbel | sf | sf-plain (module docstring)
    tau: float = 1.0  # Gumbel-softmax temperature τ; `anneal_tau` + HyperparamSchedule move `model.tau`
    baseline_decay: float = 0.99  # "sf": moving average c ← decay·c + (1 − decay)·mean f
    learned_baseline: bool = True  # "sf": add the input-dependent b_ψ(x) of [NVIL] to the moving average
    baseline_hidden: int = 100  # width of b_ψ's one hidden layer ([NVIL] uses 100 units)
    binarize: bool = True  # redraw x ~ Bernoulli(pixel) per batch (dynamic binarization, [GS] code)

    def __post_init__(self) -> None:
        checks = [
            (
                self.estimator in ESTIMATORS,
                f"estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}",
            ),
            (self.in_dim >= 1, f"in_dim must be ≥ 1, got {self.in_dim}"),
            (self.latents >= 1, f"the number of latents N must be ≥ 1, got {self.latents}"),
            (self.classes >= 2, f"each latent needs K ≥ 2 classes, got {self.classes}"),
            (all(h >= 1 for h in self.hidden), f"hidden widths must be ≥ 1, got {self.hidden}"),
            (math.isfinite(self.tau) and self.tau > 0, f"the temperature τ must be > 0, got {self.tau}"),
            (0 <= self.baseline_decay < 1, f"baseline_decay must lie in [0, 1), got {self.baseline_decay}"),
            (self.baseline_hidden >= 1, f"baseline_hidden must be ≥ 1, got {self.baseline_hidden}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def anneal_tau(step: int, *, tau0: float = 1.0, tau_min: float = 0.5, rate: float = 3e-5) -> float:
    """τ_t = max(τ_min, τ0·exp(−r·t)): [GS] §4's schedule; the reference code uses τ0 = 1, τ_min = 0.5,
    r = 3e-5 (refreshed every 1000 steps there, every step here). [6705]'s code instead anneals per batch
    to 0.01 + 0.99·0.999ᵗ, far colder; not used here."""
    if not (tau0 > 0 and tau_min > 0 and rate >= 0):
        raise ValueError(f"need τ0 > 0, τ_min > 0 and rate ≥ 0, got {tau0}, {tau_min}, {rate}")
    return max(tau_min, tau0 * math.exp(-rate * step))


def kl_to_uniform(logits: Tensor) -> Tensor:
    """KL(Π_n Cat(softmax(o_n)) ‖ uniform) = Σ_n Σ_k q log q + N log K per sample; o is (B, N, K)."""
    log_q = F.log_softmax(logits, -1)
    n, k = logits.shape[-2:]
    return (log_q.exp() * log_q).sum((-1, -2)) + n * math.log(k)  # [6705]; [GS] eq. 7's KL term


def bernoulli_nll(x: Tensor, x_logits: Tensor) -> Tensor:
    """−log p(x|z) = Σ_pixels BCE(x, σ(logits)) per sample, x and logits (B, D); nats."""
    return F.binary_cross_entropy_with_logits(x_logits, x, reduction="none").sum(-1)


def negative_elbo(x: Tensor, logits: Tensor, x_logits: Tensor) -> Tensor:
    """The discrete −ELBO per sample: −log p(x|z) + KL(q ‖ uniform), with x_logits = dec(z) for a one-hot
    z ~ q(z|x) (a one-sample estimate of E_q, the KL exact). x (B, D), logits (B, N, K), x_logits (B, D)."""
    return bernoulli_nll(x, x_logits) + kl_to_uniform(logits)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # no activation after the last layer (logits)


class CategoricalVAE(nn.Module):
    """N×K categorical latents, Bernoulli decoder; `loss(batch)` → {"loss": surrogate, "nelbo", …}."""

    def __init__(self, config: CategoricalVAEConfig) -> None:
        super().__init__()
        c = self.config = config
        nk = c.latents * c.classes
        self.encoder = _mlp([c.in_dim, *c.hidden, nk])  # x → o, (B, N·K)
        self.decoder = _mlp([nk, *reversed(c.hidden), c.in_dim])  # z → Bernoulli logits, (B, D)
        self.tau = c.tau  # a plain attribute, so HyperparamSchedule can anneal it
        self.moving_average = MovingAverageBaseline(c.baseline_decay) if c.estimator == "sf" else None
        self.baseline_net = (
            _mlp([c.in_dim, c.baseline_hidden, 1]) if c.estimator == "sf" and c.learned_baseline else None
        )

    def encode(self, x: Tensor) -> Tensor:
        """Encoder logits o (B, N, K) for flattened x (B, D)."""
        return self.encoder(x).view(len(x), self.config.latents, self.config.classes)  # (B, N, K)

    def decode(self, z: Tensor) -> Tensor:
        """Bernoulli logits (B, D) for (relaxed) one-hots z (B, N, K)."""
        return self.decoder(z.flatten(1))  # (B, N·K) → (B, D)

    def _data(self, batch, generator: torch.Generator | None) -> Tensor:
        x = (batch[0] if isinstance(batch, (tuple, list)) else batch).flatten(1)  # (B, D)
        if x.shape[1] != self.config.in_dim:
            raise ValueError(f"the model expects {self.config.in_dim} pixels per image, got {x.shape[1]}")
        return binarize_dynamic(x, generator=generator).to(x.dtype) if self.config.binarize else x

    def loss(self, batch, *, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Mean surrogate ("loss") and the discrete −ELBO ("nelbo" = "recon" + "kl") over the batch, nats.
        Noise (binarization, Gumbel) comes from `generator` (the global one when None, as under Trainer)."""
        est = self.config.estimator
        x = self._data(batch, generator)
        logits = self.encode(x)  # (B, N, K)
        g = gumbel_noise(logits.shape, generator=generator, device=x.device, dtype=logits.dtype)
        hard = F.one_hot((logits + g).argmax(-1), self.config.classes).to(logits.dtype)  # Gumbel-max [6705]
        soft = F.softmax((logits + g) / self.tau, -1)  # Gumbel-softmax, same noise [6705]
        kl = kl_to_uniform(logits)  # (B,)
        extra: dict[str, Tensor] = {}
        if est == "gumbel":
            surrogate = bernoulli_nll(x, self.decode(soft)) + kl  # the relaxed −ELBO
            with torch.no_grad():
                recon = bernoulli_nll(x, self.decode(hard))  # the discrete model's reconstruction
        elif est == "st-gumbel":
            recon = bernoulli_nll(x, self.decode(straight_through(soft)))  # value: one-hot; ∂: soft [GS]
            surrogate = recon + kl
        else:
            recon = bernoulli_nll(x, self.decode(hard))  # decoder gradient is exact given z
            log_q = (hard * F.log_softmax(logits, -1)).sum((-1, -2))  # log q(z|x), (B,)
            b, extra = self._baseline(x, recon)
            score = score_function_surrogate(log_q, recon, b)  # (f − b)·log q, f and b detached [6705] eq. 17
            mse = extra.get("baseline_mse", torch.zeros_like(recon))
            surrogate = recon + kl + (score - score.detach()) + (mse - mse.detach())
        nelbo = (recon + kl).detach()
        out = {"recon": recon.detach().mean(), "kl": kl.detach().mean(), "nelbo": nelbo.mean()}
        out |= {k: v.mean() for k, v in extra.items()}
        out["tau"] = torch.tensor(float(self.tau), device=logits.device)
        return {**out, "loss": surrogate.mean()}

    def _baseline(self, x: Tensor, f: Tensor) -> tuple[Tensor | float, dict[str, Tensor]]:
        """b for the score function: 0 ("sf-plain"), or c (+ b_ψ(x)) ("sf"); b_ψ fits f − c by MSE [NVIL]."""
        if self.moving_average is None:
            return 0.0, {}
        c = self.moving_average(f) if self.training else self.moving_average.value
        c = torch.zeros((), dtype=f.dtype, device=f.device) if c is None else c
        if self.baseline_net is None:
            return c, {}
        b_psi = self.baseline_net(x).squeeze(-1)  # (B,)
        mse = (f.detach() - c - b_psi).pow(2)  # trains ψ only: f and c carry no gradient
        return c + b_psi.detach(), {"baseline_mse": mse}

    @torch.no_grad()
    def evaluate(self, x: Tensor, *, samples: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """The discrete −ELBO per image of already binary x (B, D), averaged over `samples` exact draws
        z ~ q(z|x) (Gumbel-max), nats."""
        logits = self.encode(x)  # (B, N, K)
        total = torch.zeros(len(x), dtype=logits.dtype, device=logits.device)
        for _ in range(samples):
            g = gumbel_noise(logits.shape, generator=generator, device=x.device, dtype=logits.dtype)
            hard = F.one_hot((logits + g).argmax(-1), self.config.classes).to(logits.dtype)
            total += negative_elbo(x, logits, self.decode(hard))
        return total / samples

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n images' pixel means σ(dec(z)) (n, D), z drawn from the uniform prior."""
        c = self.config
        w = next(self.parameters())
        idx = torch.randint(c.classes, (n, c.latents), generator=generator, device=w.device)  # (n, N)
        return torch.sigmoid(self.decode(F.one_hot(idx, c.classes).to(w.dtype)))
