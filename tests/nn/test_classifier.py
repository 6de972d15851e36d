"""The noise/penalty-study classifier: every regularizer's loss backpropagates, each objective is the one the
module docstring names (the "gp" loss is ce + ½σ²·Σ_i p_i‖∇_x log p_i‖² against per-sample Jacobians),
features have the stated shape, bad configs are refused, and `accuracy` counts argmax hits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import jacobian

from helpers import digits_like, small_classifier
from kexue.nn.classifier import REGULARIZERS, Classifier, ClassifierConfig, accuracy
from kexue.train import adversarial as adv

SIGMA, EPS = 0.3, 0.5


def setup(reg: str, dtype=torch.float32):
    torch.manual_seed(0)
    model = small_classifier(reg, sigma=SIGMA, epsilon=EPS, activation="softplus").to(dtype)
    x, y = digits_like(n=16, dtype=dtype).tensors  # x: (16, 1, 4, 4)
    return model, x, y


@pytest.mark.parametrize("reg", REGULARIZERS)
def test_every_regularizer_trains(reg):
    model, x, y = setup(reg)
    out = model.loss((x, y))
    extra = {"gp": {"penalty"}, "gp-sampled": {"penalty"}, "vat": {"vat"}}.get(reg, set())
    assert out.keys() == {"loss", "ce", "acc"} | extra
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    assert not out["ce"].requires_grad and 0 <= out["acc"] <= 1
    out["loss"].backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)
    if reg == "none":
        assert torch.equal(out["loss"].detach(), out["ce"])


@pytest.mark.parametrize("reg", ["gp", "gp-sampled"])
def test_gp_loss_is_ce_plus_half_sigma_squared_penalty(reg):
    model, x, y = setup(reg, torch.float64)
    out = model.loss((x, y))
    torch.testing.assert_close(out["loss"], out["ce"] + 0.5 * SIGMA**2 * out["penalty"], rtol=1e-14, atol=0)
    torch.testing.assert_close(out["ce"], F.cross_entropy(model(x), y), rtol=1e-14, atol=0)
    pens = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        pens.append(model.loss((x, y))["penalty"].detach())
    assert torch.equal(*pens) == (reg == "gp")  # only the sampled one draws η
    if reg == "gp":  # the exact penalty, from per-sample Jacobians (post 7466 eq. 15, λ_i = 1/f_i)
        ref = []
        for xb in x:
            j = jacobian(lambda v: torch.log_softmax(model(v[None])[0], -1), xb).flatten(1)  # (K, C·H·W)
            p = torch.softmax(model(xb[None])[0], -1)
            ref.append((p * j.pow(2).sum(1)).sum())
        torch.testing.assert_close(
            out["penalty"].detach(), torch.stack(ref).mean().detach(), rtol=1e-12, atol=0
        )


def test_fgm_vat_and_noise_losses_use_their_perturbations():
    """fgm: ce at x + ε∇l/‖∇l‖; vat: ce + KL(f(x) ‖ f(x + r_vat)); noise: ce at x + σε (same global draws)."""
    model, x, y = setup("fgm", torch.float64)
    r = adv.fgm_perturbation(lambda v: F.cross_entropy(model(v), y, reduction="sum"), x, EPS)
    torch.testing.assert_close(model.loss((x, y))["ce"], F.cross_entropy(model(x + r), y), rtol=1e-14, atol=0)

    model, x, y = setup("vat", torch.float64)
    torch.manual_seed(1)
    out = model.loss((x, y))
    torch.manual_seed(1)
    r = adv.vat_perturbation(model, x, EPS)
    vat = adv.kl_logits(model(x), model(x + r)).mean()
    torch.testing.assert_close(out["vat"], vat, rtol=1e-12, atol=0)
    torch.testing.assert_close(out["loss"], out["ce"] + vat, rtol=1e-12, atol=0)

    model, x, y = setup("noise", torch.float64)
    torch.manual_seed(1)
    out = model.loss((x, y))
    torch.manual_seed(1)
    noisy = x + SIGMA * torch.randn(x.shape, dtype=torch.float64)
    torch.testing.assert_close(out["ce"], F.cross_entropy(model(noisy), y), rtol=1e-14, atol=0)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_features_shape_and_head(arch):
    torch.manual_seed(0)
    cfg = ClassifierConfig(in_shape=(2, 8, 12), num_classes=5, arch=arch, width=4, feature_dim=6)
    model = Classifier(cfg)
    x = torch.rand(3, 2, 8, 12)
    feats = model.features(x)
    assert feats.shape == (3, 6)
    assert torch.equal(model(x), model.head(feats))


def test_config_validation():
    with pytest.raises(ValueError, match="divisible by 4"):
        ClassifierConfig(in_shape=(1, 6, 8), arch="conv")
    with pytest.raises(ValueError, match="divisible by 4"):
        ClassifierConfig(in_shape=(1, 8, 10), arch="conv")
    ClassifierConfig(in_shape=(1, 6, 10), arch="mlp")  # any shape for the MLP
    with pytest.raises(ValueError, match="arch"):
        ClassifierConfig(arch="rnn")
    with pytest.raises(ValueError, match="activation"):
        ClassifierConfig(activation="swish")
    with pytest.raises(ValueError, match="regularizer"):
        ClassifierConfig(regularizer="dropout")


class OneHot(nn.Module):
    """Predicts the class written in x[:, 0]: its accuracy is the fraction of labels that agree."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # accuracy() reads the device off a parameter

    def forward(self, x):
        return F.one_hot(x[:, 0].long(), 4).float()


@pytest.mark.parametrize("batch_size", [1, 7, 1024])
def test_accuracy_counts_argmax_hits(gen, batch_size):
    pred = torch.randint(0, 4, (20,), generator=gen)
    y = pred.clone()
    y[[1, 5, 6, 13, 19]] = (y[[1, 5, 6, 13, 19]] + 1) % 4  # 5 of 20 wrong
    x = torch.stack([pred.float(), torch.zeros(20)], 1)
    assert accuracy(OneHot(), x, y, batch_size=batch_size) == 15 / 20
    assert accuracy(OneHot(), x[:0], y[:0]) == 0.0  # empty input: no division by zero
