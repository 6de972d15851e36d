"""The VI regulariser of [5716] in `kexue.gan.gan`: L_G = −log D(G(z)) + λ·mean‖G(z) − G°(z)‖², G° the
generator at the start of the cycle — checked through real optimizer updates of a ("d", "g", "g") cycle."""

from __future__ import annotations

import torch

from kexue.gan import GAN, GANConfig
from kexue.gan import losses as L
from kexue.train.callbacks import Callback
from kexue.train.phases import frozen
from kexue.train.trainer import TrainConfig, Trainer


def model(shape=(2,), vi_weight=5.0, g_steps=2) -> GAN:
    torch.manual_seed(0)
    cfg = GANConfig(shape=shape, z_dim=3, width=8, vi_weight=vi_weight, g_steps=g_steps, lr_g=1e-2)
    return GAN(cfg).double()


def batch(n=16, shape=(2,), seed=1):
    return (torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64),)


def generator_grads(m: GAN, loss: torch.Tensor) -> list[torch.Tensor]:
    m.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() for p in m.generator.parameters()]


def adversarial_only(m: GAN, z: torch.Tensor) -> torch.Tensor:
    """The plain non-saturating term −mean log D(G(z)) with the same z (no regulariser)."""
    with frozen(m.critic):
        return L.ns_g(None, m.critic(m.generator(z))[:, 0])


class Snapshot(Callback):
    """Record G's weights at each cycle's start, and G and G° at its end."""

    def __init__(self) -> None:
        self.records: list[tuple[dict, dict, dict]] = []

    def on_step_begin(self, trainer) -> None:
        self.start = {k: v.clone() for k, v in trainer.model.generator.state_dict().items()}

    def on_step_end(self, trainer, logs) -> None:
        m = trainer.model
        end = {k: v.clone() for k, v in m.generator.state_dict().items()}
        old = {k: v.clone() for k, v in m.generator_old.state_dict().items()}
        self.records.append((self.start, end, old))


def test_g_old_is_g_as_each_cycle_began():
    m = model()
    snap = Snapshot()
    data = torch.utils.data.TensorDataset(batch(64)[0])
    Trainer(m, data, TrainConfig(steps=3, batch_size=16, progress=False), callbacks=[snap]).fit()
    assert m.phases == ("d", "g", "g")
    for start, end, old in snap.records:
        assert all(torch.equal(start[k], old[k]) for k in start)  # G° ← G when the cycle began
        assert any(not torch.equal(start[k], end[k]) for k in start)  # and G moved since


def test_gradient_is_zero_on_the_first_update_and_not_on_the_second():
    """Through the model's own optimizer: the total gradient equals the adversarial one exactly on the
    cycle's first generator update (G = G°), and differs by λ·∇mean(G(z) − G°(z))² on the second."""
    m = model()
    opt = m.configure_optimizer(TrainConfig(progress=False))
    diffs = []
    for i, phase in enumerate(m.phases):  # ("d", "g", "g"): the trainer's phases protocol, by hand
        torch.manual_seed(10 + i)
        out = m.loss(batch(seed=i), phase=phase)
        if phase == "g":
            torch.manual_seed(10 + i)
            z = m.noise(16)
            total = generator_grads(m, out["loss"])
            adv = generator_grads(m, adversarial_only(m, z))
            vi = (m.generator(z) - m.generator_old(z).detach()).pow(2).mean()
            reg = generator_grads(m, 5.0 * vi)
            diffs.append((total, adv, reg, float(out["vi"])))
            m.zero_grad(set_to_none=True)
            for p, g in zip(m.generator.parameters(), total):
                p.grad = g
        else:
            m.zero_grad(set_to_none=True)
            out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    (t1, a1, r1, v1), (t2, a2, r2, v2) = diffs
    assert v1 == 0.0 and all(torch.equal(t, a) for t, a in zip(t1, a1))  # exactly 0 on the first update
    assert all(float(r.abs().max()) == 0.0 for r in r1)
    assert v2 > 0 and any(float((t - a).abs().max()) > 1e-6 for t, a in zip(t2, a2))  # acts on the second
    for t, a, r in zip(t2, a2, r2):
        torch.testing.assert_close(t - a, r, rtol=1e-9, atol=1e-12)  # and is λ·∇mean‖G(z) − G°(z)‖²


def test_value_is_the_per_pixel_mean_squared_difference():
    """[5716] code: tf.losses.mean_squared_error(G°(z), G(z)), i.e. Σ(G(z) − G°(z))² / (B·C·H·W)."""
    shape = (1, 16, 16)
    m = model(shape=shape)
    m.loss(batch(8, shape), phase="d")  # the cycle starts: G° ← G
    with torch.no_grad():
        for p in m.generator.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    torch.manual_seed(4)
    out = m.loss(batch(8, shape), phase="g")
    torch.manual_seed(4)
    z = m.noise(8)
    with torch.no_grad():
        a, b = m.generator(z), m.generator_old(z)  # (8, 1, 16, 16) each
    by_hand = sum(float(d) ** 2 for d in (a - b).flatten()) / (8 * 1 * 16 * 16)
    assert abs(float(out["vi"]) - by_hand) <= 1e-12 * by_hand and by_hand > 0
    with torch.no_grad():
        weighted = float(out["loss"]) - float(L.ns_g(None, m.critic(m.generator(z))[:, 0]))
    assert abs(weighted - 5.0 * by_hand) <= 1e-12 * max(1.0, 5.0 * by_hand)
