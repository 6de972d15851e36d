"""Score identity Distillation: the noise-level maps, the loss against its closed form on Gaussian data,
the identity E[L₂] = E[L₁] at the exact fake score, and the game driving an affine generator to the data."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.diffusion import schedules
from kexue.diffusion.ddpm import DDPM, DDPMConfig, q_sample, x0_from_eps
from kexue.diffusion.sid import (
    GeneratorConfig,
    OneStepGenerator,
    SiD,
    SiDConfig,
    edm_sigma,
    generator_loss,
    generator_timesteps,
    sigmas,
    timestep_of_sigma,
)

F64 = torch.float64


# ------------------------------------------------------------------------------------------ noise levels
def test_edm_grid_endpoints_and_the_u_max_cap():
    u = torch.tensor([0.0, 0.8, 1.0], dtype=F64)
    s = edm_sigma(u)
    assert s[0] == pytest.approx(0.002) and s[2] == pytest.approx(80.0)
    assert 23 < float(s[1]) < 25  # reference/diffusion.md §1.6: t ≤ 0.8 gives σ ≲ 24


def test_timestep_of_sigma_is_the_nearest_step_in_log_sigma():
    abar = schedules.linear_abar(1000)
    s = sigmas(abar)
    assert torch.all(s[1:] > s[:-1])
    t = torch.arange(1, 1001)
    assert torch.equal(timestep_of_sigma(abar, s), t)  # every σ_t maps to its own t
    targets = torch.exp(torch.linspace(math.log(s[0]) - 1, math.log(s[-1]) + 1, 257, dtype=F64))
    brute = (s.log()[None] - targets.log()[:, None]).abs().argmin(1) + 1
    assert torch.equal(timestep_of_sigma(abar, targets), brute)


def test_generator_timesteps_stay_below_u_max():
    abar = schedules.linear_abar(1000)
    t = generator_timesteps(abar, 4000, generator=torch.Generator().manual_seed(0))
    assert t.min() >= 1 and float(sigmas(abar)[t.max() - 1]) < 25
    assert t.max() <= timestep_of_sigma(abar, edm_sigma(torch.tensor(0.8, dtype=F64)))


# ------------------------------------------------------------------------------------------ the loss
@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 5),
    d=st.integers(1, 7),
    alpha=st.floats(0, 3),
    seed=st.integers(0, 2**16),
)
def test_generator_loss_is_l2_minus_alpha_l1(b, d, alpha, seed):
    g = torch.Generator().manual_seed(seed)
    real, fake, noise = (torch.randn(b, 1, d, generator=g, dtype=F64) for _ in range(3))
    sigma = torch.rand(b, generator=g, dtype=F64) * 10 + 0.01
    diff = (real - fake).flatten(1)
    l1, l2 = diff.pow(2).mean(1), (diff * (real - noise).flatten(1)).mean(1)
    torch.testing.assert_close(generator_loss(real, fake, noise, alpha=alpha), l2 - alpha * l1)
    torch.testing.assert_close(generator_loss(real, fake, noise, kind="l1"), l1)
    w = (sigma * (real - noise).flatten(1).abs().mean(1)).clamp_min(1e-5)
    torch.testing.assert_close(
        generator_loss(real, fake, noise, alpha=alpha, sigma=sigma), sigma**2 / w * (l2 - alpha * l1)
    )


def test_sid_weighting_is_the_papers_x0_form():
    """σ²(L₂ − αL₁)/w in ε-units equals [SiD]'s ⟨f_φ − f_ψ, (f_φ − x_g) − α(f_φ − f_ψ)⟩/mean|x_g − f_φ|."""
    g = torch.Generator().manual_seed(0)
    abar = schedules.linear_abar(1000)
    x_g, noise, e_real, e_fake = (torch.randn(6, 3, generator=g, dtype=F64) for _ in range(4))
    t = torch.randint(1, 1001, (6,), generator=g)
    x_t = q_sample(x_g, t, abar, noise)
    a = abar[t][:, None]
    f_real, f_fake = x0_from_eps(x_t, e_real, a), x0_from_eps(x_t, e_fake, a)
    paper = ((f_real - f_fake) * ((f_real - x_g) - 1.2 * (f_real - f_fake))).mean(1)
    paper = paper / (x_g - f_real).abs().mean(1)
    ours = generator_loss(e_real, e_fake, noise, alpha=1.2, sigma=sigmas(abar)[t - 1])
    torch.testing.assert_close(ours, paper)


def test_matching_scores_give_zero_loss_and_zero_gradient():
    """reference/diffusion.md §4: with f_ψ = f_φ the loss and its θ-gradient are 0."""
    teacher = DDPM(DDPMConfig(shape=(3,), width=16, depth=1, dropout=0.0, steps=1000))
    gen = OneStepGenerator.from_teacher(teacher)
    g = torch.Generator().manual_seed(0)
    x_g = gen(torch.randn(8, 3, generator=g))
    t = torch.randint(1, 1001, (8,), generator=g)
    noise = torch.randn(8, 3, generator=g)
    x_t = q_sample(x_g, t, teacher.abar, noise)
    e = teacher.eps(x_t, t)
    loss = generator_loss(e, teacher.eps(x_t, t), noise, alpha=1.2, sigma=sigmas(teacher.abar)[t - 1]).mean()
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert all(float(p.grad.abs().max()) == 0.0 for p in gen.parameters())


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_alpha_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="α must be a finite number ≥ 0"):
        SiDConfig(alpha=bad)
    with pytest.raises(ValueError, match="α must be"):
        generator_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), alpha=bad)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="loss must be one of"):
        SiDConfig(loss="l3")
    with pytest.raises(ValueError, match="weighting"):
        SiDConfig(weighting="edm")
    with pytest.raises(ValueError, match="sigma_init"):
        GeneratorConfig(sigma_init=0.0)
    with pytest.raises(ValueError, match="lr"):
        SiDConfig(lr=0.0)
    with pytest.raises(ValueError, match="outside the teacher's noise levels"):
        OneStepGenerator(GeneratorConfig(shape=(2,), steps=50, width=8, depth=1))


# ------------------------------------------------------------------------------------------ Gaussian data
class GaussianCase:
    """Data N(μ, s²) in 1-D, generator x_g = a + b·z: ε_φ and the exact fake score ε_ψ* are linear in x_t.

    ε*(x_t) = √β̄ (x_t − √ᾱ m)/(ᾱ v + β̄) for a Gaussian N(m, v) (oracle.py with one component).
    """

    def __init__(self, mu=0.7, s=0.3, a=-0.4, b=1.3, abar_t=0.6):
        self.mu, self.s, self.a, self.b, self.at = mu, s, a, b, abar_t
        self.bt = 1 - abar_t

    def eps_coefs(self, m, v):  # ε(x) = c1 x + c0
        c1 = math.sqrt(self.bt) / (self.at * v + self.bt)
        return c1, -c1 * math.sqrt(self.at) * m

    def closed_form(self):
        """E[L₁] and E[L₂] over z, ε at the exact fake score (x_t ~ N(√ᾱ a, ᾱb² + β̄), E[x_t ε] = √β̄)."""
        e1, e0 = self.eps_coefs(self.mu, self.s**2)
        f1, f0 = self.eps_coefs(self.a, self.b**2)
        c1, c0 = e1 - f1, e0 - f0  # d = ε_φ − ε_ψ
        m, v = math.sqrt(self.at) * self.a, self.at * self.b**2 + self.bt
        ex2 = v + m * m
        l1 = c1 * c1 * ex2 + 2 * c1 * c0 * m + c0 * c0
        l2 = c1 * e1 * ex2 + (c1 * e0 + c0 * e1) * m + c0 * e0 - c1 * math.sqrt(self.bt)
        return l1, l2

    def monte_carlo(self, n, kind, alpha=0.0, seed=0):
        g = torch.Generator().manual_seed(seed)
        z, noise = (torch.randn(n, 1, generator=g, dtype=F64) for _ in range(2))
        x_t = math.sqrt(self.at) * (self.a + self.b * z) + math.sqrt(self.bt) * noise
        e1, e0 = self.eps_coefs(self.mu, self.s**2)
        f1, f0 = self.eps_coefs(self.a, self.b**2)
        per = generator_loss(e1 * x_t + e0, f1 * x_t + f0, noise, alpha=alpha, kind=kind)
        return float(per.mean()), float(per.std() / math.sqrt(n))


def test_score_identity_l2_equals_l1_at_the_exact_fake_score():
    """[10085]: E[L₂] = E[L₁] when ε_ψ is the generator's exact score — in closed form, for several cases."""
    cases = (GaussianCase(), GaussianCase(mu=-1, s=0.1, a=2, b=0.5, abar_t=0.1), GaussianCase(abar_t=0.99))
    for case in cases:
        l1, l2 = case.closed_form()
        assert l1 > 0
        assert l2 == pytest.approx(l1, rel=1e-12)


def test_generator_loss_matches_its_closed_form_expectations():
    case = GaussianCase()
    l1, l2 = case.closed_form()
    mc1, se1 = case.monte_carlo(400_000, "l1")
    mc2, se2 = case.monte_carlo(400_000, "sid", alpha=0.0)
    assert abs(mc1 - l1) < 4 * se1 and abs(mc2 - l2) < 4 * se2
    mc, se = case.monte_carlo(400_000, "sid", alpha=1.2)
    assert abs(mc - (l2 - 1.2 * l1)) < 4 * se


def _affine_game(alpha: float, steps: int) -> tuple[float, float]:
    """Exact teacher, exact fake score for the current (a, b): descend E[L₂ − αL₁]; the final (a, b)."""
    mu, s = 0.7, 0.3
    abar = schedules.linear_abar(1000)
    a = torch.tensor(-0.5, dtype=F64, requires_grad=True)
    log_b = torch.tensor(math.log(1.5), dtype=F64, requires_grad=True)
    opt = torch.optim.Adam([a, log_b], lr=0.02, betas=(0.0, 0.999))
    g = torch.Generator().manual_seed(0)

    def eps_star(x, at, m, v):
        return (1 - at).sqrt() * (x - at.sqrt() * m) / (at * v + 1 - at)

    for _ in range(steps):
        z = torch.randn(256, 1, generator=g, dtype=F64)
        x_g = a + log_b.exp() * z
        t = generator_timesteps(abar, 256, generator=g)
        noise = torch.randn(256, 1, generator=g, dtype=F64)
        x_t = q_sample(x_g, t, abar, noise)
        at = abar[t][:, None]
        real = eps_star(x_t, at, mu, s**2)
        fake = eps_star(x_t, at, a.detach(), log_b.detach().exp() ** 2)
        loss = generator_loss(real, fake, noise, alpha=alpha, sigma=sigmas(abar)[t - 1]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(a), float(log_b.exp())


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_sid_drives_an_affine_generator_to_the_gaussian_data(alpha):
    a, b = _affine_game(alpha, 1500)
    assert a == pytest.approx(0.7, abs=0.03) and b == pytest.approx(0.3, abs=0.03)


def test_alpha_above_one_is_unstable_when_the_fake_score_is_exact():
    """With ε_ψ exact, −αL₁ rewards moving away from the own score: α = 1.5 blows the spread up (b ≫ s).

    [SiD]'s α = 1.2 works because the trained ε_ψ lags behind the generator (reference §2.5: α > 1.5
    collapses); the reproduction `sid` sweeps α on trained networks.
    """
    _, b = _affine_game(1.5, 300)
    assert b > 10 * 0.3


# ------------------------------------------------------------------------------------------ the networks
def _teacher(shape=(2,), steps=1000):
    torch.manual_seed(0)
    return DDPM(DDPMConfig(shape=shape, width=16, depth=1, dropout=0.1, steps=steps)).eval()


def test_generator_starts_as_the_teachers_x0_at_sigma_init():
    teacher = _teacher()
    gen = OneStepGenerator.from_teacher(teacher, sigma_init=2.5)
    t0 = gen.t_init
    assert float(sigmas(teacher.abar)[t0 - 1]) == pytest.approx(2.5, rel=0.15)
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    x = (1 - teacher.abar[t0]).sqrt().float() * z
    want = x0_from_eps(x, teacher.eps(x, t0), teacher.abar[t0].float())
    torch.testing.assert_close(gen(z), want)


def test_sid_steps_train_the_generator_and_fake_but_never_the_teacher():
    teacher = _teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    sid = SiD(teacher, SiDConfig(steps=3, batch_size=32, lr=1e-3, lr_fake=1e-3, ema_decay=0.9))
    gen0, fake0 = sid.gen.state_dict()["ddpm.net.inp.weight"].clone(), sid.fake.net.inp.weight.clone()
    seen = []
    sid.fit(lambda step, _s, logs: seen.append((step, sorted(logs))))
    assert seen[0] == (0, []) and seen[-1] == (3, ["fake_loss", "generator_loss"])
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in teacher.parameters())
    assert not torch.equal(sid.gen.state_dict()["ddpm.net.inp.weight"], gen0)
    assert not torch.equal(sid.fake.net.inp.weight, fake0)
    ema = sid.averaged_generator()
    assert not torch.equal(ema.ddpm.net.inp.weight, sid.gen.ddpm.net.inp.weight)


def test_sid_is_reproducible_from_its_seed():
    outs = []
    for _ in range(2):
        sid = SiD(_teacher((1, 4, 4)), SiDConfig(steps=2, batch_size=8, seed=3)).fit()
        outs.append(sid.gen(torch.ones(2, 1, 4, 4)))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_generator_samples_images_in_unit_range():
    gen = OneStepGenerator.from_teacher(_teacher((1, 4, 4)))
    x = gen.sample(6, generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, 1, 4, 4) and x.min() >= 0 and x.max() <= 1
