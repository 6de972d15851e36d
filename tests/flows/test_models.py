"""NICE, RealNVP and Glow as density models: exact log-likelihood, normalisation, bits/dim, sampling."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import jacobian_logdet, perturbed
from kexue.flows import NICE, Glow, GlowConfig, NICEConfig, RealNVP, RealNVPConfig
from kexue.flows.density import standard_normal_log_prob
from kexue.flows.preprocess import from_flow_space, to_flow_space
from kexue.metrics.likelihood import dequantized_bits_per_dim

IMAGE = (1, 4, 4)
MODELS = {
    "glow-shuffle": lambda shape, levels, logit=0.05: Glow(
        GlowConfig(
            shape=shape,
            levels=levels,
            logit=logit,
            L=2 if len(shape) == 3 else 1,
            K=2,
            hidden=6,
            permutation="shuffle",
        )
    ),
    "nice": lambda shape, levels, logit=0.05: NICE(
        NICEConfig(shape=shape, levels=levels, logit=logit, hidden=8, depth=2)
    ),
    "realnvp": lambda shape, levels, logit=0.05: RealNVP(
        RealNVPConfig(shape=shape, levels=levels, logit=logit, hidden=6, couplings=4)
    ),
    "glow": lambda shape, levels, logit=0.05: Glow(
        GlowConfig(shape=shape, levels=levels, logit=logit, L=2 if len(shape) == 3 else 1, K=2, hidden=6)
    ),
}


def model(name, shape=IMAGE, levels=17, logit=0.05, seed=0):
    torch.manual_seed(seed)
    return perturbed(MODELS[name](shape, levels, logit), seed).eval()


@pytest.mark.parametrize("logit", [0.05, None])
@pytest.mark.parametrize("name", MODELS)
def test_image_log_prob_is_the_change_of_variables(gen, name, logit):
    """log p(y) = log N(ẑ(y); 0, I) + log|det ∂ẑ/∂y| with the Jacobian of the whole map by autograd."""
    m = model(name, logit=logit)
    y = torch.rand(3, *IMAGE, generator=gen, dtype=torch.float64) * 0.98 + 0.01

    def to_z(v):
        x, _ = to_flow_space(v.reshape(len(v), *IMAGE), logit)
        return m.flow(x.flatten(1) if m.flat else x)[0]

    with torch.no_grad():
        expected = standard_normal_log_prob(to_z(y)) + jacobian_logdet(to_z, y)
        assert torch.allclose(m.log_prob(y), expected, atol=1e-8)


@pytest.mark.parametrize("name", MODELS)
def test_whole_model_inverts(gen, name):
    m = model(name)
    y = torch.rand(4, *IMAGE, generator=gen, dtype=torch.float64) * 0.98 + 0.01
    with torch.no_grad():
        x, _ = to_flow_space(y, 0.05)
        x = x.flatten(1) if m.flat else x
        z, ld = m.flow(x)
        back, ld_inv = m.flow.inverse(z.flatten(1))
        assert (back.reshape(x.shape) - x).abs().max() < 1e-10
        assert torch.allclose(ld_inv, -ld, atol=1e-10)
        assert (from_flow_space(back.reshape(y.shape), 0.05) - y).abs().max() < 1e-10


@pytest.mark.parametrize("name", MODELS)
def test_two_dimensional_density_integrates_to_one(name):
    """∫ p(x) dx over a grid that holds the mass: the log-dets carry the right sign and scale."""
    m = model(name, shape=(2,), levels=None)
    with torch.no_grad():  # where the mass is: 20,000 samples
        s = m.sample(20_000, generator=torch.Generator().manual_seed(0)).double()
        lo, hi = s.min(0).values - 3, s.max(0).values + 3
        n = 400
        gx = torch.linspace(float(lo[0]), float(hi[0]), n, dtype=torch.float64)
        gy = torch.linspace(float(lo[1]), float(hi[1]), n, dtype=torch.float64)
        grid = torch.cartesian_prod(gx, gy)
        mass = m.log_prob(grid).exp().sum() * (gx[1] - gx[0]) * (gy[1] - gy[0])
    assert abs(float(mass) - 1) < 5e-3


def test_bits_per_dim_on_a_known_density():
    """Identity NICE (zero-initialised nets and scale) with y − ½: p(y) = N(y − ½; 0, I), so on
    dequantized levels y = (k + u)/K the expected NLL is Σ ½E[(a + u/K)²] + (D/2) log 2π with a = k/K − ½:
    E[(a + u/K)²] = a² + a/K + 1/(3K²)."""
    K, shape = 5, (1, 2, 2)
    m = NICE(NICEConfig(shape=shape, levels=K, logit=None, hidden=4, depth=1)).double().eval()
    k = torch.tensor([[0, 1, 2, 4], [4, 4, 3, 0]], dtype=torch.float64)
    levels = k.to(torch.uint8).reshape(2, *shape).repeat(20_000, 1, 1, 1)
    measured = dequantized_bits_per_dim(lambda y: m.log_prob(y.double()), levels, K, batch_size=10_000)
    a = k / K - 0.5
    nll = (0.5 * (a**2 + a / K + 1 / (3 * K**2))).sum(1) + 2 * math.log(2 * math.pi)
    exact = float(((nll + 4 * math.log(K)) / (4 * math.log(2))).mean())
    assert abs(measured - exact) < 2e-3, (measured, exact)


@pytest.mark.parametrize("name", ["nice", "realnvp", "glow"])
def test_first_training_steps_are_finite_and_improve(name):
    """NaN-free training on the first steps (a known pain point of flows): 40 Adam steps on digits."""
    from kexue.data.digits import load_digits

    data = load_digits("train")
    torch.manual_seed(0)
    shape = data.shape
    config = {"nice": NICEConfig, "realnvp": RealNVPConfig, "glow": GlowConfig}[name](
        shape=shape, levels=data.levels
    )
    m = {"nice": NICE, "realnvp": RealNVP, "glow": Glow}[name](config)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = data.floats("unit")
    g = torch.Generator().manual_seed(0)

    def test_bpd():
        return dequantized_bits_per_dim(m.eval().log_prob, data.x[:300], data.levels)

    before = test_bpd()
    m.train()
    for _ in range(40):
        batch = x[torch.randint(len(x), (64,), generator=g)]
        out = m.loss((batch,))
        assert torch.isfinite(out["loss"]) and torch.isfinite(out["bpd"])
        opt.zero_grad()
        out["loss"].backward()
        assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
        opt.step()
    after = test_bpd()
    assert after < before - 0.3, (before, after)


@pytest.mark.parametrize("name", MODELS)
def test_temperature_sampling(name):
    m = model(name)
    a = m.sample(5, temperature=0.0, generator=torch.Generator().manual_seed(0))
    b = m.sample(5, temperature=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (5, *IMAGE)
    c = m.sample(200, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert c.min() >= 0 and c.max() <= 1 and c.std() > 0
    with pytest.raises(ValueError, match="temperature"):
        m.sample(2, temperature=-1.0)


def test_temperature_shrinks_a_gaussian_flow():
    """An identity flat flow samples N(0, T²I): sample std ≈ T."""
    m = NICE(NICEConfig(shape=(2,), hidden=4, depth=1)).eval()
    s = m.sample(20_000, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert abs(float(s.std()) - 0.5) < 0.01


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: GlowConfig(shape=(1, 6, 6), levels=17, L=2), "divisible by 4"),
        (lambda: GlowConfig(shape=(2,), L=2), "L=1"),
        (lambda: RealNVPConfig(shape=(1, 6, 6), levels=17, scales=3), "divisible by 4"),
        (lambda: NICEConfig(shape=(1,)), "at least 2"),
        (lambda: NICEConfig(shape=(4,), logit=0.5), "α must lie"),
        (lambda: GlowConfig(shape=(1, 8, 8), levels=1), "levels must be"),
        (lambda: RealNVPConfig(shape=(1, 8), levels=17), r"\(D,\) or \(C, H, W\)"),
        (lambda: GlowConfig(shape=(1, 8, 8), K=0), "≥ 1"),
        (lambda: GlowConfig(shape=(1, 8, 8), permutation="random"), "permutation must be one of"),
    ],
)
def test_bad_configs_say_what_is_wrong(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@settings(max_examples=50, deadline=None)
@given(
    alpha=st.one_of(st.none(), st.floats(0.0, 0.45)),
    y=st.lists(st.floats(0.001, 0.999), min_size=2, max_size=6),
)
def test_preprocessing_round_trip_and_jacobian(alpha, y):
    v = torch.tensor([y], dtype=torch.float64)
    x, ld = to_flow_space(v, alpha)
    assert torch.allclose(from_flow_space(x, alpha), v, atol=1e-9)
    jac = torch.autograd.functional.jacobian(lambda u: to_flow_space(u, alpha)[0], v)
    assert torch.allclose(ld, torch.linalg.slogdet(jac.reshape(len(y), len(y)))[1], atol=1e-9)
