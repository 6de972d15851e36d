"""The adversarial autoencoder of [5716]: which networks each phase trains, the losses against hand-written
formulas, training on digits (reconstruction falls, codes move toward N(0, I)), configuration errors."""

from __future__ import annotations

import math

import pytest
import torch

from kexue.gan.aae import AAE, CYCLES, AAEConfig
from kexue.train.trainer import TrainConfig, Trainer

STEPS = 200  # training steps of the digits test
NETS = {"d": {"critic"}, "ae": {"encoder", "decoder"}, "rec": {"encoder", "decoder"}, "enc": {"encoder"}}


def model(encoder="deterministic", shape=(1, 8, 8), **kw) -> AAE:
    torch.manual_seed(0)
    return AAE(AAEConfig(shape=shape, z_dim=3, width=8, d_width=8, encoder=encoder, **kw)).double()


def batch(n=6, shape=(1, 8, 8), seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=g, dtype=torch.float64) * 2 - 1,)


def grads_of(m: AAE, value: torch.Tensor) -> dict[str, torch.Tensor | None]:
    m.zero_grad(set_to_none=True)
    value.backward()
    return {k: (None if p.grad is None else p.grad.clone()) for k, p in m.named_parameters()}


@pytest.mark.parametrize("encoder", ["deterministic", "gaussian"])
@pytest.mark.parametrize("phase", sorted(NETS))
def test_each_phase_trains_only_its_networks(encoder, phase):
    m = model(encoder)
    torch.manual_seed(2)
    grads = grads_of(m, m.loss(batch(), phase=phase)["loss"])
    for name, g in grads.items():
        net = name.split(".")[0]
        if net in NETS[phase]:
            assert g is not None and g.abs().sum() > 0, name
        else:
            assert g is None, name  # detached codes in "d"; the critic frozen, G unused in "enc"
    assert all(p.requires_grad for p in m.parameters())  # `frozen` restored the flags


@pytest.mark.parametrize("encoder", ["deterministic", "gaussian"])
def test_losses_equal_the_hand_written_formulas(encoder):
    """L_D = −mean log σ(C(z_p)) − mean log(1 − σ(C(z))); L_ae = −mean log σ(C(z)) + λ·mean(x − G(z))²,
    z = E(x), or μ + exp(log σ)·ε for the Gaussian encoder  ([5716] AAE; [AAE] §2)."""
    m = model(encoder, rec_weight=3.0)
    (x,) = batch()
    g = torch.Generator().manual_seed(5)
    z_p = torch.randn(6, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(6, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        h = m.encoder(x)
        z = h if encoder == "deterministic" else h[:, :3] + h[:, 3:].exp() * eps
        c_p, c_z = m.critic(z_p)[:, 0], m.critic(z)[:, 0]
        x_hat = m.decoder(z)
    sig = torch.sigmoid
    l_d = -sig(c_p).log().mean() - (1 - sig(c_z)).log().mean()
    adv = -sig(c_z).log().mean()
    rec = ((x - x_hat) ** 2).sum() / x.numel()
    out = {p: m.loss((x,), phase=p, z_prior=z_p, eps=eps) for p in NETS}
    torch.testing.assert_close(out["d"]["loss"], l_d)
    torch.testing.assert_close(out["ae"]["loss"], adv + 3.0 * rec)
    torch.testing.assert_close(out["rec"]["loss"], 3.0 * rec)
    torch.testing.assert_close(out["enc"]["loss"], adv)
    torch.testing.assert_close(out["ae"]["rec"], rec)
    torch.testing.assert_close(out["d"]["gap"], c_p.mean() - c_z.mean())


def test_phases_optimizer_groups_and_shapes():
    assert model(cycle="joint", d_steps=2).phases == ("d", "d", "ae")
    assert model(cycle="makhzani").phases == CYCLES["makhzani"] == ("rec", "d", "enc")
    m = model("gaussian")
    opt = m.configure_optimizer(TrainConfig(progress=False))
    ids = [{id(p) for p in group["params"]} for group in opt.param_groups]
    assert ids[0] == {id(p) for p in [*m.encoder.parameters(), *m.decoder.parameters()]}
    assert ids[1] == {id(p) for p in m.critic.parameters()}
    (x,) = batch()
    assert m.encode(x).shape == (6, 3) and m.decode(m.encode(x)).shape == x.shape
    assert m.reconstruct(x).shape == x.shape and m.sample(4).shape == (4, 1, 8, 8)
    torch.testing.assert_close(m.encode(x), m.encoder(x)[:, :3].detach())  # the mean μ
    draw = [m.encode(x, sample=True, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    torch.testing.assert_close(draw[0], draw[1])  # randomness only from the explicit generator
    assert not torch.allclose(draw[0], m.encode(x))
    same = [m.sample(4, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    torch.testing.assert_close(same[0], same[1])


def _moment_kl(z: torch.Tensor) -> float:
    """KL(N(m, S) ‖ N(0, I)) of the codes' mean and covariance: 0 exactly when they match the prior's."""
    z = z.double()
    mean, cov = z.mean(0), torch.cov(z.T)
    return 0.5 * float(cov.trace() + mean @ mean - len(mean) - torch.logdet(cov))


@pytest.mark.parametrize("encoder, cycle", [("deterministic", "joint"), ("gaussian", "makhzani")])
def test_a_few_steps_on_digits_reconstruct_and_move_codes_toward_the_prior(encoder, cycle):
    from kexue.registry import load_data

    train, test = load_data("digits", split="train"), load_data("digits", split="test")
    x = test.floats("symmetric")
    torch.manual_seed(0)
    m = AAE(AAEConfig(shape=(1, 8, 8), z_dim=4, width=64, d_width=64, encoder=encoder, cycle=cycle))

    def measure() -> tuple[float, float]:
        return float((m.reconstruct(x) - x).pow(2).mean()), _moment_kl(m.encode(x))

    rec0, kl0 = measure()
    Trainer(
        m, train.tensor_dataset("symmetric"), TrainConfig(steps=STEPS, batch_size=64, progress=False)
    ).fit()
    rec1, kl1 = measure()
    assert rec1 < 0.5 * rec0, (rec0, rec1)  # measured (seeds 0-2): 0.72 → 0.26
    assert kl1 < 0.7 * kl0 and math.isfinite(kl1), (kl0, kl1)  # measured: 14.4 → 8.5-9.2 (joint)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"encoder": "vae"}, "encoder must be"),
        ({"cycle": "both"}, "cycle must be"),
        ({"z_dim": 0}, "z_dim, width and d_width"),
        ({"d_steps": 0}, "d_steps"),
        ({"rec_weight": 0.0}, "rec_weight"),
        ({"lr": -1.0}, "learning rates"),
        ({"beta1": 1.0}, "Adam betas"),
        ({"shape": (8, 8)}, "shape must be"),
    ],
)
def test_bad_configurations_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        AAEConfig(**kw)


def test_a_wrong_or_missing_phase_is_refused():
    m = model()
    for phase in (None, "g"):
        with pytest.raises(ValueError, match="phases 'd', 'ae', 'rec', 'enc'"):
            m.loss(batch(), phase=phase)
