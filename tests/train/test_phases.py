"""The trainer's multi-phase protocol (kexue.train.phases): one update per phase on a fresh batch, only the
networks a phase gives gradients to move, per-phase logs, and exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from helpers import Crash, assert_bit_identical, weights
from kexue.errors import TrainingError
from kexue.train.phases import frozen
from kexue.train.trainer import TrainConfig, Trainer


class TwoPlayers(nn.Module):
    """a and b are 1-parameter 'networks'; phase "a" trains a on (a·x − 1)², phase "b" trains b through a
    frozen a: ((a·b)·x − 2)². Records the batches each phase saw."""

    phases = ("a", "a", "b")

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
        self.seen: list[tuple[str, list[float]]] = []
        self.nan_at: int | None = None

    def configure_optimizer(self, config):
        return torch.optim.SGD(
            [{"params": self.a.parameters(), "lr": 0.1}, {"params": self.b.parameters(), "lr": 0.01}]
        )

    def loss(self, batch, phase):
        x = batch[0]
        self.seen.append((phase, x[:, 0].tolist()))
        if phase == "a":
            loss = (self.a(x) - 1).pow(2).mean()
            if self.nan_at is not None and len(self.seen) >= self.nan_at:
                loss = loss * float("nan")
            return {"fit": loss.detach(), "loss": loss}
        with frozen(self.a):
            return (self.a(self.b(x)) - 2).pow(2).mean()


def data(n=64):
    return torch.utils.data.TensorDataset(torch.linspace(0.5, 1.5, n)[:, None])


def test_each_phase_updates_only_its_network_on_a_fresh_batch(tmp_path):
    m = TwoPlayers()
    a0, b0 = m.a.weight.item(), m.b.weight.item()
    trainer = Trainer(m, data(), TrainConfig(steps=1, batch_size=8, progress=False), out_dir=tmp_path)
    assert isinstance(trainer.optimizer, torch.optim.SGD)  # the model's configure_optimizer
    trainer.fit()
    assert [p for p, _ in m.seen] == ["a", "a", "b"]
    batches = [tuple(x) for _, x in m.seen]
    assert len(set(batches)) == 3  # three different batches
    # replay by hand: two SGD steps on a, then one on b with a fixed
    a, b = a0, b0
    for _, x in m.seen[:2]:
        xs = torch.tensor(x)
        a -= 0.1 * float((2 * (a * xs - 1) * xs).mean())
    xs = torch.tensor(m.seen[2][1])
    b -= 0.01 * float((2 * (a * b * xs - 2) * a * xs).mean())
    assert m.a.weight.item() == pytest.approx(a, rel=1e-6)
    assert m.b.weight.item() == pytest.approx(b, rel=1e-6)
    assert all(p.requires_grad for p in m.parameters())


def test_logs_name_each_phase_and_average_repeated_phases(tmp_path):
    torch.manual_seed(0)
    m = TwoPlayers()
    Trainer(
        m, data(), TrainConfig(steps=4, batch_size=8, log_every=4, progress=False), out_dir=tmp_path
    ).fit()
    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"train/a/fit", "train/a/loss", "train/b/loss"} <= set(line)
    # a/fit is a/loss logged twice; both are the mean over the window's 8 a-updates (2 per step, each
    # weighted ½), not their sum: the a-losses fall from about 1 (w ≈ 0), so a sum of 8 would show
    assert line["train/a/fit"] == pytest.approx(line["train/a/loss"])
    assert 0 <= line["train/a/loss"] < 2


def test_non_finite_phase_loss_names_the_phase():
    m = TwoPlayers()
    m.nan_at = 4
    with pytest.raises(TrainingError, match="step 2: phase 'a'"):
        Trainer(m, data(), TrainConfig(steps=3, batch_size=8, progress=False)).fit()


def test_gan_resumed_after_a_crash_is_bit_identical(tmp_path):
    from kexue.data.toy2d import ring8
    from kexue.gan import GAN, GANConfig
    from kexue.registry import toy_dataset

    ds = toy_dataset(ring8(), 512, 0)
    cfg = TrainConfig(steps=6, batch_size=32, log_every=2, progress=False)

    def run(out, crash=None, resume=False):
        torch.manual_seed(0)
        m = GAN(GANConfig(shape=(2,), z_dim=2, width=16, d_steps=2, vi_weight=1.0, g_steps=2))
        from kexue.train.callbacks import Checkpoint

        cbs = [Checkpoint(2)] + ([Crash(crash)] if crash else [])
        t = Trainer(m, ds, cfg, out_dir=out, callbacks=cbs)
        if crash:
            with pytest.raises(KeyboardInterrupt):
                t.fit(resume=resume)
        else:
            t.fit(resume=resume)
        return m

    full = run(tmp_path / "full")
    run(tmp_path / "cut", crash=3)
    resumed = run(tmp_path / "cut", resume=True)
    assert_bit_identical(weights(full), weights(resumed))
