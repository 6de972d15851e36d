"""The CNN-VAE poet of [5332]: gated convolutions, a Gaussian latent, 10 characters out in parallel.

[5332] 基于CNN和VAE的作诗机器人：随机成诗, kexue.fm/archives/5332; exact layers from its code, bojone/vae
`vae_shi.py` (Keras). [GCNN] Dauphin et al., Language Modeling with Gated Convolutional Networks, 2017.

    encoder  x (B, 10) → embedding (B, 10, D) → 2 × residual GCNN → mean over positions → μ, log σ² (B, d)
    z        μ + σ⊙ε, ε ~ N(0, I)                                         (the reparameterization, [6705])
    decoder  z → Linear(d, 10·D) → (B, 10, D) → 1 × residual GCNN → Linear(D, V): logits (B, 10, V)
    loss     Σ_10 positions CE(x_t, softmax(logits_t)) + KL(N(μ, σ²) ‖ N(0, I)), averaged over the batch
    sample   z ~ N(0, I) → argmax per position (the code's `gen()`); temperature > 0 samples instead

GCNN ([GCNN] eq. 1; [5332]: "做两个不同的、外形一样的CNN，一个不加激活函数，一个用sigmoid激活，
然后把结果乘起来"):
h = conv_a(x) ⊙ σ(conv_b(x)) + x, kernel 3, "same" padding, no bias (the code's `GCNN` layer).
Initialisation follows Keras' defaults as the code ran: Glorot-uniform kernels, zero biases, embeddings
U(−0.05, 0.05) — drawn from an explicit generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.estimators.gaussian import gaussian_kl_standard, reparameterize
from kexue.text.poetry.corpus import COUPLET_CHARS, Vocabulary, format_couplet


@dataclass(frozen=True)
class PoetryVAEConfig:
    hidden_dim: int = 64  # embedding and GCNN width D (vae_shi.py hidden_dim = 64)
    latent_dim: int = 64  # z's size d (vae_shi.py latent_dim = 64)
    kernel_size: int = 3  # GCNN kernel width (vae_shi.py: kernel shape (3, D, 2D))
    encoder_layers: int = 2  # residual GCNNs before pooling (vae_shi.py: two)
    decoder_layers: int = 1  # residual GCNNs after the per-position dense layer (vae_shi.py: one)

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "latent_dim", "kernel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (for 'same' padding), got {self.kernel_size}")
        if self.encoder_layers < 0 or self.decoder_layers < 0:
            raise ValueError("encoder_layers and decoder_layers must be ≥ 0")


class GatedConv1d(nn.Module):
    """h = conv_a(x) ⊙ σ(conv_b(x)) (+ x): one conv with 2·D outputs split in halves, as in vae_shi.py."""

    def __init__(self, dim: int, kernel_size: int = 3, *, residual: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, 2 * dim, kernel_size, padding=kernel_size // 2, bias=False)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, D) → (B, T, D)."""
        if x.dim() != 3 or x.shape[-1] != self.conv.in_channels:
            raise ValueError(f"GatedConv1d expects (B, T, {self.conv.in_channels}), got {tuple(x.shape)}")
        a, b = self.conv(x.transpose(1, 2)).chunk(2, dim=1)  # (B, D, T) each
        h = (a * torch.sigmoid(b)).transpose(1, 2)  # (B, T, D)   [GCNN] eq. 1
        return h + x if self.residual else h


class PoetryVAE(nn.Module):
    """The [5332] CNN-VAE over 10-character couplets; `vocab` maps its ids to characters."""

    def __init__(
        self,
        vocab: Vocabulary,
        config: PoetryVAEConfig = PoetryVAEConfig(),  # frozen, so sharing the default is safe
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.vocab, self.config = vocab, config
        D, d, V, k = config.hidden_dim, config.latent_dim, len(vocab), config.kernel_size
        self.embed = nn.Embedding(V, D)
        self.encoder = nn.Sequential(*(GatedConv1d(D, k) for _ in range(config.encoder_layers)))
        self.to_mu, self.to_logvar = nn.Linear(D, d), nn.Linear(D, d)
        self.from_z = nn.Linear(d, COUPLET_CHARS * D)  # "先接了多个不同的全连接层" [5332]: one per position
        self.decoder = nn.Sequential(*(GatedConv1d(D, k) for _ in range(config.decoder_layers)))
        self.to_logits = nn.Linear(D, V)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Keras defaults (as vae_shi.py ran): Glorot-uniform kernels, zero biases, U(±0.05) embeddings."""
        self.embed.weight.uniform_(-0.05, 0.05, generator=generator)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d)):
                nn.init.xavier_uniform_(m.weight, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()

    # ---------------------------------------------------------------------------------- the model
    def _check_ids(self, x) -> Tensor:
        """ids (B, 10), a TensorDataset batch (ids,), or couplet strings → checked ids (B, 10)."""
        if isinstance(x, (list, tuple)) and x and all(isinstance(c, str) for c in x):
            x = self.vocab.encode(x).to(self.to_logits.weight.device)
        elif isinstance(x, (list, tuple)) and len(x) == 1:
            x = x[0]  # a TensorDataset batch (ids,)
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != COUPLET_CHARS:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"couplet ids must be a (B, {COUPLET_CHARS}) tensor, got {shape}")
        if x.dtype != torch.long:
            raise ValueError(f"couplet ids must be int64 (torch.long), got {x.dtype}")
        if x.numel() and (x.min() < 0 or x.max() >= len(self.vocab)):
            raise ValueError(f"couplet ids must lie in [0, {len(self.vocab)}), got {x.min()}..{x.max()}")
        return x

    def encode(self, x) -> tuple[Tensor, Tensor]:
        """ids (B, 10) or B couplet strings → μ, log σ² (B, d)."""
        h = self.encoder(self.embed(self._check_ids(x)))  # (B, 10, D)
        h = h.mean(dim=1)  # (B, D)   GlobalAveragePooling1D
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        """z (B, d) → logits (B, 10, V)."""
        if z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z must have shape (B, {self.config.latent_dim}), got {tuple(z.shape)}")
        h = self.from_z(z).view(len(z), COUPLET_CHARS, self.config.hidden_dim)  # (B, 10, D)
        return self.to_logits(self.decoder(h))  # (B, 10, V)

    def terms(
        self, x: Tensor, *, eps: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """One-sample −ELBO split per couplet: (reconstruction −log p(x|z), KL), each (B,) in nats.

        z = μ + σ⊙ε with ε given (B, d) or drawn from `generator` (global RNG when None: the trainer)."""
        x = self._check_ids(x)
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, eps=eps, generator=generator)  # (B, d)
        logits = self.decode(z)  # (B, 10, V)
        ce = F.cross_entropy(logits.flatten(0, 1), x.flatten(), reduction="none")  # (B·10,)
        rec = ce.view(x.shape).sum(1)  # (B,)   vae_shi.py xent_loss: summed over the 10 characters
        return rec, gaussian_kl_standard(mu, logvar)  # (B,), (B,) vae_shi kl_loss

    def loss(self, batch, *, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """mean over the batch of Σ_t CE + KL (vae_shi.py vae_loss); the split is logged."""
        rec, kl = self.terms(batch, generator=generator)
        return {"reconstruction": rec.mean(), "kl": kl.mean(), "loss": (rec + kl).mean()}

    # ---------------------------------------------------------------------------------- generation
    def _pick(self, logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
        """logits (B, 10, V) → ids (B, 10): argmax at temperature 0, else softmax(logits / T) per position."""
        if temperature == 0:
            return logits.argmax(-1)  # the code's gen(): r.argmax(axis=1)
        probs = torch.softmax(logits.float() / temperature, -1).flatten(0, 1)  # (B·10, V)
        ids = torch.multinomial(probs.to(_gen_device(generator, logits.device)), 1, generator=generator)
        return ids.view(logits.shape[:2]).to(logits.device)  # (B, 10)

    @torch.no_grad()
    def sample_ids(
        self, n: int, *, generator: torch.Generator | None = None, temperature: float = 0.0
    ) -> Tensor:
        """n couplets from the prior: z ~ N(0, I), decoded per position → ids (n, 10)."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"the number of samples must be an integer ≥ 0, got {n!r}")
        if not temperature >= 0:
            raise ValueError(f"temperature must be ≥ 0, got {temperature}")
        w = self.to_logits.weight
        z = torch.randn(
            n, self.config.latent_dim, generator=generator, device=_gen_device(generator, w.device)
        )
        return self._pick(self.decode(z.to(w)), temperature, generator)  # z ~ N(0, I): the code's gen()

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, temperature: float = 0.0
    ) -> list[str]:
        """n couplets from the prior, printed "xxxxx，xxxxx。" as in [5332]."""
        return [
            format_couplet(c)
            for c in self.vocab.decode(self.sample_ids(n, generator=generator, temperature=temperature))
        ]

    @torch.no_grad()
    def reconstruct(self, couplets: Sequence[str]) -> list[str]:
        """Couplets → their posterior means z = μ → argmax decoding, printed "xxxxx，xxxxx。"."""
        x = self.vocab.encode(couplets).to(self.to_logits.weight.device)
        mu, _ = self.encode(x)
        return [format_couplet(c) for c in self.vocab.decode(self.decode(mu).argmax(-1))]


def _gen_device(generator: torch.Generator | None, default: torch.device) -> torch.device:
    return generator.device if generator is not None else default
