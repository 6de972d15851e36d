"""What `kexue poetry train|sample` calls: train the [5332] poet on the Tang poems, save, load, sample.

A run directory (written atomically: a temporary sibling renamed into place; nothing is pickled):
    model.safetensors   the PoetryVAE weights
    poet.json           {"format", "version", "config": PoetryVAEConfig, "vocab": the characters in id order}
    train.json          what was done: corpus sizes, training settings, test ELBO, seconds, sample couplets

Randomness: `train_poet(seed=s)` splits the corpus and initialises the network from generators seeded
with s, and trains (data order, reparameterization noise) inside a forked global RNG seeded with s, so
the caller's global RNG is untouched and a run is reproducible on one device. `sample_couplets(run, n,
seed)` draws z from its own generator: same run and seed → same couplets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from kexue.errors import CheckpointError, DataError
from kexue.text.poetry.corpus import Vocabulary, load_couplets, split_couplets
from kexue.text.poetry.vae import PoetryVAE, PoetryVAEConfig

FORMAT, VERSION = "kexue-poetry-vae", 1
WEIGHTS, META, INFO = "model.safetensors", "poet.json", "train.json"


@dataclass(frozen=True)
class PoetTrainConfig:
    model: PoetryVAEConfig = field(default_factory=PoetryVAEConfig)  # [5332]'s layers and sizes
    steps: int = 30_000  # ≈ 14 epochs of the 135k couplets (vae_shi.py: 100 epochs ≈ 212k steps)
    batch_size: int = 64  # vae_shi.py batch_size = 64
    lr: float = 1e-3  # Adam's default rate (vae_shi.py compiles with optimizer='adam')
    min_count: int = 5  # characters rarer than this are dropped with their couplets (corpus rule 6)
    max_files: int | None = None  # read only the first N poet.tang.*.json files (None: all 58)
    test_size: int = 1000  # distinct couplets held out for the test ELBO
    seed: int = 0  # split, initialisation, data order and reparameterization noise
    log_every: int = 500  # steps between progress lines (when `say` is given)


# ------------------------------------------------------------------------------------------ training
def fit_poet(
    model: PoetryVAE,
    train_ids: Tensor,
    cfg: PoetTrainConfig,
    *,
    say: Callable[[str], None] | None = None,
) -> dict:
    """Train `model` on couplet ids (N, 10) with the kexue Trainer; returns {"seconds", "steps", …}."""
    from torch.utils.data import TensorDataset

    from kexue.train.callbacks import Callback
    from kexue.train.trainer import TrainConfig, Trainer

    class _Say(Callback):
        def on_step_end(self, trainer, logs):
            if say is not None and trainer.step % cfg.log_every == 0:
                keys = ("loss", "reconstruction", "kl")  # window means since the last line
                terms = ", ".join(f"{k} {logs[f'train/{k}']:.2f}" for k in keys if f"train/{k}" in logs)
                say(f"poetry step {trainer.step}/{cfg.steps}: {terms}")

    train = TrainConfig(
        steps=cfg.steps,
        batch_size=min(cfg.batch_size, len(train_ids)),
        lr=cfg.lr,
        seed=cfg.seed,
        log_every=cfg.log_every,
        progress=False,
    )
    t0 = time.perf_counter()
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):  # reparameterization noise: seeded, caller's RNG untouched
        torch.manual_seed(cfg.seed)
        trainer = Trainer(model, TensorDataset(train_ids), train, callbacks=[_Say()]).fit()
    model.eval()
    seconds = time.perf_counter() - t0
    return {
        "steps": trainer.step,
        "seconds": seconds,
        "epochs": trainer.step * train.batch_size / len(train_ids),
    }


@torch.no_grad()
def evaluate_elbo(
    model: PoetryVAE, ids: Tensor, *, generator: torch.Generator | None = None, batch: int = 2048
) -> dict[str, float]:
    """Mean per couplet, in nats, of −ELBO = E_q[−log p(x|z)] + KL (one z per couplet) and its split."""
    model.eval()
    device = model.to_logits.weight.device
    rec_sum = kl_sum = 0.0
    for chunk in ids.split(batch):
        chunk = chunk.to(device)
        eps = torch.randn(len(chunk), model.config.latent_dim, generator=generator, device=_device(generator))
        rec, kl = model.terms(chunk, eps=eps.to(model.to_logits.weight))  # (B,), (B,)
        rec_sum, kl_sum = rec_sum + float(rec.sum()), kl_sum + float(kl.sum())
    n = max(len(ids), 1)
    return {"neg_elbo": (rec_sum + kl_sum) / n, "reconstruction": rec_sum / n, "kl": kl_sum / n}


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def train_poet(
    data_dir: str | Path | None,
    out: str | Path,
    config: PoetTrainConfig = PoetTrainConfig(),  # frozen, so sharing the default is safe
    *,
    say: Callable[[str], None] | None = None,
) -> dict:
    """Read the couplets, hold out `test_size`, train, measure the test ELBO, write `out/` (atomically).

    data_dir: the 全唐诗 folder, or a data folder holding tang-poems/ (None: KEXUE_DATA, then the cache).
    Returns the contents of train.json."""
    from kexue.paths import data_dir as resolve

    couplets, vocab = load_couplets(resolve(data_dir), min_count=config.min_count, max_files=config.max_files)
    distinct = len(set(couplets))
    if config.test_size >= distinct:
        raise DataError(
            f"only {distinct} distinct couplets were found, not enough to hold out {config.test_size}; "
            "read more files or lower test_size"
        )
    train, test = split_couplets(
        couplets, config.test_size, generator=torch.Generator().manual_seed(config.seed)
    )
    model = PoetryVAE(vocab, config.model, generator=torch.Generator().manual_seed(config.seed))
    stats = fit_poet(model, vocab.encode(train), config, say=say)
    gen = torch.Generator().manual_seed(config.seed)
    info = {
        "data_dir": str(resolve(data_dir)),
        "couplets": len(couplets),
        "train_couplets": len(train),
        "test_couplets": len(test),
        "vocab_size": len(vocab),
        "config": asdict(config),
        "train": stats,
        "test": evaluate_elbo(model, vocab.encode(test), generator=gen) if test else None,
        "samples": model.sample(20, generator=gen),
    }
    save_poet(model, out, info)
    return info


# ------------------------------------------------------------------------------------------ files
def save_poet(model: PoetryVAE, directory: str | Path, info: dict | None = None) -> Path:
    """Write a run directory atomically: model.safetensors, poet.json and (if given) train.json."""
    from kexue.train.checkpoint import build_directory_atomic, save_tensors_atomic, write_json_atomic

    meta = {
        "format": FORMAT,
        "version": VERSION,
        "config": asdict(model.config),
        "vocab": "".join(model.vocab.chars),  # id i is character i
    }

    def build(work: Path) -> None:
        save_tensors_atomic(model.state_dict(), work / WEIGHTS, metadata={"format": FORMAT})
        write_json_atomic(meta, work / META)
        if info is not None:
            write_json_atomic(info, work / INFO)

    return build_directory_atomic(directory, build)


def load_poet(directory: str | Path, device: str | torch.device = "cpu") -> PoetryVAE:
    """The PoetryVAE saved in `directory` by `save_poet` / `train_poet` (in eval mode)."""
    from kexue.train.checkpoint import load_tensors, read_run_meta

    directory = Path(directory)
    meta = read_run_meta(directory, META, FORMAT, VERSION, "kexue poetry train")
    try:
        config = PoetryVAEConfig(**meta["config"])
        vocab = Vocabulary(tuple(meta["vocab"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / META}: unusable config or vocabulary ({e}); retrain") from None
    model = PoetryVAE(vocab, config)
    try:
        model.load_state_dict(load_tensors(directory / WEIGHTS))
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise CheckpointError(
            f"{directory / WEIGHTS} does not match {META} ({first}); the files come from different runs"
        ) from None
    return model.to(device).eval()


def sample_couplets(
    run_dir: str | Path, n: int = 20, seed: int = 0, *, temperature: float = 0.0
) -> list[str]:
    """n couplets "xxxxx，xxxxx。" from the prior of a saved poet; the same seed gives the same couplets."""
    model = load_poet(run_dir)
    return model.sample(n, generator=torch.Generator().manual_seed(seed), temperature=temperature)
