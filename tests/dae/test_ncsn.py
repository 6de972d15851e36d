"""The noise-conditional score net and multi-level denoising score matching ([NCSN] eqs. 5–6)."""

from __future__ import annotations

import pytest
import torch

from kexue.dae import ScoreNet, ScoreNetConfig, dsm_loss, geometric_sigmas

F64 = torch.float64


def test_dsm_loss_at_the_exact_score_is_its_closed_form_minimum(gen):
    """x ~ N(μ, s²I): σs* + n = (s²n − σs·z)/(s² + σ²), so each level's ½E‖σs* + n‖² = ½D·s²/(s² + σ²),
    and a wrong score costs more (DSM is score matching plus a constant [Vincent])."""
    mu, s, d = torch.tensor([1.0, -2.0, 0.5], dtype=F64), 0.7, 3
    sigmas = geometric_sigmas(5.0, 0.05, 6)
    x = mu + s * torch.randn(200_000, d, generator=gen, dtype=F64)
    exact = lambda xt, sig: -(xt - mu) / (s**2 + sig[:, None] ** 2)  # noqa: E731
    loss = float(dsm_loss(exact, x, sigmas, generator=torch.Generator().manual_seed(1)))
    closed = float((0.5 * d * s**2 / (s**2 + sigmas**2)).mean())
    assert loss == pytest.approx(closed, rel=0.02)
    wrong = lambda xt, sig: -(xt - mu) / (1.2 * s**2 + sig[:, None] ** 2)  # noqa: E731
    assert float(dsm_loss(wrong, x, sigmas, generator=torch.Generator().manual_seed(1))) > loss


def test_score_net_shapes_and_sigma_forms(gen):
    net = ScoreNet(
        ScoreNetConfig(dim=64, sigma_max=1.0, sigma_min=0.01, levels=10, width=32, depth=1)
    ).double()
    x = torch.randn(5, 1, 8, 8, generator=gen, dtype=F64)
    out = net(x, 0.3)
    assert out.shape == x.shape and out.dtype == F64
    assert torch.allclose(out, net(x, torch.full((5,), 0.3, dtype=F64)), rtol=1e-12)  # float = per-row
    assert torch.allclose(net.sigmas, geometric_sigmas(1.0, 0.01, 10))
    loss = net.loss((x,))
    loss.backward()
    assert loss.dim() == 0 and all(p.grad is not None for p in net.parameters())


def test_score_net_scales_as_one_over_sigma(gen):
    """s = F(c_in·x, log σ)/σ: with F's output layer zeroed but for its bias, σ·s is the same at every σ."""
    net = ScoreNet(ScoreNetConfig(dim=2, width=16, depth=1)).double()
    last = net.net.out[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.3, -0.7]))
    x = torch.randn(4, 2, generator=gen, dtype=F64)
    for sigma in (0.01, 0.5, 20.0):
        assert torch.allclose(sigma * net(x, sigma), torch.tensor([[0.3, -0.7]] * 4, dtype=F64))


def test_bad_inputs_are_refused():
    net = ScoreNet(ScoreNetConfig(dim=2, width=16, depth=1))
    with pytest.raises(ValueError, match="> 0"):
        net(torch.zeros(3, 2), 0.0)
    with pytest.raises(ValueError, match="dim=2"):
        net(torch.zeros(3, 5), 0.1)
    with pytest.raises(ValueError, match="one per sample"):
        net(torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(ValueError, match="must exceed"):
        ScoreNetConfig(sigma_max=0.01, sigma_min=1.0)
    with pytest.raises(ValueError, match="even width"):
        ScoreNetConfig(width=15)
    with pytest.raises(ValueError, match="strictly decreasing"):
        dsm_loss(lambda x, s: x, torch.zeros(4, 2), torch.tensor([0.1, 0.5]))
