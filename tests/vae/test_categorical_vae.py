"""Identities of the categorical VAE ([6705], [GS]): the KL to the uniform prior, the discrete −ELBO by hand,
every estimator's gradient on a two-class toy, and clear errors for bad configurations."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kexue.vae.categorical_vae import (
    ESTIMATORS,
    CategoricalVAE,
    CategoricalVAEConfig,
    anneal_tau,
    kl_to_uniform,
    negative_elbo,
)


def test_kl_to_uniform_is_sum_p_log_p_plus_n_log_k(gen):
    logits = 2 * torch.randn(5, 3, 4, generator=gen, dtype=torch.float64)  # (B, N, K)
    p = logits.softmax(-1)
    by_definition = (p * p.log()).sum((-1, -2)) + 3 * math.log(4)  # [6705]: Σ p log p + N log K
    uniform = torch.distributions.Categorical(logits=torch.zeros_like(logits))
    by_torch = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=logits), uniform)
    assert torch.allclose(kl_to_uniform(logits), by_definition)
    assert torch.allclose(kl_to_uniform(logits), by_torch.sum(-1))
    assert torch.allclose(kl_to_uniform(torch.zeros(2, 3, 4, dtype=torch.float64)), torch.zeros(2).double())


def test_negative_elbo_by_hand():
    """N = 1, K = 3, q = (½, ¼, ¼); two pixels x = (1, 0) with decoder logits (0, log 3):
    KL = ½ log ½ + 2·¼ log ¼ + log 3 = log 3 − (3/2) log 2;  −log p(x|z) = −log σ(0) − log(1 − σ(log 3))
    = log 2 + log 4.  Sum: log 3 + (3/2) log 2."""
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    logits = torch.tensor([[[0.5, 0.25, 0.25]]], dtype=torch.float64).log()
    x_logits = torch.tensor([[0.0, math.log(3)]], dtype=torch.float64)
    expected = math.log(3) + 1.5 * math.log(2)
    assert negative_elbo(x, logits, x_logits).item() == pytest.approx(expected, abs=1e-12)


def _tiny(estimator: str, **kw) -> CategoricalVAE:
    cfg = CategoricalVAEConfig(in_dim=6, latents=3, classes=4, hidden=(8,), estimator=estimator, **kw)
    return CategoricalVAE(cfg).double()


def test_reported_nelbo_is_the_discrete_model_for_every_estimator(gen):
    """Same weights, same noise: every estimator reports the same −ELBO, that of the decoder fed the
    Gumbel-max one-hot (recomputed here by hand from the same generator stream)."""
    x = torch.rand(7, 6, generator=gen, dtype=torch.float64)
    base = _tiny("gumbel", tau=0.7)
    reported = {}
    for est in ESTIMATORS:
        model = _tiny(est, tau=0.7)
        model.load_state_dict(base.state_dict(), strict=False)
        reported[est] = model.loss((x,), generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    xb = torch.bernoulli(x.float(), generator=g).double()  # dynamic binarization draws first
    logits = base.encode(xb)
    u = torch.rand(logits.shape, generator=g, dtype=torch.float64)  # then the Gumbel noise
    gumbel = -torch.log(-torch.log(u.clamp(torch.finfo(torch.float64).tiny, 1 - 2**-52)))
    hard = F.one_hot((logits + gumbel).argmax(-1), 4).double()
    by_hand = negative_elbo(xb, logits, base.decode(hard)).mean()
    for est, out in reported.items():
        assert out["nelbo"].item() == pytest.approx(by_hand.item(), rel=1e-12), est
        if est != "gumbel":  # their surrogates' values are the discrete −ELBO itself
            assert out["loss"].item() == pytest.approx(by_hand.item(), rel=1e-12), est
    assert reported["gumbel"]["loss"].item() != pytest.approx(by_hand.item(), rel=1e-6)  # relaxed input


def _two_class_toy(estimator: str) -> CategoricalVAE:
    """One latent, K = 2, one pixel x = 1. q uniform (encoder weights 0, so ∂KL = 0 there); class 0 decodes
    to logit +3 (good reconstruction), class 1 to −3. The exact gradient of the −ELBO in o_0 is
    q_0 q_1 (f_0 − f_1) = ¼ (softplus(−3) − softplus(3)) = −0.75 < 0, and +0.75 in o_1."""
    cfg = CategoricalVAEConfig(
        in_dim=1, latents=1, classes=2, hidden=(), estimator=estimator, binarize=False, tau=0.5
    )
    model = CategoricalVAE(cfg).double()
    with torch.no_grad():
        enc, dec = model.encoder[0], model.decoder[0]
        enc.weight.zero_()
        enc.bias.zero_()
        dec.weight.copy_(torch.tensor([[3.0, -3.0]]))
        dec.bias.zero_()
    return model


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_has_a_finite_gradient_of_the_right_sign(estimator, gen):
    model = _two_class_toy(estimator)
    x = torch.ones(4000, 1, dtype=torch.float64)
    model.loss((x,), generator=gen)  # warm the moving-average baseline (the first call returns b = 0)
    model.zero_grad()
    model.loss((x,), generator=gen)["loss"].backward()
    grad = model.encoder[0].bias.grad  # mean over the batch of ∂surrogate/∂o
    exact = 0.25 * (F.softplus(torch.tensor(-3.0)) - F.softplus(torch.tensor(3.0))).item()  # −0.75
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert grad[0] < 0 < grad[1], grad
    if estimator.startswith("sf"):  # unbiased: within a few standard errors (|f·score| ≤ 1.6 per draw)
        assert grad[0].item() == pytest.approx(exact, abs=0.15)


def test_model_in_float32_trains_a_step(gen):
    model = CategoricalVAE(CategoricalVAEConfig(in_dim=6, latents=2, classes=3, hidden=(5,), estimator="sf"))
    out = model.loss((torch.rand(4, 1, 2, 3, generator=gen),), generator=gen)
    out["loss"].backward()
    assert set(out) >= {"loss", "nelbo", "recon", "kl", "baseline_mse", "tau"}
    assert model.baseline_net is not None and model.baseline_net[0].weight.grad is not None


def test_anneal_tau():
    assert anneal_tau(0) == 1.0 and anneal_tau(10**7) == 0.5  # [GS]: τ0 = 1, floor 0.5
    assert anneal_tau(1000, tau0=2.0, tau_min=0.1, rate=1e-3) == pytest.approx(2 * math.exp(-1))


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"estimator": "reinforce"}, "estimator must be one of"),
        ({"tau": 0.0}, "temperature"),
        ({"classes": 1}, "K ≥ 2"),
        ({"latents": 0}, "latents"),
        ({"baseline_decay": 1.0}, "baseline_decay"),
    ],
)
def test_bad_config_is_a_value_error(kw, message):
    with pytest.raises(ValueError, match=message):
        CategoricalVAEConfig(**kw)


def test_bad_inputs_are_value_errors():
    with pytest.raises(ValueError, match="expects 6 pixels"):
        _tiny("gumbel").loss((torch.rand(2, 5, dtype=torch.float64),))
    with pytest.raises(ValueError, match="rate"):
        anneal_tau(3, rate=-1.0)


def test_sample_and_evaluate_shapes(gen):
    model = _tiny("st-gumbel")
    assert model.sample(5, generator=gen).shape == (5, 6)
    x = torch.bernoulli(torch.full((3, 6), 0.5, dtype=torch.float64), generator=gen)
    one = model.evaluate(x, generator=copy.deepcopy(gen))
    assert one.shape == (3,) and torch.isfinite(one).all()
