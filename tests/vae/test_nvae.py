"""NVAE [7574]: the residual-normal KL against the generic Gaussian KL and Monte Carlo, the warm-up and
balancing formulas of [VK20], the spectral regulariser against the SVD, shapes through the hierarchy, the
IWAE adapter, a short training run on digits, and clear errors on bad configs."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from kexue.data.binarize import static_binarize
from kexue.estimators.gaussian import gaussian_kl, gaussian_log_prob
from kexue.vae.iwae import iwae_bound
from kexue.vae.nvae import (
    NVAE,
    NVAEConfig,
    Whitened,
    group_alphas,
    group_statistics,
    kl_balance_coeffs,
    kl_warmup,
    reestimate_bn,
    residual_normal_kl,
)

TINY = {"shape": (1, 8, 8), "channels": 4, "latent": 2, "groups": (1, 2)}


def tiny(**kw) -> NVAE:
    return NVAE(NVAEConfig(**{**TINY, **kw})).double()


def binary(gen, n=5, shape=(1, 8, 8)) -> torch.Tensor:
    return static_binarize(torch.rand(n, *shape, generator=gen, dtype=torch.float64), 0)


# ------------------------------------------------------------------------------------------- the KL
def test_residual_kl_equals_the_gaussian_kl(gen):
    """KL(N(μ+Δμ, σ²Δσ²) ‖ N(μ, σ²)) by [7574] eq. 5 = the generic diagonal-Gaussian KL, any μ."""
    mu, dmu, logvar, dlogvar = torch.randn(4, 3, 7, generator=gen, dtype=torch.float64)
    closed = residual_normal_kl(dmu, dlogvar, logvar)
    generic = gaussian_kl(mu + dmu, logvar + dlogvar, mu, logvar)
    assert closed.shape == (3,)
    assert torch.allclose(closed, generic, rtol=1e-12, atol=1e-12)


def test_residual_kl_matches_monte_carlo(gen):
    """E_q[log q(z) − log p(z)] over 200k draws is the closed form within 4 standard errors."""
    mu, dmu, logvar, dlogvar = 0.5 * torch.randn(4, 5, generator=gen, dtype=torch.float64)
    mu_q, logvar_q = mu + dmu, logvar + dlogvar
    z = mu_q + (0.5 * logvar_q).exp() * torch.randn(200_000, 5, generator=gen, dtype=torch.float64)
    diff = gaussian_log_prob(z, mu_q, logvar_q) - gaussian_log_prob(z, mu, logvar)  # (N,)
    se = diff.std() / math.sqrt(len(diff))
    assert abs(diff.mean() - residual_normal_kl(dmu, dlogvar, logvar)) < 4 * se


def test_model_group_kl_is_its_log_ratio_in_expectation(gen):
    """The model's closed-form KL of the top group = the mean of log q − log p over its own samples."""
    model = tiny().eval()
    x = binary(gen, n=1).expand(1500, -1, -1, -1)
    with torch.no_grad():
        _, stats = model(x, generator=gen)
    g = stats[0]  # z_1: its KL does not depend on samples from above
    diff = g.log_q - g.log_p
    assert abs(diff.mean() - g.kl[0]) < 4 * diff.std() / math.sqrt(len(diff))
    assert torch.allclose(g.kl, g.kl[0].expand_as(g.kl))


def test_direct_posterior_kl_is_the_gaussian_kl(gen):
    """The ablation without the residual parameterisation still reports KL(q ‖ p) exactly."""
    model = tiny(residual_posterior=False).eval()
    with torch.no_grad():
        _, stats = model(binary(gen), generator=gen)
    for g in stats:
        assert torch.isfinite(g.kl).all() and (g.kl >= 0).all()


# ------------------------------------------------------------------------------------------- schedules
def test_warmup_values():
    """β_t = max(min((t − t_c)/t_a, 1), β_min), t_a = 0.3T, t_c = 1e-4·T, β_min = 1e-4 (reference §1.4)."""
    total = 1000  # t_c = 0.1, t_a = 300
    assert kl_warmup(0, total) == 1e-4  # (0 − 0.1)/300 < 0 → the floor
    assert kl_warmup(0.1, total) == 1e-4
    assert kl_warmup(150.1, total) == pytest.approx(0.5)
    assert kl_warmup(75.1, total) == pytest.approx(0.25)
    assert kl_warmup(300.1, total) == pytest.approx(1.0)
    assert kl_warmup(900, total) == 1.0
    assert kl_warmup(0, total, warmup=0.0) == 1.0  # warm-up switched off
    model = tiny()
    model.progress = 0.1501
    assert model.beta == pytest.approx(0.5)


def test_balancing_coefficients(gen):
    """Mean 1, detached, ∝ (mean|KL_l| + 0.01)/α_l."""
    kl = torch.rand(8, 4, generator=gen, dtype=torch.float64).mul(5).requires_grad_()
    alpha = group_alphas((2, 2), (49, 196))
    assert alpha.tolist() == [1.0, 1.0, 4.0, 4.0]  # area/groups: 24.5 and 98, smallest set to 1
    c = kl_balance_coeffs(kl, alpha)
    assert not c.requires_grad
    assert c.mean().item() == pytest.approx(1.0)
    raw = (kl.detach().mean(0) + 0.01) / alpha
    assert torch.allclose(c / c[0], raw / raw[0])


def test_loss_balances_only_during_warmup(gen):
    model = tiny()
    x = binary(gen, n=8)
    model.progress = 0.05  # β < 1
    out = model.loss((x,))
    coeffs = torch.stack([out[f"c{l}"] for l in range(model.num_groups)])
    assert coeffs.mean().item() == pytest.approx(1.0) and not torch.allclose(coeffs, torch.ones(3).double())
    kl_sum = sum(out[f"kl{l}"] for l in range(model.num_groups))
    assert torch.allclose(out["nelbo"], out["rec"] + kl_sum)
    model.progress = 1.0  # β = 1: every coefficient is 1
    out = model.loss((x,))
    assert all(out[f"c{l}"].item() == 1.0 for l in range(model.num_groups)) and out["beta"].item() == 1.0


# ------------------------------------------------------------------------------------------- SR
def test_spectral_penalty_equals_svd(gen):
    """Σ σ_max(W) by power iteration (persistent u) → Σ ‖W.flatten(1)‖₂ by SVD, plus Σ max|γ|."""
    model = tiny(power_iters=20)
    with torch.no_grad():
        for bn in model.bns:
            bn.weight.copy_(torch.randn(bn.weight.shape, generator=gen, dtype=torch.float64))
    for _ in range(5):  # 200 + 4·20 rounds from the persistent vectors
        value = model.spectral_penalty()
    svd = sum(torch.linalg.matrix_norm(c.weight.detach().flatten(1), 2) for c in model.convs)
    gamma = sum(bn.weight.detach().abs().max() for bn in model.bns)
    assert value.item() == pytest.approx((svd + gamma).item(), rel=1e-4)
    assert value.requires_grad and bool(model.sr_started)


def test_spectral_penalty_off_leaves_no_term(gen):
    out = tiny(sr_lambda=0.0).loss((binary(gen),))
    assert "sr" not in out and "sr" in tiny().loss((binary(gen),))


# ------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("groups", [(1, 2), (1, 1, 1)])
def test_shapes_through_the_hierarchy(gen, groups):
    """Scales H/2^S … H/2 top-down, channels doubling per coarser scale; logits at H×W."""
    model = tiny(groups=groups)
    x = binary(gen, n=3)
    feats = model.bottom_up(x)
    assert len(feats) == model.num_groups == sum(groups)
    n_scales = len(groups)
    for f, (i, _) in zip(feats, model.layout):
        side = 8 // 2 ** (n_scales - i)
        assert f.shape == (3, 4 * 2 ** (n_scales - 1 - i), side, side)
    logits, stats = model.top_down(feats, 3, generator=gen)
    assert logits.shape == (3, 1, 8, 8)
    for g, d, (i, _) in zip(stats, model.group_dims(), model.layout):
        side = 8 // 2 ** (n_scales - i)
        assert g.z.shape == (3, 2, side, side) and g.mu_q.shape == (3, d) and g.kl.shape == (3,)
    samples = model.sample(4, generator=gen, temperature=0.7)
    assert samples.shape == (4, 1, 8, 8) and ((samples >= 0) & (samples <= 1)).all()


def test_sampling_is_reproducible_and_bn_reestimation(gen):
    model = tiny()
    a = model.eval().sample(3, generator=torch.Generator().manual_seed(5))
    b = model.sample(3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    enc_bn, dec_bn = model.bns[0], next(m for m in model.up.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        enc_bn.running_mean.fill_(0.3)
    before = dec_bn.running_var.clone()
    reestimate_bn(model, batches=2, batch_size=8, generator=gen)
    assert not model.training and not torch.equal(before, dec_bn.running_var)
    assert dec_bn.momentum == 0.05 and (enc_bn.running_mean == 0.3).all()  # the encoder's are kept


# ------------------------------------------------------------------------------------------- IWAE
def test_whitened_view_gives_the_log_weight(gen):
    """Through kexue.vae.iwae, K = 1 with the same ε is NVAE's own log p(x, z) − log q(z|x)."""
    model = tiny().eval()
    x = binary(gen, n=4)
    view = Whitened(model)
    eps = torch.randn(1, 4, sum(model.group_dims()), generator=gen, dtype=torch.float64)
    parts = eps[0].split(model.group_dims(), dim=1)
    e = [p.reshape(4, 2, *model.res[i]) for p, (i, _) in zip(parts, model.layout)]
    with torch.no_grad():
        direct = model.log_weight(x, eps=e)
        bound = iwae_bound(view, x, 1, eps=eps)
        many = iwae_bound(view, x, 64, generator=gen, chunk=16)
        elbo = torch.stack([model.elbo(x, generator=gen) for _ in range(64)]).mean(0)
    assert torch.allclose(direct, bound, rtol=1e-10, atol=1e-9)
    assert (many > elbo - 1.0).all()  # L_64 ≥ ELBO (up to Monte Carlo noise in the ELBO average)


def test_group_statistics(gen):
    model = tiny().eval()
    rows = group_statistics(model, binary(gen, n=20), generator=gen)
    assert [r["group"] for r in rows] == [0, 1, 2] and [r["scale"] for r in rows] == [2, 4, 4]
    assert all(0 <= r["au"] <= r["dims"] and r["kl"] >= 0 for r in rows)


# ------------------------------------------------------------------------------------------- training
def test_training_on_digits_lowers_the_loss(gen):
    from kexue.registry import load_data
    from kexue.train.callbacks import HyperparamSchedule
    from kexue.train.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    x = load_data("digits", split="train").floats("unit")[:256]
    model = NVAE(NVAEConfig(shape=(1, 8, 8), channels=4, latent=2, groups=(1, 1)))
    x_eval = static_binarize(x[:64], 0)

    def nelbo() -> float:
        with torch.no_grad():
            return -model.elbo(x_eval, generator=torch.Generator().manual_seed(1)).mean().item()

    before = nelbo()
    steps = 30
    trainer = Trainer(
        model,
        TensorDataset(x),
        TrainConfig(steps=steps, batch_size=64, lr=1e-2, progress=False),
        callbacks=[HyperparamSchedule(model, "progress", lambda s: s / steps)],
    )
    trainer.fit()
    after = nelbo()
    assert math.isfinite(after) and after < before - 5, (before, after)
    assert model.beta == 1.0 or model.progress < 1


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "bad",
    [
        {"groups": ()},
        {"groups": (2, 0)},
        {"shape": (1, 6, 6)},  # 6 is not divisible by 2² for two scales
        {"warmup": 1.5},
        {"beta_min": 0.0},
        {"sr_lambda": -1.0},
        {"power_iters": 0},
        {"binarize": "static"},
        {"channels": 0},
    ],
)
def test_bad_config_raises(bad):
    with pytest.raises(ValueError):
        NVAEConfig(**{**TINY, **bad})


def test_bad_inputs_raise(gen):
    model = tiny()
    with pytest.raises(ValueError, match="shape"):
        model.loss((torch.rand(2, 1, 28, 28, dtype=torch.float64),))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.loss((2 * torch.ones(2, 1, 8, 8, dtype=torch.float64),))
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, temperature=0.0)
    with pytest.raises(ValueError, match="positive"):
        kl_warmup(1, 0)
