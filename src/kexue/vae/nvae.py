"""NVAE [VK20], sized for a CPU: a deep hierarchical VAE with a residual-normal posterior ([7574]).

Latent groups z_1..z_L (each a small image of `latent` channels) live at ≥ 2 scales; prior and posterior
are both autoregressive over groups, each factor a diagonal Gaussian:

    p(z) = Π_l p(z_l|z_<l),   q(z|x) = Π_l q(z_l|z_<l, x)                          ([7574] eq. 2)
    KL(q‖p) = KL(q(z_1|x)‖p(z_1)) + Σ_{l≥2} E_{q(z_<l|x)} KL(q(z_l|z_<l,x)‖p(z_l|z_<l))  ([7574] eq. 3)
    p(z_l|z_<l) = N(μ, σ²),   q(z_l|z_<l, x) = N(μ + Δμ, σ²·Δσ²)                   ([7574] eq. 4)
    KL = ½ Σ_i (Δμ_i²/σ_i² + Δσ_i² − log Δσ_i² − 1)                               ([7574] eq. 5)

Architecture ([VK20] Fig. 2, [7574] §多尺度设计), for x (B, C, H, W) with H, W divisible by 2^S:
- bottom-up encoder: a space-to-depth stem (H×W×C → H/2×W/2×4C, then conv3×3; no convolution runs at
  full resolution: on a CPU a 16-channel 3×3 conv at 28×28 measured 10× slower than at 14×14), then per
  scale (finest first) `cells` encoder cells per group, with a stride-2 residual cell into each coarser
  scale; the feature after each group's cells conditions that group.
- top-down path, SHARED by the posterior and the generator (the "bidirectional encoder": the encoder's
  top-down half is the decoder itself, [VK20] §3.1): a learned constant h at the coarsest scale; per group
  `cells` decoder cells (none before z_1), the prior from the state s, the posterior from s combined with
  the encoder feature, then s ← conv1×1([s, z_l]); a ×2 up cell between scales; at H/2, ELU → conv3×3 →
  depth-to-space gives the H×W Bernoulli logits.
- scales for 28×28 MNIST with groups=(2, 2): NO padding ([VK20] pads to 32×32); 28 → 14 → 7, two groups
  at 7×7 (2c channels) and two at 14×14 (c channels). 8×8 digits give 2×2 and 4×4.
- residual cells ([VK20] Fig. 3): encoder BN-Swish-conv3×3-BN-Swish-conv3×3-SE; the decoder uses the same
  cell by default, or with `separable=True` [VK20]'s BN-conv1×1(×E)-BN-Swish-dwconv5×5-BN-Swish-conv1×1-BN-SE
  (depthwise convolutions are slow on a CPU: a step costs 2×); output = skip + 0.1·branch ([VK20] code).

Training tricks ([VK20] §3.2, reference/generative.md §1.4), each switchable in `NVAEConfig`:
- KL warm-up: β_t = max(min((t − t_c)/t_a, 1), β_min), t_a = 0.3T, t_c = 1e-4·T, β_min = 1e-4
  → `kl_warmup`; the model reads t/T from its `progress` attribute (a callback sets it).
- KL balancing while β < 1: c_l ∝ (mean_batch |KL_l| + 0.01)/α_l, normalised to mean 1 and detached;
  α_l ∝ (area of the group's scale)/(groups at that scale), smallest α = 1 → `kl_balance_coeffs`.
- spectral regularisation: λ_sr(Σ_conv σ_max(W) + Σ_BN max|γ|), σ_max on the (C_out, C_in·k·k) reshape by
  4 power iterations per step (40 at the first call) from a persistent u per conv ([7574] §其他提升技巧,
  [6051] eq. 15) → `NVAE.spectral_penalty`.

Notation box: [7574] (Su) writes q(z) for the prior and p(z|x) for the posterior; this code follows [VK20]
and kexue.vae: p(z_l|z_<l) is the prior, q(z_l|z_<l, x) the posterior. Variances travel as log σ².

Not here (the post calls them optional or they cost too much on a CPU): normalizing flows in q, mixed
precision, gradient checkpointing, the discretised logistic mixture (MNIST uses Bernoulli, as [VK20]).

Sources: [VK20] Vahdat & Kautz, NVAE, NeurIPS 2020 (arXiv 2007.03898; NVlabs/NVAE, read, not copied);
[7574] kexue.fm/archives/7574; [6051] kexue.fm/archives/6051 (power iteration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.data.binarize import check_unit, dynamic_binarize
from kexue.estimators.gaussian import gaussian_kl, gaussian_log_prob, reparameterize
from kexue.nn.lipschitz import power_iteration


# ----------------------------------------------------------------------------------- the formulas
def residual_normal_kl(delta_mu: Tensor, delta_logvar: Tensor, prior_logvar: Tensor) -> Tensor:
    """KL(N(μ + Δμ, σ²Δσ²) ‖ N(μ, σ²)) summed over the last axis: ½Σ(Δμ²/σ² + Δσ² − log Δσ² − 1).

    Arguments are Δμ, log Δσ² and the prior's log σ², each (…, D); μ itself drops out.  [7574] eq. 5
    """
    return 0.5 * (delta_mu.pow(2) / prior_logvar.exp() + delta_logvar.exp() - delta_logvar - 1).sum(-1)


def kl_warmup(
    step: float, total: float, *, warmup: float = 0.3, start: float = 1e-4, beta_min: float = 1e-4
) -> float:
    """β_t = max(min((t − t_c)/t_a, 1), β_min) with t_a = warmup·T, t_c = start·T ([VK20] §3.2 / code).

    warmup = 0 switches the warm-up off (β = 1 at every step).
    """
    if total <= 0:
        raise ValueError(f"the warm-up needs a positive total number of steps, got {total}")
    if warmup == 0:
        return 1.0
    return max(min((step - start * total) / (warmup * total), 1.0), beta_min)


def group_alphas(groups: tuple[int, ...], areas: tuple[int, ...]) -> Tensor:
    """α_l ∝ (area of group l's scale)/(groups at that scale), smallest 1; (L,) in top-down order."""
    alpha = torch.cat([torch.full((g,), a / g, dtype=torch.float64) for g, a in zip(groups, areas)])
    return alpha / alpha.min()  # [VK20] code: kl_balancer_coeff(fun="square")


def kl_balance_coeffs(kl: Tensor, alpha: Tensor) -> Tensor:
    """KL balancing coefficients c_l, (L,), mean 1 and detached, from per-example KLs `kl` (B, L).

    c_l ∝ (mean_batch |KL_l| + 0.01)/α_l ([VK20] §3.2): a group with little KL gets a small weight, so
    it is not pushed further into collapse while β < 1.
    """
    c = (kl.detach().abs().mean(0) + 0.01) / alpha.to(kl)  # (L,)
    return c / c.mean()


def _soft_clamp(x: Tensor, bound: float = 5.0) -> Tensor:
    """bound·tanh(x/bound): keeps μ and log σ in [−5, 5] with a gradient everywhere ([VK20] code)."""
    return bound * torch.tanh(x / bound)


# ----------------------------------------------------------------------------------- the cells
class SqueezeExcite(nn.Module):
    """x ⊙ sigmoid(W₂ ReLU(W₁ avgpool(x))), hidden max(C/16, 4) ([VK20] Fig. 3, Hu et al. 2018)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // 16, 4)
        self.net = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.net(x.mean((2, 3)))[:, :, None, None]  # (B, C, H, W)


def _bn(c: int, momentum: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=momentum)


class ResidualCell(nn.Module):
    """skip(x) + 0.1·branch(x), optionally halving ("down") or doubling ("up") H and W.

    kind "encoder": BN-Swish-conv3×3-BN-Swish-conv3×3[-SE] ([VK20] Fig. 3b);
    kind "separable": BN-conv1×1(C→EC)-BN-Swish-dwconv5×5-BN-Swish-conv1×1(EC→C)-BN[-SE] (Fig. 3a).
    The skip is the identity, or avg-pool/nearest-upsample then a 1×1 conv when the shape changes.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        kind: str = "encoder",
        resample: str | None = None,
        se: bool = True,
        expand: int = 3,
        momentum: float = 0.05,
    ) -> None:
        super().__init__()
        stride = 2 if resample == "down" else 1
        up = [nn.Upsample(scale_factor=2, mode="nearest")] if resample == "up" else []
        if kind == "encoder":
            layers = [
                *up,
                _bn(c_in, momentum),
                nn.SiLU(),
                nn.Conv2d(c_in, c_out, 3, stride, 1),
                _bn(c_out, momentum),
                nn.SiLU(),
                nn.Conv2d(c_out, c_out, 3, 1, 1),
            ]
        else:  # depthwise-separable, inverted residual
            e = expand * c_out
            layers = [
                *up,
                _bn(c_in, momentum),
                nn.Conv2d(c_in, e, 1),
                _bn(e, momentum),
                nn.SiLU(),
                nn.Conv2d(e, e, 5, stride, 2, groups=e),  # depthwise 5×5
                _bn(e, momentum),
                nn.SiLU(),
                nn.Conv2d(e, c_out, 1),
                _bn(c_out, momentum),
            ]
        self.branch = nn.Sequential(*layers, *([SqueezeExcite(c_out)] if se else []))
        if resample is None and c_in == c_out:
            self.skip: nn.Module = nn.Identity()
        else:
            pre = {"down": [nn.AvgPool2d(2)], "up": up, None: []}[resample]
            self.skip = nn.Sequential(*pre, nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + 0.1 * self.branch(x)  # [VK20] code scales the residual branch by 0.1


# ----------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class NVAEConfig:
    shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W) of the images; H, W divisible by 2^len(groups)
    channels: int = 16  # c: channels at H/2; each coarser scale doubles them ([VK20] doubles)
    latent: int = 8  # channels of each group z_l ([VK20]: 20)
    groups: tuple[int, ...] = (2, 2)  # groups per scale, coarsest first: (2, 2) = two at H/4, two at H/2
    cells: int = 1  # residual cells per group, in the encoder tower and between groups in the decoder
    se: bool = True  # squeeze-and-excitation closing every cell ([VK20] Fig. 3)
    separable: bool = False  # depthwise-separable decoder cells as [VK20]: 2× slower per CPU step
    expand: int = 3  # channel expansion E of the separable decoder cell ([VK20]: 6)
    residual_posterior: bool = True  # q = N(μ + Δμ, σ²Δσ²) [7574] eq. 4; False: q predicts (μ_q, σ_q)
    warmup: float = 0.3  # t_a/T of the KL warm-up ([VK20]: 0.3); 0 switches the warm-up off (β = 1)
    warmup_start: float = 1e-4  # t_c/T, the steps before β starts to rise ([VK20]: 1e-4)
    beta_min: float = 1e-4  # the floor of β ([VK20]: 1e-4)
    balance: bool = True  # KL balancing coefficients while β < 1 ([VK20] §3.2)
    sr_lambda: float = 1e-2  # λ_sr of the spectral regulariser, 0 = off ([VK20]: 1e-2 on MNIST)
    power_iters: int = 4  # power-iteration rounds per step; 10× at the first call ([VK20]: 4)
    bn_momentum: float = 0.05  # BatchNorm running-statistics momentum ([VK20] code)
    binarize: str = "dynamic"  # "dynamic": loss redraws x ~ Bernoulli(x) each call; "none": x is binary

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))  # JSON overrides arrive as lists
        object.__setattr__(self, "groups", tuple(self.groups))
        checks = [
            (len(self.shape) == 3 and min(self.shape) >= 1, f"shape must be (C, H, W), got {self.shape}"),
            (
                len(self.groups) >= 1 and min(self.groups) >= 1,
                f"groups must be ≥ 1 per scale, got {self.groups}",
            ),
            (
                len(self.shape) == 3 and all(s % 2 ** len(self.groups) == 0 for s in self.shape[1:]),
                f"H and W must be divisible by 2^{len(self.groups)} for {len(self.groups)} scales, "
                f"got {self.shape[1:]}",
            ),
            (
                self.channels >= 1 and self.latent >= 1,
                f"channels and latent must be ≥ 1, got {self.channels}, {self.latent}",
            ),
            (
                self.cells >= 0 and self.expand >= 1,
                f"cells ≥ 0 and expand ≥ 1, got {self.cells}, {self.expand}",
            ),
            (0 <= self.warmup <= 1, f"warmup is a fraction of training in [0, 1], got {self.warmup}"),
            (0 <= self.warmup_start < 1, f"warmup_start must lie in [0, 1), got {self.warmup_start}"),
            (0 < self.beta_min <= 1, f"beta_min must lie in (0, 1], got {self.beta_min}"),
            (self.sr_lambda >= 0, f"sr_lambda must be ≥ 0, got {self.sr_lambda}"),
            (self.power_iters >= 1, f"power_iters must be ≥ 1, got {self.power_iters}"),
            (0 < self.bn_momentum <= 1, f"bn_momentum must lie in (0, 1], got {self.bn_momentum}"),
            (
                self.binarize in ("none", "dynamic"),
                f"binarize must be 'none' or 'dynamic', got {self.binarize!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class GroupStats(NamedTuple):
    """One latent group's quantities for a batch (B examples; D = latent·h·w dimensions)."""

    z: Tensor  # (B, latent, h, w) the sample
    kl: Tensor  # (B,) closed-form KL(q(z_l|z_<l, x) ‖ p(z_l|z_<l)) at the sampled z_<l
    log_p: Tensor  # (B,) log p(z_l|z_<l)
    log_q: Tensor  # (B,) log q(z_l|z_<l, x)
    mu_q: Tensor  # (B, D) the posterior mean (active units)


class NVAE(nn.Module):
    """The hierarchical VAE. x (B, C, H, W) in [0, 1] (binary after binarization); logits (B, C, H, W).

    Groups are indexed l = 0..L−1 top-down (coarsest first); `layout[l]` = (scale i, index j in scale).
    """

    def __init__(self, config: NVAEConfig) -> None:
        super().__init__()
        cfg = self.config = config
        c_img, h_img, w_img = cfg.shape
        n_scales = len(cfg.groups)
        self.ch = [cfg.channels * 2 ** (n_scales - 1 - i) for i in range(n_scales)]  # per scale, top-down
        self.res = [(h_img // 2 ** (n_scales - i), w_img // 2 ** (n_scales - i)) for i in range(n_scales)]
        self.layout = [(i, j) for i, g in enumerate(cfg.groups) for j in range(g)]
        kw = {"se": cfg.se, "momentum": cfg.bn_momentum}
        dec = {"kind": "separable" if cfg.separable else "encoder", "expand": cfg.expand, **kw}
        zc = cfg.latent

        # bottom-up encoder: space-to-depth stem to H/2, then per scale (finest first) the groups' cells,
        # with a stride-2 cell into each coarser scale
        self.stem = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * c_img, cfg.channels, 3, 1, 1))
        self.down = nn.ModuleList(  # down[i]: scale i + 1 → scale i
            ResidualCell(self.ch[i + 1], self.ch[i], resample="down", **kw) for i in range(n_scales - 1)
        )
        self.enc_cells = nn.ModuleList(
            nn.Sequential(*(ResidualCell(self.ch[i], self.ch[i], **kw) for _ in range(cfg.cells)))
            for i, _ in self.layout
        )
        self.enc_top = nn.Sequential(nn.ELU(), nn.Conv2d(self.ch[0], self.ch[0], 1))  # [VK20] code: enc0

        # top-down path: learned h, per-group cells/prior/posterior/combiner, up cells, output head
        self.h0 = nn.Parameter(torch.rand(1, self.ch[0], *self.res[0]))  # (1, C_0, h_0, w_0)
        self.dec_cells = nn.ModuleList(
            nn.Sequential(
                *(ResidualCell(self.ch[i], self.ch[i], **dec) for _ in range(cfg.cells if l else 0))
            )
            for l, (i, _) in enumerate(self.layout)
        )
        self.prior = nn.ModuleList(  # p(z_l|z_<l) from s, l ≥ 1 ([VK20] code: ELU → conv1×1)
            nn.Sequential(nn.ELU(), nn.Conv2d(self.ch[i], 2 * zc, 1)) for i, _ in self.layout[1:]
        )
        self.enc_combine = nn.ModuleList(nn.Conv2d(self.ch[i], self.ch[i], 1) for i, _ in self.layout[1:])
        self.posterior = nn.ModuleList(nn.Conv2d(self.ch[i], 2 * zc, 3, 1, 1) for i, _ in self.layout)
        self.dec_combine = nn.ModuleList(nn.Conv2d(self.ch[i] + zc, self.ch[i], 1) for i, _ in self.layout)
        self.up = nn.ModuleList(
            ResidualCell(self.ch[i], self.ch[i + 1], resample="up", **dec) for i in range(n_scales - 1)
        )
        self.head = nn.Sequential(  # H/2 → H by depth-to-space; Bernoulli logits
            nn.ELU(), nn.Conv2d(cfg.channels, 4 * c_img, 3, 1, 1), nn.PixelShuffle(2)
        )

        areas = tuple(h * w for h, w in self.res)
        self.register_buffer("alpha", group_alphas(cfg.groups, areas).float())  # (L,) balancing α_l
        self.convs = [m for m in self.modules() if isinstance(m, nn.Conv2d)]
        self.bns = [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        for conv in self.convs:  # persistent power-iteration vectors, saved with the weights
            conv.register_buffer("sr_u", F.normalize(torch.randn(conv.weight.shape[0]), dim=0))
        self.register_buffer("sr_started", torch.zeros((), dtype=torch.bool))
        self.progress = 1.0  # t/T for the KL warm-up; a callback sets it during training

    # ------------------------------------------------------------------------------ sizes
    @property
    def num_groups(self) -> int:
        return len(self.layout)

    def group_dims(self) -> list[int]:
        """Dimensions D_l = latent·h·w of each group, top-down."""
        return [self.config.latent * self.res[i][0] * self.res[i][1] for i, _ in self.layout]

    @property
    def beta(self) -> float:
        """β at the current `progress` ([VK20] §3.2 warm-up)."""
        c = self.config
        return kl_warmup(self.progress, 1.0, warmup=c.warmup, start=c.warmup_start, beta_min=c.beta_min)

    # ------------------------------------------------------------------------------ the two passes
    def check_images(self, x: Tensor) -> None:
        """One-line ValueError unless x is (B, C, H, W) of the configured shape with values in [0, 1]."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.config.shape:
            want = ", ".join(map(str, self.config.shape))
            raise ValueError(f"NVAE expects images of shape (B, {want}), got {tuple(x.shape)}")
        check_unit(x, "the Bernoulli likelihood")

    def bottom_up(self, x: Tensor) -> list[Tensor]:
        """The encoder features conditioning each group, top-down order; feature l is (B, C_i, h_i, w_i)."""
        h = self.stem(2 * x - 1)  # (B, c, H/2, W/2); {0, 1} → {−1, 1}
        feats = []
        l = self.num_groups
        for i in reversed(range(len(self.ch))):  # finest scale first
            if i < len(self.ch) - 1:
                h = self.down[i](h)  # (B, C_i, h_i, w_i)
            for _ in range(self.config.groups[i]):
                l -= 1
                h = self.enc_cells[l](h)
                feats.append(h)
        feats[-1] = self.enc_top(feats[-1])
        return feats[::-1]  # top-down: feats[0] conditions z_1

    def _gaussian(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, log σ²) from a head's output (B, 2·latent, h, w), each (B, latent, h, w), soft-clamped."""
        mu, log_sigma = t.chunk(2, 1)
        return _soft_clamp(mu), 2 * _soft_clamp(log_sigma)

    def top_down(
        self,
        feats: list[Tensor] | None,
        n: int,
        *,
        eps: list[Tensor] | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> tuple[Tensor, list[GroupStats]]:
        """The shared top-down pass: (logits (n, C, H, W), per-group stats).

        feats from `bottom_up` → posterior sampling (inference); None → prior sampling at `temperature`
        (generation; the stats then hold z and log p only). eps: the standard-normal draw of each group,
        (n, latent, h_l, w_l), or None to draw them from `generator`.
        """
        zc = self.config.latent
        s = self.h0.expand(n, -1, -1, -1)  # (n, C_0, h_0, w_0)
        stats = []
        for l, (i, j) in enumerate(self.layout):
            if l > 0:
                s = self.dec_cells[l](self.up[i - 1](s) if j == 0 else s)  # a new scale starts with ×2
            shape = (n, zc, *self.res[i])
            if l == 0:  # p(z_1) = N(0, I) ([VK20])
                mu_p = torch.zeros(shape, device=s.device, dtype=s.dtype)
                logvar_p = torch.zeros_like(mu_p)
            else:
                mu_p, logvar_p = self._gaussian(self.prior[l - 1](s))  # (n, latent, h, w) each
            e = (
                eps[l]
                if eps is not None
                else torch.randn(shape, generator=generator, device=s.device, dtype=s.dtype)
            )
            flat = [t.flatten(1) for t in (mu_p, logvar_p)]  # (n, D) each
            if feats is None:
                z = mu_p + temperature * (0.5 * logvar_p).exp() * e  # z_l ~ N(μ, (Tσ)²)
                kl = log_q = torch.zeros(n, device=s.device, dtype=s.dtype)
                mu_q = mu_p.flatten(1)
            else:
                ftr = feats[0] if l == 0 else feats[l] + self.enc_combine[l - 1](s)  # [VK20] combiner_enc
                a, b = self._gaussian(self.posterior[l](ftr))
                if self.config.residual_posterior:  # a, b = Δμ, log Δσ²   [7574] eq. 4
                    mu_q, logvar_q = mu_p + a, logvar_p + b
                    kl = residual_normal_kl(a.flatten(1), b.flatten(1), flat[1])  # [7574] eq. 5
                else:  # a, b = μ_q, log σ_q² directly
                    mu_q, logvar_q = a, b
                    kl = gaussian_kl(a.flatten(1), b.flatten(1), *flat)
                z = reparameterize(mu_q, logvar_q, eps=e)  # (n, latent, h, w)
                log_q = gaussian_log_prob(z.flatten(1), mu_q.flatten(1), logvar_q.flatten(1))
                mu_q = mu_q.flatten(1)
            log_p = gaussian_log_prob(z.flatten(1), *flat)
            stats.append(GroupStats(z, kl, log_p, log_q, mu_q))
            s = self.dec_combine[l](torch.cat([s, z], 1))  # [VK20] combiner_dec: conv1×1([s, z])
        return self.head(s), stats  # (n, C, H, W) logits

    def log_px_z(self, x: Tensor, logits: Tensor) -> Tensor:
        """log Bernoulli(x; sigmoid(logits)) summed over pixels, (B,)."""
        return (x * logits - F.softplus(logits)).flatten(1).sum(-1)

    # ------------------------------------------------------------------------------ objectives
    def forward(
        self, x: Tensor, *, eps: list[Tensor] | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, list[GroupStats]]:
        """One posterior pass: (log p(x|z) (B,), per-group stats) for binary x (B, C, H, W)."""
        logits, stats = self.top_down(self.bottom_up(x), len(x), eps=eps, generator=generator)
        return self.log_px_z(x, logits), stats

    def log_weight(
        self, x: Tensor, *, eps: list[Tensor] | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """log w = log p(x|z) + log p(z) − log q(z|x) for one z ~ q(z|x), (B,): the IWAE log-weight."""
        rec, stats = self(x, eps=eps, generator=generator)
        return rec + sum(g.log_p - g.log_q for g in stats)

    def elbo(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """The one-sample ELBO with closed-form group KLs, log p(x|z) − Σ_l KL_l, (B,), in nats."""
        rec, stats = self(x, generator=generator)
        return rec - sum(g.kl for g in stats)

    def spectral_penalty(self) -> Tensor:
        """Σ_conv σ_max(W) + Σ_BN max|γ| ([VK20] §3.2), differentiable; advances every persistent u."""
        iters = self.config.power_iters * (1 if bool(self.sr_started) else 10)  # 40 at the first call
        sigmas = []
        for conv in self.convs:
            sigma, u, _ = power_iteration(conv.weight, iters, u=conv.sr_u)  # on (C_out, C_in·k·k)
            conv.sr_u.copy_(u)
            sigmas.append(sigma)
        self.sr_started.fill_(True)
        gammas = [bn.weight.abs().max() for bn in self.bns]
        return torch.stack(sigmas).sum() + torch.stack(gammas).sum()

    def loss(self, batch) -> dict[str, Tensor]:
        """mean_B[−log p(x|z) + β Σ_l c_l KL_l] + λ_sr·SR, with per-group KLs and coefficients logged.

        batch: (x, …) or x, with x (B, C, H, W) in [0, 1]; binarised here when `binarize="dynamic"`.
        """
        cfg = self.config
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        self.check_images(x)
        if cfg.binarize == "dynamic":
            x = dynamic_binarize(x)  # a fresh binary image at every visit
        rec, stats = self(x)
        kl = torch.stack([g.kl for g in stats], 1)  # (B, L)
        beta = self.beta
        if cfg.balance and beta < 1:  # [VK20] §3.2: balance only during the warm-up
            coeff = kl_balance_coeffs(kl, self.alpha)
        else:
            coeff = torch.ones(self.num_groups, device=kl.device, dtype=kl.dtype)
        loss = (-rec + beta * (kl * coeff).sum(1)).mean()
        out = {
            "nelbo": (kl.sum(1) - rec).mean().detach(),
            "rec": -rec.mean().detach(),
            "beta": torch.tensor(beta),
        }
        for l in range(self.num_groups):
            out[f"kl{l}"] = kl[:, l].mean().detach()
            out[f"c{l}"] = coeff[l].detach()
        if cfg.sr_lambda > 0:
            sr = self.spectral_penalty()
            loss = loss + cfg.sr_lambda * sr
            out["sr"] = sr.detach()
        return {**out, "loss": loss}

    def configure_optimizer(self, train_config) -> torch.optim.Optimizer:
        """Adamax(lr, eps 1e-3) with the trainer's weight decay ([VK20] code)."""
        return torch.optim.Adamax(
            self.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay, eps=1e-3
        )

    # ------------------------------------------------------------------------------ generation
    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        binary: bool = False,
    ) -> Tensor:
        """n images (n, C, H, W) from the prior at `temperature` (σ_l → Tσ_l, [VK20] uses 0.6–1.0): the
        Bernoulli means, or draws if `binary`. Call `reestimate_bn` first for [VK20]'s BN statistics."""
        if not temperature > 0:
            raise ValueError(f"the sampling temperature must be positive, got {temperature}")
        logits, _ = self.top_down(None, n, generator=generator, temperature=temperature)
        x = torch.sigmoid(logits)
        return torch.bernoulli(x, generator=generator) if binary else x


@torch.no_grad()
def reestimate_bn(
    model: NVAE,
    *,
    batches: int = 20,
    batch_size: int = 100,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> NVAE:
    """Re-estimate the running statistics of the top-down path's BatchNorms from prior samples, in place
    ([VK20] §3.2: the running averages of training mislead generation). Returns the model in eval mode.

    Those statistics are reset and then averaged over `batches` generation passes (cumulative average).
    The posterior shares the top-down path, so do this on a copy when the model is still to be evaluated.
    """
    bns = [m for part in (model.dec_cells, model.up) for m in part.modules() if isinstance(m, nn.BatchNorm2d)]
    moms = {bn: bn.momentum for bn in bns}
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    model.train()
    try:
        for _ in range(batches):
            model.top_down(None, batch_size, generator=generator, temperature=temperature)
    finally:
        for bn, m in moms.items():
            bn.momentum = m
        model.eval()
    return model


class Whitened(nn.Module):
    """NVAE seen through `kexue.vae.iwae`'s GaussianPosteriorModel protocol, so that `iwae_bound`, `nll`
    serve both the plain VAE and NVAE.

    The latent is the standard-normal noise ε = (ε_1..ε_L) that reparameterises every group (z = T_x(ε),
    z_l = μ_q + σ_q ε_l given z_<l). In ε the "posterior" is N(0, I) (`encode` returns zeros) and
    `log_joint(x, ε)` = log p(x, T_x(ε)) − log q(T_x(ε)|x) + log N(ε; 0, I), so the protocol's weight
    log_joint − log N(ε; 0, I) is exactly NVAE's log w = log p(x, z) − log q(z|x). The posterior-mean
    functions of `kexue.vae.iwae` (active units) are meaningless here: use `group_active_units`.
    """

    def __init__(self, model: NVAE) -> None:
        super().__init__()
        self.model = model
        self.dims = model.group_dims()

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        zeros = torch.zeros(len(x), sum(self.dims), device=x.device, dtype=x.dtype)  # (B, Σ D_l)
        return zeros, zeros

    def log_joint(self, x: Tensor, eps: Tensor) -> Tensor:
        """eps (K, B, Σ D_l) → (K, B): the log-weight of each draw plus log N(ε; 0, I)."""
        k, b, _ = eps.shape
        m = self.model
        xs = x.expand(k, *x.shape).reshape(k * b, *x.shape[1:])  # (K·B, C, H, W)
        parts = eps.reshape(k * b, -1).split(self.dims, dim=1)  # per group (K·B, D_l)
        e = [p.reshape(k * b, m.config.latent, *m.res[i]) for p, (i, _) in zip(parts, m.layout)]
        lw = m.log_weight(xs, eps=e)  # (K·B,)
        log_n = -0.5 * (eps.pow(2) + math.log(2 * math.pi)).sum(-1)  # (K, B) log N(ε; 0, I)
        return lw.view(k, b) + log_n


@torch.no_grad()
def group_statistics(
    model: NVAE,
    x: Tensor,
    *,
    threshold: float = 0.01,
    batch_size: int = 500,
    generator: torch.Generator | None = None,
) -> list[dict[str, float]]:
    """Per group (top-down): mean KL in nats, active units AU = #{d : Var_x E_q[z_d] > threshold}, and D.

    E_q[z_l|x] is the posterior mean at one sample of the groups above (hierarchical: it depends on z_<l).
    x: (N, C, H, W) binary, evaluated in the model's current mode (call `.eval()` first).
    """
    p = next(model.parameters())
    kls, mus = [], []
    for start in range(0, len(x), batch_size):
        _, stats = model(x[start : start + batch_size].to(p.device, p.dtype), generator=generator)
        kls.append(torch.stack([g.kl for g in stats], 1))  # (b, L)
        mus.append([g.mu_q for g in stats])
    kl = torch.cat(kls).mean(0)  # (L,)
    out = []
    for l, d in enumerate(model.group_dims()):
        var = torch.cat([m[l] for m in mus]).var(0)  # (D_l,)
        au = int((var > threshold).sum())
        out.append(
            {"group": l, "scale": model.res[model.layout[l][0]][0], "kl": float(kl[l]), "au": au, "dims": d}
        )
    return out
