"""FID-proxy: Fréchet distance and KID on the features of a small classifier that kexue trains itself.

NOT Inception-FID. The features are the 128-d penultimate activations of `kexue.nn.classifier`
trained on the same data (MNIST: the conv net, ≥ 98% test accuracy; digits: the MLP, ≥ 97%), as in the
"LeNet-FID" of small-scale generative-model papers. Numbers are comparable only with each other, at equal
sample counts, and against the real-vs-real floor that `FidProxy.floor` reports.

The classifier is trained once with a fixed recipe (`RECIPES`) and cached under the user cache directory
(`kexue train classifier --data mnist --fid-proxy`, or automatically on first use); nothing is downloaded.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from kexue.errors import KexueError
from kexue.metrics.coverage import class_coverage
from kexue.metrics.frechet import frechet_distance, gaussian_stats, kid
from kexue.nn.classifier import Classifier, ClassifierConfig, accuracy
from kexue.paths import cache_dir
from kexue.train.checkpoint import build_directory_atomic, load_tensors, read_json, write_json_atomic
from kexue.train.trainer import TrainConfig, Trainer

VERSION = 1  # bump when a recipe changes: cached nets of another version are not reused


@dataclass(frozen=True)
class Recipe:
    model: ClassifierConfig
    train: TrainConfig
    min_test_acc: float  # the trained net must reach this, or training fails loudly


RECIPES = {
    "digits": Recipe(
        ClassifierConfig(in_shape=(1, 8, 8), arch="mlp", width=256, feature_dim=128, activation="gelu"),
        TrainConfig(steps=2000, batch_size=128, lr=1e-3, seed=0, progress=False),
        0.97,
    ),
    "mnist": Recipe(
        ClassifierConfig(in_shape=(1, 28, 28), arch="conv", width=32, feature_dim=128),
        TrainConfig(steps=2500, batch_size=128, lr=1e-3, seed=0, progress=False),
        0.98,
    ),
}


def feature_net_dir(data: str) -> Path:
    return cache_dir() / "fid-proxy" / f"{data}-v{VERSION}"


def _recipe(data: str) -> Recipe:
    if data not in RECIPES:
        raise KexueError(f"the FID-proxy exists for {', '.join(RECIPES)}, not {data!r}")
    return RECIPES[data]


def train_feature_net(
    data: str, *, data_dir: str | None = None, device: str | torch.device = "auto", progress: bool = True
) -> Path:
    """Train the FID-proxy classifier for `data` with its fixed recipe and install it in the cache."""
    from dataclasses import replace

    from kexue.registry import load_data
    from kexue.train.distributed import Dist, resolve_device

    recipe = _recipe(data)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    train, test = (
        load_data(data, data_dir=data_dir, split="train"),
        load_data(data, data_dir=data_dir, split="test"),
    )

    def build(work: Path) -> None:
        with torch.random.fork_rng(
            devices=[dev] if dev.type == "cuda" else []
        ):  # seeded, caller's state kept
            torch.manual_seed(recipe.train.seed)
            model = Classifier(recipe.model)
            Trainer(
                model,
                train.tensor_dataset("unit"),
                replace(recipe.train, progress=progress),
                out_dir=work,
                dist=Dist(device=dev),
                run_config={
                    "model": "classifier",
                    "model_config": asdict(recipe.model),
                    "data": data,
                    "fid_proxy_version": VERSION,
                },
            ).fit()
        acc = accuracy(model.eval(), test.floats("unit"), test.y)
        if acc < recipe.min_test_acc:
            raise KexueError(
                f"the FID-proxy classifier for {data} reached only {acc:.4f} test accuracy "
                f"(< {recipe.min_test_acc}); its features would not be trustworthy"
            )
        shutil.rmtree(work / "checkpoints")
        write_json_atomic({"test_acc": acc, "version": VERSION, "data": data}, work / "fid_proxy.json")

    return build_directory_atomic(feature_net_dir(data), build)


def load_feature_net(
    data: str,
    *,
    data_dir: str | None = None,
    device: str | torch.device = "cpu",
    train_if_missing: bool = True,
) -> Classifier:
    """The cached FID-proxy classifier for `data` (trained first when missing and allowed), in eval mode."""
    recipe = _recipe(data)
    where = feature_net_dir(data)
    if not (where / "fid_proxy.json").is_file():
        if not train_if_missing:
            raise KexueError(
                f"no FID-proxy classifier for {data} in {where}; run "
                f"`kexue train classifier --data {data} --fid-proxy`"
            )
        train_feature_net(data, data_dir=data_dir, device=device, progress=False)
    if read_json(where / "fid_proxy.json").get("version") != VERSION:
        raise KexueError(f"{where} holds an FID-proxy net of another version; delete it and retrain")
    model = Classifier(recipe.model)
    model.load_state_dict(load_tensors(where / "model.safetensors"))
    return model.to(device).eval()


@torch.no_grad()
def features_and_labels(net: Classifier, images: Tensor, *, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """Penultimate features (N, 128) and predicted classes (N,) of images (N, C, H, W) in [0, 1]."""
    dev = next(net.parameters()).device
    feats, labels = [], []
    for xb in images.split(batch_size):
        f = net.features(xb.to(dev, torch.float32))
        feats.append(f.cpu())
        labels.append(net.head(f).argmax(-1).cpu())
    return torch.cat(feats), torch.cat(labels)


class FidProxy:
    """FID-proxy, KID and class coverage of generated images against the real test images of `data`.

    Images are (N, C, H, W) with values in [0, 1] (map [−1, 1] outputs with (x + 1) / 2 first).
    """

    def __init__(self, data: str, *, data_dir: str | None = None, device: str | torch.device = "cpu") -> None:
        from kexue.registry import load_data

        self.data = data
        self.net = load_feature_net(data, data_dir=data_dir, device=device)
        self.shape = tuple(self.net.config.in_shape)
        self.real_test = load_data(data, data_dir=data_dir, split="test").floats("unit")
        self.real_train = load_data(data, data_dir=data_dir, split="train").floats("unit")
        self.ref_feats, _ = features_and_labels(self.net, self.real_test)
        self.ref_stats = gaussian_stats(self.ref_feats)

    def __call__(self, images: Tensor, *, generator: torch.Generator | None = None) -> dict[str, float]:
        if tuple(images.shape[1:]) != self.shape:
            raise ValueError(
                f"FID-proxy for {self.data} expects images of shape (N, {', '.join(map(str, self.shape))}), "
                f"got {tuple(images.shape)}"
            )
        if len(images) < 2:
            raise ValueError("the FID-proxy needs at least 2 images")
        feats, labels = features_and_labels(self.net, images)
        mu, sigma = gaussian_stats(feats)
        k_mean, k_std = kid(
            feats, self.ref_feats, num_subsets=50, subset_size=min(1000, len(feats)), generator=generator
        )
        cov = class_coverage(labels, self.net.config.num_classes)
        return {
            "fid_proxy": frechet_distance(mu, sigma, *self.ref_stats),
            "kid_proxy": k_mean,
            "kid_proxy_std": k_std,
            "classes_covered": cov["classes_covered"],
            "class_kl_to_uniform": cov["kl_to_uniform"],
            "n": len(images),
        }

    def floor(self, n: int, *, generator: torch.Generator | None = None) -> dict[str, float]:
        """The same metrics for n REAL training images: the best value a perfect generator reaches at n."""
        n = min(n, len(self.real_train))
        idx = torch.randperm(len(self.real_train), generator=generator)[:n]
        return self(self.real_train[idx], generator=generator)
