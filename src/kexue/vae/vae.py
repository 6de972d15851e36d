"""The variational autoencoder of [5253]/[5343] ([KW14]): Gaussian posterior, N(0, I) prior, Bernoulli or
Gaussian likelihood, trained on the negative ELBO or on the IWAE bound.

    z = μ(x) + σ(x)⊙ε,  ε ~ N(0, I)                                           ([5253] eq. 6)
    L(x) = E_z[−log p(x|z)] + KL(N(μ, σ²) ‖ N(0, I))                           ([5343] eq. 13)
    KL = ½ Σ_i (μ_i² + σ_i² − log σ_i² − 1)                                    ([5253] eq. 4, [5343] eq. 16)
    Bernoulli: −log p(x|z) = Σ_pixels BCE(x, ρ(z)),  ρ = sigmoid(logits)       ([5343] eq. 18)
    Gaussian:  −log p(x|z) = Σ_pixels ½((x − m(z))²/σ_x² + log σ_x² + log 2π)  ([5343] eq. 20)

Notation box: Su writes p(z|x) for the encoder and q(x|z), q(z) for the decoder and prior — the reverse of
[KW14] and of this code, where q(z|x) is the encoder and p(x|z), p(z) the generative model.

Units: every loss is per example, in nats, SUMMED over pixels (Su's reference configuration,
reference/generative.md §1.1), so −ELBO on binarised MNIST reads ≈ 90–100 and is comparable with papers.
Geometric view [7725]: each x is an ellipse centred at μ(x) with axes σ(x); the KL pulls the ellipses
towards the unit circle N(0, I) so that together they cover it (`experiments/vae.py` draws it).

Randomness: `loss` (training) draws ε — and the dynamic binarisation when configured — from torch's global
generator, which the trainer checkpoints; every other method that samples takes `eps` or `generator`.

Sources: [KW14] Kingma & Welling, ICLR 2014; [BGS16] Burda et al., ICLR 2016 (IWAE, `kexue.vae.iwae`);
[5253] kexue.fm/archives/5253; [5343] kexue.fm/archives/5343; [7725] kexue.fm/archives/7725.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.data.binarize import check_unit, dynamic_binarize
from kexue.estimators.gaussian import gaussian_kl_standard, gaussian_log_prob, reparameterize
from kexue.vae.iwae import log_weights
from kexue.vae.nets import decoder_for, encoder_for

LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass(frozen=True)
class VAEConfig:
    shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W) of the images
    z_dim: int = 20  # latent size d (reference §4 #1: 784-400-20; Su's [5253] code uses 2)
    arch: str = "mlp"  # "mlp" or "conv" (conv needs H, W divisible by 4)
    hidden: tuple[int, ...] = (400,)  # MLP hidden widths of the encoder; the decoder mirrors them
    width: int = 32  # conv channels of the first layer (the second has 2·width)
    likelihood: str = "bernoulli"  # p(x|z): "bernoulli" (decoder → logits; x in [0, 1]) or "gaussian"
    x_logvar: float | None = None  # Gaussian only: fixed log σ_x², or None to learn one per pixel
    binarize: str = "none"  # "dynamic": loss redraws x ~ Bernoulli(x) each call [SM08]; "none": x as given
    k_train: int = 1  # samples in the training objective: 1 = ELBO [KW14], K > 1 = IWAE bound L_K [BGS16]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))  # JSON overrides arrive as lists
        object.__setattr__(self, "hidden", tuple(self.hidden))
        checks = [
            (len(self.shape) == 3 and min(self.shape) >= 1, f"shape must be (C, H, W), got {self.shape}"),
            (self.z_dim >= 1, f"z_dim must be ≥ 1, got {self.z_dim}"),
            (self.arch in ("mlp", "conv"), f"arch must be 'mlp' or 'conv', got {self.arch!r}"),
            (self.width >= 1, f"width must be ≥ 1, got {self.width}"),
            (
                self.arch == "mlp" or (self.shape[-2] % 4 == 0 and self.shape[-1] % 4 == 0),
                f"the conv VAE nets need H and W divisible by 4, got {self.shape[1:]} (use arch='mlp')",
            ),
            (
                self.likelihood in LIKELIHOODS,
                f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}",
            ),
            (
                self.binarize in ("none", "dynamic"),
                f"binarize must be 'none' or 'dynamic', got {self.binarize!r}",
            ),
            (self.k_train >= 1, f"k_train must be ≥ 1, got {self.k_train}"),
            (
                self.x_logvar is None or self.likelihood == "gaussian",
                "x_logvar is the Gaussian decoder's variance; the Bernoulli decoder has none",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class VAE(nn.Module):
    """q(z|x) = N(μ(x), diag σ²(x)), p(z) = N(0, I), p(x|z) Bernoulli(sigmoid(logits(z))) or Gaussian.

    Shapes: x (B, C, H, W); μ, log σ², z (B, Z) — or (K, B, Z) for K samples per image; decoder output
    (…, C, H, W): logits (Bernoulli) or means (Gaussian).
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        c = self.config = config
        self.encoder = encoder_for(c.arch, c.shape, 2 * c.z_dim, hidden=c.hidden, width=c.width)
        self.decoder = decoder_for(c.arch, c.z_dim, c.shape, hidden=c.hidden[::-1], width=c.width)
        if c.likelihood == "gaussian" and c.x_logvar is None:
            self.x_logvar = nn.Parameter(torch.zeros(c.shape))  # log σ_x² per pixel, learned
        elif c.likelihood == "gaussian":
            self.register_buffer("x_logvar", torch.full(c.shape, float(c.x_logvar)))

    # ------------------------------------------------------------------------------ the two halves
    def check_images(self, x: Tensor) -> None:
        """One-line ValueError unless x is (B, C, H, W) of the configured shape (and in [0, 1] for
        the Bernoulli likelihood)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.config.shape:
            raise ValueError(
                f"the VAE expects images of shape (B, {', '.join(map(str, self.config.shape))}), "
                f"got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"the VAE expects float images (e.g. .floats('unit')), got dtype {x.dtype}")
        if self.config.likelihood == "bernoulli" or self.config.binarize == "dynamic":
            check_unit(x, "the Bernoulli likelihood")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, log σ²) of q(z|x), each (B, Z) ([5253]: two heads, log σ² needs no activation)."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (B, Z) each
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        """The likelihood's parameters: (…, Z) → (…, C, H, W) logits (Bernoulli) or means (Gaussian)."""
        return self.decoder(z)

    def mean(self, params: Tensor) -> Tensor:
        """E[x|z] from the decoder's output: sigmoid(logits) = ρ, or the Gaussian mean itself."""
        return torch.sigmoid(params) if self.config.likelihood == "bernoulli" else params

    # ------------------------------------------------------------------------------ densities
    def log_px_z(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x|z) summed over pixels: x (B, C, H, W), params (…, B, C, H, W) → (…, B)."""
        if self.config.likelihood == "bernoulli":
            # x·l − softplus(l) = x log ρ + (1 − x) log(1 − ρ), stable in the logits l  [5343] eq. 18
            return (x * params - F.softplus(params)).flatten(-3).sum(-1)
        return gaussian_log_prob(x.flatten(-3), params.flatten(-3), self.x_logvar.flatten())  # [5343] eq. 20

    def log_prior(self, z: Tensor) -> Tensor:
        """log N(z; 0, I), (…, Z) → (…)."""
        return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x, z) = log p(x|z) + log p(z): z (…, B, Z) → (…, B) (the IWAE protocol)."""
        return self.log_px_z(x, self.decode(z)) + self.log_prior(z)

    # ------------------------------------------------------------------------------ objectives
    def elbo_terms(
        self, x: Tensor, *, eps: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(rec, kl) per example, each (B,): rec = −log p(x|z) at one z = μ + σ⊙ε, kl in closed form."""
        mu, logvar = self.encode(x)  # (B, Z) each
        z = reparameterize(mu, logvar, eps=eps, generator=generator)  # [5253] eq. 6
        rec = -self.log_px_z(x, self.decode(z))  # (B,)
        kl = gaussian_kl_standard(mu, logvar)  # (B,)  [5253] eq. 4
        return rec, kl

    def elbo(
        self, x: Tensor, *, eps: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """The one-sample ELBO estimate −(rec + kl) per example, (B,), in nats ([5343] eq. 13)."""
        rec, kl = self.elbo_terms(x, eps=eps, generator=generator)
        return -(rec + kl)

    def loss(self, batch) -> dict[str, Tensor]:
        """The training loss (mean over the batch of per-example nats): −ELBO, or −L_K when k_train > 1.

        batch: (x, …) or x, with x (B, C, H, W); x is binarised here first when `binarize="dynamic"`.
        """
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        self.check_images(x)
        if self.config.binarize == "dynamic":
            x = dynamic_binarize(x)  # [SM08]: a fresh binary image at every visit
        if self.config.k_train == 1:
            rec, kl = self.elbo_terms(x)
            return {"rec": rec.mean().detach(), "kl": kl.mean().detach(), "loss": (rec + kl).mean()}
        mu, logvar = self.encode(x)
        eps = torch.randn((self.config.k_train, *mu.shape), device=mu.device, dtype=mu.dtype)  # (K, B, Z)
        lw = log_weights(self, x, mu, logvar, eps)  # (K, B)
        bound = torch.logsumexp(lw, 0) - math.log(self.config.k_train)  # [BGS16] eq. 8
        return {
            "elbo": lw.mean().detach(),
            "kl": gaussian_kl_standard(mu, logvar).mean().detach(),
            "loss": -bound.mean(),
        }

    # ------------------------------------------------------------------------------ generation
    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, binary: bool = False) -> Tensor:
        """n images (n, C, H, W) from z ~ N(0, I): the means E[x|z], or Bernoulli draws if `binary`."""
        p = next(self.parameters())
        z = torch.randn(n, self.config.z_dim, generator=generator, device=p.device, dtype=p.dtype)  # (n, Z)
        x = self.mean(self.decode(z))  # (n, C, H, W)
        if binary:
            if self.config.likelihood != "bernoulli":
                raise ValueError("binary samples need the Bernoulli likelihood")
            x = torch.bernoulli(x, generator=generator)
        return x

    @torch.no_grad()
    def reconstruct(
        self, x: Tensor, *, generator: torch.Generator | None = None, sample: bool = False
    ) -> Tensor:
        """E[x|z] at z = μ(x) (the posterior mean), or at one z ~ q(z|x) if `sample`; (B, C, H, W)."""
        self.check_images(x)
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator=generator) if sample else mu
        return self.mean(self.decode(z))
