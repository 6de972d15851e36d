"""The training loop every family plugs into: a model exposes `loss(batch)`, the trainer does the rest.

    class MyModel(nn.Module):
        def loss(self, batch) -> Tensor | dict[str, Tensor]:  # a dict holds "loss"; the rest is logged

What the trainer adds (posts 5765, 5879 and 6575 in PyTorch terms): callbacks; loss terms contributed by
sub-modules (`add_loss`); gradient accumulation ("soft batch"); gradient clipping; AMP where the device
supports it; weight EMA; a JSONL metric log and a progress bar; a stop with a clear message naming the
step when the loss stops being finite; atomic, resumable checkpoints (safetensors + JSON) from which a
resumed CPU run ends bit-identical to an uninterrupted one; and DDP under `torchrun`, where W processes
with batch B/W reproduce one process with batch B.

Two hooks a model may define: `configure_optimizer(config)` returns its optimizer (the default is AdamW over
all parameters), and `phases` (e.g. ("d", "g")) makes each step a cycle of alternating updates, one per
phase, each on a fresh batch (`kexue.train.phases`: GANs and other min-max games).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from kexue.data.loader import BatchStream
from kexue.errors import CheckpointError, TrainingError
from kexue.train import checkpoint as ckpt
from kexue.train.aux_loss import collecting_losses
from kexue.train.callbacks import Callback
from kexue.train.distributed import Dist, all_max, all_mean, barrier, gather_objects
from kexue.train.ema import EMA
from kexue.train.rng import get_rng_state, set_rng_state


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # optimizer steps in total (a resumed run continues up to it)
    batch_size: int = 128  # global batch per optimizer step: all processes, all accumulation chunks
    accum: int = 1  # gradient-accumulation chunks per step ("soft batch", post 5879)
    lr: float = 1e-3  # AdamW learning rate (when no optimizer is passed in)
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    clip_grad_norm: float | None = None  # clip the global gradient norm to this value
    amp: bool = False  # autocast: bf16 on CPU and on GPUs that have it, else fp16 + GradScaler
    amp_dtype: str = "auto"  # "auto" (as above), "bf16", or "fp16" (always with a GradScaler)
    ema_decay: float | None = None  # keep a weight EMA with this decay (bias-corrected)
    seed: int = 0  # data order; the CLI also seeds the global generators with it
    keep: int = 3  # newest checkpoints kept
    log_every: int = 50  # steps between training-metric lines in metrics.jsonl
    num_workers: int = 0  # DataLoader workers (map-style data sets only)
    progress: bool = True  # tqdm progress bar on the main process

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 0, f"steps must be ≥ 0, got {self.steps}"),
            (self.batch_size >= 1, f"batch size must be ≥ 1, got {self.batch_size}"),
            (self.accum >= 1, f"accum must be ≥ 1, got {self.accum}"),
            (
                self.batch_size % self.accum == 0,
                f"batch size {self.batch_size} is not divisible by accum={self.accum}",
            ),
            (
                math.isfinite(self.lr) and self.lr > 0,
                f"the learning rate must be a positive number, got {self.lr}",
            ),
            (
                math.isfinite(self.weight_decay) and self.weight_decay >= 0,
                f"weight decay must be ≥ 0, got {self.weight_decay}",
            ),
            (
                self.clip_grad_norm is None
                or (math.isfinite(self.clip_grad_norm) and self.clip_grad_norm > 0),
                f"the gradient-clipping norm must be a positive number, got {self.clip_grad_norm}",
            ),
            (
                self.ema_decay is None or 0 <= self.ema_decay < 1,
                f"the EMA decay must lie in [0, 1), got {self.ema_decay}",
            ),
            (self.keep >= 1, f"keep must be ≥ 1 checkpoint, got {self.keep}"),
            (self.log_every >= 1, f"log_every must be ≥ 1, got {self.log_every}"),
            (self.num_workers >= 0, f"workers must be ≥ 0, got {self.num_workers}"),
            (
                self.amp_dtype in ("auto", "bf16", "fp16"),
                f"amp_dtype must be auto, bf16 or fp16, got {self.amp_dtype!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class _LossForward(nn.Module):
    """Routes `forward` to `model.loss`, so that DDP's forward (which arms gradient sync) calls the loss."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Sequence[Tensor], phase: str | None = None) -> Any:
        return self.model.loss(batch) if phase is None else self.model.loss(batch, phase=phase)


def _terms(out: Any) -> dict[str, Tensor]:
    """model.loss's output as {name: scalar}, with "loss" LAST (the step reads it as the final entry)."""
    if isinstance(out, Tensor):
        out = {"loss": out}
    if not (isinstance(out, Mapping) and "loss" in out):
        raise TypeError("model.loss(batch) must return a scalar tensor or a dict with a 'loss' entry")
    for k, v in out.items():
        if not isinstance(v, Tensor) or v.numel() != 1:
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise TypeError(
                f"model.loss(batch) returned {k!r} as {shape}; every entry must be a scalar tensor"
            )
    out = {k: v if v.dim() == 0 else v.reshape(()) for k, v in out.items()}
    return {**{k: v for k, v in out.items() if k != "loss"}, "loss": out["loss"]}


def _on_device(data: Dataset, device: torch.device, limit: int = 2**30) -> Dataset:
    """An in-memory data set under `limit` bytes moves to the GPU once, so batches are gathered there."""
    if device.type == "cpu" or not isinstance(data, TensorDataset):
        return data
    if sum(t.numel() * t.element_size() for t in data.tensors) > limit:
        return data
    return TensorDataset(*(t.to(device) for t in data.tensors))


def _keyed(items: Sequence[Any], name_and_value: Callable[[Any], tuple[str, Any]]) -> dict[str, Any]:
    """{"Type#k": value}: the k-th item of each type, so that states match callbacks by type and order."""
    out: dict[str, Any] = {}
    for item in items:
        name, value = name_and_value(item)
        k = sum(key.startswith(f"{name}#") for key in out)
        out[f"{name}#{k}"] = value
    return out


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        data: Dataset,
        config: TrainConfig,
        *,
        out_dir: str | Path | None = None,
        dist: Dist | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        callbacks: Sequence[Callback] = (),
        run_config: Mapping[str, Any] | None = None,
    ) -> None:
        if not hasattr(model, "loss"):
            raise TypeError(f"{type(model).__name__} has no loss(batch) method; the trainer needs one")
        self.config, self.dist = config, dist or Dist()
        self.device = self.dist.device
        self.model = model.to(self.device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.run_config = dict(run_config or {})
        if optimizer is None and hasattr(model, "configure_optimizer"):
            optimizer = model.configure_optimizer(config)
        self.optimizer = optimizer or torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.phases: tuple[str, ...] = tuple(getattr(model, "phases", ()))
        self.ema = EMA(model, config.ema_decay) if config.ema_decay is not None else None
        self.callbacks = list(callbacks)
        self.stream = BatchStream(
            _on_device(data, self.device),
            config.batch_size,
            seed=config.seed,
            rank=self.dist.rank,
            world=self.dist.world,
            num_workers=config.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        if (config.batch_size // self.dist.world) % config.accum:
            raise TrainingError(
                f"each of the {self.dist.world} processes gets {config.batch_size // self.dist.world} "
                f"samples per step, which --accum {config.accum} does not divide"
            )
        self.step = 0
        self.stop_reason: str | None = None
        self._save_requested = False
        self._saved_step: int | None = None
        self._forward: nn.Module = _LossForward(model)
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._forward = DistributedDataParallel(  # a phase leaves the other networks unused
                self._forward, device_ids=ids, find_unused_parameters=bool(self.phases)
            )
        self._autocast, self._scaler = self._amp_setup()
        self._logs: dict[str, float] = {}
        self._extra: dict[str, float] = {}
        self._win_keys: tuple[str, ...] = ()  # the running log window: stacked sums while keys stay
        self._win_vals: Tensor | None = None
        self._win_other: dict[str, Tensor] = {}  # sums of keys that came and went within the window
        self._window_steps = 0
        self._elapsed = 0.0

    # -------------------------------------------------------------------------------------- set-up
    def _amp_setup(self):
        """autocast and, for float16, a GradScaler. "auto": bf16 where the hardware has it natively."""
        cfg, kind = self.config, self.device.type
        if not cfg.amp:
            return nullcontext, None
        dtype = cfg.amp_dtype
        if dtype == "auto":
            native_bf16 = True
            if kind == "cuda":
                with torch.cuda.device(self.device):
                    native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
            dtype = "bf16" if native_bf16 else "fp16"
        if dtype == "fp16":
            return (lambda: torch.autocast(kind, dtype=torch.float16)), torch.amp.GradScaler(kind)
        return (lambda: torch.autocast(kind, dtype=torch.bfloat16)), None

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    # -------------------------------------------------------------------------------------- one step
    def _train_step(self, batches: Iterator[tuple[Tensor, ...]]) -> Tensor:
        """One step: one update (one batch), or one update per phase of the model's cycle."""
        if not self.phases:
            return self._update(next(batches), None)
        for phase in self.phases:
            loss = self._update(next(batches), phase, weight=1 / self.phases.count(phase))
        return loss  # the cycle's last phase

    def _update(self, batch: tuple[Tensor, ...], phase: str | None, weight: float = 1.0) -> Tensor:
        """Forward, backward (over `accum` chunks) and one optimizer step. A phase's logged terms are
        named "phase/term" and weighted so that the log shows their mean over the phase's updates."""
        n = self.config.accum
        if self.device.type != "cpu":
            batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
        chunks = list(zip(*(t.chunk(n) for t in batch))) if n > 1 else [batch]
        total: Tensor | None = None
        for i, chunk in enumerate(chunks):
            last = i == n - 1
            sync = nullcontext() if last or not self.dist.active else self._forward.no_sync()
            with sync:
                with self._autocast(), collecting_losses() as aux:
                    terms = _terms(self._forward(chunk, phase))
                loss = terms["loss"] + sum(aux.values()) if aux else terms["loss"]
                scaled = loss / n if n > 1 else loss
                (self._scaler.scale(scaled) if self._scaler else scaled).backward()
            logged = (
                {**{k: v for k, v in terms.items() if k != "loss"}, **aux, "loss": loss} if aux else terms
            )
            values = torch.stack([v.detach().float() for v in logged.values()])  # one tensor: cheap to log
            values = values / n if n > 1 else values
            total = values if total is None else total + values
        self._check_finite(total[-1], phase)  # "loss" is the last key
        self._apply_gradients()
        keys = tuple(logged) if phase is None else tuple(f"{phase}/{k}" for k in logged)
        self._accumulate(keys, total * weight if weight != 1 else total)
        return total[-1]

    def _accumulate(self, keys: tuple[str, ...], values: Tensor) -> None:
        """Add one step's logged values to the running window (one tensor add while keys stay the same)."""
        if keys != self._win_keys:
            self._fold_window()
            self._win_keys, self._win_vals = keys, values
        else:
            self._win_vals = self._win_vals + values

    def _fold_window(self) -> None:
        if self._win_vals is not None:
            for k, v in zip(self._win_keys, self._win_vals):
                self._win_other[k] = self._win_other[k] + v if k in self._win_other else v
        self._win_keys, self._win_vals = (), None

    def _check_finite(self, loss: Tensor, phase: str | None = None) -> None:
        value = float(loss)
        if all_max(not math.isfinite(value), self.dist):
            which = "the loss" if phase is None else f"phase {phase!r}'s loss"
            raise TrainingError(
                f"step {self.step + 1}: {which} is {value} (not finite), so training stopped "
                "before updating the weights; lower --lr, set --clip-grad, or check the data "
                "for NaN/Inf"
            )

    def _apply_gradients(self) -> None:
        cfg, opt = self.config, self.optimizer
        if self._scaler:
            self._scaler.unscale_(opt)
        if cfg.clip_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
            if not self._scaler and not torch.isfinite(norm):
                raise TrainingError(
                    f"step {self.step + 1}: the gradient norm is {float(norm)} (not finite); "
                    "lower --lr or check the model for operations with infinite gradients"
                )
        if self._scaler:
            self._scaler.step(opt)
            self._scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)

    # -------------------------------------------------------------------------------------- the loop
    def fit(self, *, resume: bool = False) -> Trainer:
        """Train until `config.steps` (continuing from the newest checkpoint when `resume`)."""
        from tqdm.auto import tqdm

        if resume:
            self.resume()
        elif self.out_dir is not None:
            self._start_run_dir()
        for cb in self.callbacks:
            cb.on_train_begin(self)
        self.model.train()
        batches = iter(self.stream)
        bar = tqdm(
            total=self.config.steps,
            initial=self.step,
            disable=not (self.config.progress and self.is_main),
            dynamic_ncols=True,
            leave=False,
        )
        t0 = time.perf_counter() - self._elapsed
        try:
            while self.step < self.config.steps and self.stop_reason is None:
                for cb in self.callbacks:
                    cb.on_step_begin(self)
                loss = self._train_step(batches)
                self.step += 1
                self._window_steps += 1
                self._elapsed = time.perf_counter() - t0
                self._logs["lr"] = self.optimizer.param_groups[0]["lr"]
                if self.step % self.config.log_every == 0 or self.step == self.config.steps:
                    self._logs.update(self._flush_window())
                for cb in self.callbacks:
                    cb.on_step_end(self, self._logs)
                self._write_log()
                if all_max(self.stop_reason is not None, self.dist) and self.stop_reason is None:
                    self.stop_reason = "another process stopped"  # every process leaves the loop together
                if self._save_requested:  # after every callback and the log line: the step is complete
                    self.save_checkpoint()
                bar.update(1)
                if self.step % self.config.log_every == 0:
                    bar.set_postfix(loss=f"{float(loss):.4g}")
            for cb in self.callbacks:
                cb.on_train_end(self)
            self._write_log()
        finally:
            bar.close()
        if self.out_dir is not None:
            if self._saved_step != self.step:
                self.save_checkpoint()
            self.save_weights("model.safetensors")
            if self.ema is not None:
                self.save_weights("model_ema.safetensors", use_ema=True)
        return self

    def request_checkpoint(self) -> None:
        """Write a checkpoint at the end of this step, once every callback has run (see `Checkpoint`)."""
        self._save_requested = True

    def stop(self, reason: str) -> None:
        """Ask the loop to stop after the current step (e.g. early stopping)."""
        self.stop_reason = reason
        self.log({"stopped": 1.0})

    # -------------------------------------------------------------------------------------- logging
    def _flush_window(self) -> dict[str, float]:
        self._fold_window()
        keys = sorted(self._win_other)
        means = [float(self._win_other[k]) / max(1, self._window_steps) for k in keys]
        means = all_mean(means, self.dist)
        self._win_other, self._window_steps = {}, 0
        return {f"train/{k}": v for k, v in zip(keys, means)}

    @property
    def logs(self) -> Mapping[str, float]:
        """This step's log entries so far (training means on logging steps, plus what callbacks logged)."""
        return self._logs

    def log(self, metrics: Mapping[str, float]) -> None:
        """Add metrics to this step's log line (and to the `logs` later callbacks see)."""
        self._logs.update(metrics)
        self._extra.update(metrics)

    def _write_log(self) -> None:
        """Append this step's line (on logging steps, or when a callback logged something), then reset."""
        has_train = any(k.startswith("train/") for k in self._logs)
        if (has_train or self._extra) and self.is_main and self.out_dir is not None:
            line = {"step": self.step, "time": round(self._elapsed, 3), **self._logs}
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(line, allow_nan=True) + "\n")
        self._logs, self._extra = {}, {}

    # -------------------------------------------------------------------------------------- evaluation
    @contextmanager
    def evaluating(self, *, use_ema: bool = False) -> Iterator[nn.Module]:
        """The model in eval mode (with the EMA weights swapped in when asked), restored afterwards."""
        was_training = self.model.training
        self.model.eval()
        swap = self.ema.applied(self.model) if use_ema and self.ema is not None else nullcontext(self.model)
        try:
            with swap:
                yield self.model
        finally:
            self.model.train(was_training)

    # -------------------------------------------------------------------------------------- saving
    def _on_main(self, what: str, fn: Callable[[], None]) -> None:
        """Run fn on rank 0 only; if it fails, every process raises, so none waits in a collective forever."""
        error: BaseException | None = None
        if self.is_main:
            try:
                fn()
            except Exception as e:  # re-raised below, on every process
                error = e
        if all_max(error is not None, self.dist):
            if error is not None:
                raise error
            raise CheckpointError(f"rank 0 failed to {what}; its error message says why")

    def _start_run_dir(self) -> None:
        """Refuse to overwrite a run (checked on every process, so all stop together), then rank 0 writes."""
        assert self.out_dir is not None
        if ckpt.checkpoint_steps(self.out_dir / "checkpoints"):
            raise CheckpointError(
                f"{self.out_dir} already holds a run; pass --resume to continue it or choose another --out"
            )
        barrier(self.dist)  # every process has looked before rank 0 creates anything

        def start() -> None:
            if self.out_dir.exists() and not self.out_dir.is_dir():
                raise CheckpointError(f"--out {self.out_dir} is a file; choose a directory")
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "metrics.jsonl").unlink(missing_ok=True)
            ckpt.write_json_atomic(
                {**self.run_config, "train": asdict(self.config)}, self.out_dir / "config.json"
            )

        self._on_main("create the run directory", start)

    def save_weights(self, filename: str, *, use_ema: bool = False) -> None:
        """Write the model's weights (or the EMA weights) to out_dir/filename. Every process calls it;
        rank 0 writes."""
        if self.out_dir is None:
            return
        swap = self.ema.applied(self.model) if use_ema and self.ema is not None else nullcontext()

        def write() -> None:
            with swap:
                state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            ckpt.save_tensors_atomic(state, self.out_dir / filename, metadata={"step": str(self.step)})

        self._on_main(f"write {filename}", write)

    def save_checkpoint(self) -> None:
        """Write a resumable checkpoint (all processes must call it: it gathers their RNG states)."""
        self._save_requested = False
        rng = gather_objects(get_rng_state(self.device), self.dist)
        if self.out_dir is None:
            return

        def write() -> None:
            tensors: dict[str, Tensor] = {f"model.{k}": v for k, v in self.model.state_dict().items()}
            meta = {
                "format": "kexue-checkpoint",
                "version": 1,
                "world": self.dist.world,
                "train": asdict(self.config),
                "run": self.run_config,
                "data": self.stream.state_dict(),
                "rng": rng,
                "elapsed": self._elapsed,
                "log_window": {
                    "steps": self._window_steps,
                    "keys": list(self._win_keys),
                    "values": [] if self._win_vals is None else self._win_vals.tolist(),
                    "other": {k: float(v) for k, v in self._win_other.items()},
                },
                "optimizer": ckpt.flatten_state(self.optimizer.state_dict(), "optimizer", tensors),
                "callbacks": [{"type": type(cb).__name__, "state": cb.state_dict()} for cb in self.callbacks],
                "stop_reason": self.stop_reason,
                "scaler": self._scaler.state_dict() if self._scaler else None,
                "ema": ckpt.flatten_state(self.ema.state_dict(), "ema", tensors) if self.ema else None,
            }
            ckpt.save_checkpoint(
                self.out_dir / "checkpoints", self.step, tensors, meta, keep=self.config.keep
            )

        self._on_main(f"write the checkpoint of step {self.step}", write)
        self._saved_step = self.step

    def resume(self) -> None:
        """Load the newest checkpoint under out_dir/checkpoints and continue from it exactly."""
        where = self.out_dir / "checkpoints" if self.out_dir is not None else None
        path = ckpt.latest_checkpoint(where) if where is not None else None
        if path is None:
            raise CheckpointError(
                f"--resume was given but {where} holds no checkpoint; drop --resume to start a new run"
            )
        tensors, meta = ckpt.load_checkpoint(path)
        self._check_compatible(meta, path)
        model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(ckpt.unflatten_state(meta["optimizer"], tensors))
        if self.ema is not None and meta["ema"] is not None:
            self.ema.load_state_dict(ckpt.unflatten_state(meta["ema"], tensors))
        if self._scaler and meta["scaler"]:
            self._scaler.load_state_dict(meta["scaler"])
        saved = _keyed(meta["callbacks"], lambda c: (c["type"], c["state"]))
        for key, cb in _keyed(self.callbacks, lambda c: (type(c).__name__, c)).items():
            if key in saved:
                cb.load_state_dict(saved[key])
        self.stream.load_state_dict(meta["data"])
        set_rng_state(meta["rng"][self.dist.rank], self.device)
        self.step, self._elapsed = int(meta["step"]), float(meta["elapsed"])
        self.stop_reason, self._saved_step = meta["stop_reason"], self.step
        self._window_steps = int(meta["log_window"]["steps"])
        window = meta["log_window"]
        self._win_keys = tuple(window["keys"])
        self._win_vals = torch.tensor(window["values"], device=self.device) if window["keys"] else None
        self._win_other = {k: torch.tensor(v, device=self.device) for k, v in window["other"].items()}
        self._on_main("rewrite metrics.jsonl", self._truncate_log)

    def _truncate_log(self) -> None:
        """Drop log lines written after the checkpoint (by the interrupted run, which may have been killed
        mid-line): they will be redone. The file is rewritten atomically."""
        log = self.out_dir / "metrics.jsonl"
        if not log.is_file():
            return
        keep = []
        for line in log.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= self.step:
                    keep.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):  # a torn last line
                continue
        ckpt.write_text_atomic("".join(ln + "\n" for ln in keep), log)

    def _check_compatible(self, meta: dict, path: Path) -> None:
        old, new = meta["train"], asdict(self.config)
        fixed = (
            "batch_size",
            "accum",
            "seed",
            "lr",
            "weight_decay",
            "ema_decay",
            "clip_grad_norm",
            "amp",
            "amp_dtype",
        )  # (steps may grow: resuming to train longer is allowed)
        diff = [f"{k} {old.get(k)} → {new[k]}" for k in fixed if old.get(k) != new[k]]
        for key in ("model", "model_config", "data"):  # compared as JSON: tuples were stored as lists
            if meta["run"].get(key) != json.loads(json.dumps(self.run_config.get(key))):
                diff.append(f"{key} {meta['run'].get(key)} → {self.run_config.get(key)}")
        if meta["world"] != self.dist.world:
            diff.append(f"processes {meta['world']} → {self.dist.world}")
        # Callbacks with state must be the same on both sides (matched by type and order of appearance);
        # stateless ones (Checkpoint, schedules) may come and go.
        saved = {
            k for k, state in _keyed(meta["callbacks"], lambda c: (c["type"], c["state"])).items() if state
        }
        ours = {
            k for k, cb in _keyed(self.callbacks, lambda c: (type(c).__name__, c)).items() if cb.state_dict()
        }
        if saved != ours:
            diff.append(f"callbacks with state {sorted(saved)} → {sorted(ours)}")
        if diff:
            raise CheckpointError(
                f"cannot resume from {path}: {', '.join(diff)}; resume with the settings the run started with"
            )
