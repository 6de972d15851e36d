"""Identities of the Lipschitz tools of [6051]: power iteration = the top singular value, the regulariser
and its gradient = Σσ² by SVD, spectral normalisation gives σ = 1, the penalty = a hand-computed norm."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from kexue.nn.lipschitz import (
    SpectralRegularizer,
    empirical_lipschitz,
    gradient_penalty,
    lipschitz_upper_bound,
    power_iteration,
    spectral_norm_all,
    weight_matrix,
)


def _top_sigma(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(w.flatten(1)).max()


def _with_spectrum(shape, ratio, gen):
    """A weight of `shape` whose (C_out, −1) matrix has singular values 3·ratio^i: a gap σ₂/σ₁ = ratio."""
    m, n = shape[0], torch.Size(shape[1:]).numel()
    r = min(m, n)
    q1 = torch.linalg.qr(torch.randn(m, r, generator=gen, dtype=torch.float64))[0]  # (m, r)
    q2 = torch.linalg.qr(torch.randn(n, r, generator=gen, dtype=torch.float64))[0]  # (n, r)
    s = 3 * ratio ** torch.arange(r, dtype=torch.float64)
    return (q1 * s @ q2.T).reshape(shape)


SHAPES = [(5, 3), (3, 7), (16, 8, 3, 3), (4, 2, 5), (1, 6)]


@pytest.mark.parametrize("shape", SHAPES)
def test_power_iteration_finds_the_spectral_norm(gen, shape):
    w = _with_spectrum(shape, 0.8, gen)
    sigma, u, v = power_iteration(w, 20, generator=gen)
    exact = torch.linalg.matrix_norm(w.flatten(1), 2)
    assert abs(sigma - exact) / exact < 1e-3
    assert torch.allclose(u.norm(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(v.norm(), torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("shape", SHAPES)
def test_power_iteration_on_gaussian_weights_approaches_from_below(gen, shape):
    """Gaussian conv kernels can have σ₂/σ₁ > 0.99, so convergence takes hundreds of rounds; the estimate
    is a Rayleigh quotient, so it never overshoots ‖W‖₂ on the way."""
    w = torch.randn(shape, generator=gen, dtype=torch.float64)
    exact = torch.linalg.matrix_norm(w.flatten(1), 2)
    sigma, u, _ = power_iteration(w, 5, generator=gen)
    for _ in range(60):
        assert sigma <= exact * (1 + 1e-12)
        sigma, u, _ = power_iteration(w, 5, u=u)  # resuming from u continues the same iteration
    assert abs(sigma - exact) / exact < 1e-3


def test_power_iteration_gradient_is_u_v_transpose(gen):
    w = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    sigma, u, v = power_iteration(w, 100, generator=gen)
    sigma.backward()
    assert torch.allclose(w.grad, torch.outer(u, v))
    exact = torch.autograd.grad(_top_sigma(w), w)[0]
    assert torch.allclose(w.grad, exact, atol=1e-8)


def test_spectral_norm_all_wraps_every_weight_layer_and_gives_sigma_one(gen):
    torch.manual_seed(0)  # the layers' init (and so the power iteration's convergence rate) is fixed
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(4, 3, 3, stride=2),
        nn.Sequential(nn.Conv1d(3, 3, 1), nn.Linear(4, 6)),
        nn.Linear(6, 2),
    ).double()
    assert spectral_norm_all(net, n_power_iterations=1) is net
    layers = [
        m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d))
    ]
    assert len(layers) == 5 and all(parametrize.is_parametrized(m, "weight") for m in layers)
    spectral_norm_all(net)  # idempotent: no second parametrization
    assert all(len(m.parametrizations["weight"]) == 1 for m in layers)
    net.train()
    for _ in range(300):  # each training forward advances the persistent u by one power step
        for m in layers:
            m.weight  # noqa: B018
    net.eval()
    for m in layers:  # ConvTranspose is normalised over its C_out (dim 1), as weight_matrix reads it
        assert abs(torch.linalg.svdvals(weight_matrix(m)).max().item() - 1) < 1e-3


def test_spectral_norm_all_refuses_zero_iterations():
    with pytest.raises(ValueError, match="n_power_iterations"):
        spectral_norm_all(nn.Linear(2, 2), n_power_iterations=0)


def _mlp(gen: torch.Generator, sizes=(6, 8, 8, 3), act=nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        lin = nn.Linear(a, b).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=gen, dtype=torch.float64))
            lin.bias.copy_(torch.randn(b, generator=gen, dtype=torch.float64))
        layers += [lin] if i == len(sizes) - 2 else [lin, act()]
    return nn.Sequential(nn.Flatten(), *layers)


def test_regularizer_equals_sum_of_squared_spectral_norms_and_its_gradient(gen):
    net = nn.Sequential(_mlp(gen), nn.Unflatten(1, (1, 3)), nn.Conv1d(1, 2, 2)).double()
    reg = SpectralRegularizer(net, iters=1, generator=gen)
    with torch.no_grad():
        for _ in range(200):  # persistent u: one power step per call, as during training
            reg(net)
    value = reg(net)
    value.backward()
    weights = [m.weight for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv1d))]
    exact = sum(_top_sigma(w) ** 2 for w in weights)  # Σ_l ‖W_l‖₂²   [6051] eq. 16
    assert len(weights) == 4 and torch.allclose(value, exact, rtol=1e-8)
    grads = torch.autograd.grad(exact, weights)
    for w, g in zip(weights, grads):
        assert torch.allclose(w.grad, g, atol=1e-6)


def test_regularizer_state_is_saved_and_checked(gen):
    net = _mlp(gen)
    reg = SpectralRegularizer(net, generator=gen)
    assert set(reg.state_dict()) == {"u0", "u1", "u2"}
    with pytest.raises(ValueError, match="not the one"):
        reg(_mlp(gen, sizes=(6, 5, 8, 3)))
    with pytest.raises(ValueError, match="no Linear"):
        SpectralRegularizer(nn.ReLU())


def _interpolants(real, fake, seed):
    """x̂ as gradient_penalty draws it from a generator seeded with `seed`."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.rand((len(real),) + (1,) * (real.dim() - 1), generator=g, dtype=real.dtype)
    return eps * real + (1 - eps) * fake


def test_gradient_penalty_matches_finite_differences(gen):
    critic = _mlp(gen, sizes=(6, 5, 1), act=nn.Tanh)
    real = torch.randn(4, 2, 3, generator=gen, dtype=torch.float64)
    fake = torch.randn(4, 2, 3, generator=gen, dtype=torch.float64)
    pen = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    x_hat = _interpolants(real, fake, 3).flatten(1)  # (B, 6)
    h, eye = 1e-6, torch.eye(6, dtype=torch.float64)
    fd = torch.stack([(critic(x_hat + h * e) - critic(x_hat - h * e)).squeeze(1) / (2 * h) for e in eye], 1)
    expected = ((fd.norm(dim=1) - 1) ** 2).mean()
    assert torch.allclose(pen, expected, rtol=1e-7)


def test_gradient_penalty_trains_the_critic(gen):
    """create_graph: the penalty's parameter gradient is right (gradcheck through the double backward)."""
    critic = _mlp(gen, sizes=(3, 4, 1), act=nn.Tanh)
    real = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    fake = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    w0 = critic[1].weight.detach().clone().requires_grad_(True)

    def pen(w):
        params = {**dict(critic.named_parameters()), "1.weight": w}
        f = lambda x: torch.func.functional_call(critic, params, (x,))  # noqa: E731
        return gradient_penalty(f, real, fake, generator=torch.Generator().manual_seed(1))

    assert torch.autograd.gradcheck(pen, (w0,))


def _linear_critic(w: torch.Tensor):
    return lambda x: (x * w).flatten(1).sum(1)  # f(x) = w·x, ∇f = w everywhere


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    batch=st.integers(1, 5),
    scale=st.floats(0.1, 3.0),
    seed=st.integers(0, 2**16),
)
def test_gradient_penalty_of_a_linear_critic_is_exact(shape, batch, scale, seed):
    """(‖w‖ − 1)² for any ε and any input rank: a per-channel or per-row norm would give another value."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    w = scale * w / w.norm()
    real = torch.randn(batch, *shape, generator=g, dtype=torch.float64)
    fake = torch.randn(batch, *shape, generator=g, dtype=torch.float64)
    pen = gradient_penalty(_linear_critic(w), real, fake, generator=g)
    assert torch.allclose(pen, torch.tensor((scale - 1) ** 2, dtype=torch.float64))
    one = gradient_penalty(_linear_critic(w), real, fake, generator=g, one_sided=True)
    assert torch.allclose(one, torch.tensor(max(scale - 1, 0) ** 2, dtype=torch.float64))


def test_gradient_penalty_on_images_center_and_output_shapes(gen):
    w = torch.randn(3, 4, 4, generator=gen, dtype=torch.float64)  # (C, H, W)
    real = torch.randn(6, 3, 4, 4, generator=gen, dtype=torch.float64)
    fake = torch.randn(6, 3, 4, 4, generator=gen, dtype=torch.float64)
    n = w.norm()
    assert torch.allclose(gradient_penalty(_linear_critic(w), real, fake, generator=gen), (n - 1) ** 2)
    assert torch.allclose(gradient_penalty(_linear_critic(w), real, fake, center=0.5), (n - 0.5) ** 2)
    column = lambda x: _linear_critic(w)(x)[:, None]  # noqa: E731  (B, 1) scores
    assert torch.allclose(gradient_penalty(column, real, fake), (n - 1) ** 2)
    small = _linear_critic(0.5 * w / n)
    assert gradient_penalty(small, real, fake, one_sided=True) == 0
    assert torch.allclose(gradient_penalty(small, real, fake), torch.tensor(0.25, dtype=torch.float64))


def test_gradient_penalty_refuses_bad_input(gen):
    f = _linear_critic(torch.ones(3, dtype=torch.float64))
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match="one shape"):
        gradient_penalty(f, x, x[:3])
    with pytest.raises(ValueError, match="non-empty batches"):
        gradient_penalty(f, x[0], x[1])
    with pytest.raises(ValueError, match=r"\(B,\) or \(B, 1\)"):
        gradient_penalty(lambda z: torch.stack([f(z), f(z)], 1), x, x)
    with pytest.raises(ValueError, match="floating point"):
        gradient_penalty(f, x.long(), x.long())


def test_empirical_ratios_never_exceed_the_product_of_norms(gen):
    net = _mlp(gen, sizes=(10, 16, 16, 4))
    bound = lipschitz_upper_bound(net)
    exact = 1.0
    for m in net:
        if isinstance(m, nn.Linear):
            exact *= torch.linalg.svdvals(m.weight).max().item()
    assert bound == pytest.approx(exact, rel=1e-10)
    x = torch.randn(500, 10, generator=gen, dtype=torch.float64)
    y = torch.randn(500, 10, generator=gen, dtype=torch.float64)
    near = x + 1e-4 * torch.randn(500, 10, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        ratios = torch.cat([empirical_lipschitz(net, x, y), empirical_lipschitz(net, x, near)])
    assert ratios.shape == (1000,) and (ratios > 0).all()
    assert ratios.max().item() <= bound


def test_upper_bound_of_a_spectral_normalised_net_is_one(gen):
    net = spectral_norm_all(_mlp(gen, sizes=(10, 16, 16, 4)))
    net.train()
    x = torch.randn(8, 10, generator=gen, dtype=torch.float64)
    for _ in range(30):
        net(x)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert lipschitz_upper_bound(net) == pytest.approx(1.0, abs=1e-3)
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_upper_bound_and_ratio_refuse_what_they_cannot_measure(gen):
    with pytest.raises(ValueError, match="BatchNorm1d"):
        lipschitz_upper_bound(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))
    with pytest.raises(ValueError, match="slope"):
        lipschitz_upper_bound(nn.Sequential(nn.Linear(3, 3), nn.LeakyReLU(2.0)))
    x = torch.randn(4, 3, generator=gen)
    with pytest.raises(ValueError, match="x_b ≠ y_b"):
        empirical_lipschitz(nn.Identity(), x, x)
    with pytest.raises(ValueError, match="one shape"):
        empirical_lipschitz(nn.Identity(), x, x[:2])
    with pytest.raises(ValueError, match="iters"):
        power_iteration(torch.ones(2, 2), 0)
    with pytest.raises(ValueError, match="matrix"):
        power_iteration(torch.ones(3))
    with pytest.raises(ValueError, match=r"u must have shape \(2,\)"):
        power_iteration(torch.ones(2, 3), u=torch.ones(3))
