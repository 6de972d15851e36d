"""The `kexue` command: list, train, sample, reproduce, bench, data, wordvec, segment, poetry, titles.

A contract later issues and outside checks rely on: every sub-command has --help; bad input ends with
one line on stderr (`kexue: error: …` saying what, where and how to fix) and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import random
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kexue.errors import KexueError


# ------------------------------------------------------------------------------------------- helpers
def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # pragma: no cover - exotic annotations
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Convert a JSON value or a command-line string to the field type `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(args[0], value, where)
    if origin is tuple:
        if isinstance(value, str):
            value = json.loads(value) if value.startswith("[") else value.split(",")
        inner = typing.get_args(tp)
        return tuple(_coerce(inner[0] if inner else str, v, where) for v in value)
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if tp in (int, float, str):
            return tp(value)
    except (TypeError, ValueError):
        raise KexueError(f"{where}: cannot read {value!r} as {tp.__name__}") from None
    return value


def coerce_fields(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """Values (JSON or command-line strings) converted to the field types of config class `cls`."""
    hints = _field_types(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise KexueError(
            f"{where}: unknown option {unknown[0]!r} for {cls.__name__}; known: {', '.join(sorted(hints))}"
        )
    return {k: _coerce(hints[k], v, f"{where} {k}") for k, v in values.items()}


def config_from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build a frozen config dataclass from JSON-ish values, with a clear error on unknown keys."""
    try:
        return cls(**coerce_fields(cls, values, where))
    except ValueError as e:
        raise KexueError(f"{where}: {e}") from None


def parse_sets(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KexueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set width=64")
        out[key.strip()] = value.strip()
    return out


def seed_everything(seed: int) -> None:
    """Only the command line seeds global generators (style rule 10)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - only the CLI seeds global state
    torch.manual_seed(seed)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


# ------------------------------------------------------------------------------------------- list
def cmd_list(args: argparse.Namespace) -> int:
    from kexue.systems import SYSTEMS, markdown_table, status_text

    if args.json:
        print(json.dumps([s.as_dict() for s in SYSTEMS], indent=2, ensure_ascii=False))
    elif args.markdown:
        print(markdown_table())
    else:
        for s in SYSTEMS:
            print(f"{s.id:>2}  {s.name:<24} {s.family:<11} {status_text(s):<44} {s.url}")
            if s.note and any(s.flags.values()):
                print(f"{'':<40}note: {s.note}")
    return 0


# ------------------------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from kexue.registry import has_test_split, load_data, model_spec
    from kexue.train.callbacks import Checkpoint, Evaluate
    from kexue.train.distributed import setup, teardown
    from kexue.train.trainer import TrainConfig, Trainer

    spec = model_spec(args.model)
    if args.fid_proxy:
        return _train_fid_proxy(args)
    if args.model == "sid":
        return _train_sid(args)
    if args.teacher is not None:
        raise KexueError(f"--teacher applies to `kexue train sid`, not to {args.model!r}")
    if args.data is None:
        raise KexueError(f"kexue train {args.model} needs --data (e.g. --data digits)")
    if args.out is None:
        raise KexueError("kexue train needs --out DIR (where the run's weights, config and checkpoints go)")
    dist = setup(args.device)
    try:
        seed_everything(args.seed)
        data = load_data(args.data, data_dir=args.data_dir, split="train")
        overrides = coerce_fields(spec.config_cls, parse_sets(args.set), "--set")
        try:
            model, train_set = spec.build(data, overrides, args.seed)
        except ValueError as e:  # a config's own validation
            raise KexueError(f"--set: {e}") from None
        if dist.active:  # identical initial weights everywhere (DDP also broadcasts rank 0's), then
            seed_everything(args.seed + 1_000_003 * dist.rank)  # independent noise per process
        config = config_from_dict(
            TrainConfig,
            {
                "steps": args.steps,
                "batch_size": args.batch_size,
                "accum": args.accum,
                "lr": 1e-3 if args.lr is None else args.lr,
                "weight_decay": args.weight_decay,
                "clip_grad_norm": args.clip_grad,
                "amp": args.amp,
                "ema_decay": args.ema,
                "seed": args.seed,
                "keep": args.keep,
                "log_every": args.log_every,
                "num_workers": args.workers,
                "progress": not args.no_progress,
            },
            "kexue train",
        )
        run_config = {
            "model": spec.name,
            "model_config": dataclasses.asdict(model.config),
            "data": args.data,
            "data_shape": list(getattr(data, "shape", (2,))),
            "seed": args.seed,
        }
        if args.save_every < 0 or args.eval_every < 0:
            raise KexueError("--save-every and --eval-every take a number of steps ≥ 0 (0: only at the end)")
        callbacks = [Checkpoint(args.save_every)]
        if spec.evaluator is not None and has_test_split(args.data, data_dir=args.data_dir):
            callbacks.append(
                Evaluate(
                    spec.evaluator(load_data(args.data, data_dir=args.data_dir, split="test")),
                    args.eval_every,
                    use_ema=args.ema is not None,
                    prefix="",
                )
            )
        trainer = Trainer(
            model, train_set, config, out_dir=args.out, dist=dist, callbacks=callbacks, run_config=run_config
        )
        trainer.fit(resume=args.resume)
        if dist.is_main:
            summary = {
                k: v for cb in callbacks if isinstance(cb, Evaluate) for k, v in cb.history[-1][1].items()
            }
            _say(
                f"kexue: trained {spec.name} for {trainer.step} steps → "
                f"{Path(args.out) / 'model.safetensors'}"
                + "".join(f"; {k} {v:.4f}" for k, v in summary.items())
            )
    finally:
        teardown()
    return 0


def _train_sid(args: argparse.Namespace) -> int:
    """`kexue train sid --teacher RUN_DIR`: distil a trained ε-net into a one-step generator (data-free)."""
    import torch
    from tqdm import tqdm

    from kexue.diffusion.ddpm import DDPM
    from kexue.diffusion.sid import SiD, SiDConfig
    from kexue.train.checkpoint import save_tensors_atomic, write_json_atomic
    from kexue.train.distributed import resolve_device

    if args.teacher is None:
        raise KexueError("kexue train sid needs --teacher RUN_DIR (a run of `kexue train ddpm --out`)")
    if args.out is None:
        raise KexueError("kexue train sid needs --out DIR (where the generator's weights and config go)")
    if args.data is not None:
        raise KexueError("kexue train sid is data-free: drop --data (the teacher's data set is recorded)")
    if args.resume or args.accum != 1 or args.amp or args.weight_decay or args.clip_grad is not None:
        raise KexueError("kexue train sid takes --steps, --batch-size, --lr, --ema, --seed and --set only")
    device = resolve_device(args.device)
    teacher, run = load_run(args.teacher, device=str(device))
    if not isinstance(teacher, DDPM):
        raise KexueError(
            f"{args.teacher} holds a {run.get('model')!r} run, not an ε-net; SiD distils a "
            "`kexue train ddpm` run"
        )
    seed_everything(args.seed)
    values = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
        **({} if args.ema is None else {"ema_decay": args.ema}),
        **({} if args.lr is None else {"lr": args.lr, "lr_fake": args.lr}),
        **parse_sets(args.set),
    }
    config = config_from_dict(SiDConfig, values, "kexue train sid")
    sid = SiD(teacher, config, generator=torch.Generator(device).manual_seed(args.seed))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "metrics.jsonl").open("a")
    bar = tqdm(total=config.steps, disable=args.no_progress, desc="SiD", unit="step")

    def save() -> None:
        save_tensors_atomic(sid.gen.state_dict(), out / "model.safetensors")
        if sid.ema is not None:
            save_tensors_atomic(sid.averaged_generator().state_dict(), out / "model_ema.safetensors")

    def each(step: int, _sid: SiD, logs: dict[str, float]) -> None:
        bar.update(step - bar.n)
        if step and (step % args.log_every == 0 or step == config.steps):
            log.write(json.dumps({"step": step, **logs}) + "\n")
            log.flush()
            bar.set_postfix(logs)
        if args.save_every and step and step % args.save_every == 0:
            save()

    try:
        sid.fit(each)
    except FloatingPointError as e:
        raise KexueError(f"{e}; lower --lr or α (--set alpha=1.0)") from None
    finally:
        bar.close()
        log.close()
    save()
    write_json_atomic(
        {
            "model": "sid",
            "model_config": dataclasses.asdict(sid.gen.config),
            "sid_config": dataclasses.asdict(config),
            "teacher": str(Path(args.teacher).resolve()),
            "data": run.get("data"),
            "data_shape": run.get("data_shape", list(sid.gen.config.shape)),
            "seed": args.seed,
        },
        out / "config.json",
    )
    _say(f"kexue: distilled {args.teacher} into a one-step generator in {config.steps} steps → {out}")
    return 0


def _train_fid_proxy(args: argparse.Namespace) -> int:
    from kexue.metrics.fid_proxy import train_feature_net

    if args.model != "classifier":
        raise KexueError("--fid-proxy only applies to `kexue train classifier`")
    if args.data is None:
        raise KexueError("kexue train classifier --fid-proxy needs --data (digits or mnist)")
    path = train_feature_net(
        args.data, data_dir=args.data_dir, device=args.device, progress=not args.no_progress
    )
    acc = json.loads((path / "fid_proxy.json").read_text())["test_acc"]
    _say(f"kexue: FID-proxy feature net for {args.data} cached at {path}; test accuracy {acc:.4f}")
    return 0


# ------------------------------------------------------------------------------------------- sample
def load_run(run_dir: str | Path, *, device: str = "cpu", raw: bool = False):
    """(model, run_config) of a finished `kexue train` run (EMA weights unless raw)."""
    from kexue.registry import model_spec
    from kexue.train.checkpoint import load_tensors, read_json

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise KexueError(f"{run_dir} is not a directory; pass a run directory written by `kexue train --out`")
    run = read_json(run_dir / "config.json")
    spec = model_spec(run.get("model", "?"))
    model = spec.model_cls(config_from_dict(spec.config_cls, run["model_config"], f"{run_dir}/config.json"))
    weights = run_dir / (
        "model_ema.safetensors"
        if not raw and (run_dir / "model_ema.safetensors").is_file()
        else "model.safetensors"
    )
    state = load_tensors(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise KexueError(f"{weights} does not fit the model in config.json ({first})") from None
    return model.to(device).eval(), run


def _draw(model: Any, run: dict, args: argparse.Namespace, generator: Any) -> Any:
    """n samples: diffusion runs use --sampler, --steps, --eta, --trajectory; flows --temperature;
    others their own sample."""
    import math

    import torch

    from kexue.diffusion.ddpm import DDPM
    from kexue.registry import diffusion_samplers

    options = {
        "--sampler": args.sampler,
        "--steps": args.steps,
        "--eta": args.eta,
        "--trajectory": args.trajectory,
    }
    from kexue.flows import FlowDensity

    if isinstance(model, FlowDensity):
        temperature = 1.0 if args.temperature is None else args.temperature
        if not (math.isfinite(temperature) and temperature >= 0):
            raise KexueError(f"--temperature must be a finite number ≥ 0, got {args.temperature}")
    elif args.temperature is not None:
        raise KexueError(f"--temperature applies to flow runs (nice, realnvp, glow), not {run['model']!r}")
    if not isinstance(model, DDPM):
        given = [k for k, v in options.items() if v is not None]
        if given:
            raise KexueError(
                f"{', '.join(given)} apply to diffusion runs; {run['model']!r} has its own sampler"
            )
        if isinstance(model, FlowDensity):
            return model.sample(args.n, temperature=temperature, generator=generator)
        x = model.sample(args.n, generator=generator)
        return ((x + 1) / 2).clamp(0, 1) if getattr(model, "symmetric_images", False) else x
    from kexue.diffusion import schedules

    samplers = diffusion_samplers()
    name = args.sampler or "ddim"
    if name not in samplers:
        raise KexueError(f"unknown sampler {name!r}; use one of {', '.join(samplers)}")
    n_steps = model.config.steps
    k = 50 if args.steps is None else args.steps
    if not 1 <= k <= n_steps:
        raise KexueError(f"--steps must lie in 1..{n_steps} (the model's diffusion steps), got {k}")
    eta = 0.0 if args.eta is None else args.eta
    if not eta >= 0:
        raise KexueError(f"--eta must be ≥ 0, got {eta}")
    if name.startswith("analytic") and len(model.config.shape) != 3:
        raise KexueError(f"--sampler {name} needs an image run (its clip and moment assume images)")
    if eta and name not in ("ddim", "analytic-ddim"):
        raise KexueError(f"--eta applies to --sampler ddim and analytic-ddim only, not {name}")
    traj = schedules.trajectory(args.trajectory or "even", n_steps, k)

    def training_images():
        from kexue.data.images import ImageData
        from kexue.registry import load_data

        data = load_data(run["data"], data_dir=args.data_dir, split="train")
        if not isinstance(data, ImageData):
            raise KexueError(f"--sampler {name} estimates its moment on image data; {run['data']} is not")
        return data.floats("symmetric"), data.levels

    device = next(model.parameters()).device
    x = torch.randn(args.n, *model.config.shape, generator=generator, device=device, dtype=torch.float64)
    with torch.no_grad():
        out = samplers[name](model, x, traj, eta=eta, generator=generator, data=training_images).float()
    return ((out + 1) / 2).clamp(0, 1) if len(model.config.shape) == 3 else out  # images → [0, 1]


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from kexue.plots import image_grid, scatter2d
    from kexue.train.distributed import resolve_device

    model, run = load_run(args.run_dir, device=str(resolve_device(args.device)), raw=args.raw)
    if not hasattr(model, "sample"):
        raise KexueError(
            f"model {run['model']!r} does not generate samples; `kexue sample` works on "
            "generative runs (e.g. `kexue train gaussian`, `kexue train ddpm`)"
        )
    if args.n < 1:
        raise KexueError(f"--n must be at least 1, got {args.n}")
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(args.seed)
    x = _draw(model, run, args, generator).cpu()
    out = Path(args.out or Path(args.run_dir) / "samples.npz")
    figure = out if out.suffix.lower() == ".png" else out.with_suffix(".png")
    arrays = out.with_suffix(".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    shape = run.get("data_shape", [x.shape[1]])
    if len(shape) == 3:
        x = x.reshape(-1, *shape)
    np.savez_compressed(arrays, samples=x.numpy())
    if x.dim() == 4:
        image_grid(x[:64], figure, title=f"{run['model']} samples")
    elif x.shape[1] == 2:
        scatter2d(x, figure, title=f"{run['model']} samples")
    _say(f"kexue: wrote {len(x)} samples to {arrays} and {figure}")
    return 0


# ------------------------------------------------------------------------------------------- poetry
def cmd_poetry(args: argparse.Namespace) -> int:
    """`kexue poetry train --data-dir DIR --out RUN [--steps N]` and `kexue poetry sample RUN [--n N]`."""
    from dataclasses import replace

    from kexue.text.poetry import PoetTrainConfig, sample_couplets, train_poet

    if args.action == "train":
        if args.out is None or args.run is not None:
            raise KexueError("kexue poetry train needs --out DIR (the run directory to write) and no RUN")
        cfg = replace(PoetTrainConfig(), seed=args.seed, max_files=args.max_files)
        if args.steps is not None:
            cfg = replace(cfg, steps=args.steps)
        info = train_poet(args.data_dir, Path(args.out), cfg, say=lambda m: _say(f"kexue: {m}"))
        _say(f"kexue: poet trained → {args.out} (test −ELBO {info['test']['neg_elbo']:.2f} nats/couplet)")
        print(json.dumps(info, ensure_ascii=False))
        return 0
    if args.run is None:
        raise KexueError("kexue poetry sample needs a run directory: kexue poetry sample RUN [--n N]")
    if args.n < 0 or not args.temperature >= 0:
        raise KexueError(f"--n must be ≥ 0 and --temperature ≥ 0, got {args.n} and {args.temperature}")
    print("\n".join(sample_couplets(Path(args.run), args.n, args.seed, temperature=args.temperature)))
    return 0


# ------------------------------------------------------------------------------------------- titles
def cmd_titles(args: argparse.Namespace) -> int:
    """`kexue titles train --data-dir DIR --out RUN [--model M] [--bert DIR] [--corpus C] [--steps N]` and
    `kexue titles generate RUN [--beam K] < documents.txt` (one document per line → one title per line)."""
    from dataclasses import replace

    from kexue.text.titles import TitlesTrainConfig, generate_titles, train_titles
    from kexue.train.distributed import resolve_device

    device = resolve_device(args.device)
    if args.action == "train":
        if args.out is None or args.run is not None:
            raise KexueError("kexue titles train needs --out DIR (the run directory to write) and no RUN")
        cfg = replace(TitlesTrainConfig(), model=args.model, corpus=args.corpus, seed=args.seed)
        if args.bert is not None:  # TitlesTrainConfig raises a one-line KexueError unless --model unilm
            cfg = replace(cfg, bert_dir=args.bert, bert_model=args.bert_model)
        if args.corpus == "lcsts":  # LCSTS has a train split; CSL's is not public (train on dev)
            cfg = replace(cfg, train_split="train", eval_split="test")
        if args.steps is not None:
            cfg = replace(cfg, steps=args.steps)
        info = train_titles(
            args.data_dir, Path(args.out), cfg, device=device, say=lambda m: _say(f"kexue: {m}")
        )
        if info["eval"] is not None:
            e = info["eval"]
            _say(
                f"kexue: {cfg.model} → {args.out} ({e['split']}: ROUGE-L {e['rouge_l']:.4f}, "
                f"BLEU {e['bleu']:.4f})"
            )
        print(json.dumps(info, ensure_ascii=False))
        return 0
    if args.run is None:
        raise KexueError(
            "kexue titles generate needs a run directory: kexue titles generate RUN < documents.txt"
        )
    if args.beam < 1:
        raise KexueError(f"--beam must be ≥ 1, got {args.beam}")
    texts = [line.rstrip("\r\n") for line in sys.stdin]
    for title in generate_titles(Path(args.run), texts, beam_size=args.beam, device=device):
        print(title)
    return 0


# ------------------------------------------------------------------------------ reproduce / bench
def cmd_reproduce(args: argparse.Namespace) -> int:
    from kexue.experiments.runner import execute
    from kexue.registry import reproductions
    from kexue.train.distributed import resolve_device

    table = reproductions()
    if args.name not in table:
        raise KexueError(f"unknown reproduction {args.name!r}; available: {', '.join(sorted(table))}")
    preset = "quick" if args.quick else "full"
    out = Path(args.out or Path("runs") / "reproduce" / f"{args.name}-{preset}")  # seeds are in the presets
    config = table[args.name].presets[preset]
    if args.data_dir is not None:
        if "data_dir" not in {f.name for f in dataclasses.fields(config)}:
            raise KexueError(
                f"--data-dir: the {args.name} reproduction reads no data folder (drop the option)"
            )
        config = dataclasses.replace(config, data_dir=args.data_dir)
    metrics = execute(
        table[args.name],
        preset=preset,
        out=out,
        device=resolve_device(args.device),
        progress=not args.no_progress,
        config=config,
    )
    verdict = "HOLDS" if metrics["holds"] else "DOES NOT HOLD"
    _say(f"kexue: {args.name} ({preset}): the claim {verdict} — {out / 'report.md'}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from kexue.registry import benchmarks
    from kexue.train.distributed import resolve_device

    table = benchmarks()
    if args.name not in table:
        raise KexueError(f"unknown benchmark {args.name!r}; available: {', '.join(sorted(table))}")
    options = {"data_dir": args.data_dir} if args.data_dir is not None else {}
    if options and "data_dir" not in inspect.signature(table[args.name]).parameters:
        raise KexueError(f"--data-dir: the {args.name} benchmark reads no data folder (drop the option)")
    result = table[args.name](quick=args.quick, device=resolve_device(args.device), **options)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


# ------------------------------------------------------------------------------------------- data
def cmd_data(args: argparse.Namespace) -> int:
    from kexue.data.images import ImageData
    from kexue.paths import data_dir
    from kexue.registry import load_data

    if args.action == "download":
        if args.name != "mnist":
            raise KexueError(
                f"only mnist can be downloaded (digits ships with scikit-learn), not {args.name!r}"
            )
        from kexue.data.mnist import load_mnist

        root = data_dir(args.data_dir) / "mnist"
        for split in ("train", "test"):
            load_mnist(root, split, download=True, verify=True)
        _say(f"kexue: MNIST is in {root}")
        return 0
    data = load_data(args.name, data_dir=args.data_dir, split=args.split)
    if isinstance(data, ImageData):
        info = {
            "name": data.name,
            "n": len(data),
            "shape": list(data.shape),
            "levels": data.levels,
            "classes": data.num_classes,
        }
    else:
        info = {
            "name": args.name,
            "kind": "2-D toy distribution with exact log-density",
            "type": type(data).__name__,
        }
    print(json.dumps(info))
    return 0


# ------------------------------------------------------------------------------------------- wordvec
def cmd_wordvec(args: argparse.Namespace) -> int:
    """`kexue wordvec train` (writes a word2vec-format file) and `kexue wordvec eval` (every set found)."""
    from kexue.paths import data_dir
    from kexue.text.wordvec import evaluate_vectors, tokenize_english, tokenize_segmented, train_vectors

    if args.action == "train":
        if args.corpus is None or args.out is None:
            raise KexueError("kexue wordvec train needs --corpus DIR (text files) and --out vectors.txt")
        stats = train_vectors(
            Path(args.corpus),
            method=args.method,
            dim=args.dim,
            window=args.window,
            min_count=args.min_count,
            seed=args.seed,
            out=Path(args.out),
            tokenize=tokenize_segmented if args.segmented else tokenize_english,
            gutenberg=not args.segmented,
            epochs=args.epochs,
        )
        _say(
            f"kexue: {stats['words']} word vectors ({args.method}, dim {args.dim}) from {stats['tokens']} "
            f"tokens in {stats['seconds']:.1f} s → {args.out}"
        )
        print(json.dumps(stats))
        return 0
    if args.vectors is None:
        raise KexueError("kexue wordvec eval needs the vectors file: kexue wordvec eval vectors.txt")
    eval_dir = Path(args.eval_dir) if args.eval_dir else data_dir(args.data_dir) / "wordvec-eval"
    print(json.dumps(evaluate_vectors(Path(args.vectors), eval_dir), indent=2))
    return 0


# ------------------------------------------------------------------------------------------- segment
def cmd_segment(args: argparse.Namespace) -> int:
    """`kexue segment --dict FILE [--model DIR] < in > out` and `kexue segment train … --out DIR`."""
    from kexue.text.segment import segment_stream, train_segmenter

    if args.dict is None:
        raise KexueError("kexue segment needs --dict FILE (one word per line, optional frequency)")
    if args.action == "train":
        if args.out is None:
            raise KexueError("kexue segment train needs --out DIR (where the model directory goes)")
        info = train_segmenter(
            Path(args.dict),
            Path(args.corpus) if args.corpus else None,
            Path(args.out),
            seed=args.seed,
            steps=args.steps,
            say=lambda m: _say(f"kexue: {m}"),
        )
        _say(f"kexue: segmenter trained → {args.out}")
        print(json.dumps(info))
        return 0
    if args.corpus or args.out or args.steps is not None:
        raise KexueError("--corpus, --out and --steps apply to `kexue segment train`")
    stats = segment_stream(Path(args.dict), Path(args.model) if args.model else None, sys.stdin, sys.stdout)
    sys.stdout.flush()
    if args.stats:
        _say(json.dumps(stats))
    return 0


# ------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kexue",
        description="The systems of kexue.fm as tested, reproducible "
        "PyTorch code. `kexue list` shows them all.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    q = sub.add_parser("list", help="the 38 systems and their status")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="print a JSON list")
    g.add_argument("--markdown", action="store_true", help="print the README's feature table")
    q.set_defaults(func=cmd_list)

    q = sub.add_parser("train", help="train a model (also under torchrun for DDP)")
    q.add_argument("model", help="classifier | gaussian | ddpm | sid")
    q.add_argument("--teacher", help="sid: the teacher ε-net, a run directory of `kexue train ddpm --out`")
    q.add_argument(
        "--data",
        help="digits | mnist | ring8 | grid25 | checkerboard | banana | "
        "imbalanced | a folder of MNIST idx files or images",
    )
    q.add_argument(
        "--data-dir", help="folder holding mnist/ etc. (default: $KEXUE_DATA, then ~/.cache/kexue/data)"
    )
    q.add_argument("--out", help="run directory: model.safetensors, config.json, metrics.jsonl, checkpoints/")
    q.add_argument("--steps", type=int, default=1000, help="optimizer steps (default 1000)")
    q.add_argument("--batch-size", type=int, default=128, help="global batch per step (default 128)")
    q.add_argument("--accum", type=int, default=1, help="gradient accumulation chunks per step")
    q.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3; sid 1e-4)")
    q.add_argument("--weight-decay", type=float, default=0.0)
    q.add_argument("--clip-grad", type=float, default=None, help="clip the gradient norm to this value")
    q.add_argument(
        "--amp", action="store_true", help="mixed precision (bf16 autocast; fp16 + scaler on old GPUs)"
    )
    q.add_argument("--ema", type=float, default=None, metavar="DECAY", help="keep a weight EMA, e.g. 0.999")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument(
        "--save-every", type=int, default=0, help="checkpoint every K steps (and always at the end)"
    )
    q.add_argument("--keep", type=int, default=3, help="checkpoints kept (default 3)")
    q.add_argument("--log-every", type=int, default=50)
    q.add_argument("--eval-every", type=int, default=0, help="evaluate every K steps (0: at the end)")
    q.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (image folders)")
    q.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    q.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    q.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model option, e.g. --set regularizer=gp --set sigma=0.3 (repeatable)",
    )
    q.add_argument(
        "--fid-proxy",
        action="store_true",
        help="train the FID-proxy feature classifier for --data into the user cache",
    )
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_train)

    q = sub.add_parser(
        "poetry", help="the CNN-VAE poet of post 5332: `train` on the Tang poems, `sample` couplets"
    )
    q.add_argument("action", choices=["train", "sample"])
    q.add_argument("run", nargs="?", help="sample: a run directory written by `kexue poetry train`")
    q.add_argument("--data-dir", help="train: the 全唐诗 JSON folder, or a data folder holding tang-poems/")
    q.add_argument("--out", help="train: the run directory to write")
    q.add_argument("--steps", type=int, help="train: optimizer steps (default: PoetTrainConfig.steps)")
    q.add_argument("--max-files", type=int, help="train: read only the first N poet.tang.*.json files")
    q.add_argument("--n", type=int, default=20, help="sample: couplets to print (default 20)")
    q.add_argument(
        "--temperature", type=float, default=0.0, help="sample: 0 = argmax per character (the post)"
    )
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=cmd_poetry)

    q = sub.add_parser(
        "titles",
        help="seq2seq title generation of posts 5861/6933: `train` on CSL/LCSTS, `generate` from stdin",
    )
    q.add_argument("action", choices=["train", "generate"])
    q.add_argument("run", nargs="?", help="generate: a run directory written by `kexue titles train`")
    q.add_argument("--data-dir", help="train: the data folder holding csl/ and lcsts/")
    q.add_argument("--out", help="train: the run directory to write")
    q.add_argument("--model", choices=["lstm", "lstm-copy", "unilm"], default="lstm-copy")
    q.add_argument(
        "--bert",
        metavar="DIR",
        help="train --model unilm: fine-tune this pretrained BERT folder "
        "(config.json, model.safetensors or pytorch_model.bin, vocab.txt)",
    )
    q.add_argument(
        "--bert-model",
        choices=["bert", "roberta", "roformer"],
        default="bert",
        help="train: the family of --bert (hfl's RoBERTa-wwm checkpoints are BERT-format: bert)",
    )
    q.add_argument(
        "--corpus", choices=["csl", "lcsts"], default="csl", help="train: CSL trains on its dev split"
    )
    q.add_argument("--steps", type=int, help="train: optimizer steps (default: TitlesTrainConfig.steps)")
    q.add_argument("--beam", type=int, default=3, help="generate: beam size (default 3, as post 5861)")
    q.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=cmd_titles)

    q = sub.add_parser("sample", help="draw samples from a trained generative run")
    q.add_argument("run_dir", help="a run directory written by `kexue train --out`")
    q.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument(
        "--out", help="output .npz or .png (default RUN_DIR/samples.npz); the other one is written beside it"
    )
    q.add_argument("--raw", action="store_true", help="use the raw weights even when EMA weights exist")
    q.add_argument(
        "--sampler",
        help="diffusion runs: ddim (default), ddpm, ddpm-large, sigma-hat, analytic-ddpm, analytic-ddim, "
        "dpmpp-2m",
    )
    q.add_argument("--data-dir", help="analytic samplers: where the run's training data lives")
    q.add_argument("--steps", type=int, help="diffusion runs: sampling steps K (default 50)")
    q.add_argument("--eta", type=float, help="diffusion runs, --sampler ddim: η (default 0, deterministic)")
    q.add_argument(
        "--trajectory", choices=("even", "quadratic", "leading"), help="diffusion runs (default even)"
    )
    q.add_argument(
        "--temperature", type=float, help="flow runs (nice, realnvp, glow): T of z ~ N(0, T²I) (default 1)"
    )
    q.add_argument("--device", default="auto")
    q.set_defaults(func=cmd_sample)

    q = sub.add_parser("reproduce", help="run one post's claim end to end → metrics.json, report.md, figures")
    q.add_argument("name", help="e.g. noise-vs-gradient-penalty")
    q.add_argument("--quick", action="store_true", help="the few-minute preset")
    q.add_argument("--out", help="output folder (default runs/reproduce/NAME-PRESET)")
    q.add_argument("--data-dir", help="the data folder (default $KEXUE_DATA, then ~/.cache/kexue/data)")
    q.add_argument("--device", default="auto")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=cmd_reproduce)

    q = sub.add_parser("bench", help="measure speed against the peer, as ratios")
    q.add_argument("name", help="e.g. trainer")
    q.add_argument("--quick", action="store_true")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.add_argument("--data-dir", help="the data folder (default $KEXUE_DATA, then ~/.cache/kexue/data)")
    q.add_argument("--device", default="auto")
    q.set_defaults(func=cmd_bench)

    q = sub.add_parser("data", help="inspect or download data sets")
    q.add_argument("action", choices=["info", "download"])
    q.add_argument("name", help="a data set name or path")
    q.add_argument("--data-dir")
    q.add_argument("--split", default="train", choices=["train", "test", "all"])
    q.set_defaults(func=cmd_data)

    q = sub.add_parser("wordvec", help="word vectors: SVD of (S)PPMI or SGNS; evaluate a vectors file")
    q.add_argument("action", choices=["train", "eval"])
    q.add_argument("vectors", nargs="?", help="eval: a word2vec text file")
    q.add_argument("--corpus", help="train: a folder of .txt files (Project Gutenberg headers are stripped)")
    q.add_argument("--method", choices=["svd", "sgns"], default="svd")
    q.add_argument("--dim", type=int, default=300)
    q.add_argument("--window", type=int, default=5)
    q.add_argument("--min-count", type=int, default=10)
    q.add_argument("--epochs", type=int, default=5, help="sgns: passes over the corpus (default 5)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument(
        "--segmented",
        action="store_true",
        help="the corpus is pre-segmented text (e.g. Chinese), words split by spaces",
    )
    q.add_argument("--out", help="train: the word2vec-format file to write")
    q.add_argument("--eval-dir", help="eval: folder of evaluation sets (default DATA_DIR/wordvec-eval)")
    q.add_argument("--data-dir")
    q.set_defaults(func=cmd_wordvec)

    q = sub.add_parser(
        "segment", help="Chinese word segmentation: stdin → stdout, one line per line; `train` a tagger"
    )
    q.add_argument("action", nargs="?", choices=["train"], help="train: frequencies by EM, then the tagger")
    q.add_argument("--dict", help="word list: one word per line, optional frequency")
    q.add_argument("--model", help="a model directory from `kexue segment train` (default: max-probability)")
    q.add_argument("--corpus", help="train: raw text for EM word frequencies (when the list has none)")
    q.add_argument("--out", help="train: the model directory to write")
    q.add_argument("--steps", type=int, help="train: tagger steps (default: the tagger's config)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--stats", action="store_true", help="print lines, characters and characters/s on stderr")
    q.set_defaults(func=cmd_segment)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KexueError as e:
        print(f"kexue: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kexue: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `kexue list | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a path the user gave cannot be read or written
        where = f"{e.filename}: " if e.filename else ""
        print(f"kexue: error: {where}{e.strerror or e}; check the path and its permissions", file=sys.stderr)
        return 2
