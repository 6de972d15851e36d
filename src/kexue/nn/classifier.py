"""A small image classifier: the FID-proxy's feature extractor and the model of the noise/penalty study.

Two shapes, both with a `feature_dim`-wide penultimate layer whose activations are the FID-proxy's
features (`features(x)`):
- "mlp":  flatten → Linear(D, width) → act → Linear(width, feature_dim) → act → Linear(feature_dim, K)
- "conv": [Conv3×3 → act → MaxPool2] × 2 (width, 2·width channels) → Linear(·, feature_dim) → act → Linear
Inputs are images in [0, 1], shape (B, C, H, W).

`regularizer` picks the training objective of post 7466 (see kexue.train.adversarial):
"none" | "noise" (x+ε, ε~N(0,σ²)) | "gp" (½σ² Σ_i p_i‖∇_x log p_i‖², exact) | "gp-sampled" (same, one
backward with Rademacher η) | "fgm" (x + ε∇l/‖∇l‖) | "vat" (KL to the virtual-adversarial point).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.train import adversarial as adv

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "softplus": nn.Softplus, "tanh": nn.Tanh}
REGULARIZERS = ("none", "noise", "gp", "gp-sampled", "fgm", "vat")


@dataclass(frozen=True)
class ClassifierConfig:
    in_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W)
    num_classes: int = 10
    arch: str = "conv"  # "conv" or "mlp"
    width: int = 32  # conv: channels of the first block; mlp: hidden width
    feature_dim: int = 128  # penultimate width = FID-proxy feature size
    activation: str = "relu"  # relu | gelu | softplus | tanh (smooth ones make Δ_x l non-degenerate)
    regularizer: str = "none"  # see module docstring
    sigma: float = 0.1  # noise std for "noise"; the σ of the ½σ² penalty for "gp"
    epsilon: float = 1.0  # L2 radius for "fgm" and "vat"

    def __post_init__(self) -> None:
        if self.arch not in ("conv", "mlp"):
            raise ValueError(f"arch must be 'conv' or 'mlp', got {self.arch!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {self.regularizer!r}")
        if self.arch == "conv" and (self.in_shape[1] % 4 or self.in_shape[2] % 4):
            raise ValueError(f"the conv classifier needs H and W divisible by 4, got {self.in_shape}")


class Classifier(nn.Module):
    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        c, h, w = config.in_shape
        act = ACTIVATIONS[config.activation]
        if config.arch == "mlp":
            self.body = nn.Sequential(
                nn.Flatten(),
                nn.Linear(c * h * w, config.width),
                act(),
                nn.Linear(config.width, config.feature_dim),
                act(),
            )
        else:
            k = config.width
            self.body = nn.Sequential(
                nn.Conv2d(c, k, 3, padding=1),
                act(),
                nn.MaxPool2d(2),  # (B, k, H/2, W/2)
                nn.Conv2d(k, 2 * k, 3, padding=1),
                act(),
                nn.MaxPool2d(2),  # (B, 2k, H/4, W/4)
                nn.Flatten(),
                nn.Linear(2 * k * (h // 4) * (w // 4), config.feature_dim),
                act(),
            )
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (B, feature_dim): the FID-proxy's feature space."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))  # (B, K) logits

    def loss(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        x, y = batch
        cfg = self.config
        reg = cfg.regularizer
        terms: dict[str, Tensor] = {}
        if reg == "noise":
            logits = self(adv.gaussian_noise(x, cfg.sigma))
        elif reg == "fgm":
            r = adv.fgm_perturbation(lambda z: F.cross_entropy(self(z), y, reduction="sum"), x, cfg.epsilon)
            logits = self(x + r)
        else:
            x_in = x.detach().requires_grad_(True) if reg in ("gp", "gp-sampled") else x
            logits = self(x_in)
        ce = F.cross_entropy(logits, y)
        loss = ce
        if reg in ("gp", "gp-sampled"):
            pen = adv.fisher_penalty(logits, x_in, sampled=reg == "gp-sampled").mean()
            terms["penalty"] = pen
            loss = ce + 0.5 * cfg.sigma**2 * pen
        elif reg == "vat":
            r = adv.vat_perturbation(self, x, cfg.epsilon)
            terms["vat"] = adv.kl_logits(logits.detach(), self(x + r)).mean()
            loss = ce + terms["vat"]
        acc = (logits.argmax(-1) == y).float().mean()
        return {"loss": loss, "ce": ce.detach(), "acc": acc, **terms}


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 1024) -> float:
    """Top-1 accuracy of `model` (logits) on (x, y), in batches."""
    dev = next(model.parameters()).device
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i : i + batch_size].to(dev)).argmax(-1).cpu() == y[i : i + batch_size]).sum())
    return correct / max(1, len(x))
