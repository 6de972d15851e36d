"""The trainer: resume is bit-exact, accumulation equals one big batch, NaN stops with the step named,
EMA leaves the trajectory alone, sub-module losses join the objective, AMP runs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from helpers import Crash, assert_bit_identical, digits_like, small_classifier, weights
from kexue.errors import CheckpointError, TrainingError
from kexue.train.aux_loss import add_loss
from kexue.train.callbacks import Callback, Checkpoint, Evaluate, LRSchedule, warmup_linear
from kexue.train.trainer import TrainConfig, Trainer


def log_lines(run_dir):
    """metrics.jsonl without the wall-clock field."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in lines]


def _run(tmp, steps, *, crash_at=None, resume=False, seed=0, reg="noise"):
    torch.manual_seed(seed)
    model = small_classifier(reg, sigma=0.3)
    cbs = [LRSchedule(warmup_linear(5, steps)), Checkpoint(every=4)]
    if crash_at:
        cbs.append(Crash(crash_at))
    cfg = TrainConfig(steps=steps, batch_size=32, ema_decay=0.9, seed=seed, log_every=3, progress=False)
    trainer = Trainer(
        model,
        digits_like(),
        cfg,
        out_dir=tmp,
        callbacks=cbs,
        run_config={"model": "classifier", "model_config": {"reg": reg}},
    )
    if crash_at:
        with pytest.raises(KeyboardInterrupt):
            trainer.fit(resume=resume)
        return None
    trainer.fit(resume=resume)
    return trainer


def test_resume_is_bit_identical(tmp_path):
    """Crash at step 10 (last checkpoint at 8), resume: weights, EMA and log equal an uninterrupted run."""
    full = _run(tmp_path / "a", 21)
    _run(tmp_path / "b", 21, crash_at=10)
    torch.manual_seed(12345)  # the resumed run must restore the generators, not rely on them
    resumed = _run(tmp_path / "b", 21, resume=True)
    assert_bit_identical(weights(full.model), weights(resumed.model))
    assert_bit_identical(full.ema.averaged(), resumed.ema.averaged())
    assert log_lines(tmp_path / "a") == log_lines(tmp_path / "b")


def test_resume_rejects_changed_settings(tmp_path):
    _run(tmp_path, 8)
    model = small_classifier("noise", sigma=0.3)
    cfg = TrainConfig(steps=12, batch_size=64, ema_decay=0.9, progress=False)
    trainer = Trainer(
        model,
        digits_like(),
        cfg,
        out_dir=tmp_path,
        run_config={"model": "classifier", "model_config": {"reg": "noise"}},
    )
    with pytest.raises(CheckpointError, match="batch_size 32 → 64"):
        trainer.fit(resume=True)


def test_resume_without_checkpoint_and_reuse_of_run_dir(tmp_path):
    cfg = TrainConfig(steps=2, batch_size=32, progress=False)
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        Trainer(small_classifier(), digits_like(), cfg, out_dir=tmp_path).fit(resume=True)
    Trainer(small_classifier(), digits_like(), cfg, out_dir=tmp_path).fit()
    with pytest.raises(CheckpointError, match="already holds a run"):
        Trainer(small_classifier(), digits_like(), cfg, out_dir=tmp_path).fit()


class Linear64(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 4, dtype=torch.float64)

    def loss(self, batch):
        x, y = batch
        return nn.functional.cross_entropy(self.lin(x.flatten(1).double()), y)


@pytest.mark.parametrize("accum", [2, 4])
def test_accumulation_equals_one_big_batch(accum):
    """'Soft batch' (post 5879): k chunks of B/k with loss/k give the same update as one batch of B."""
    data = digits_like(dtype=torch.float64)
    runs = []
    for a in (1, accum):
        torch.manual_seed(0)
        model = Linear64()
        cfg = TrainConfig(steps=10, batch_size=64, accum=a, progress=False)
        Trainer(model, data, cfg, optimizer=torch.optim.SGD(model.parameters(), lr=0.5)).fit()
        runs.append(weights(model))
    for k in runs[0]:
        torch.testing.assert_close(runs[0][k], runs[1][k], rtol=0, atol=1e-12)


class Exploding(nn.Module):
    def __init__(self, at: int, as_dict: bool):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.at, self.calls, self.as_dict = at, 0, as_dict

    def loss(self, batch):
        self.calls += 1
        bad = torch.tensor(float("nan")) if self.calls == self.at else torch.tensor(0.0)
        loss = (self.w * batch[0].mean()) ** 2 + bad  # shape (1,): one element is accepted as a scalar
        # "loss" first, then a finite entry: the check must read "loss", not the last entry
        return {"loss": loss, "acc": torch.tensor(0.5)} if self.as_dict else loss


@pytest.mark.parametrize("as_dict", [False, True])
def test_nan_stops_naming_the_step(as_dict):
    model = Exploding(at=3, as_dict=as_dict)
    cfg = TrainConfig(steps=10, batch_size=32, progress=False)
    before = None

    class Snapshot(Callback):
        def on_step_end(self, trainer, logs):
            nonlocal before
            before = model.w.detach().clone()

    with pytest.raises(TrainingError, match=r"step 3: the loss is nan"):
        Trainer(model, digits_like(), cfg, callbacks=[Snapshot()]).fit()
    assert torch.equal(model.w.detach(), before)  # the NaN step updated nothing


def test_ema_does_not_change_the_trajectory():
    """Post 6575: 'EMA不改变原来优化器的轨迹'."""
    out = []
    for decay in (None, 0.9):
        torch.manual_seed(0)
        model = small_classifier()
        Trainer(
            model, digits_like(), TrainConfig(steps=12, batch_size=32, ema_decay=decay, progress=False)
        ).fit()
        out.append(weights(model))
    assert_bit_identical(*out)


class CenterLossNet(nn.Module):
    """The post's Dense_with_Center_loss (5765): a layer that adds λ‖h − c_y‖² to the objective."""

    def __init__(self, lam=0.5):
        super().__init__()
        self.feat = nn.Linear(16, 2, dtype=torch.float64)
        self.out = nn.Linear(2, 4, dtype=torch.float64)
        self.centers = nn.Parameter(torch.randn(4, 2, dtype=torch.float64))
        self.lam = lam

    def loss(self, batch):
        x, y = batch
        h = self.feat(x.flatten(1).double())
        add_loss(self, self.lam * (h - self.centers[y]).pow(2).sum(1).mean(), "center")
        return nn.functional.cross_entropy(self.out(h), y)


def test_module_losses_join_the_objective(tmp_path):
    data = digits_like(dtype=torch.float64)
    torch.manual_seed(0)
    a = CenterLossNet()
    torch.manual_seed(0)
    b = CenterLossNet()
    Trainer(
        a,
        data,
        TrainConfig(steps=3, batch_size=32, log_every=1, progress=False),
        out_dir=tmp_path,
        optimizer=torch.optim.SGD(a.parameters(), lr=0.1),
    ).fit()
    # Reference: the same three steps written by hand with the total loss.
    opt = torch.optim.SGD(b.parameters(), lr=0.1)
    from kexue.data.loader import BatchStream

    stream = iter(BatchStream(data, 32, seed=0))
    for _ in range(3):
        x, y = next(stream)
        h = b.feat(x.flatten(1))
        total = nn.functional.cross_entropy(b.out(h), y) + b.lam * (h - b.centers[y]).pow(2).sum(1).mean()
        opt.zero_grad()
        total.backward()
        opt.step()
    assert_bit_identical(weights(a), weights(b))
    import json

    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert line["train/center"] > 0 and line["train/loss"] > line["train/center"]


def test_amp_bf16_on_cpu_trains():
    torch.manual_seed(0)
    model = small_classifier()
    data = digits_like()
    cfg = TrainConfig(steps=40, batch_size=64, amp=True, lr=3e-3, progress=False)
    x, y = data.tensors
    before = nn.functional.cross_entropy(model(x), y).item()
    Trainer(model, data, cfg).fit()
    after = nn.functional.cross_entropy(model(x), y).item()
    assert math.isfinite(after) and after < 0.7 * before


def test_clip_grad_norm_bounds_the_update():
    torch.manual_seed(0)
    model = Linear64()
    w0 = weights(model)
    cfg = TrainConfig(steps=1, batch_size=64, clip_grad_norm=1e-3, progress=False)
    Trainer(
        model, digits_like(dtype=torch.float64), cfg, optimizer=torch.optim.SGD(model.parameters(), lr=1.0)
    ).fit()
    step = torch.cat([(weights(model)[k] - w0[k]).flatten() for k in w0])
    # SGD with lr 1: the update is the clipped gradient (torch divides by ‖g‖ + 1e-6)
    assert step.norm() == pytest.approx(1e-3, rel=1e-5)


def test_non_scalar_loss_entries_are_rejected():
    class Vector(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def loss(self, batch):
            return {"loss": self.w.sum(), "per_class": self.w * 2}

    with pytest.raises(TypeError, match="'per_class' as \\(3,\\); every entry must be a scalar"):
        Trainer(Vector(), digits_like(), TrainConfig(steps=1, batch_size=32, progress=False)).fit()


def test_model_without_loss_is_rejected():
    with pytest.raises(TypeError, match="no loss"):
        Trainer(nn.Linear(2, 2), digits_like(), TrainConfig(steps=1, batch_size=32))


class RandomMetric(Callback):
    """A stateful callback that draws from the global generator every step (like a sampling metric)."""

    def __init__(self) -> None:
        self.draws: list[float] = []

    def on_step_end(self, trainer, logs):
        self.draws.append(float(torch.rand(())))
        trainer.log({"draw": self.draws[-1]})

    def state_dict(self):
        return {"draws": self.draws}

    def load_state_dict(self, state):
        self.draws = list(state["draws"])


def _fit_order(tmp, steps, *, crash_at=None, resume=False, amp_dtype=None):
    torch.manual_seed(0)
    model = small_classifier("noise", sigma=0.3)
    cbs = [Checkpoint(every=4), RandomMetric()]  # Checkpoint FIRST: the save must still see the whole step
    if crash_at:
        cbs.append(Crash(crash_at))
    cfg = TrainConfig(
        steps=steps,
        batch_size=32,
        log_every=3,
        progress=False,
        amp=amp_dtype is not None,
        amp_dtype=amp_dtype or "auto",
    )
    trainer = Trainer(model, digits_like(), cfg, out_dir=tmp, callbacks=cbs, run_config={"model": "m"})
    if crash_at:
        with pytest.raises(KeyboardInterrupt):
            trainer.fit(resume=resume)
        return None
    return trainer.fit(resume=resume)


@pytest.mark.parametrize("amp_dtype", [None, "fp16"])
def test_resume_exact_whatever_the_callback_order(tmp_path, amp_dtype):
    """A checkpoint requested by the first callback is written after all of them (and the log line); with
    fp16 autocast the GradScaler's state comes back too."""
    full = _fit_order(tmp_path / "a", 14, amp_dtype=amp_dtype)
    _fit_order(tmp_path / "b", 14, crash_at=10, amp_dtype=amp_dtype)
    resumed = _fit_order(tmp_path / "b", 14, resume=True, amp_dtype=amp_dtype)
    assert_bit_identical(weights(full.model), weights(resumed.model))
    assert full.callbacks[1].draws == resumed.callbacks[1].draws
    if amp_dtype == "fp16":
        assert resumed._scaler is not None and resumed._scaler.get_scale() == full._scaler.get_scale()
    assert log_lines(tmp_path / "a") == log_lines(tmp_path / "b")


def test_resume_survives_a_torn_log_line_and_nan_metrics(tmp_path):
    torch.manual_seed(0)
    cbs = [Checkpoint(every=2), Evaluate(lambda m: {"nan_metric": float("nan")}, every=2)]
    cfg = TrainConfig(steps=4, batch_size=32, progress=False)
    Trainer(
        small_classifier(), digits_like(), cfg, out_dir=tmp_path, callbacks=cbs
    ).fit()  # NaN in saved state
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "train/lo')  # a process killed in the middle of a line
    cfg = TrainConfig(steps=6, batch_size=32, progress=False)
    cbs = [Checkpoint(every=2), Evaluate(lambda m: {"nan_metric": float("nan")}, every=2)]
    Trainer(small_classifier(), digits_like(), cfg, out_dir=tmp_path, callbacks=cbs).fit(resume=True)
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 6


def test_resume_needs_the_same_stateful_callbacks(tmp_path):
    torch.manual_seed(0)
    cfg = TrainConfig(steps=4, batch_size=32, progress=False)
    Trainer(small_classifier(), digits_like(), cfg, out_dir=tmp_path, callbacks=[RandomMetric()]).fit()
    longer = TrainConfig(steps=6, batch_size=32, progress=False)
    with pytest.raises(CheckpointError, match="callbacks with state"):
        Trainer(small_classifier(), digits_like(), longer, out_dir=tmp_path).fit(resume=True)
    # stateless ones may differ (e.g. resuming without --save-every)
    Trainer(
        small_classifier(),
        digits_like(),
        longer,
        out_dir=tmp_path,
        callbacks=[Checkpoint(every=0), RandomMetric()],
    ).fit(resume=True)
