"""Callbacks (post 5765, §花式回调器).

Schedules are exact at their knots and linear/cosine between; LRSchedule sets base·factor(step) on every
group, also after a resume; HyperparamSchedule moves a loss knob at the right step (the post's
`callback4e`); Evaluate runs every k steps and at the end, with EMA weights swapped in and back; SaveBest
writes exactly the best weights; EarlyStopping stops after `patience` evaluations; callback state survives
a resume."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from helpers import Crash, assert_bit_identical, digits_like, small_classifier, weights
from kexue.train.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    Evaluate,
    HyperparamSchedule,
    LRSchedule,
    SaveBest,
    cosine,
    piecewise_linear,
    warmup_linear,
)
from kexue.train.trainer import TrainConfig, Trainer


# ------------------------------------------------------------------------------------------ schedules
@settings(max_examples=50, deadline=None)
@given(warmup=st.integers(1, 20), extra=st.integers(1, 30))
def test_warmup_linear_knots_and_slopes(warmup, extra):
    """(s+1)/w up to the knot at w−1 (the post's (num_passed_batchs+1)/warmup), then 1 → 0 at `total`."""
    total = warmup + extra
    f = warmup_linear(warmup, total)
    assert f(0) == 1 / warmup and f(warmup - 1) == 1.0 and f(warmup) == 1.0
    assert f(total) == 0.0 and f(total + 7) == 0.0
    for s in range(warmup - 1):  # constant slope 1/w
        assert f(s + 1) - f(s) == pytest.approx(1 / warmup, abs=1e-12)
    for s in range(warmup, total):  # constant slope −1/(total − w)
        assert f(s + 1) - f(s) == pytest.approx(-1 / extra, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    points=st.dictionaries(st.integers(0, 1000), st.floats(0, 10, allow_nan=False), min_size=1, max_size=6)
)
def test_piecewise_linear_knots_and_chords(points):
    f = piecewise_linear(points)
    xs = sorted(points)
    for x in xs:
        assert f(x) == pytest.approx(points[x], abs=1e-12)
    assert f(xs[0] - 5) == points[xs[0]] and f(xs[-1] + 5) == points[xs[-1]]  # constant outside
    for x0, x1 in itertools.pairwise(xs):  # linear between knots: f at x = (1 − t)·x0 + t·x1
        for x in (x0 + (x1 - x0) // 3, (x0 + x1) // 2):
            t = (x - x0) / (x1 - x0)
            assert f(x) == pytest.approx((1 - t) * points[x0] + t * points[x1], abs=1e-12)


def test_piecewise_linear_needs_a_point():
    with pytest.raises(ValueError, match="at least one"):
        piecewise_linear({})


@pytest.mark.parametrize("floor", [0.0, 0.1])
def test_cosine_knots(floor):
    total, warmup = 110, 10
    f = cosine(total, warmup, floor)
    assert [f(s) for s in range(warmup)] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert f(warmup) == 1.0 and f(total) == pytest.approx(floor, abs=1e-15) and f(total + 9) == f(total)
    # t = (s − w)/(total − w) ∈ {¼, ½, ¾}: floor + (1 − floor)·(1 + cos πt)/2
    for t, c in ((0.25, math.sqrt(0.5)), (0.5, 0.0), (0.75, -math.sqrt(0.5))):
        s = warmup + int(t * (total - warmup))
        assert f(s) == pytest.approx(floor + (1 - floor) * (1 + c) / 2, abs=1e-12)


# ------------------------------------------------------------------------------------------ helpers
class Spy(Callback):
    """Run `fn(trainer)` at each step end and keep (step, result)."""

    def __init__(self, fn) -> None:
        self.fn, self.seen = fn, []

    def on_step_end(self, trainer, logs):
        self.seen.append((trainer.step, self.fn(trainer)))


class Clock:
    """A metric scripted by the trainer's step: `fn(model)` returns {name: table[step]}."""

    def __init__(self, name: str, table: dict[int, float]) -> None:
        self.name, self.table, self.trainer = name, table, None

    def __call__(self, model):
        return {self.name: self.table[self.trainer.step]}


def fit(model, callbacks, steps, *, tmp=None, resume=False, optimizer=None, ema=None, crash=None):
    cfg = TrainConfig(steps=steps, batch_size=32, ema_decay=ema, log_every=2, progress=False)
    cbs = [*callbacks, Crash(crash)] if crash else list(callbacks)
    trainer = Trainer(model, digits_like(), cfg, out_dir=tmp, optimizer=optimizer, callbacks=cbs)
    for cb in callbacks:
        if isinstance(cb, Evaluate) and isinstance(cb.fn, Clock):
            cb.fn.trainer = trainer
    if crash:
        with pytest.raises(KeyboardInterrupt):
            trainer.fit(resume=resume)
    else:
        trainer.fit(resume=resume)
    return trainer


# ------------------------------------------------------------------------------------------ LRSchedule
def two_groups(model):
    return torch.optim.SGD(
        [{"params": model.body.parameters(), "lr": 0.1}, {"params": model.head.parameters(), "lr": 0.03}]
    )


def test_lr_schedule_sets_every_group_and_survives_resume(tmp_path):
    """lr of group g during step s (0-based) is base_g·factor(s); a crashed and resumed run sets the same."""
    f = warmup_linear(3, 12)

    def run(out, crash=None, resume=False):
        torch.manual_seed(0)
        model = small_classifier()
        spy = Spy(lambda t: [g["lr"] for g in t.optimizer.param_groups])
        fit(
            model,
            [LRSchedule(f), Checkpoint(4), spy],
            12,
            tmp=out,
            optimizer=two_groups(model),
            crash=crash,
            resume=resume,
        )
        return spy.seen

    full = run(tmp_path / "a")
    assert full == [(s + 1, [0.1 * f(s), 0.03 * f(s)]) for s in range(12)]
    run(tmp_path / "b", crash=10)  # last checkpoint at step 8, where the groups hold base·f(7) ≠ base
    assert run(tmp_path / "b", resume=True) == full[8:]


# ----------------------------------------------------------------------------------- HyperparamSchedule
class Smoothed(nn.Module):
    """The post's label-smoothing model: the loss reads a knob `e` that a callback changes mid-training."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 4)
        self.e, self.seen = 0.1, []

    def loss(self, batch):
        x, y = batch
        self.seen.append(self.e)
        return F.cross_entropy(self.lin(x.flatten(1)), y, label_smoothing=self.e)


def test_hyperparam_schedule_moves_the_knob_at_the_right_step():
    """callback4e: e = 0.1 for the first 4 steps, 0.01 from step 4 on — seen by the loss of each step."""
    model = Smoothed()
    fit(model, [HyperparamSchedule(model, "e", lambda s: 0.1 if s < 4 else 0.01)], 7)
    assert model.seen == [0.1] * 4 + [0.01] * 3
    with pytest.raises(AttributeError, match="no attribute 'eps'"):
        HyperparamSchedule(model, "eps", lambda s: 0.0)


# ------------------------------------------------------------------------------------------ Evaluate
@pytest.mark.parametrize(("steps", "evals"), [(10, [3, 6, 9, 10]), (9, [3, 6, 9])])
def test_evaluate_every_k_steps_and_at_the_end(tmp_path, steps, evals):
    torch.manual_seed(0)
    ev = Evaluate(lambda m: {"calls": 1.0}, every=3)
    fit(small_classifier(), [ev], steps, tmp=tmp_path)
    assert [s for s, _ in ev.history] == evals
    assert all(m == {"eval/calls": 1.0} for _, m in ev.history)
    lines = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines if "eval/calls" in ln] == evals


@pytest.mark.parametrize("use_ema", [False, True])
def test_evaluate_sees_ema_weights_and_restores_the_trained_ones(use_ema):
    """With use_ema the metric sees Θ̂ (post 6575: evaluate with the averaged weights) in eval mode; after
    the call the trained weights are back bit-for-bit and the model trains again."""
    torch.manual_seed(0)
    model = small_classifier()
    seen, trainer_box = [], {}

    def metric(m):
        t = trainer_box["t"]
        expected = t.ema.averaged() if use_ema else weights(t.model)
        inside = {k: v for k, v in weights(m).items() if k in expected}
        assert not m.training
        seen.append(inside)
        for k in expected:
            assert torch.equal(inside[k], expected[k])
        return {"x": 0.0}

    before = Spy(lambda t: weights(t.model))
    after = Spy(lambda t: (weights(t.model), t.model.training))
    cbs = [before, Evaluate(metric, every=2, use_ema=use_ema), after]
    cfg = TrainConfig(steps=6, batch_size=32, ema_decay=0.9, progress=False)
    trainer = Trainer(model, digits_like(), cfg, callbacks=cbs)
    trainer_box["t"] = trainer
    trainer.fit()
    assert len(seen) == 3
    for (_, w0), (_, (w1, training)) in zip(before.seen, after.seen):
        assert_bit_identical(w0, w1)
        assert training
    differs = any(not torch.equal(seen[-1][k], before.seen[-1][1][k]) for k in seen[-1])
    assert differs == use_ema  # the EMA weights are not the trained ones, so the swap is observable


# ------------------------------------------------------------------------------------------ SaveBest
def file_state(path):
    if not path.is_file():
        return None
    with safe_open(path, "pt") as f:
        step = int(f.metadata()["step"])
    return step, load_file(path)


@pytest.mark.parametrize(
    ("mode", "values", "best_steps"),
    [
        # evaluations at steps 2, 4, …, 10; the file must hold the best-so-far step after each one
        ("max", [0.5, 0.7, 0.6, 0.9, 0.9], [2, 4, 4, 8, 8]),
        ("min", [0.5, 0.7, 0.3, 0.3, 0.1], [2, 2, 6, 6, 10]),
    ],
)
@pytest.mark.parametrize("ema", [None, 0.8])
def test_save_best_writes_only_on_improvement(tmp_path, mode, values, best_steps, ema):
    """best.safetensors changes exactly when the monitor improves (ties do not count) and holds the weights
    of that step — the EMA weights when asked for (use_ema), the trained ones otherwise."""
    torch.manual_seed(0)
    clock = Clock("score", dict(zip(range(2, 11, 2), values)))
    snap = Spy(lambda t: t.ema.averaged() if t.ema is not None else weights(t.model))
    probe = Spy(lambda t: file_state(tmp_path / "best.safetensors"))
    cbs = [snap, Evaluate(clock, every=2), SaveBest("eval/score", mode=mode, use_ema=ema is not None), probe]
    fit(small_classifier(), cbs, 10, tmp=tmp_path, ema=ema)
    snaps = dict(snap.seen)
    for step, state in probe.seen:
        if step % 2:
            continue
        best = best_steps[step // 2 - 1]
        assert state[0] == best
        assert_bit_identical(state[1], snaps[best])
    assert probe.seen[0] == (1, None)  # nothing written before the first evaluation
    with pytest.raises(ValueError, match="'max' or 'min'"):
        SaveBest("eval/score", mode="up")


# ------------------------------------------------------------------------------------------ EarlyStopping
@pytest.mark.parametrize(
    ("mode", "values", "min_delta", "stop_at"),
    [
        ("max", [1.0, 2.0, 2.0, 1.5, 3.0, 3.0], 0.0, 8),  # ties are not improvements
        ("min", [3.0, 2.0, 2.5, 1.0, 1.5, 0.5], 0.0, 12),  # the wait resets at steps 8 and 12
        ("max", [1.0, 1.05, 1.5, 1.55, 1.6, 2.0], 0.1, 10),  # +0.05 and +0.1 are not > min_delta
    ],
)
def test_early_stopping_after_patience_evaluations(tmp_path, mode, values, min_delta, stop_at):
    torch.manual_seed(0)
    clock = Clock("m", dict(zip(range(2, 13, 2), values)))
    ev = Evaluate(clock, every=2)
    es = EarlyStopping("eval/m", patience=2, mode=mode, min_delta=min_delta)
    trainer = fit(small_classifier(), [ev, es], 12, tmp=tmp_path)
    assert trainer.step == stop_at
    stopped = stop_at < 12
    assert (trainer.stop_reason is not None) == stopped
    if stopped:
        assert "eval/m did not improve for 2 evaluations" in trainer.stop_reason
    assert [s for s, _ in ev.history] == list(range(2, stop_at + 1, 2))  # no extra evaluation at the end


# ------------------------------------------------------------------------------------------ resume
def test_callback_state_survives_resume(tmp_path):
    """Crash at step 9 (checkpoint at 8, two evaluations without improvement so far), resume: EarlyStopping
    continues its wait and stops at step 10 like the uninterrupted run; Evaluate's history and SaveBest's
    best come back too. A resume that lost the state would not stop (wait 1, or best None)."""
    table = {2: 1.0, 4: 2.0, 6: 1.0, 8: 1.5, 10: 0.5, 12: 5.0}

    def run(out, crash=None, resume=False):
        torch.manual_seed(0)
        ev = Evaluate(Clock("m", table), every=2)
        cbs = [ev, EarlyStopping("eval/m", patience=3), SaveBest("eval/m"), Checkpoint(4)]
        trainer = fit(small_classifier(), cbs, 12, tmp=out, crash=crash, resume=resume)
        return trainer, cbs

    full, cbs_full = run(tmp_path / "a")
    run(tmp_path / "b", crash=9)
    resumed, cbs_res = run(tmp_path / "b", resume=True)
    assert full.step == resumed.step == 10
    assert full.stop_reason == resumed.stop_reason is not None
    for a, b in zip(cbs_full, cbs_res):
        assert a.state_dict() == b.state_dict()
    assert cbs_res[0].history == [(s, {"eval/m": table[s]}) for s in (2, 4, 6, 8, 10)]
    assert cbs_res[1].state_dict() == {"best": 2.0, "wait": 3}
    assert cbs_res[2].state_dict() == {"best": 2.0, "best_step": 4}
    assert_bit_identical(
        load_file(tmp_path / "a" / "best.safetensors"), load_file(tmp_path / "b" / "best.safetensors")
    )


def test_save_best_sees_the_final_evaluation(tmp_path):
    """Evaluate also runs at the end (step 10, off its every-4 grid); SaveBest must consider that value."""
    from kexue.train.callbacks import Evaluate, SaveBest
    from kexue.train.checkpoint import load_tensors
    from kexue.train.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    model = small_classifier()
    ev = Evaluate(lambda m: {"score": float(trainer.step)}, every=4, prefix="")  # improves every time
    trainer = Trainer(
        model,
        digits_like(),
        TrainConfig(steps=10, batch_size=32, progress=False),
        out_dir=tmp_path,
        callbacks=[ev, best := SaveBest("score", mode="max")],
    )
    trainer.fit()
    assert best.best_step == 10
    saved = load_tensors(tmp_path / "best.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------ time budget, best in memory
def test_time_budget_stops_after_its_seconds(tmp_path):
    """A scripted clock that advances one second per step: a 5-second budget stops at step 5."""
    from kexue.train.callbacks import TimeBudget

    ticks = iter(range(1000))
    budget = TimeBudget(5, clock=lambda: float(next(ticks)))
    trainer = fit(small_classifier(), [budget], 12, tmp=tmp_path)
    assert trainer.step == 5 and "time budget of 5 s" in trainer.stop_reason
    with pytest.raises(ValueError, match="positive number of seconds"):
        TimeBudget(0)


def test_keep_best_restores_the_best_weights(tmp_path):
    """KeepBest copies the weights at the best evaluation; restore() brings exactly those back."""
    from kexue.train.callbacks import Evaluate, KeepBest, SaveBest

    table = {2: 3.0, 4: 1.0, 6: 2.0, 8: 1.5}
    keep = KeepBest("eval/m", mode="min")
    saved = SaveBest("eval/m", mode="min")
    model = small_classifier()
    fit(model, [Evaluate(Clock("m", table), every=2), keep, saved], 8, tmp=tmp_path)
    assert keep.best == 1.0 and keep.best_step == 4
    keep.restore(model)
    assert_bit_identical(weights(model), load_file(tmp_path / "best.safetensors"))
    with pytest.raises(RuntimeError, match="never logged"):
        KeepBest("eval/other").restore(model)
