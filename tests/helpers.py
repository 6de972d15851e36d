"""Small models and data shared by the trainer tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from kexue.nn.classifier import Classifier, ClassifierConfig
from kexue.train.callbacks import Callback


def digits_like(n: int = 256, d: int = 16, k: int = 4, seed: int = 0, dtype=torch.float32) -> TensorDataset:
    """A linearly separable-ish labelled set: Gaussian blobs in d dimensions."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    centers = torch.randn(k, d, generator=g, dtype=dtype) * 2
    x = centers[y] + torch.randn(n, d, generator=g, dtype=dtype)
    return TensorDataset(x.view(n, 1, 4, d // 4), y)


def small_classifier(regularizer: str = "none", d: int = 16, k: int = 4, **kw) -> Classifier:
    cfg = ClassifierConfig(
        in_shape=(1, 4, d // 4),
        num_classes=k,
        arch="mlp",
        width=16,
        feature_dim=8,
        regularizer=regularizer,
        **kw,
    )
    return Classifier(cfg)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs: max |Δ| = {(a[k] - b[k]).abs().max()}"


class Crash(Callback):
    """Raise after step `at`, as a process killed mid-run would stop."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, trainer, logs):
        if trainer.step == self.at:
            raise KeyboardInterrupt


def install_tiny_recipe(monkeypatch, tmp_path, *, steps: int = 100) -> str:
    """Register recipe "tiny" (N = steps, a 32-wide ResMLP, 20 training steps) with a private cache."""
    from kexue.diffusion.ddpm import DDPMConfig
    from kexue.experiments import pretrained_ddpm
    from kexue.train.trainer import TrainConfig

    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "cache"))
    tiny = pretrained_ddpm.DDPMRecipe(
        "digits",
        DDPMConfig(shape=(1, 8, 8), width=32, depth=1, steps=steps),
        TrainConfig(steps=20, batch_size=64, ema_decay=0.9, progress=False),
    )
    monkeypatch.setitem(pretrained_ddpm.RECIPES, "tiny", tiny)
    return "tiny"


def run_contract(reproduction, config, out):
    """Run a reproduction on the CPU and check the runner's contract; returns metrics.json as written.

    The verdict on disk is the one returned, it is the conjunction of the checks, and the report exists.
    """
    import json

    from kexue.experiments.runner import execute

    metrics = execute(
        reproduction, preset="quick", out=out, device=torch.device("cpu"), progress=False, config=config
    )
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["name"] == reproduction.name and on_disk["holds"] == metrics["holds"]
    assert on_disk["holds"] == all(on_disk["checks"].values())
    assert (out / "report.md").is_file()
    return on_disk


# ------------------------------------------------------------------------------------------- flows
def perturbed(layer: nn.Module, seed: int = 0) -> nn.Module:
    """The layer in float64 with every floating parameter moved by N(0, 0.3²) noise (buffers kept)."""
    from kexue.flows import ActNorm

    g = torch.Generator().manual_seed(seed)
    layer = layer.double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    for m in layer.modules():  # a perturbed ActNorm counts as initialised (no data init in eval)
        if isinstance(m, ActNorm):
            m.initialized.fill_(True)
    return layer


def jacobian_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det ∂fn(x_b)/∂x_b| per example, by autograd on one example at a time."""
    out = []
    for xb in x:
        jac = torch.autograd.functional.jacobian(lambda v: fn(v.unsqueeze(0)).flatten(), xb)
        out.append(torch.linalg.slogdet(jac.reshape(xb.numel(), xb.numel()))[1])
    return torch.stack(out)


# ------------------------------------------------------------------------------------------- FID-proxy
class FakeFidProxy:
    """Stands in for the FID-proxy in reproduction tests (its classifier and the 70k reference images take
    too long there): features = the pixels, labels = argmax of a random linear head, 64 random "training
    images". The value is a statistic of the images (`stat`); `classes` adds "classes_covered" = 10."""

    stat = "std"
    classes = True

    def __init__(self, data, *, data_dir=None, device="cpu"):
        from types import SimpleNamespace

        self.data = data
        self.net = nn.Linear(784, 10)
        self.net.features = lambda x: x.flatten(1)
        self.net.head = self.net.forward
        self.net.config = SimpleNamespace(num_classes=10)
        self.real_train = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    def __call__(self, images, *, generator=None):
        assert images.min() >= 0 and images.max() <= 1  # images reach the metric in [0, 1]
        out = {"fid_proxy": float(getattr(images, self.stat)()), "kid_proxy": 0.0, "n": len(images)}
        return {**out, "classes_covered": 10} if self.classes else out

    def floor(self, n, *, generator=None):
        return {"fid_proxy": 0.0, "n": n}
