"""The IWAE bound [BGS16] on a model whose marginal is exact: a linear-Gaussian VAE (factor analysis).

With a linear decoder m(z) = Wz + b and a per-pixel variance Ψ = diag exp(x_logvar), p(z) = N(0, I) gives
p(x) = N(b, WWᵀ + Ψ) in closed form, and with a linear encoder the ELBO is closed-form too:
E_q log p(x|z) = log N(x; Wμ + b, Ψ) − ½ tr(Ψ⁻¹ W diag(σ²) Wᵀ). Everything runs in float64.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from kexue.estimators.gaussian import gaussian_kl_standard, gaussian_log_prob
from kexue.vae import VAE, VAEConfig, active_units, iwae_bound, log_weights, nll, posterior_mean_variance

SHAPE = (1, 2, 3)  # D = 6 pixels
Z = 2


def linear_gaussian(gen: torch.Generator, *, posterior: bool = False) -> VAE:
    """A linear-Gaussian VAE with random weights; `posterior=True` sets the encoder to the exact
    posterior mean with its marginal variances inflated ×1.5 (a good importance proposal)."""
    model = VAE(VAEConfig(shape=SHAPE, z_dim=Z, hidden=(), likelihood="gaussian")).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
        model.x_logvar.mul_(0.3).sub_(0.5)
        if posterior:
            W, b = model.decoder.net[0].weight, model.decoder.net[0].bias  # (D, Z), (D,)
            psi_inv = model.x_logvar.flatten().neg().exp()  # (D,)
            cov = torch.linalg.inv(torch.eye(Z, dtype=W.dtype) + W.T @ (psi_inv[:, None] * W))  # (Z, Z)
            gain = cov @ W.T * psi_inv  # (Z, D): μ = gain (x − b)
            enc = model.encoder.net[0]  # Linear(D → 2Z): [μ, log σ²]
            enc.weight.zero_()
            enc.weight[:Z] = gain
            enc.bias[:Z] = -gain @ b
            enc.bias[Z:] = (1.5 * cov.diagonal()).log()
    return model


def exact_log_px(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """log N(x; b, WWᵀ + Ψ) per example, (B,)."""
    W, b = model.decoder.net[0].weight, model.decoder.net[0].bias
    cov = W @ W.T + torch.diag(model.x_logvar.flatten().exp())
    return torch.distributions.MultivariateNormal(b, cov).log_prob(x.flatten(1))


def exact_elbo(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """E_q[log p(x|z)] − KL(q ‖ p(z)) in closed form for the linear encoder and decoder, (B,)."""
    W, b = model.decoder.net[0].weight, model.decoder.net[0].bias
    mu, logvar = model.encode(x)
    logvar_x = model.x_logvar.flatten()
    fit = gaussian_log_prob(x.flatten(1), mu @ W.T + b, logvar_x)  # log N(x; Wμ + b, Ψ)
    trace = (W.pow(2) / logvar_x.exp()[:, None] @ logvar.exp().T).sum(0)  # tr(Ψ⁻¹ W diag σ² Wᵀ), (B,)
    return fit - 0.5 * trace - gaussian_kl_standard(mu, logvar)


def data(model: VAE, gen: torch.Generator, n: int = 5) -> torch.Tensor:
    return 1.5 * torch.randn(n, *SHAPE, generator=gen, dtype=torch.float64)


def block_means(lw: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """E[L_k] estimated from N log-weights (N, B) in disjoint blocks of k: (mean (B,), std. error (B,))."""
    blocks = torch.logsumexp(lw.view(-1, k, lw.shape[-1]), 1) - math.log(k)  # (N/k, B)
    return blocks.mean(0), blocks.std(0) / math.sqrt(len(blocks))


def test_closed_forms_agree_with_monte_carlo(gen):
    """The exact ELBO (closed form) is the mean of the VAE's one-sample ELBO, and lies below log p(x)."""
    model = linear_gaussian(gen)
    x = data(model, gen)
    with torch.no_grad():
        mc = torch.stack([model.elbo(x, generator=gen) for _ in range(4000)])  # (4000, B)
        elbo = exact_elbo(model, x)
    assert torch.allclose(mc.mean(0), elbo, atol=5 * float(mc.std(0).max()) / math.sqrt(4000))
    assert (elbo < exact_log_px(model, x)).all()


def test_elbo_le_iwae_le_log_px_and_non_decreasing_in_k(gen):
    """ELBO = E L_1 ≤ E L_4 ≤ E L_16 ≤ E L_64 ≤ log p(x) [BGS16] Thm 1, each step by > 4 standard errors."""
    model = linear_gaussian(gen)
    x = data(model, gen)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        lw = log_weights(model, x, mu, logvar, torch.randn(2**16, *mu.shape, generator=gen, dtype=mu.dtype))
        elbo, log_px = exact_elbo(model, x), exact_log_px(model, x)
    means = {k: block_means(lw, k) for k in (1, 4, 16, 64)}
    assert torch.allclose(means[1][0], elbo, atol=5 * float(means[1][1].max()))  # L_1 is the ELBO
    ks = sorted(means)
    for small, big in itertools.pairwise(ks):
        (m_s, se_s), (m_b, se_b) = means[small], means[big]
        assert (m_b - m_s > 4 * (se_s**2 + se_b**2).sqrt()).all(), (small, big, m_b - m_s)
    m, se = means[64]
    assert (m + 4 * se < log_px).all()


def test_k1_is_the_single_sample_elbo(gen):
    """L_1 with noise ε is log p(x, z) − log q(z|x) at z = μ + σε: the VAE's rec term at that z plus the
    Monte Carlo KL — the same ε that `elbo_terms` uses."""
    model = linear_gaussian(gen)
    x = data(model, gen)
    eps = torch.randn(1, len(x), Z, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        bound = iwae_bound(model, x, 1, eps=eps)
        rec, _ = model.elbo_terms(x, eps=eps[0])
        mu, logvar = model.encode(x)
        z = mu + (0.5 * logvar).exp() * eps[0]
        mc_kl = gaussian_log_prob(z, mu, logvar) - model.log_prior(z)
    assert torch.allclose(bound, -rec - mc_kl, rtol=0, atol=1e-12)


def test_converges_to_log_px(gen):
    """With a good proposal the gap log p(x) − L_K shrinks with K and is < 0.005 nats at K = 4096."""
    model = linear_gaussian(gen, posterior=True)
    x = data(model, gen)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        lw = log_weights(model, x, mu, logvar, torch.randn(2**16, *mu.shape, generator=gen, dtype=mu.dtype))
        log_px = exact_log_px(model, x)
    gaps = [float((log_px - block_means(lw, k)[0]).mean()) for k in (1, 16, 256, 4096)]
    assert gaps[0] > 0.01 and all(a > b for a, b in itertools.pairwise(gaps)), gaps
    assert 0 <= gaps[-1] < 0.005, gaps


def test_chunks_do_not_change_the_bound(gen):
    """The logsumexp over chunks equals the one-shot logsumexp (same ε)."""
    model = linear_gaussian(gen)
    x = data(model, gen)
    eps = torch.randn(37, len(x), Z, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        a = iwae_bound(model, x, 37, eps=eps, chunk=5)
        b = iwae_bound(model, x, 37, eps=eps, chunk=100)
    assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_nll_is_the_mean_negative_bound(gen):
    model = linear_gaussian(gen, posterior=True)
    x = data(model, gen, n=7)
    value = nll(model, x, 64, generator=torch.Generator().manual_seed(1), batch_size=3, chunk=10)
    with torch.no_grad():
        log_px = exact_log_px(model, x)
    assert isinstance(value, float)
    assert -float(log_px.mean()) <= value < -float(log_px.mean()) + 0.05


def test_iwae_training_loss_is_the_negative_bound(gen):
    """k_train = K: the loss is −mean L_K with ε drawn from the global generator."""
    base = linear_gaussian(gen)
    model = VAE(VAEConfig(shape=SHAPE, z_dim=Z, hidden=(), likelihood="gaussian", k_train=5)).double()
    model.load_state_dict(base.state_dict())
    x = data(model, gen)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        out = model.loss((x,))
        torch.manual_seed(3)
        eps = torch.randn(5, len(x), Z, dtype=torch.float64)
    assert torch.allclose(out["loss"], -iwae_bound(model, x, 5, eps=eps).mean(), rtol=0, atol=1e-12)
    out["loss"].backward()  # differentiable end to end
    assert model.encoder.net[0].weight.grad.abs().sum() > 0


def test_active_units_count_moving_means(gen):
    """AU counts the dimensions whose posterior mean varies over x by more than 0.01 [BGS16] §5.2."""
    model = VAE(VAEConfig(shape=SHAPE, z_dim=4, hidden=())).double()
    with torch.no_grad():
        enc = model.encoder.net[0]
        enc.weight[1].zero_()  # μ_1 constant: inactive
        enc.weight[3].mul_(1e-3)  # μ_3 barely moves: inactive
    x = torch.rand(200, *SHAPE, generator=gen, dtype=torch.float64)
    var = posterior_mean_variance(model, x, batch_size=64)
    assert var.shape == (4,) and var[1] == 0 and var[3] < 0.01 < min(var[0], var[2])
    assert active_units(model, x) == 2


def test_bad_arguments_are_refused(gen):
    model = linear_gaussian(gen)
    x = data(model, gen)
    with pytest.raises(ValueError, match="k ≥ 1"):
        iwae_bound(model, x, 0)
    with pytest.raises(ValueError, match="eps must have shape"):
        iwae_bound(model, x, 3, eps=torch.zeros(2, len(x), Z, dtype=torch.float64))
