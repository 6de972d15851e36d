"""O-GAN [6409]: ρ's invariances, the single loss against its written formula, stop-gradient placement."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.gan.ogan import OGAN, OGANConfig, correlation, ogan_loss, ogan_terms, standardize

SHAPE = (1, 8, 8)  # digits-sized: the MLP generator and encoder


def tiny(**kw) -> OGAN:
    return OGAN(OGANConfig(shape=SHAPE, z_dim=5, width=8, **kw)).double()


def batch(gen, n: int = 6, z_dim: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    x_r = torch.rand(n, *SHAPE, generator=gen, dtype=torch.float64) * 2 - 1
    return x_r, torch.randn(n, z_dim, generator=gen, dtype=torch.float64)


def grads(model: OGAN, value: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """d value / d params, as one flat gradient per network (None when no parameter got one)."""
    model.zero_grad(set_to_none=True)
    value.backward(retain_graph=True)
    out = {}
    for name, net in (("G", model.generator), ("E", model.encoder)):
        gs = [p.grad.flatten() for p in net.parameters() if p.grad is not None]
        out[name] = torch.cat(gs) if gs else None
    return out


def is_zero(g: torch.Tensor | None) -> bool:
    return g is None or bool(torch.allclose(g, torch.zeros_like(g), atol=1e-12))


# ------------------------------------------------------------------------------------------- ρ
@settings(max_examples=30, deadline=None)
@given(
    a=st.floats(0.01, 100.0),
    b=st.floats(-100.0, 100.0),
    seed=st.integers(0, 2**16),
)
def test_correlation_is_affine_invariant(a, b, seed):
    """ρ(z, a·ẑ + b) = ρ(z, ẑ) for a > 0 ([6409] "原理": ρ leaves avg and std to the discriminator)."""
    g = torch.Generator().manual_seed(seed)
    z, zhat = torch.randn(2, 4, 7, generator=g, dtype=torch.float64)
    assert torch.allclose(correlation(z, a * zhat + b), correlation(z, zhat), atol=1e-10)
    assert torch.allclose(correlation(z, -a * zhat + b), -correlation(z, zhat), atol=1e-10)  # a < 0 flips


def test_correlation_of_identical_vectors_is_one(gen):
    z = torch.randn(5, 9, generator=gen, dtype=torch.float64)
    assert torch.allclose(correlation(z, z), torch.ones(5, dtype=torch.float64))


def test_correlation_is_pearson_and_cosine_of_standardised(gen):
    """ρ = the textbook Pearson coefficient = cos(𝒩(z), 𝒩(ẑ)) = mean(𝒩(z)·𝒩(ẑ))  ([6409] eq. 5)."""
    z, zhat = torch.randn(2, 3, 6, generator=gen, dtype=torch.float64)
    pearson = torch.stack([torch.corrcoef(torch.stack([a, b]))[0, 1] for a, b in zip(z, zhat)])
    assert torch.allclose(correlation(z, zhat), pearson)
    assert torch.allclose(correlation(z, zhat), (standardize(z) * standardize(zhat)).mean(-1))
    s = standardize(zhat)
    assert torch.allclose(s.mean(-1), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(s.pow(2).mean(-1), torch.ones(3, dtype=torch.float64))  # population std


def test_rho_is_the_squared_distance_of_standardised_codes(gen):
    """‖𝒩(z) − 𝒩(ẑ)‖² = 2n_z(1 − ρ(z, ẑ)): −ρ is the MSE with avg and std left out ([6409] "原理")."""
    z, zhat = torch.randn(2, 4, 11, generator=gen, dtype=torch.float64)
    lhs = (standardize(z) - standardize(zhat)).pow(2).sum(-1)
    assert torch.allclose(lhs, 2 * 11 * (1 - correlation(z, zhat)))


def test_correlation_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes"):
        correlation(torch.zeros(2, 3), torch.zeros(2, 4))


# ------------------------------------------------------------------------------------------- the loss
def test_loss_matches_the_written_formula(gen):
    """L = mean(t1 + t2 − 0.5ρ) + mean(0.25·t1²/mean_pixels(x_r − x_f)²), real → LOW (§1.8)."""
    model = tiny()
    x_r, z = batch(gen)
    out = model.loss((x_r,), z=z)
    with torch.no_grad():
        x_f = model.generator(z)
        d_r, d_f = model.encoder(x_r).mean(1), model.encoder(x_f).mean(1)
        t1 = d_r - d_f
        zh = model.encoder(x_f)
        zc, hc = z - z.mean(1, keepdim=True), zh - zh.mean(1, keepdim=True)
        rho = (zc * hc).sum(1) / (zc.norm(dim=1) * hc.norm(dim=1))
        qp = 0.25 * t1**2 / ((x_r - x_f) ** 2).mean((1, 2, 3))
        expected = (t1 + 0 - 0.5 * rho).mean() + qp.mean()
    assert torch.allclose(out["loss"], expected)
    assert torch.allclose(out["rho"], rho.mean()) and torch.allclose(out["t1"], t1.mean())


def test_mse_objective_replaces_rho(gen):
    model = tiny(objective="mse", rho_weight=2.0)
    x_r, z = batch(gen)
    terms = ogan_terms(model.encoder, x_r, model.generator(z), z)
    with torch.no_grad():
        sq = (z - model.encoder(model.generator(z))).pow(2).sum(1)  # ‖z − E(G(z))‖², summed
    expected = (terms["t1"] + terms["t2"] + 2.0 * sq).mean() + terms["qp"].mean()
    assert torch.allclose(model.loss((x_r,), z=z)["loss"], expected)


def test_t2_is_zero_but_gives_g_its_gradient(gen):
    """t2 = avg E(x_f) − avg E(sg x_f): 0 in value, ∇_G avg E(G(z)) for G, nothing net for E ([6387])."""
    model = tiny()
    x_r, z = batch(gen)
    terms = ogan_terms(model.encoder, x_r, model.generator(z), z)
    assert torch.allclose(terms["t2"], torch.zeros_like(terms["t2"]), atol=1e-14)
    g_t2 = grads(model, terms["t2"].mean())
    g_ref = grads(model, model.encoder(model.generator(z)).mean(1).mean())  # D(G(z)) without sg
    assert torch.allclose(g_t2["G"], g_ref["G"]) and not is_zero(g_t2["G"])
    assert is_zero(g_t2["E"])


def test_stop_gradient_placement_per_term(gen):
    """t1 and qp train E only; t2 trains G only; ρ trains both (§1.8; gotcha 3)."""
    model = tiny()
    x_r, z = batch(gen)
    terms = ogan_terms(model.encoder, x_r, model.generator(z), z)
    expect = {"t1": (True, False), "qp": (True, False), "t2": (False, True), "rho": (True, True)}
    for name, (e_moves, g_moves) in expect.items():
        g = grads(model, terms[name].mean())
        assert is_zero(g["E"]) != e_moves, f"{name}: E"
        assert is_zero(g["G"]) != g_moves, f"{name}: G"


def test_single_loss_gradient_is_the_sum_of_its_players(gen):
    """∇_E L = ∇_E [t1 + qp − λρ] and ∇_G L = ∇_G [avg E(G(z)) − λρ]: the two players' losses of eq. 7."""
    model = tiny(rho_weight=0.5)
    x_r, z = batch(gen)
    total = grads(model, model.loss((x_r,), z=z)["loss"])
    x_f = model.generator(z)
    e_r, e_f = model.encoder(x_r), model.encoder(x_f)
    rho = correlation(z, e_f)
    t1 = e_r.mean(1) - e_f.mean(1)
    qp = 0.25 * t1**2 / (x_r - x_f).pow(2).mean((1, 2, 3))
    e_side = grads(model, (t1 - 0.5 * rho).mean() + qp.mean())  # E's loss (its G part is ignored)
    g_side = grads(model, (e_f.mean(1) - 0.5 * rho).mean())  # G's loss
    assert torch.allclose(total["E"], e_side["E"]) and torch.allclose(total["G"], g_side["G"])


def test_ogan_loss_rejects_an_unknown_objective(gen):
    model = tiny()
    x_r, z = batch(gen)
    terms = ogan_terms(model.encoder, x_r, model.generator(z), z)
    with pytest.raises(ValueError, match="objective"):
        ogan_loss(terms, 0.5, "cosine")


# ------------------------------------------------------------------------------------------- the model
def test_sample_encode_reconstruct_shapes_and_determinism():
    model = tiny().eval()
    a = model.sample(4, generator=torch.Generator().manual_seed(1))
    b = model.sample(4, generator=torch.Generator().manual_seed(1))
    assert a.shape == (4, *SHAPE) and torch.equal(a, b) and a.abs().max() <= 1
    assert model.encode(a).shape == (4, 5)
    x_hat = model.reconstruct(a)
    assert torch.allclose(x_hat, model.generator(0.9 * standardize(model.encoder(a))))


def test_a_few_trainer_steps_change_both_networks():
    """Trainer + configure_optimizer (RMSprop): one loss per step updates G and E."""
    from torch.utils.data import TensorDataset

    from kexue.train.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    model = OGAN(OGANConfig(shape=SHAPE, z_dim=5, width=8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = TensorDataset(torch.rand(32, *SHAPE) * 2 - 1)
    trainer = Trainer(model, data, TrainConfig(steps=3, batch_size=8, progress=False))
    assert isinstance(trainer.optimizer, torch.optim.RMSprop)
    trainer.fit()
    after = model.state_dict()
    assert not torch.equal(before["generator.net.0.weight"], after["generator.net.0.weight"])
    assert not torch.equal(before["encoder.head.weight"], after["encoder.head.weight"])


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"z_dim": 2}, "z_dim"),
        ({"objective": "l2"}, "objective"),
        ({"rho_weight": -1.0}, "rho_weight"),
        ({"lr": 0.0}, "learning rate"),
        ({"alpha": 1.0}, "alpha"),
        ({"shape": (2,)}, "images"),
        ({"width": 0}, "width"),
    ],
)
def test_bad_config_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        OGANConfig(**{"shape": SHAPE, **kw})
