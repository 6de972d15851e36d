"""BiGAN-QP [6214]: the losses against their written formulas, gradients, and who gets them in each phase."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kexue.gan.bigan import BiGANQP, BiGANQPConfig, critic_loss, guide_terms, pair_distance

SHAPE = (1, 8, 8)  # digits-sized: MLP generator, encoder and critic body


def tiny(**kw) -> BiGANQP:
    return BiGANQP(BiGANQPConfig(shape=SHAPE, z_dim=4, width=8, hidden=8, **kw)).double()


def batch(gen, n: int = 6, z_dim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    x_r = torch.rand(n, *SHAPE, generator=gen, dtype=torch.float64) * 2 - 1
    return x_r, torch.randn(n, z_dim, generator=gen, dtype=torch.float64)


NETS = ("generator", "encoder", "critic")


def grads(model: BiGANQP, value: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """d value / d params as one flat gradient per network (None when none of its parameters got one)."""
    model.zero_grad(set_to_none=True)
    value.backward(retain_graph=True)
    out = {}
    for name in NETS:
        gs = [p.grad.flatten() for p in getattr(model, name).parameters() if p.grad is not None]
        out[name] = torch.cat(gs) if gs else None
    return out


def is_zero(g: torch.Tensor | None) -> bool:
    return g is None or bool(torch.allclose(g, torch.zeros_like(g), atol=1e-12))


def written(model: BiGANQP, x_r, z):
    """Δ and λd of [6214] by hand: T_r = T(x_r, E(x_r)), T_f = T(G(z), z), λd = 10(mean|Δx| + mean|Δz|)."""
    x_f, z_r = model.generator(z), model.encoder(x_r)
    t_r, t_f = model.critic(x_r, z_r), model.critic(x_f, z)
    d = 10 * ((x_r - x_f).abs().mean((1, 2, 3)) + (z_r - z).abs().mean(1))
    return t_r - t_f, d, x_f, z_r


# ------------------------------------------------------------------------------------------- critic
def test_critic_loss_matches_the_written_formula(gen):
    model = tiny()
    x_r, z = batch(gen)
    with torch.no_grad():
        delta, d, _, _ = written(model, x_r, z)
    expected = (-delta + 0.5 * delta**2 / d).mean()
    assert torch.allclose(model.loss((x_r,), "d", z=z)["loss"], expected)


def test_critic_gradient_matches_its_analytic_form(gen):
    """∂L_T/∂θ = Σ_i (−1 + Δ_i/λd_i)/B · ∂Δ_i/∂θ: the quadratic brake scales each pair's push."""
    model = tiny()
    x_r, z = batch(gen)
    g_loss = grads(model, model.loss((x_r,), "d", z=z)["loss"])["critic"]
    with torch.no_grad():
        x_f, z_r = model.generator(z), model.encoder(x_r)
    delta = model.critic(x_r, z_r) - model.critic(x_f, z)
    d = pair_distance(x_r, x_f, z_r, z)
    weight = ((-1 + delta / d) / len(delta)).detach()
    g_formula = grads(model, (weight * delta).sum())["critic"]
    assert torch.allclose(g_loss, g_formula)


def test_critic_optimum_is_delta_equal_lambda_d(gen):
    """Per pair, −Δ + ½Δ²/λd is minimised at Δ = λd ([6163]: |Δ*| ≤ λd, reached for two point masses)."""
    d = torch.rand(5, generator=gen, dtype=torch.float64) + 0.1
    t_f = torch.randn(5, generator=gen, dtype=torch.float64)
    t_r = (t_f + d).requires_grad_(True)
    (g,) = torch.autograd.grad(critic_loss(t_r, t_f, d), t_r)
    assert torch.allclose(g, torch.zeros_like(g), atol=1e-12)


def test_ali_losses_are_the_bce_of_a_joint_discriminator(gen):
    model = tiny(objective="ali")
    x_r, z = batch(gen)
    with torch.no_grad():
        _, _, x_f, z_r = written(model, x_r, z)
        t_r, t_f = model.critic(x_r, z_r), model.critic(x_f, z)
        d_expected = F.binary_cross_entropy_with_logits(t_r, torch.ones_like(t_r)) + (
            F.binary_cross_entropy_with_logits(t_f, torch.zeros_like(t_f))
        )
        adv = F.binary_cross_entropy_with_logits(t_r, torch.zeros_like(t_r)) + (
            F.binary_cross_entropy_with_logits(t_f, torch.ones_like(t_f))
        )  # swapped labels ([ALI])
    assert torch.allclose(model.loss((x_r,), "d", z=z)["loss"], d_expected)
    assert torch.allclose(model.loss((x_r,), "g", z=z)["adv"], adv)


# ------------------------------------------------------------------------------------------- G and E
def test_generator_loss_matches_the_written_formula(gen):
    """L_{G,E} = mean Δ + 2·mean(z − E(G(z)))² + 3·mean(x_r − G(E(x_r)))² (no quadratic term)."""
    model = tiny()
    x_r, z = batch(gen)
    with torch.no_grad():
        delta, _, x_f, z_r = written(model, x_r, z)
        expected = (
            delta.mean()
            + 2 * (z - model.encoder(x_f)).pow(2).mean()
            + 3 * (x_r - model.generator(z_r)).pow(2).mean()
        )
    out = model.loss((x_r,), "g", z=z)
    assert torch.allclose(out["loss"], expected)


@pytest.mark.parametrize("stop", [True, False])
def test_guide_terms_stop_gradient_placement(gen, stop):
    """With sg: the z-reconstruction trains only E, the x-reconstruction only G ([6214] eq. 4); without
    sg (eq. 3, the blurry ablation) both train both."""
    model = tiny()
    x_r, z = batch(gen)
    x_f, z_r = model.generator(z), model.encoder(x_r)
    rec_z, rec_x = guide_terms(model.encoder, model.generator, x_r, z, x_f, z_r, stop=stop)
    gz, gx = grads(model, rec_z), grads(model, rec_x)
    assert not is_zero(gz["encoder"]) and not is_zero(gx["generator"])
    assert is_zero(gz["generator"]) == stop and is_zero(gx["encoder"]) == stop
    assert gz["critic"] is None and gx["critic"] is None


def test_d_phase_trains_only_t_and_g_phase_never_t(gen):
    model = tiny()
    x_r, z = batch(gen)
    g = grads(model, model.loss((x_r,), "d", z=z)["loss"])
    assert g["generator"] is None and g["encoder"] is None and not is_zero(g["critic"])
    g = grads(model, model.loss((x_r,), "g", z=z)["loss"])
    assert g["critic"] is None and not is_zero(g["generator"]) and not is_zero(g["encoder"])
    assert all(p.requires_grad for p in model.critic.parameters())  # `frozen` restored the flags


def test_adversarial_term_reaches_g_and_e(gen):
    """mean Δ alone (no guide terms) trains G through T(G(z), z) and E through T(x_r, E(x_r))."""
    model = tiny(beta_z=0.0, beta_x=0.0)
    x_r, z = batch(gen)
    g = grads(model, model.loss((x_r,), "g", z=z)["loss"])
    assert not is_zero(g["generator"]) and not is_zero(g["encoder"]) and g["critic"] is None


def test_phases_through_the_trainer():
    """The trainer's phase protocol: a "d" step moves only T, a "g" step only G and E (Adam skips
    parameters without gradients, so momentum cannot move the other networks)."""
    from torch.utils.data import TensorDataset

    from kexue.train.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    data = TensorDataset(torch.rand(32, *SHAPE) * 2 - 1)
    model = BiGANQP(BiGANQPConfig(shape=SHAPE, z_dim=4, width=8, hidden=8))
    assert model.phases == ("d", "d", "g")
    for phase, moved in (("d", {"critic"}), ("g", {"generator", "encoder"})):
        model.phases = (phase, phase)  # two updates, so Adam has momentum from the first
        before = {n: [p.detach().clone() for p in getattr(model, n).parameters()] for n in NETS}
        trainer = Trainer(model, data, TrainConfig(steps=2, batch_size=8, progress=False))
        assert isinstance(trainer.optimizer, torch.optim.Adam)
        assert (
            trainer.optimizer.defaults["betas"] == (0.5, 0.999) and trainer.optimizer.defaults["lr"] == 2e-4
        )
        trainer.fit()
        for n in NETS:
            same = all(torch.equal(a, b) for a, b in zip(before[n], getattr(model, n).parameters()))
            assert same != (n in moved), f"phase {phase}: {n}"


def test_sample_encode_reconstruct(gen):
    model = tiny().eval()
    x = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, *SHAPE) and x.dtype == torch.float64
    assert model.encode(x).shape == (3, 4)
    assert torch.allclose(model.reconstruct(x), model.generator(model.encoder(x)))


def test_loss_needs_a_phase(gen):
    x_r, _ = batch(gen)
    with pytest.raises(ValueError, match="phase"):
        tiny().loss((x_r,))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"objective": "wgan"}, "objective"),
        ({"lam": 0.0}, "lam"),
        ({"beta_z": -1.0}, "beta_z"),
        ({"d_steps": 0}, "d_steps"),
        ({"lr": -1e-3}, "learning rate"),
        ({"beta1": 1.0}, "betas"),
        ({"shape": (2,)}, "images"),
        ({"hidden": 0}, "hidden"),
    ],
)
def test_bad_config_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        BiGANQPConfig(**{"shape": SHAPE, **kw})
