r"""Su's one-step clustering VAE: latent (z, y), a Gaussian per cluster, a classifier p(y|z).  [5887]

The joint KL of [5887] eq. (2) with the factorisation of eq. (3),

    p(z, y|x) = p(y|z) p(z|x),   q(x|z, y) = q(x|z),   q(z, y) = q(z|y) q(y),             [5887] eq. (3)

becomes the per-sample loss, with z ~ p(z|x) by reparameterisation,

    −log q(x|z) + Σ_y p(y|z) log p(z|x)/q(z|y) + KL(p(y|z) ‖ q(y)).                      [5887] eq. (5)

Su's choices: p(z|x) = N(μ(x), σ²(x)); q(x|z) = N(G(z), const) (a weighted MSE); q(z|y) = N(μ_y, I)
with learned means and unit variance; q(y) uniform; p(y|z) a softmax classifier. With z = μ + σ⊙ε the
term ½‖(z − μ)/σ‖² = ½‖ε‖² carries no parameters, so the middle term is taken as

    log p(z|x)/q(z|y) ≃ −½ Σ_i log σ_i²(x) + ½ ‖z − μ_y‖²                              [5887] eq. (8)

Read from Su's code (bojone/vae, vae_keras_cluster.py, last revision; reference/generative.md §1.3):
- reconstruction λ · ½ Σ_pixels (x − x̂)² with λ = 2.5, sigmoid output, data in [0, 1];
- eq. (8) evaluated at the *sampled* z for all K clusters, then contracted with p(y|z) (a batch_dot);
- the categorical term is the per-sample Σ_y p log(p + 1e-7) = KL(p(y|z) ‖ uniform) − log K;
- μ_y zero-initialised (all clusters start equal: seeds diverge, reference §4 row 4);
- the classifier sees the sampled z in the loss, and μ(x) when clustering;
- encoder two stride-2 3×3 convs (32, 64 filters, ReLU) → dense μ, log σ²; decoder dense → two stride-2
  transposed convs (64, 32, ReLU) → 3×3 transposed conv with a sigmoid; classifier 20-256-10 (ReLU);
  Keras initialisation (Glorot-uniform weights, zero biases); Adam, batch 100, 50 epochs.
Every term is a batch mean (Keras `K.mean(·, 0)` before `K.sum`). `arch="mlp"` swaps the conv encoder and
decoder for dense ones (not Su's; a cheaper option for CPU-budget runs), leaving the loss unchanged.

Notation: `mu`, `logvar` are μ(x), log σ²(x); `mu_y` (K, D) the cluster means; `p_y` (B, K) is p(y|z);
`lam` is λ. Padding differs from Keras "same" by where the odd pixel goes (PyTorch pads both sides).

Sources: [5887] kexue.fm/archives/5887 "变分自编码器（四）：一步到位的聚类方案"; code bojone/vae
vae_keras_cluster.py (no licence: re-implemented from the formulas).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kexue.estimators.gaussian import reparameterize

CAT_EPS = 1e-7  # Keras K.epsilon() inside Su's log(p + ε)


def cluster_kl(z: Tensor, logvar: Tensor, mu_y: Tensor, p_y: Tensor) -> Tensor:
    """Σ_y p(y|z) [−½ Σ_i log σ_i² + ½ ‖z − μ_y‖²]; z, logvar (B, D), mu_y (K, D), p_y (B, K) → (B,).

    [5887] eq. (8), contracted with p(y|z) as Su's batch_dot. It equals Σ_y p(y|z) log p(z|x)/q(z|y)
    plus ½‖ε‖², the constant the post drops.
    """
    per_y = -0.5 * (logvar.unsqueeze(1) - (z.unsqueeze(1) - mu_y).pow(2))  # (B, K, D)  [5887] eq. (8)
    return torch.einsum("bk,bkd->b", p_y, per_y)  # Σ_y p(y|z)·(…), summed over D


def categorical_term(p_y: Tensor) -> Tensor:
    """Σ_y p log(p + 1e-7) per sample, (B, K) → (B,): KL(p ‖ uniform) less the constant log K.  [5887] (5)"""
    return (p_y * torch.log(p_y + CAT_EPS)).sum(-1)


def reconstruction_term(x: Tensor, x_hat: Tensor) -> Tensor:
    """½ Σ_pixels (x − x̂)² per sample; (B, C, H, W) → (B,): −log q(x|z) up to a constant, unit variance."""
    return 0.5 * (x - x_hat).pow(2).flatten(1).sum(1)


@dataclass(frozen=True)
class ClusterVAEConfig:
    shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W); H and W divisible by 4 (two stride-2 convs)
    latent: int = 20  # D, Su's latent_dim
    clusters: int = 10  # K, Su's num_classes
    arch: str = "conv"  # "conv": Su's nets; "mlp": dense encoder/decoder (reference §4 row 4), ~3× cheaper
    filters: int = 32  # first conv block; the second has twice as many (Su: 16 doubled twice → 32, 64)
    mlp: tuple[int, ...] = (512, 256)  # hidden widths of the "mlp" encoder (the decoder mirrors them)
    hidden: int = 256  # classifier width, Su's intermediate_dim
    lam: float = 2.5  # λ, weight of ½Σ(x − x̂)² (Su's lamb; his first revision had 5)
    keras_init: bool = True  # Glorot-uniform weights and zero biases, as in Su's Keras code

    def __post_init__(self) -> None:
        c, h, w = self.shape
        if c < 1 or h < 4 or w < 4 or h % 4 or w % 4:
            raise ValueError(
                f"ClusterVAEConfig: shape must be (C, H, W) with H, W divisible by 4, got {self.shape}"
            )
        if self.arch not in ("conv", "mlp"):
            raise ValueError(f"ClusterVAEConfig: arch must be 'conv' or 'mlp', got {self.arch!r}")
        if min(self.latent, self.filters, self.hidden, *self.mlp) < 1 or self.clusters < 2:
            raise ValueError(
                f"ClusterVAEConfig: latent, filters, hidden must be ≥ 1 and clusters ≥ 2, got "
                f"{self.latent}, {self.filters}, {self.hidden}, {self.clusters}"
            )
        if not (math.isfinite(self.lam) and self.lam > 0):
            raise ValueError(f"ClusterVAEConfig: lam must be a positive number, got {self.lam}")


def _keras_init(module: nn.Module) -> None:
    """Glorot-uniform weights, zero biases (Keras defaults; torch's fan sums match Keras's for both convs)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def _conv_nets(cfg: ClusterVAEConfig):
    """Su's encoder and decoder: two stride-2 3×3 convs each way; returns the six pieces ClusterVAE keeps."""
    c, h, w = cfg.shape
    f1, f2 = cfg.filters, 2 * cfg.filters
    flat = f2 * (h // 4) * (w // 4)
    encoder = nn.Sequential(
        nn.Conv2d(c, f1, 3, stride=2, padding=1), nn.ReLU(),  # (B, f1, H/2, W/2)
        nn.Conv2d(f1, f2, 3, stride=2, padding=1), nn.ReLU(),  # (B, f2, H/4, W/4)
        nn.Flatten(),  # (B, f2·H/4·W/4)
    )  # fmt: skip
    decoder = nn.Sequential(
        nn.ConvTranspose2d(f2, f2, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),  # (B, f2, H/2, W/2)
        nn.ConvTranspose2d(f2, f1, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),  # (B, f1, H, W)
        nn.ConvTranspose2d(f1, c, 3, padding=1), nn.Sigmoid(),  # (B, C, H, W)
    )  # fmt: skip
    to_mu, to_logvar = nn.Linear(flat, cfg.latent), nn.Linear(flat, cfg.latent)  # μ(x), log σ²(x)
    from_z = nn.Linear(cfg.latent, flat)  # no activation, as in Su's decoder
    return encoder, to_mu, to_logvar, from_z, decoder, (f2, h // 4, w // 4)


def _mlp_nets(cfg: ClusterVAEConfig):
    """Dense encoder C·H·W → mlp… and mirrored decoder …mlp → C·H·W (sigmoid); same six pieces."""
    dims = (math.prod(cfg.shape), *cfg.mlp)
    enc: list[nn.Module] = [nn.Flatten()]  # (B, C·H·W)
    for a, b in itertools.pairwise(dims):
        enc += [nn.Linear(a, b), nn.ReLU()]
    dec: list[nn.Module] = []
    for a, b in itertools.pairwise(dims[:0:-1]):  # mlp widths reversed, without the input width
        dec += [nn.Linear(a, b), nn.ReLU()]
    dec += [nn.Linear(dims[1], dims[0]), nn.Sigmoid(), nn.Unflatten(1, cfg.shape)]  # (B, C, H, W)
    top = dims[-1]
    from_z = nn.Sequential(nn.Linear(cfg.latent, top), nn.ReLU())
    return (
        nn.Sequential(*enc),
        nn.Linear(top, cfg.latent),
        nn.Linear(top, cfg.latent),
        from_z,
        nn.Sequential(*dec),
        (top,),
    )


class ClusterVAE(nn.Module):
    """Encoder p(z|x), decoder G(z), classifier p(y|z) and cluster means μ_y; x (B, C, H, W) in [0, 1]."""

    def __init__(self, config: ClusterVAEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ClusterVAEConfig()
        self.encoder, self.to_mu, self.to_logvar, self.from_z, self.decoder, self.h_shape = (
            _conv_nets(cfg) if cfg.arch == "conv" else _mlp_nets(cfg)
        )
        self.classifier = nn.Sequential(
            nn.Linear(cfg.latent, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.clusters)
        )  # logits of p(y|z)  # fmt: skip
        if cfg.keras_init:
            _keras_init(self)
        self.mu_y = nn.Parameter(torch.zeros(cfg.clusters, cfg.latent))  # (K, D), zero-initialised as Su's

    def _check(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.config.shape or not x.is_floating_point():
            raise ValueError(
                f"ClusterVAE expects float images (B, {', '.join(map(str, self.config.shape))}), got "
                f"{tuple(x.shape)} {x.dtype}"
            )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(μ(x), log σ²(x)), each (B, D)."""
        self._check(x)
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        """G(z): (B, D) → (B, C, H, W) in (0, 1)."""
        return self.decoder(self.from_z(z).view(-1, *self.h_shape))  # conv: (B, 2f, H/4, W/4) → (B, C, H, W)

    def p_y(self, z: Tensor) -> Tensor:
        """p(y|z): (B, D) → (B, K), a softmax."""
        return self.classifier(z).softmax(-1)

    def loss_terms(self, x: Tensor, *, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The batch means of the three terms of [5887] eq. (5) and their λ-weighted sum, "loss"."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator=generator)  # z ~ p(z|x)
        p_y = self.p_y(z)  # the classifier sees the sampled z in training
        rec = reconstruction_term(x, self.decode(z)).mean()
        kl = cluster_kl(z, logvar, self.mu_y, p_y).mean()  # [5887] eq. (8)
        cat = categorical_term(p_y).mean()
        return {"rec": rec, "kl": kl, "cat": cat, "loss": self.config.lam * rec + kl + cat}

    def loss(self, batch, *, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Trainer hook: batch is (x,) or (x, y); labels, if any, are ignored (unsupervised)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.loss_terms(x, generator=generator)

    def configure_optimizer(self, train_config) -> torch.optim.Optimizer:
        """Adam as Su's `compile(optimizer='adam')`: no weight decay, Keras's ε = 1e-7."""
        return torch.optim.Adam(self.parameters(), lr=train_config.lr, eps=1e-7)

    @torch.no_grad()
    def cluster_probs(self, x: Tensor) -> Tensor:
        """p(y|μ(x)): (B, C, H, W) → (B, K); at evaluation the classifier sees the mean μ(x) (Su's code)."""
        return self.p_y(self.encode(x)[0])

    @torch.no_grad()
    def cluster(self, x: Tensor, *, batch_size: int = 1000) -> Tensor:
        """argmax_y p(y|μ(x)): (N, C, H, W) → (N,) int64, in batches."""
        self._check(x)
        device = self.mu_y.device
        out = [
            self.cluster_probs(x[i : i + batch_size].to(device)).argmax(-1)
            for i in range(0, len(x), batch_size)
        ]
        return torch.cat(out).cpu()

    @torch.no_grad()
    def sample_cluster(self, k: int, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n images of cluster k: G(μ_k + ε), ε ~ N(0, I) (Su's random_sample at std 1); (n, C, H, W)."""
        if not 0 <= k < self.config.clusters or n < 1:
            raise ValueError(f"need 0 ≤ k < {self.config.clusters} and n ≥ 1, got k={k}, n={n}")
        mu_k = self.mu_y[k].expand(n, -1)  # (n, D)
        eps = torch.randn(
            mu_k.shape, generator=generator, device=generator.device if generator else mu_k.device
        )
        return self.decode(mu_k + eps.to(mu_k))
