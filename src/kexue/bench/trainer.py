"""`kexue bench trainer`: the trainer's time per step against a bare PyTorch loop, same model and data.

The bare loop is what one writes by hand: index a batch from in-memory tensors, forward, cross-entropy,
zero_grad, backward, AdamW step. The trainer runs the same model, data order and optimizer with its
defaults (metric logging to metrics.jsonl every 50 steps, NaN check every step, callbacks). Runs of the
two alternate and the median per-step time of each is kept, so machine noise hits both alike.
Result: {"overhead_ratio": trainer / bare on the main case (goal ≤ 1.05), "cases": [...], …}.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from kexue.data.loader import epoch_permutation
from kexue.nn.classifier import Classifier, ClassifierConfig
from kexue.train.callbacks import Callback
from kexue.train.distributed import Dist
from kexue.train.trainer import Trainer, TrainConfig

GOAL = 1.05


class _StepClock(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, trainer, logs) -> None:
        self.times.append(time.perf_counter())


def _per_step(times: list[float], warmup: int) -> float:
    return (times[-1] - times[warmup]) / (len(times) - 1 - warmup)


def _bare(make: Callable[[], Classifier], data: TensorDataset, steps: int, batch: int, warmup: int,
          device: torch.device) -> float:
    torch.manual_seed(0)
    model = make().to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x_all, y_all = data.tensors
    per_epoch = len(x_all) // batch
    times, perm = [], None
    for step in range(steps):
        epoch, b = divmod(step, per_epoch)
        if b == 0:  # one permutation per epoch, as the trainer draws it
            perm = epoch_permutation(len(x_all), 0, epoch)
        idx = perm[b * batch : (b + 1) * batch]
        x, y = x_all[idx].to(device), y_all[idx].to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter())
    return _per_step(times, warmup)


def _trainer(make: Callable[[], Classifier], data: TensorDataset, steps: int, batch: int, warmup: int,
             device: torch.device) -> float:
    torch.manual_seed(0)
    clock = _StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(steps=steps, batch_size=batch, lr=1e-3, progress=False)
        trainer = Trainer(make(), data, cfg, out_dir=tmp, dist=Dist(device=device), callbacks=[clock])
        trainer.fit()
    return _per_step(clock.times, warmup)


def _case(name: str, make, data, *, steps: int, batch: int, repeats: int, device: torch.device) -> dict:
    warmup = max(2, steps // 10)
    bare, ours = [], []
    for _ in range(repeats):  # alternate, so drifts in machine speed hit both
        bare.append(_bare(make, data, steps, batch, warmup, device))
        ours.append(_trainer(make, data, steps, batch, warmup, device))
    b, t = statistics.median(bare), statistics.median(ours)
    return {"name": name, "steps": steps, "batch_size": batch, "repeats": repeats,
            "bare_ms_per_step": round(1e3 * b, 4), "trainer_ms_per_step": round(1e3 * t, 4),
            "ratio": round(t / b, 4)}


def run(*, quick: bool = False, device: torch.device = torch.device("cpu")) -> dict:
    g = torch.Generator().manual_seed(0)
    n = 4096
    mnist_like = TensorDataset(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))
    digits_like = TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))
    conv = lambda: Classifier(ClassifierConfig(in_shape=(1, 28, 28), arch="conv", width=32))  # noqa: E731
    mlp = lambda: Classifier(ClassifierConfig(in_shape=(1, 8, 8), arch="mlp", width=256))  # noqa: E731
    repeats = 3 if quick else 5
    cases = [
        _case("conv 28x28 (the MNIST classifier), batch 128", conv, mnist_like, steps=60 if quick else 200,
              batch=128, repeats=repeats, device=device),
        _case("mlp 8x8 (the digits classifier), batch 128", mlp, digits_like, steps=300 if quick else 1000,
              batch=128, repeats=repeats, device=device),
    ]
    return {"benchmark": "trainer", "overhead_ratio": cases[0]["ratio"], "goal": GOAL,
            "meets_goal": cases[0]["ratio"] <= GOAL, "cases": cases, "device": str(device),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "quick": quick}
