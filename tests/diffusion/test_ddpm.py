"""The forward process and its Bayes posterior, in float64, against independent computations."""

import pytest
import torch

from kexue.diffusion import schedules
from kexue.diffusion.ddpm import DDPM, DDPMConfig, loss_simple, posterior, q_sample, x0_from_eps
from kexue.diffusion.oracle import GaussianMixture

F64 = torch.float64


def test_q_sample_marginal_moments():
    abar = schedules.linear_abar(1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1), 0.7, dtype=F64)
    xt = q_sample(x0, 300, abar, torch.randn(x0.shape, generator=g, dtype=F64))
    a = abar[300].item()
    assert xt.mean().item() == pytest.approx(a**0.5 * 0.7, abs=4 * ((1 - a) / 200_000) ** 0.5)
    assert xt.var().item() == pytest.approx(1 - a, rel=0.01)


def test_q_sample_composes_the_one_step_kernels():
    """x_t from x0 in one jump has the law of t single steps x_i = √α_i x_{i−1} + √β_i ε_i (variances add)."""
    abar = schedules.linear_abar(50)
    beta = schedules.betas(abar)
    mean, var = torch.tensor(1.0, dtype=F64), torch.tensor(0.0, dtype=F64)
    for b in beta[:37]:
        mean, var = (1 - b).sqrt() * mean, (1 - b) * var + b
    assert mean.item() == pytest.approx(abar[37].sqrt().item(), rel=1e-12)
    assert var.item() == pytest.approx(1 - abar[37].item(), rel=1e-12)


@pytest.mark.parametrize("t, s", [(2, 1), (10, 3), (1000, 1), (500, 499), (7, 0)])
def test_posterior_is_bayes_rule(t, s):
    """q(x_s|x_t, x0) ∝ q(x_t|x_s) q(x_s|x0): both Gaussian in x_s, so multiply the densities on a grid."""
    abar = schedules.linear_abar(1000)
    a_t, a_s = abar[t], abar[s]
    x0, xt = torch.tensor(0.3, dtype=F64), torch.tensor(-0.4, dtype=F64)
    mean, var = posterior(x0, xt, a_t, a_s)
    if s == 0:  # the posterior of x_0 given x0 is a point mass at x0
        assert mean.item() == pytest.approx(0.3, abs=1e-12) and var.item() == pytest.approx(0, abs=1e-15)
        return
    a_ts = a_t / a_s
    # product of N(x_t; √α_{t|s} x_s, β_{t|s}) and N(x_s; √ᾱ_s x0, β̄_s): precision-weighted closed form
    prec = a_ts / (1 - a_ts) + 1 / (1 - a_s)
    m = (a_ts.sqrt() * xt / (1 - a_ts) + a_s.sqrt() * x0 / (1 - a_s)) / prec
    assert var.item() == pytest.approx(1 / prec.item(), rel=1e-10)
    assert mean.item() == pytest.approx(m.item(), rel=1e-10, abs=1e-14)
    # and numerically, as a normalised product on a grid
    grid = torch.linspace(
        m.item() - 12 * var.sqrt().item(), m.item() + 12 * var.sqrt().item(), 20001, dtype=F64
    )
    logp = -0.5 * (xt - a_ts.sqrt() * grid) ** 2 / (1 - a_ts) - 0.5 * (grid - a_s.sqrt() * x0) ** 2 / (
        1 - a_s
    )
    w = (logp - logp.max()).exp()
    w = w / w.sum()
    assert (w * grid).sum().item() == pytest.approx(mean.item(), abs=1e-8)
    assert (w * (grid - mean) ** 2).sum().item() == pytest.approx(var.item(), rel=1e-5)


def test_x0_from_eps_inverts_q_sample():
    abar = schedules.cosine_abar(100)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 3, generator=g, dtype=F64), torch.randn(4, 3, generator=g, dtype=F64)
    t = torch.tensor([1, 20, 50, 99])
    a = abar[t][:, None]
    assert torch.allclose(x0_from_eps(q_sample(x0, t, abar, eps), eps, a), x0, atol=1e-10)


def test_oracle_eps_minimises_l_simple():
    """E‖ε − ε*(x_t)‖² < E‖ε − (ε* + δ)‖² for shifts δ: the oracle is the L_simple minimiser at each t."""
    gm, abar = GaussianMixture.ring(), schedules.linear_abar(1000)
    g = torch.Generator().manual_seed(2)
    x0 = gm.sample(20_000, generator=g)
    noise = torch.randn(x0.shape, dtype=F64, generator=g)
    xt = q_sample(x0, 300, abar, noise)

    def loss(shift: float) -> float:
        return ((gm.eps(xt, abar[300]) + shift - noise) ** 2).mean().item()

    assert loss(0.0) < loss(0.05) and loss(0.0) < loss(-0.05)


def test_ddpm_model_loss_and_shapes():
    torch.manual_seed(0)
    model = DDPM(DDPMConfig(shape=(1, 8, 8), width=32, depth=1))
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    loss = model.loss((x,))
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.eps(x.double(), 5).dtype == torch.float64
    assert model.sample(3, steps=4, generator=torch.Generator().manual_seed(0)).shape == (3, 1, 8, 8)
    assert loss_simple(lambda x, t: torch.zeros_like(x), x, model.abar).item() == pytest.approx(1.0, abs=0.3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"schedule": "sigmoid"}, "schedule"),
        ({"net": "transformer"}, "net"),
        ({"net": "unet", "shape": (64,)}, "U-Net"),
        ({"steps": 1}, "steps"),
        ({"net": "unet", "shape": (1, 8, 8), "width": 12}, "multiple of 8"),
        ({"width": 33}, "must be even"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DDPMConfig(**kwargs)


def test_oracle_takes_per_row_abar():
    """eps/x0_moments with an (n,) ᾱ equal the per-timestep evaluations row by row (eps_fn relies on it)."""
    gm, abar = GaussianMixture.ring(), schedules.linear_abar(1000)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    t = torch.tensor([1, 7, 7, 500, 1000])
    rows = [gm.eps(x[i : i + 1], abar[int(t[i])])[0] for i in range(5)]
    assert torch.allclose(gm.eps_fn(abar)(x, t), torch.stack(rows), rtol=1e-12, atol=1e-14)
    cov = gm.x0_moments(x, abar[t])[1]
    assert torch.allclose(
        cov, torch.stack([gm.x0_moments(x[i : i + 1], abar[int(t[i])])[1][0] for i in range(5)])
    )
