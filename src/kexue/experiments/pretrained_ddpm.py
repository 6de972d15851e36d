"""One trained ε-net per recipe, shared by the diffusion reproductions and `kexue bench samplers`.

The DDIM, Analytic-DPM, NPR/SN and SDE/ODE claims are all statements about samplers and estimators on a
FIXED trained network, so the network is trained once per recipe and cached under
`<cache>/ddpm/<recipe>-<hash>` (safetensors EMA weights + the recipe as JSON; the hash covers the whole
recipe, so a changed recipe trains anew). The recipes follow the calibration in reference/diffusion.md:
an under-trained ε-net inverts the DDIM η-ordering, so the quick recipe trains the residual MLP on the
8×8 digits, where minutes suffice; MNIST with the U-Net is the full preset's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from kexue.diffusion.ddpm import DDPM, DDPMConfig
from kexue.errors import KexueError
from kexue.paths import cache_dir
from kexue.train.checkpoint import build_directory_atomic, load_tensors, read_json, write_json_atomic
from kexue.train.trainer import TrainConfig

TOY_POINTS = 50_000  # training sample of the 2-D recipes


@dataclass(frozen=True)
class DDPMRecipe:
    data: str  # "digits" or "mnist" (train split, scaled to [−1, 1]), or "ring" (the oracle's 8 Gaussians)
    model: DDPMConfig
    train: TrainConfig


RECIPES: dict[str, DDPMRecipe] = {
    # 3.7M-param residual MLP; ~6k steps reach the DDIM Table-1 shape (reference/diffusion.md calibration)
    "digits": DDPMRecipe(
        "digits",
        DDPMConfig(shape=(1, 8, 8), net="resmlp", width=512, depth=4, dropout=0.1),
        TrainConfig(steps=6000, batch_size=256, lr=5e-4, ema_decay=0.999, seed=0, log_every=200),
    ),
    # the same net trained 4× longer (the full presets on digits)
    "digits-long": DDPMRecipe(
        "digits",
        DDPMConfig(shape=(1, 8, 8), net="resmlp", width=512, depth=4, dropout=0.1),
        TrainConfig(steps=24000, batch_size=256, lr=5e-4, ema_decay=0.9995, seed=0, log_every=500),
    ),
    # the 8-Gaussian ring of reference/diffusion.md §2.6 (radius 0.8, std 0.08; diffusion.oracle), 2→256×3→2
    "ring": DDPMRecipe(
        "ring",
        DDPMConfig(shape=(2,), net="resmlp", width=256, depth=3, dropout=0.0),
        TrainConfig(steps=6000, batch_size=512, lr=1e-3, ema_decay=0.999, seed=0, log_every=500),
    ),
    # 0.5M-param U-Net on MNIST: hours on 2 CPU cores, minutes on a GPU
    "mnist": DDPMRecipe(
        "mnist",
        DDPMConfig(shape=(1, 28, 28), net="unet", width=32, depth=1, dropout=0.1),
        TrainConfig(steps=40000, batch_size=128, lr=2e-4, ema_decay=0.9995, seed=0, log_every=500),
    ),
}


def recipe_hash(recipe: DDPMRecipe) -> str:
    blob = json.dumps(asdict(recipe), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def weights_dir(name: str, recipe: DDPMRecipe) -> Path:
    return cache_dir() / "ddpm" / f"{name}-{recipe_hash(recipe)}"


def _recipe(name: str) -> DDPMRecipe:
    if name not in RECIPES:
        raise KexueError(f"no ε-net recipe {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]


def _training_set(recipe: DDPMRecipe, data_dir: str | None):
    """Images in [−1, 1], or a fixed sample of the oracle ring (reproducible from the recipe's seed)."""
    from torch.utils.data import TensorDataset

    from kexue.registry import load_data

    if recipe.data == "ring":
        from kexue.diffusion.oracle import GaussianMixture

        g = torch.Generator().manual_seed(recipe.train.seed)
        return TensorDataset(GaussianMixture.ring().sample(TOY_POINTS, generator=g).float())
    return load_data(recipe.data, data_dir=data_dir, split="train").tensor_dataset("symmetric")


def train(
    name: str,
    *,
    data_dir: str | None = None,
    device: torch.device,
    progress: bool = True,
    say=lambda message: None,
) -> Path:
    """Train recipe `name` and install its EMA weights in the cache atomically."""
    from kexue.train.distributed import Dist
    from kexue.train.trainer import Trainer

    recipe = _recipe(name)
    final = weights_dir(name, recipe)
    train_set = _training_set(recipe, data_dir)
    say(f"training the ε-net {name!r} ({recipe.train.steps} steps on {recipe.data}); cached in {final}")

    def build(work: Path) -> None:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(recipe.train.seed)
            model = DDPM(recipe.model)
            trainer = Trainer(
                model,
                train_set,
                replace(recipe.train, progress=progress),
                out_dir=work,
                dist=Dist(device=device),
                run_config={"model": "ddpm", "model_config": asdict(recipe.model), "data": recipe.data},
            ).fit()
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        write_json_atomic(
            {
                "recipe": name,
                "hash": recipe_hash(recipe),
                **asdict(recipe),
                "final_loss": trainer.logs.get("loss"),
            },
            work / "recipe.json",
        )

    return build_directory_atomic(final, build)


def pretrained(
    name: str,
    *,
    data_dir: str | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    say=lambda message: None,
) -> DDPM:
    """The cached ε-net of recipe `name` with its EMA weights, in eval mode (trained first when missing)."""
    device = torch.device(device)
    recipe = _recipe(name)
    where = weights_dir(name, recipe)
    if not (where / "recipe.json").is_file():
        train(name, data_dir=data_dir, device=device, progress=progress, say=say)
    meta: dict[str, Any] = read_json(where / "recipe.json")
    if meta.get("hash") != recipe_hash(recipe):
        raise KexueError(f"{where} holds weights of another recipe; delete it to retrain")
    model = DDPM(recipe.model)
    ema = where / "model_ema.safetensors"  # every shipped recipe keeps an EMA; a custom one may not
    model.load_state_dict(load_tensors(ema if ema.is_file() else where / "model.safetensors"))
    return model.to(device).eval()


def pretrained_with_data(
    name: str,
    *,
    data_dir: str | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    say=lambda message: None,
):
    """(ε-net, train split, test split) of recipe `name`: where reproductions on a cached net start."""
    from kexue.registry import load_data

    model = pretrained(name, data_dir=data_dir, device=device, progress=progress, say=say)
    data = _recipe(name).data
    return (
        model,
        load_data(data, data_dir=data_dir, split="train"),
        load_data(data, data_dir=data_dir, split="test"),
    )
