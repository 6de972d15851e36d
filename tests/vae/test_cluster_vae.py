"""Su's clustering VAE [5887]: the eq. (8) KL against the exact log-ratio and Monte Carlo, the loss against
a hand-written formula, zero-initialised means, a few training steps, and bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from kexue.estimators.gaussian import gaussian_kl, gaussian_log_prob
from kexue.vae.cluster_vae import (
    ClusterVAE,
    ClusterVAEConfig,
    categorical_term,
    cluster_kl,
    reconstruction_term,
)

TINY = ClusterVAEConfig(shape=(1, 8, 8), latent=3, clusters=4, filters=4, hidden=8)


def _gaussians(gen, B=3, D=4, K=5):
    mu = torch.randn(B, D, generator=gen, dtype=torch.float64)
    logvar = 0.5 * torch.randn(B, D, generator=gen, dtype=torch.float64)
    mu_y = torch.randn(K, D, generator=gen, dtype=torch.float64)
    p_y = torch.rand(B, K, generator=gen, dtype=torch.float64).softmax(-1)
    return mu, logvar, mu_y, p_y


def test_kl_is_the_exact_log_ratio_less_half_eps_squared(gen):
    """cluster_kl(z) − ½‖ε‖² = Σ_y p(y|z) [log N(z; μ, σ²) − log N(z; μ_y, I)] sample by sample: the term
    [5887] eq. (7) → (8) drops is exactly ½‖ε‖² (the 2π constants cancel)."""
    mu, logvar, mu_y, p_y = _gaussians(gen)
    eps = torch.randn(mu.shape, generator=gen, dtype=torch.float64)
    z = mu + (0.5 * logvar).exp() * eps
    zero = torch.zeros_like(mu_y)
    exact = gaussian_log_prob(z.unsqueeze(1), mu.unsqueeze(1), logvar.unsqueeze(1)) - gaussian_log_prob(
        z.unsqueeze(1), mu_y, zero
    )  # (B, K): log p(z|x)/q(z|y)
    ours = cluster_kl(z, logvar, mu_y, p_y) - 0.5 * eps.pow(2).sum(-1)
    torch.testing.assert_close(ours, (p_y * exact).sum(-1), rtol=1e-12, atol=1e-12)


def test_kl_monte_carlo_matches_closed_form(gen):
    """For p(y|z) held fixed, E_z[cluster_kl] − D/2 = Σ_y p_y KL(N(μ, σ²) ‖ N(μ_y, I)) (E‖ε‖² = D)."""
    mu, logvar, mu_y, p_y = _gaussians(gen)
    B, D = mu.shape
    n = 20_000
    eps = torch.randn(n, B, D, generator=gen, dtype=torch.float64)
    z = (mu + (0.5 * logvar).exp() * eps).reshape(n * B, D)  # (n·B, D)
    kl = cluster_kl(z, logvar.repeat(n, 1), mu_y, p_y.repeat(n, 1)).reshape(n, B) - D / 2  # (n, B)
    closed = (p_y * gaussian_kl(mu.unsqueeze(1), logvar.unsqueeze(1), mu_y, torch.zeros_like(mu_y))).sum(-1)
    stderr = kl.std(0) / math.sqrt(n)
    assert ((kl.mean(0) - closed).abs() < 5 * stderr).all(), (kl.mean(0), closed, stderr)


def test_categorical_term_is_kl_to_uniform_less_log_k(gen):
    p = torch.rand(6, 10, generator=gen, dtype=torch.float64).softmax(-1)
    kl_uniform = (p * (p * 10).log()).sum(-1)
    torch.testing.assert_close(categorical_term(p), kl_uniform - math.log(10), rtol=0, atol=1e-6)


def test_loss_equals_hand_written_formula(gen):
    """λ·½Σ(x − x̂)² + Σ_k p_k(−½Σ log σ² + ½‖z − μ_k‖²) + Σ_k p_k log(p_k + 1e-7), batch-averaged, with
    z = μ + σ ε from the same generator — written out per sample with Python loops."""
    torch.manual_seed(0)
    model = ClusterVAE(TINY).double()
    with torch.no_grad():
        model.mu_y.copy_(torch.randn(model.mu_y.shape, generator=gen, dtype=torch.float64))
    x = torch.rand(5, 1, 8, 8, generator=gen, dtype=torch.float64)
    terms = model.loss((x, torch.zeros(5, dtype=torch.long)), generator=torch.Generator().manual_seed(7))

    mu, logvar = model.encode(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    z = mu + torch.exp(logvar / 2) * eps
    x_hat, p = model.decode(z), model.classifier(z).softmax(-1)
    total = 0.0
    for b in range(5):
        rec = 0.5 * ((x[b] - x_hat[b]) ** 2).sum()
        kl = sum(
            p[b, k] * (-0.5 * logvar[b].sum() + 0.5 * ((z[b] - model.mu_y[k]) ** 2).sum()) for k in range(4)
        )
        cat = sum(p[b, k] * torch.log(p[b, k] + 1e-7) for k in range(4))
        total = total + 2.5 * rec + kl + cat
    torch.testing.assert_close(terms["loss"], total / 5, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms["rec"], reconstruction_term(x, x_hat).mean())


def test_means_start_at_zero_so_every_cluster_generates_alike(gen):
    torch.manual_seed(0)
    model = ClusterVAE(TINY)
    assert model.mu_y.shape == (4, 3) and not model.mu_y.any()
    a = model.sample_cluster(0, 5, generator=torch.Generator().manual_seed(1))
    b = model.sample_cluster(3, 5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (5, 1, 8, 8) and torch.equal(a, b) and ((a > 0) & (a < 1)).all()


@pytest.mark.parametrize("arch", ["conv", "mlp"])
def test_cluster_is_argmax_of_the_classifier_at_the_mean(gen, arch):
    torch.manual_seed(0)
    model = ClusterVAE(replace(TINY, arch=arch, mlp=(16, 8))).eval()
    x = torch.rand(7, 1, 8, 8, generator=gen)
    pred = model.cluster(x, batch_size=3)
    assert pred.dtype == torch.int64 and pred.shape == (7,)
    with torch.no_grad():
        expected = model.classifier(model.encode(x)[0]).argmax(-1)
    assert torch.equal(pred, expected)
    assert model.decode(torch.zeros(2, 3)).shape == (2, 1, 8, 8)


def test_a_few_steps_on_digits_lower_the_loss():
    from kexue.registry import load_data
    from kexue.train.trainer import TrainConfig, Trainer

    data = load_data("digits", split="train")
    x = data.floats("unit")[:200]
    torch.manual_seed(0)
    model = ClusterVAE(ClusterVAEConfig(shape=(1, 8, 8), filters=8, hidden=32))

    def fixed_loss() -> float:
        with torch.no_grad():
            return float(model.loss((x,), generator=torch.Generator().manual_seed(0))["loss"])

    before = fixed_loss()
    Trainer(model, data.subset(slice(0, 200)).tensor_dataset("unit"), TrainConfig(
        steps=60, batch_size=50, lr=3e-3, progress=False, seed=0
    )).fit()  # fmt: skip
    assert fixed_loss() < 0.8 * before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (1, 28, 26)}, "divisible by 4"),
        ({"clusters": 1}, "clusters ≥ 2"),
        ({"latent": 0}, "≥ 1"),
        ({"lam": 0.0}, "lam must be a positive"),
        ({"lam": float("nan")}, "lam must be a positive"),
        ({"arch": "resnet"}, "arch must be 'conv' or 'mlp'"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClusterVAEConfig(**kwargs)


def test_bad_input():
    model = ClusterVAE(TINY)
    with pytest.raises(ValueError, match=r"expects float images \(B, 1, 8, 8\)"):
        model.loss((torch.rand(2, 1, 28, 28),))
    with pytest.raises(ValueError, match="float images"):
        model.cluster(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="0 ≤ k < 4"):
        model.sample_cluster(4, 1)
