"""Extended Analytic-DPM (SN / NPR heads): the heads' regression optima equal the Gaussian-mixture oracle's
closed-form moments; with ideal heads SN recovers Cov[x0|x_t] for a perfect mean and NPR the error of an
imperfect one; the 2-D imperfect-mean table; frozen-net training on a tiny model; errors."""

from __future__ import annotations

import math

import pytest
import torch

from kexue.diffusion import analytic, ddim, extended, likelihood, schedules
from kexue.diffusion.ddpm import DDPM, DDPMConfig
from kexue.diffusion.oracle import GaussianMixture
from kexue.train.trainer import TrainConfig, Trainer

F64 = torch.float64


def posterior_samples(gm: GaussianMixture, x: torch.Tensor, a: torch.Tensor, m: int, gen) -> torch.Tensor:
    """m exact draws of x0 ~ q(x0|x_t) per row of x (n, D) → (m, n, D), by Bayes' rule per component:
    x0|x_t, k ~ N(μ_k + (√ᾱ s_k²/v_k)(x_t − √ᾱ μ_k), s_k²β̄/v_k) with v_k = ᾱ s_k² + β̄, and component k
    with weight ∝ π_k N(x_t; √ᾱ μ_k, v_k)."""
    s2 = gm.stds**2
    v = a * s2 + (1 - a)  # (K,)
    diff = x[:, None, :] - a.sqrt() * gm.means[None]  # (n, K, D)
    logits = gm.weights.log() - 0.5 * (diff**2).sum(-1) / v - 0.5 * gm.dim * torch.log(v)
    k = torch.multinomial(logits.softmax(-1), m, replacement=True, generator=gen).T  # (m, n)
    rows = torch.arange(len(x))[None].expand(m, -1)
    mean_k = gm.means[None] + (a.sqrt() * s2 / v)[None, :, None] * diff  # (n, K, D)
    std_k = (s2 * (1 - a) / v).sqrt()  # (K,)
    z = torch.randn(m, *x.shape, generator=gen, dtype=F64)
    return mean_k[rows, k] + std_k[k][..., None] * z


# --------------------------------------------------------------------------------------------- ideal targets
@pytest.mark.parametrize("t", [30, 300, 700])
def test_head_targets_average_to_the_closed_form_moments(t, gen):
    """E[target|x_t] by exact posterior sampling = `ideal_heads` from E[x0|x_t] and Var[x0|x_t]."""
    gm, wrong = GaussianMixture.ring(), GaussianMixture.ring(std=0.11)
    abar = schedules.linear_abar(1000)
    a = abar[t]
    x = a.sqrt() * gm.sample(6, generator=gen) + (1 - a).sqrt() * torch.randn(6, 2, generator=gen, dtype=F64)
    x0 = posterior_samples(gm, x, a, 200_000, gen)  # (m, 6, 2)
    eps = (x - a.sqrt() * x0) / (1 - a).sqrt()  # ε = (x_t − √ᾱ x0)/√β̄ for each draw
    mean, var = gm.x0_moments(x, a)
    assert torch.allclose(eps.mean(0), gm.eps(x, a), atol=6 * float(eps.std(0).max()) / math.sqrt(len(eps)))
    for eps_hat in (gm.eps(x, a), wrong.eps(x, a)):  # a perfect and an imperfect mean
        ideal = extended.ideal_heads(x, a, mean, var, eps_hat)
        for kind in extended.KINDS:
            target = extended.head_target(kind, eps, eps_hat.expand_as(eps))  # (m, 6, 2)
            se = float(target.std(0).max()) / math.sqrt(len(target))
            assert torch.allclose(target.mean(0), ideal[kind], atol=6 * se), (kind, t)


@pytest.mark.parametrize("t", [1, 30, 300, 999])
def test_ideal_heads_give_the_oracle_covariance(t, gen):
    """SN with a perfect mean: (β̄/ᾱ)(h − ε*²) = Var[x0|x_t] exactly. NPR with any mean: (β̄/ᾱ)g =
    E[(x0 − x̂0)²|x_t] = Var[x0|x_t] + (E[x0|x_t] − x̂0)² (both before the [0, 1] clamp, which is inactive)."""
    gm, wrong = GaussianMixture.ring(), GaussianMixture.ring(std=0.11)
    a = schedules.linear_abar(1000)[t]
    x = a.sqrt() * gm.sample(50, generator=gen) + (1 - a).sqrt() * torch.randn(
        50, 2, generator=gen, dtype=F64
    )
    mean, var = gm.x0_moments(x, a)
    exact = gm.eps(x, a)
    sn = extended.cov_x0_sn(extended.ideal_heads(x, a, mean, var, exact)["sn"], exact, a)
    assert torch.allclose(sn, var, rtol=1e-9, atol=1e-12)
    npr_perfect = extended.cov_x0_npr(extended.ideal_heads(x, a, mean, var, exact)["npr"], a)
    assert torch.allclose(npr_perfect, var, rtol=1e-9, atol=1e-12)  # NPR = SN when the mean is perfect
    eps_hat = wrong.eps(x, a)
    x0_hat = (x - (1 - a).sqrt() * eps_hat) / a.sqrt()
    npr = extended.cov_x0_npr(extended.ideal_heads(x, a, mean, var, eps_hat)["npr"], a)
    assert torch.allclose(npr, var + (mean - x0_hat) ** 2, rtol=1e-9, atol=1e-12)
    assert bool((npr >= var - 1e-15).all())


# --------------------------------------------------------------------------------------------- 2-D oracle
# reference/diffusion.md §2.6 "Imperfect mean" [R]: the ring (8 Gaussians, radius 0.8, std 0.08), ε̂ from the
# same ring with std 0.11, heads at their ideal targets, linear β, N = 1000, ET, one shared decoder (β̃_{1|2});
# negative ELBO in nats/dim (method: K = 10, 50, 200).
IMPERFECT = {
    "analytic": {10: 0.868, 50: 0.328, 200: 0.183},
    "sn": {10: 0.748, 50: 0.233, 200: 0.169},
    "npr": {10: 0.725, 50: 0.178},
    # NPR at K = 200: the reference says 0.099; we measure 0.135 ± 0.008 (n = 20000), and ideal NPR is the
    # per-step optimum for this mean (its step KLs equal ½E log(σ*²/λ²), checked below), so that value is
    # not reproduced and not asserted; the ordering NPR < SN < Analytic is.
}


def _ideal_cov(gm: GaussianMixture, abar, kind: str):
    def cov_x0(t, x, eps):
        a = abar[int(t)]
        mean, var = gm.x0_moments(x, a)
        h = extended.ideal_heads(x, a, mean, var, eps)[kind]
        return extended.cov_x0_sn(h, eps, a) if kind == "sn" else extended.cov_x0_npr(h, a)

    return cov_x0


@pytest.mark.parametrize("k", [10, 50, 200])
def test_imperfect_mean_table_npr_below_sn_below_analytic(k, gen):
    gm, wrong = GaussianMixture.ring(), GaussianMixture.ring(std=0.11)
    abar = schedules.linear_abar(1000)
    eps_fn = wrong.eps_fn(abar)
    traj = schedules.trajectory("even", 1000, k)
    ms = analytic.estimate_ms_eps(
        eps_fn, gm.sample(20000, generator=gen), abar, traj, m_per_t=1000, generator=gen
    )
    choices = {
        "analytic": likelihood.choice("analytic", ms_eps=ms, abar=abar),
        "sn": likelihood.choice("analytic", cov_x0=_ideal_cov(gm, abar, "sn")),
        "npr": likelihood.choice("analytic", cov_x0=_ideal_cov(gm, abar, "npr")),
    }
    x0 = gm.sample(6000, generator=gen)
    terms = likelihood.nelbo_terms(eps_fn, x0, abar, traj, choices, levels=None, clip_x0=False, generator=gen)
    per_dim = {name: likelihood.nats_per_dim(v.sum(0), 2) for name, v in terms.items()}
    for name, refs in IMPERFECT.items():
        if k in refs:  # the reference carries its own Monte Carlo error of a similar size: 4 of ours
            se = float(per_dim[name].std()) / math.sqrt(len(x0))
            assert abs(float(per_dim[name].mean()) - refs[k]) < 4 * se, (name, k, float(per_dim[name].mean()))
    for hi, lo in (("analytic", "sn"), ("sn", "npr")):  # paired: every choice sees the same draws
        diff = per_dim[hi] - per_dim[lo]
        assert float(diff.mean()) > 3 * float(diff.std()) / math.sqrt(len(x0)), (hi, lo, k)
    # ideal NPR is the optimal diagonal Gaussian for this mean: each step's KL is ½Σ log(σ²/λ²) on average
    for row, (t, s) in list(zip(terms["npr"][1:-1], schedules.steps(traj), strict=False))[::7]:
        x = abar[t].sqrt() * gm.sample(4000, generator=gen) + (1 - abar[t]).sqrt() * torch.randn(
            4000, 2, generator=gen, dtype=F64
        )
        lam2 = ddim.beta_tilde(abar[t], abar[s])
        var = lam2 + ddim.gamma(abar[t], abar[s], lam2) ** 2 * _ideal_cov(gm, abar, "npr")(
            t, x, wrong.eps(x, abar[t])
        )
        bound = 0.5 * torch.log(var / lam2).sum(1)
        se = math.hypot(float(row.std()) / math.sqrt(len(row)), float(bound.std()) / math.sqrt(len(bound)))
        assert abs(float(row.mean()) - float(bound.mean())) < 5 * se + 1e-12, (t, s)


# --------------------------------------------------------------------------------------------- scalar NPR
def test_scalar_npr_moment_matches_gaussian_closed_form(gen):
    """Data N(μ, s²I), ε̂ the oracle of N(μ, s'²I): E‖ε − ε̂‖²/d = ᾱs²/v + β̄v(1/v − 1/v')², v = ᾱs² + β̄,
    v' = ᾱs'² + β̄. With s' = s it is 1 − ms_eps: the scalar NPR is Analytic-DPM for a perfect mean."""
    d, mu, s = 3, 0.2, 0.5
    abar = schedules.linear_abar(200, 1e-3, 0.05)
    data = GaussianMixture(
        torch.full((1, d), mu, dtype=F64), torch.tensor([s], dtype=F64), torch.ones(1, dtype=F64)
    )
    ts = torch.tensor([1, 20, 100, 200])
    x0 = data.sample(5000, generator=gen)
    v = abar * s**2 + 1 - abar
    for s_hat in (s, 0.8):
        model = GaussianMixture(data.means, torch.tensor([s_hat], dtype=F64), data.weights)
        ms, se = extended.estimate_ms_residual(
            model.eps_fn(abar), x0, abar, ts, m_per_t=4000, generator=gen, with_stderr=True
        )
        v_hat = abar * s_hat**2 + 1 - abar
        want = abar * s**2 / v + (1 - abar) * v * (1 / v - 1 / v_hat) ** 2
        assert bool(((ms[ts] - want[ts]).abs() < 4 * se[ts]).all()), (s_hat, ms[ts], want[ts])
        assert torch.isnan(ms[2]) and ms[0] == 0
    cov = extended.cov_x0_from_ms_residual(ms, abar)
    assert bool(((cov[ts] >= 0) & (cov[ts] <= 1)).all())
    fn = extended.npr_scalar_cov_fn(ms, abar)
    assert float(fn(20, x0, x0)) == float(cov[20])
    with pytest.raises(ValueError, match="not estimated at t = 2"):
        fn(2, x0, x0)


# --------------------------------------------------------------------------------------------- the module
def tiny_ddpm(net: str = "resmlp", steps: int = 50) -> DDPM:
    torch.manual_seed(0)
    return DDPM(DDPMConfig(shape=(1, 8, 8), net=net, width=8, depth=1, steps=steps, dropout=0.1)).eval()


@pytest.mark.parametrize("net", ["resmlp", "unet"])
def test_zero_head_outputs_zero_and_the_shared_pass_equals_the_net(net, gen):
    ddpm = tiny_ddpm(net)
    model = extended.ExtendedDPM(ddpm)
    x = torch.randn(5, 1, 8, 8, generator=gen, dtype=F64)
    t = torch.tensor([1, 7, 20, 33, 50])
    eps, outs = model.eps_and_heads(x, t)
    assert torch.equal(eps, ddpm.eps(x, t)) and eps.dtype == F64
    assert set(outs) == {"sn", "npr"}
    for out in outs.values():
        assert out.shape == x.shape and bool((out == 0).all())
    skip = extended.ExtendedDPM(ddpm, kinds=("sn_skip",))
    _, outs_skip = skip.eps_and_heads(x, t)
    assert torch.equal(outs_skip["sn_skip"], eps**2)  # h_φ = ε̂² + 0: cov_x0 = 0 at init
    assert bool((skip.cov_fn("sn_skip")(20, x, eps) == 0).all())
    # zero heads → cov_x0 = 0 (SN: −ε̂² clamped), so both ELBOs equal σ² = β̃'s, draw for draw
    x0 = (torch.randint(0, 17, (4, 1, 8, 8), generator=gen) / 8 - 1).to(F64)
    traj = schedules.trajectory("even", 50, 5)
    got = likelihood.nelbo_many(
        model.eps_fn,
        x0,
        ddpm.abar,
        traj,
        {
            "sn": likelihood.choice("analytic", cov_x0=model.cov_fn("sn")),
            "npr": likelihood.choice("analytic", cov_x0=model.cov_fn("npr")),
            "bt": likelihood.choice("beta_tilde"),
        },
        levels=17,
        generator=gen,
    )
    assert torch.allclose(got["sn"], got["bt"], rtol=1e-12) and torch.allclose(
        got["npr"], got["bt"], rtol=1e-12
    )


def test_trained_heads_feed_the_sampler_per_element(gen):
    model = extended.ExtendedDPM(tiny_ddpm(), kinds=extended.KINDS)
    with torch.no_grad():
        for head in model.heads.values():
            head.layers[-1].bias.uniform_(0.0, 0.5, generator=gen)  # some non-zero, per-element outputs
    x = torch.randn(6, 1, 8, 8, generator=gen, dtype=F64)
    eps = model.eps_fn(x, torch.full((6,), 30))
    for kind in extended.KINDS:
        cov = model.cov_fn(kind)(30, x, eps)
        assert cov.shape == x.shape and bool(((cov >= 0) & (cov <= 1)).all())
        assert float(cov.std()) > 0  # per element, not one scalar
    traj = schedules.trajectory("even", 50, 4)
    out = ddim.sample(
        model.eps_fn,
        x,
        model.ddpm.abar,
        traj,
        variance="beta_tilde",
        cov_x0=model.cov_fn("npr"),
        generator=gen,
    )
    assert out.shape == x.shape and bool(out.isfinite().all())


def test_head_training_leaves_the_net_bit_identical_and_lowers_the_loss(tmp_path):
    ddpm = tiny_ddpm()
    before = {k: v.clone() for k, v in ddpm.state_dict().items()}
    model = extended.ExtendedDPM(ddpm)
    assert all(not p.requires_grad for p in ddpm.parameters())
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"heads"}  # the net is not in the tree
    assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}
    data = torch.utils.data.TensorDataset(
        (torch.randint(0, 17, (256, 1, 8, 8), generator=torch.Generator().manual_seed(1)) / 8 - 1).float()
    )
    fixed = data.tensors[0][:256]

    def held_out() -> dict:
        with torch.no_grad():
            out = model.loss((fixed,), generator=torch.Generator().manual_seed(7))
        return {k: float(v) for k, v in out.items()}

    start = held_out()
    cfg = TrainConfig(steps=60, batch_size=64, lr=1e-2, ema_decay=0.9, progress=False, log_every=20)
    trainer = Trainer(model, data, cfg, out_dir=tmp_path / "run").fit()
    assert not ddpm.training  # Trainer.fit() called model.train(); the frozen net kept eval mode
    for k, v in ddpm.state_dict().items():
        assert torch.equal(v, before[k]), k
    end = held_out()
    for kind in ("sn", "npr", "loss"):
        assert end[kind] < 0.9 * start[kind], (kind, start, end)
    with trainer.evaluating(use_ema=True):
        for k, v in ddpm.state_dict().items():
            assert torch.equal(v, before[k]), k


def test_loss_trains_the_heads_only(gen):
    model = extended.ExtendedDPM(tiny_ddpm("unet"), kinds=("npr",))
    x0 = torch.rand(4, 1, 8, 8, generator=gen) * 2 - 1
    out = model.loss((x0, torch.zeros(4)), generator=gen)
    assert set(out) == {"npr", "loss"} and out["loss"].dim() == 0
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(p.grad is None for p in model.ddpm.parameters())


def test_bad_arguments_raise_clear_errors():
    ddpm = tiny_ddpm()
    with pytest.raises(ValueError, match="unknown head kind 'var'"):
        extended.ExtendedDPM(ddpm, kinds=("var",))
    with pytest.raises(ValueError, match="non-empty list of distinct"):
        extended.ExtendedDPM(ddpm, kinds=("sn", "sn"))
    with pytest.raises(ValueError, match="non-empty list of distinct"):
        extended.ExtendedDPM(ddpm, kinds=())
    with pytest.raises(TypeError, match="features"):
        extended.ExtendedDPM(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="ResMLP or UNet"):
        extended.CovHead(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="has no 'sn' head"):
        extended.ExtendedDPM(ddpm, kinds=("npr",)).cov_fn("sn")
    with pytest.raises(ValueError, match="unknown head kind 'x'"):
        extended.head_target("x", torch.zeros(1), torch.zeros(1))
    abar = ddpm.abar
    eps_fn = lambda x, t: 0.5 * x  # noqa: E731
    with pytest.raises(ValueError, match=r"values in 1\.\.N=50"):
        extended.estimate_ms_residual(eps_fn, torch.zeros(3, 2), abar, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="m_per_t and batch_size"):
        extended.estimate_ms_residual(eps_fn, torch.zeros(3, 2), abar, m_per_t=0)
    with pytest.raises(ValueError, match=r"ms_res must be the \(51,\) table"):
        extended.cov_x0_from_ms_residual(torch.zeros(50), abar)
    with pytest.raises(ValueError, match="cannot be negative"):
        extended.cov_x0_from_ms_residual(torch.full((51,), -0.1, dtype=F64), abar)
