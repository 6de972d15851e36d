"""Callbacks: what the trainer does around its steps. [5765] kexue.fm/archives/5765, §花式回调器.

The post's Keras callbacks — evaluate with any Python metric and keep the best model, change the
learning rate by schedule (with warm-up), change any other hyper-parameter mid-training — become small
objects with hooks `on_train_begin`, `on_step_begin`, `on_step_end(logs)` and `on_train_end`. A callback
with state (best score, patience) returns it from `state_dict()` so a resumed run continues exactly.

Schedules are pure functions of the step (`warmup_linear`, `piecewise_linear`, `cosine`): a resumed run
needs no scheduler state at all.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from kexue.train import lr_schedule

if TYPE_CHECKING:
    from kexue.train.trainer import Trainer


class Callback:
    """Base class: override the hooks you need. `trainer.step` counts finished optimizer steps."""

    def on_train_begin(self, trainer: Trainer) -> None: ...
    def on_step_begin(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


# ----------------------------------------------------------------------------------------- schedules
def warmup_linear(warmup: int, total: int) -> Callable[[int], float]:
    """0 → 1 linearly over `warmup` steps, then 1 → 0 linearly until `total` (BERT's schedule)."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


def piecewise_linear(points: Mapping[int, float]) -> Callable[[int], float]:
    """Linear interpolation between {step: factor} points, constant before the first and beyond the last:
    `kexue.train.lr_schedule.piecewise_linear` without bert4keras's implicit (0, 0) knot."""
    if not points:
        raise ValueError("piecewise_linear needs at least one (step, factor) point")
    return functools.partial(lr_schedule.piecewise_linear, schedule=dict(points), from_zero=False)


def cosine(total: int, warmup: int = 0, floor: float = 0.0) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay from 1 to `floor` at `total`."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return f


class LRSchedule(Callback):
    """Set every parameter group's lr to base_lr · factor(step) before each step (the post's warm-up)."""

    def __init__(self, factor: Callable[[int], float]) -> None:
        self.factor = factor
        self.base: list[float] = []

    def on_train_begin(self, trainer: Trainer) -> None:
        self.base = [g.get("initial_lr", g["lr"]) for g in trainer.optimizer.param_groups]
        for g, b in zip(trainer.optimizer.param_groups, self.base):
            g["initial_lr"] = b

    def on_step_begin(self, trainer: Trainer) -> None:
        k = self.factor(trainer.step)
        for g, b in zip(trainer.optimizer.param_groups, self.base):
            g["lr"] = b * k


class HyperparamSchedule(Callback):
    """Set `setattr(obj, attr, value(step))` before each step — the post's `callback4e`, for any knob."""

    def __init__(self, obj: Any, attr: str, value: Callable[[int], Any]) -> None:
        if not hasattr(obj, attr):
            raise AttributeError(f"{type(obj).__name__} has no attribute {attr!r} to schedule")
        self.obj, self.attr, self.value = obj, attr, value

    def on_step_begin(self, trainer: Trainer) -> None:
        setattr(self.obj, self.attr, self.value(trainer.step))


# ----------------------------------------------------------------------------------------- evaluation
class Evaluate(Callback):
    """Every `every` steps (and at the end) compute `fn(model) -> {name: value}` and log it.

    Any Python metric works (the post's point: BLEU is not a tensor op). With use_ema the EMA weights
    are swapped in for the call. Runs on every process (metrics may need collective ops); only the
    main process writes logs. `history` keeps (step, metrics) pairs.
    """

    def __init__(
        self,
        fn: Callable[[Any], Mapping[str, float]],
        every: int,
        *,
        use_ema: bool = False,
        prefix: str = "eval/",
    ) -> None:
        self.fn, self.every, self.use_ema, self.prefix = fn, every, use_ema, prefix
        self.history: list[tuple[int, dict[str, float]]] = []

    def _run(self, trainer: Trainer) -> None:
        with trainer.evaluating(use_ema=self.use_ema) as model:
            metrics = {f"{self.prefix}{k}": float(v) for k, v in self.fn(model).items()}
        self.history.append((trainer.step, metrics))
        trainer.log(metrics)

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.every and trainer.step % self.every == 0:
            self._run(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        if not self.history or self.history[-1][0] != trainer.step:
            self._run(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [[s, m] for s, m in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = [(int(s), dict(m)) for s, m in state["history"]]


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


class SaveBest(Callback):
    """Save the weights whenever `monitor` improves — the EMA weights with use_ema, which should match the
    weights the monitored metric was computed on (`Evaluate(use_ema=…)`)."""

    def __init__(
        self, monitor: str, mode: str = "max", filename: str = "best.safetensors", *, use_ema: bool = False
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.monitor, self.mode, self.filename, self.use_ema = monitor, mode, filename, use_ema
        self.best: float | None = None
        self.best_step: int | None = None

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        value = logs.get(self.monitor)
        if value is not None and _improved(value, self.best, self.mode, 0.0):
            self.best, self.best_step = value, trainer.step
            trainer.save_weights(self.filename, use_ema=self.use_ema)

    def on_train_end(self, trainer: Trainer) -> None:
        # An Evaluate placed before this callback may log a final evaluation from its own on_train_end.
        self.on_step_end(trainer, trainer.logs)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.best_step = state["best"], state["best_step"]


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` evaluations."""

    def __init__(self, monitor: str, patience: int, mode: str = "max", min_delta: float = 0.0) -> None:
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta
        self.best: float | None = None
        self.wait = 0

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        value = logs.get(self.monitor)
        if value is None:
            return
        if _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop(f"early stop: {self.monitor} did not improve for {self.patience} evaluations")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.wait = state["best"], int(state["wait"])


class Checkpoint(Callback):
    """A resumable checkpoint every `every` steps (0: only the one the trainer writes at the end).

    The trainer writes it once the step is complete — after every callback's on_step_end and the log
    line — so the order of callbacks does not change what a resumed run sees.
    """

    def __init__(self, every: int) -> None:
        if every < 0:
            raise ValueError(f"checkpoint interval must be ≥ 0 steps, got {every}")
        self.every = every

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.every and trainer.step % self.every == 0:
            trainer.request_checkpoint()


class TimeBudget(Callback):
    """Stop once `seconds` of wall-clock have passed since training began (equal-time comparisons).

    The clock starts at on_train_begin, so a resumed run gets a fresh budget.
    """

    def __init__(self, seconds: float, *, clock: Callable[[], float] | None = None) -> None:
        if not seconds > 0:
            raise ValueError(f"the time budget must be a positive number of seconds, got {seconds}")
        import time

        self.seconds, self.clock = seconds, clock or time.perf_counter
        self.start: float | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        self.start = self.clock()

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.start is not None and self.clock() - self.start >= self.seconds:
            trainer.stop(f"time budget of {self.seconds:g} s spent")


class KeepBest(Callback):
    """Keep an in-memory CPU copy of the weights whenever `monitor` improves (model selection without
    files; `SaveBest` writes them to the run folder). `restore(model)` loads the best copy back."""

    def __init__(self, monitor: str, mode: str = "min") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.best_step: int | None = None
        self.state: dict[str, Any] | None = None

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        value = logs.get(self.monitor)
        if value is not None and math.isfinite(value) and _improved(value, self.best, self.mode, 0.0):
            self.best, self.best_step = value, trainer.step
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()}

    def on_train_end(self, trainer: Trainer) -> None:
        self.on_step_end(trainer, trainer.logs)

    def restore(self, model: Any) -> None:
        if self.state is None:
            raise RuntimeError(f"KeepBest: {self.monitor!r} was never logged, so there is no best model")
        model.load_state_dict(self.state)
