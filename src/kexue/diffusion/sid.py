r"""Score identity Distillation (SiD): a trained ε-net (teacher) distilled into a one-step generator.

Sources:
  [10085] kexue.fm/archives/10085 "生成扩散模型漫谈（二十五）：基于恒等式的蒸馏（上）", Su's ε-form.
  [SiD]   Zhou, Zheng, Wang, Yin & Huang, "Score identity Distillation: Exponentially Fast Distillation of
          Pretrained Diffusion Models for One-Step Generation", ICML 2024 (arXiv 2404.04057), Alg. 1, eq. 23;
          hyper-parameters from the authors' repository as summarised in reference/diffusion.md §1.6.

Three networks of the teacher's architecture, all starting from the teacher's weights:
  ε_φ  the frozen teacher;
  ε_ψ  the fake-score net, trained on the generator's samples exactly as the teacher was trained on data
       ([10085] eq. dloss: L_simple with x0 = sg[G_θ(z)]);
  G_θ  the one-step generator x_g = G_θ(z): the teacher's x̂0 at the single noise level σ_init
       (EDM σ = √(β̄/ᾱ); [SiD] uses σ_init = 2.5), fed x_t = √β̄·z, i.e. x_g = σ_init·(z − ε_θ(√β̄ z, t_init)).

With x_t = √ᾱ·x_g + √β̄·ε and the identity ∇log p_θ(x_t) = E[∇log p(x_t|x_g) | x_t] ([10085] eq. id), Su's
naive generator loss L₁ = ‖ε_φ − ε_ψ‖² ([10085] eq. gloss-1) equals in expectation

    L₂ = ⟨ε_φ − ε_ψ, ε_φ − ε⟩                                   ([10085] eq. gloss-2)

when ε_ψ is the exact score of the generator's distribution; L₂ depends on ε_ψ less, which is what makes the
alternating game stable. The generator minimises L₂ − α·L₁ ([SiD] eq. 23 with its α; Su's λ), with gradients
reaching θ through x_g and through the inputs of both (frozen) networks. In x0-units (x̂0 = (x_t − √β̄ε̂)/√ᾱ)
[SiD]'s per-sample loss is σ²(L₂ − αL₁)/w with w = mean|x_g − x̂0_φ(x_t)| = σ·mean|ε_φ − ε|: `weighting="sid"`.

Shapes: x (B, *shape); timesteps 1-based (B,) int64; abar the (N + 1,) float64 schedule (abar[0] = 1).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor, nn

from kexue.diffusion.ddpm import DDPM, DDPMConfig, loss_simple, q_sample
from kexue.train.ema import EMA

GENERATOR_LOSSES = ("sid", "l1")


# ------------------------------------------------------------------------------------------ noise levels
def sigmas(abar: Tensor) -> Tensor:
    """EDM noise level σ_t = √(β̄_t/ᾱ_t) of every step t = 1..N, (N,) float64 increasing."""
    a = abar[1:].double()
    return ((1 - a) / a).sqrt()


def timestep_of_sigma(abar: Tensor, sigma: Tensor | float) -> Tensor:
    """The step t ∈ 1..N whose σ_t is nearest to σ in log σ (σ outside the schedule maps to 1 or N)."""
    log_s = sigmas(abar).log()  # (N,) increasing
    target = torch.as_tensor(sigma, dtype=torch.float64).log().reshape(-1)
    hi = torch.searchsorted(log_s, target).clamp(1, len(log_s) - 1)  # first index with log σ ≥ target
    lo = hi - 1
    nearer_lo = (target - log_s[lo]).abs() <= (log_s[hi] - target).abs()
    return torch.where(nearer_lo, lo, hi) + 1  # 1-based


def edm_sigma(u: Tensor, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """σ(u) = (σ_max^{1/ρ} + (1 − u)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ: u = 1 is σ_max, u = 0 σ_min. [SiD] §5"""
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + (1 - u) * (b - a)) ** rho


def generator_timesteps(
    abar: Tensor,
    n: int,
    *,
    u_max: float = 0.8,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Timesteps (n,) for the generator loss: u ~ U[0, u_max] through the EDM ρ-grid (σ ≲ 24 at u_max = 0.8),
    each mapped to the nearest discrete step of `abar`. [SiD] §5, reference/diffusion.md §1.6"""
    u = u_max * torch.rand(n, dtype=torch.float64, generator=generator)
    return timestep_of_sigma(abar, edm_sigma(u, sigma_min, sigma_max, rho))


# ------------------------------------------------------------------------------------------ the losses
def generator_loss(
    eps_real: Tensor,
    eps_fake: Tensor,
    noise: Tensor,
    *,
    alpha: float = 1.2,
    sigma: Tensor | None = None,
    kind: str = "sid",
) -> Tensor:
    r"""The generator's loss per sample (B,), every input (B, …) at the same x_t = √ᾱ x_g + √β̄ ε.

    kind="sid": L₂ − αL₁ with L₂ = ⟨ε_φ − ε_ψ, ε_φ − ε⟩ and L₁ = ‖ε_φ − ε_ψ‖², means over dimensions
    ([10085] eq. gloss-2; [SiD] eq. 23). kind="l1": the naive L₁ alone ([10085] eq. gloss-1).
    sigma (B,): when given, [SiD]'s normalisation σ²/w with w = σ·mean|ε_φ − ε| (detached, w ≥ 1e-5).
    """
    if kind not in GENERATOR_LOSSES:
        raise ValueError(f"generator_loss: kind must be one of {GENERATOR_LOSSES}, got {kind!r}")
    check_alpha(alpha, "generator_loss")
    diff = (eps_real - eps_fake).flatten(1)  # (B, D)
    l1 = diff.pow(2).mean(1)
    if kind == "l1":
        loss = l1
    else:
        l2 = (diff * (eps_real - noise).flatten(1)).mean(1)
        loss = l2 - alpha * l1
    if sigma is None:
        return loss
    sigma = sigma.to(loss.dtype).reshape(-1)
    w = (sigma * (eps_real - noise).detach().flatten(1).abs().mean(1)).clamp_min(1e-5)
    return sigma**2 / w * loss


def check_alpha(alpha: float, where: str) -> None:
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(
            f"{where}: α must be a finite number ≥ 0 (SiD's default 1.2; 0 is L₂ alone), got {alpha!r}"
        )


# ------------------------------------------------------------------------------------------ the generator
@dataclass(frozen=True)
class GeneratorConfig:
    """The teacher's architecture (DDPMConfig's fields, dropout off) and the generator's noise level."""

    shape: tuple[int, ...] = (1, 8, 8)
    steps: int = 1000
    schedule: str = "linear"
    net: str = "resmlp"
    width: int = 512
    depth: int = 4
    sigma_init: float = 2.5  # [SiD]: x_g = the teacher's x̂0 at σ_init from pure noise

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma_init) and self.sigma_init > 0):
            raise ValueError(f"sigma_init must be a positive number, got {self.sigma_init}")
        self.ddpm_config()  # the architecture's own validation

    def ddpm_config(self) -> DDPMConfig:
        mine = {f.name: getattr(self, f.name) for f in fields(DDPMConfig) if hasattr(self, f.name)}
        return DDPMConfig(**{**mine, "dropout": 0.0})

    @classmethod
    def from_teacher(cls, teacher: DDPMConfig, sigma_init: float = 2.5) -> GeneratorConfig:
        keep = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in asdict(teacher).items() if k in keep}, sigma_init=sigma_init)


class OneStepGenerator(nn.Module):
    """x_g = G_θ(z) = σ_init·(z − ε_θ(√β̄ z, t_init)) for z ~ N(0, I): one network evaluation per sample.

    `forward` returns the data scale [−1, 1] (unclamped); `sample(n)` returns what `kexue sample` writes:
    images in [0, 1], vectors as they are.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.ddpm = DDPM(config.ddpm_config())
        levels = sigmas(self.ddpm.abar)
        if not levels[0] <= config.sigma_init <= levels[-1]:
            raise ValueError(
                f"sigma_init {config.sigma_init:g} lies outside the teacher's noise levels "
                f"[{float(levels[0]):.3g}, {float(levels[-1]):.3g}] (σ = √(β̄/ᾱ)); choose one inside"
            )
        self.t_init = int(timestep_of_sigma(self.ddpm.abar, config.sigma_init))

    @classmethod
    def from_teacher(cls, teacher: DDPM, sigma_init: float = 2.5) -> OneStepGenerator:
        gen = cls(GeneratorConfig.from_teacher(teacher.config, sigma_init))
        gen.ddpm.load_state_dict(teacher.state_dict())
        return gen.to(next(teacher.parameters()).device)

    def forward(self, z: Tensor) -> Tensor:
        a = float(self.ddpm.abar[self.t_init])
        eps = self.ddpm.eps(math.sqrt(1 - a) * z, self.t_init)
        return math.sqrt((1 - a) / a) * (z - eps)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        device = next(self.parameters()).device
        x = self(torch.randn(n, *self.config.shape, generator=generator, device=device))
        return ((x + 1) / 2).clamp(0, 1) if len(self.config.shape) == 3 else x


# ------------------------------------------------------------------------------------------ training
@dataclass(frozen=True)
class SiDConfig:
    alpha: float = 1.2  # L₂ − αL₁ ([SiD] default 1.2; [10085]'s λ)
    loss: str = "sid"  # "sid" (L₂ − αL₁) or "l1" (the naive L₁, [10085] eq. gloss-1: expected to fail)
    weighting: str = "sid"  # "sid": [SiD]'s σ²/w per-sample normalisation; "none": Su's plain form
    sigma_init: float = 2.5
    steps: int = 2000  # generator updates (each after one fake-score update)
    batch_size: int = 256
    lr: float = 1e-4  # generator (Adam β1 = 0, [SiD])
    lr_fake: float = 1e-4  # fake-score net
    beta2: float = 0.999
    u_max: float = 0.8  # generator-loss noise levels: u ~ U[0, u_max] on the EDM ρ-grid (σ ≲ 24)
    ema_decay: float | None = 0.999  # generator EMA (bias-corrected, kexue.train.ema)
    seed: int = 0

    def __post_init__(self) -> None:
        check_alpha(self.alpha, "SiDConfig")
        if self.loss not in GENERATOR_LOSSES:
            raise ValueError(f"loss must be one of {GENERATOR_LOSSES}, got {self.loss!r}")
        if self.weighting not in ("sid", "none"):
            raise ValueError(f"weighting must be 'sid' or 'none', got {self.weighting!r}")
        if not (math.isfinite(self.sigma_init) and self.sigma_init > 0):
            raise ValueError(f"sigma_init must be a positive number, got {self.sigma_init}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"steps must be ≥ 0 and batch_size ≥ 1, got {self.steps}, {self.batch_size}")
        for name in ("lr", "lr_fake"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v}")
        if not 0 <= self.beta2 < 1 or not 0 < self.u_max <= 1:
            raise ValueError(f"beta2 must lie in [0, 1) and u_max in (0, 1], got {self.beta2}, {self.u_max}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")


class SiD:
    """The alternating game of [SiD] Alg. 1: one fake-score step, then one generator step, per `step()`.

    teacher: a trained `DDPM` (frozen here; never modified). The generator and the fake-score net start
    from its weights. Randomness comes from `generator` (a torch.Generator on the teacher's device).
    """

    def __init__(self, teacher: DDPM, config: SiDConfig, *, generator: torch.Generator | None = None) -> None:
        self.config = config
        self.teacher = teacher.eval().requires_grad_(False)
        self.abar = teacher.abar
        self.device = next(teacher.parameters()).device
        self.gen = OneStepGenerator.from_teacher(teacher, config.sigma_init).eval()
        self.fake = DDPM(self.gen.config.ddpm_config()).to(self.device)
        self.fake.load_state_dict(teacher.state_dict())
        betas = (0.0, config.beta2)  # [SiD]: Adam with β1 = 0
        self.opt_gen = torch.optim.Adam(self.gen.parameters(), lr=config.lr, betas=betas)
        self.opt_fake = torch.optim.Adam(self.fake.parameters(), lr=config.lr_fake, betas=betas)
        self.ema = EMA(self.gen, config.ema_decay) if config.ema_decay is not None else None
        self.rng = generator or torch.Generator(self.device).manual_seed(config.seed)
        self.step_count = 0

    def _z(self) -> Tensor:
        shape = (self.config.batch_size, *self.gen.config.shape)
        return torch.randn(shape, generator=self.rng, device=self.device)

    def fake_step(self) -> float:
        """ψ ← ψ − ∇_ψ L_simple(ε_ψ; x0 = sg[G_θ(z)])  ([10085] eq. dloss)."""
        with torch.no_grad():
            x_g = self.gen(self._z())
        self.fake.train()
        loss = loss_simple(self.fake.eps, x_g, self.abar, generator=self.rng)
        self.opt_fake.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_fake.step()
        return float(loss.detach())

    def generator_step(self) -> float:
        """θ ← θ − ∇_θ E[L₂ − αL₁] with ψ and φ frozen; the gradient flows through x_g and x_t."""
        cfg = self.config
        x_g = self.gen(self._z())
        t = generator_timesteps(self.abar, len(x_g), u_max=cfg.u_max, generator=self._cpu_rng())
        t = t.to(self.device)
        noise = torch.randn(x_g.shape, generator=self.rng, device=self.device)
        x_t = q_sample(x_g, t, self.abar, noise)
        self.fake.eval()
        sigma = sigmas(self.abar).to(self.device)[t - 1] if cfg.weighting == "sid" else None
        real, fake = self.teacher.eps(x_t, t), self.fake.eps(x_t, t)
        loss = generator_loss(real, fake, noise, alpha=cfg.alpha, sigma=sigma, kind=cfg.loss).mean()
        self.opt_gen.zero_grad(set_to_none=True)
        loss.backward(inputs=list(self.gen.parameters()))  # ψ and φ get no gradient
        self.opt_gen.step()
        if self.ema is not None:
            self.ema.update(self.gen)
        return float(loss.detach())

    def _cpu_rng(self) -> torch.Generator:
        """The timestep draw is on the CPU (float64 schedule); seeded from the main stream for replay."""
        if self.device.type == "cpu":
            return self.rng
        seed = int(torch.randint(0, 2**62, (1,), generator=self.rng, device=self.device))
        return torch.Generator().manual_seed(seed)

    def step(self) -> dict[str, float]:
        logs = {"fake_loss": self.fake_step(), "generator_loss": self.generator_step()}
        self.step_count += 1
        if not all(math.isfinite(v) for v in logs.values()):
            raise FloatingPointError(f"SiD step {self.step_count}: a loss is not finite ({logs})")
        return logs

    def averaged_generator(self) -> OneStepGenerator:
        """A copy of the generator with the EMA weights (the current weights when there is no EMA)."""
        out = copy.deepcopy(self.gen)
        if self.ema is not None and self.ema.num_updates:
            out.load_state_dict({**out.state_dict(), **self.ema.averaged()})
        return out.eval()

    def fit(self, callback: Callable[[int, SiD, dict[str, float]], None] | None = None) -> SiD:
        """Run `config.steps` alternating steps; callback(step, self, logs) after each (also at step 0)."""
        if callback is not None and self.step_count == 0:
            callback(0, self, {})
        while self.step_count < self.config.steps:
            logs = self.step()
            if callback is not None:
                callback(self.step_count, self, logs)
        return self
