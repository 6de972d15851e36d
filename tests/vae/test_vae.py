"""The VAE of [5253]/[5343]: its loss terms against their definitions, the nets' shapes, binarisation,
a short training run on digits, and clear errors on bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kexue.data.binarize import dynamic_binarize, static_binarize
from kexue.estimators.gaussian import gaussian_log_prob
from kexue.vae import VAE, VAEConfig
from kexue.vae.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder


def small(**kw) -> VAE:
    base = {"shape": (1, 8, 8), "z_dim": 3, "hidden": (16,)}
    return VAE(VAEConfig(**{**base, **kw})).double()


def images(gen, n=6, shape=(1, 8, 8)) -> torch.Tensor:
    return torch.rand(n, *shape, generator=gen, dtype=torch.float64)


# ------------------------------------------------------------------------------------------- loss terms
def test_bernoulli_rec_is_summed_bce(gen):
    """rec = Σ_pixels BCE(x, sigmoid(decoder(z))) at z = μ + σε ([5343] eq. 18, Su's summed BCE)."""
    model = small()
    x = dynamic_binarize(images(gen), generator=gen)
    eps = torch.randn(len(x), 3, generator=gen, dtype=torch.float64)
    rec, kl = model.elbo_terms(x, eps=eps)
    mu, logvar = model.encode(x)
    rho = torch.sigmoid(model.decode(mu + (0.5 * logvar).exp() * eps))
    bce = F.binary_cross_entropy(rho, x, reduction="none").flatten(1).sum(1)
    assert torch.allclose(rec, bce, rtol=1e-10, atol=1e-10)
    assert torch.allclose(model.elbo(x, eps=eps), -(rec + kl))


def test_loss_is_the_batch_mean_of_rec_plus_kl(gen):
    """loss(batch) = mean(rec + kl) with ε from the global generator; rec and kl are logged."""
    model = small()
    x = dynamic_binarize(images(gen), generator=gen)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        out = model.loss((x, torch.zeros(len(x))))
        torch.manual_seed(5)
        rec, kl = model.elbo_terms(x, eps=torch.randn(len(x), 3, dtype=torch.float64))
    assert set(out) == {"rec", "kl", "loss"}
    assert torch.allclose(out["loss"], (rec + kl).mean()) and torch.allclose(out["kl"], kl.mean())


def test_dynamic_binarization_happens_inside_the_loss(gen):
    """binarize="dynamic" equals binarising the batch first, then the plain loss (same global draws)."""
    dyn, plain = small(binarize="dynamic"), small()
    plain.load_state_dict(dyn.state_dict())
    x = images(gen)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        a = dyn.loss((x,))["loss"]
        torch.manual_seed(7)
        b = plain.loss((dynamic_binarize(x),))["loss"]
    assert torch.allclose(a, b, rtol=0, atol=0)


def test_kl_term_equals_monte_carlo(gen):
    """The closed-form KL ([5253] eq. 4) is E_q[log q(z|x) − log p(z)]."""
    model = small()
    x = images(gen, n=4)
    with torch.no_grad():
        _, kl = model.elbo_terms(x)
        mu, logvar = model.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn(100_000, *mu.shape, generator=gen, dtype=mu.dtype)
        mc = gaussian_log_prob(z, mu, logvar) - model.log_prior(z)  # (100000, B)
    assert torch.allclose(mc.mean(0), kl, atol=5 * float(mc.std(0).max()) / math.sqrt(len(mc)))


def test_gaussian_likelihood_matches_torch_normal(gen):
    """log p(x|z) summed over pixels, with the learned per-pixel σ_x ([5343] eq. 20)."""
    model = small(likelihood="gaussian")
    with torch.no_grad():
        model.x_logvar.normal_(generator=gen)
    x = torch.randn(5, 1, 8, 8, generator=gen, dtype=torch.float64)
    m = torch.randn(2, 5, 1, 8, 8, generator=gen, dtype=torch.float64)  # (K, B, C, H, W)
    ref = torch.distributions.Normal(m, (0.5 * model.x_logvar).exp()).log_prob(x).flatten(2).sum(-1)
    assert torch.allclose(model.log_px_z(x, m), ref)
    assert isinstance(model.x_logvar, torch.nn.Parameter)
    fixed = small(likelihood="gaussian", x_logvar=-2.0)
    assert "x_logvar" in dict(fixed.named_buffers()) and float(fixed.x_logvar.max()) == -2.0


# ------------------------------------------------------------------------------------------- nets
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 12, 16)])
def test_net_shapes_keep_leading_dims(shape):
    z = torch.zeros(4, 2, 5)  # (K, B, Z)
    for enc, dec in [
        (MLPEncoder(shape, 10, (32,)), MLPDecoder(5, shape, (32,))),
        (ConvEncoder(shape, 10, 4), ConvDecoder(5, shape, 4)),
    ]:
        assert enc(torch.zeros(2, *shape)).shape == (2, 10)
        assert dec(z).shape == (4, 2, *shape)
    assert ConvDecoder(5, shape, 4, out_channels=2)(z[0]).shape == (2, 2, *shape[1:])


def test_conv_vae_on_mnist_shape(gen):
    model = VAE(VAEConfig(arch="conv", width=4, z_dim=2)).double()
    x = dynamic_binarize(images(gen, n=3, shape=(1, 28, 28)), generator=gen)
    out = model.loss((x,))
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    assert model.reconstruct(x).shape == x.shape


def test_sample_and_reconstruct(gen):
    model = small()
    a = model.sample(5, generator=torch.Generator().manual_seed(1))
    b = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (5, 1, 8, 8) and torch.equal(a, b) and 0 <= float(a.min()) <= float(a.max()) <= 1
    bits = model.sample(5, generator=gen, binary=True)
    assert set(bits.unique().tolist()) <= {0.0, 1.0}
    x = images(gen)
    mu, _ = model.encode(x)
    assert torch.allclose(model.reconstruct(x), torch.sigmoid(model.decode(mu)))


# ------------------------------------------------------------------------------------------- binarisation
def test_binarization_frequencies(gen):
    """Dynamic: each pixel is 1 with probability x, redrawn per call; static: one fixed draw per seed."""
    p = torch.linspace(0, 1, 11)
    n = 20_000
    b = dynamic_binarize(p.repeat(n, 1), generator=gen)  # (n, 11)
    se = (p * (1 - p) / n).sqrt()
    assert ((b.mean(0) - p).abs() <= 5 * se + 1e-12).all()
    assert set(b.unique().tolist()) == {0.0, 1.0} and b.dtype == p.dtype
    assert not torch.equal(dynamic_binarize(p.repeat(50, 1)), dynamic_binarize(p.repeat(50, 1)))
    s = static_binarize(p.repeat(n, 1), seed=3)
    assert torch.equal(s, static_binarize(p.repeat(n, 1), seed=3))
    assert not torch.equal(s, static_binarize(p.repeat(n, 1), seed=4))
    assert ((s.mean(0) - p).abs() <= 5 * se + 1e-12).all()


def test_binarization_refuses_non_unit_data():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dynamic_binarize(torch.tensor([0.2, 1.5]))
    with pytest.raises(ValueError, match="float"):
        static_binarize(torch.tensor([0, 255], dtype=torch.uint8), seed=0)


# ------------------------------------------------------------------------------------------- training
def test_a_few_steps_on_digits_lower_the_loss():
    """200 Adam steps on the 8×8 digits (dynamic binarisation) lower the test −ELBO on a static draw."""
    from kexue.registry import load_data
    from kexue.train.trainer import TrainConfig, Trainer

    train, test = load_data("digits", split="train"), load_data("digits", split="test")
    model = VAE(VAEConfig(shape=(1, 8, 8), z_dim=4, hidden=(64,), binarize="dynamic"))
    x_test = static_binarize(test.floats("unit"), seed=0)

    def neg_elbo() -> float:
        with torch.no_grad():
            return -float(model.elbo(x_test, generator=torch.Generator().manual_seed(0)).mean())

    before = neg_elbo()
    trainer = Trainer(
        model, train.tensor_dataset("unit"), TrainConfig(steps=200, batch_size=64, lr=3e-3, progress=False)
    )
    trainer.fit()
    after = neg_elbo()
    assert after < before - 10, (before, after)  # 64 pixels: ≈ 44 nats untrained, ≈ 25 after 200 steps


# ------------------------------------------------------------------------------------------- bad input
def test_bad_input_is_refused(gen):
    model = small()
    with pytest.raises(ValueError, match=r"shape \(B, 1, 8, 8\), got \(2, 1, 28, 28\)"):
        model.loss((torch.rand(2, 1, 28, 28, dtype=torch.float64),))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.loss((2 * images(gen) - 1,))  # [−1, 1] data under a Bernoulli likelihood
    with pytest.raises(ValueError, match="float"):
        model.loss((torch.zeros(2, 1, 8, 8, dtype=torch.uint8),))
    small(likelihood="gaussian").loss((2 * images(gen) - 1,))  # a Gaussian decoder takes any real data
    with pytest.raises(ValueError, match="divisible by 4"):
        VAEConfig(shape=(1, 10, 10), arch="conv")
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvEncoder((1, 10, 12), 4)
    for bad, match in [
        ({"likelihood": "poisson"}, "likelihood"),
        ({"binarize": "static"}, "binarize"),
        ({"k_train": 0}, "k_train"),
        ({"x_logvar": 0.0}, "x_logvar"),
        ({"arch": "resnet"}, "arch"),
    ]:
        with pytest.raises(ValueError, match=match):
            VAEConfig(**bad)
