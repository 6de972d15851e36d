"""The ONLY place that maps names to objects (style rule 8): data sets, models, reproductions, benchmarks.

Library code imports what it calls; the command line and the experiment loader come through here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from kexue.errors import DataError, KexueError

IMAGE_DATA = ("digits", "mnist")
TOY_DATA = ("ring8", "grid25", "checkerboard", "banana", "imbalanced")
MNIST_FILES = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")


# ------------------------------------------------------------------------------------------- data
def toy_distribution(name: str):
    from kexue.data import toy2d

    table = {
        "ring8": toy2d.ring8,
        "grid25": toy2d.grid25,
        "checkerboard": toy2d.Checkerboard,
        "banana": toy2d.Banana,
        "imbalanced": toy2d.imbalanced,
    }
    return table[name]()


def _looks_like_mnist(path: Path) -> bool:
    """MNIST idx files in the folder itself or where load_mnist also looks (mnist/, MNIST/raw/)."""
    folders = (path, path / "mnist", path / "MNIST" / "raw")
    return any(p.name.startswith(MNIST_FILES) for f in folders if f.is_dir() for p in f.iterdir())


def load_data(name_or_path: str, *, data_dir: str | Path | None = None, split: str = "train"):
    """A data set by name (digits, mnist, the 2-D toys) or path (MNIST idx folder, image folder).

    Returns an `ImageData` for images, or a toy distribution object (sample / log_prob) for 2-D toys.
    """
    from kexue.paths import data_dir as resolve

    if name_or_path == "digits":
        from kexue.data.digits import load_digits

        return load_digits(split)
    if name_or_path == "mnist":
        from kexue.data.mnist import load_mnist

        return load_mnist(resolve(data_dir) / "mnist", split)
    if name_or_path in TOY_DATA:
        return toy_distribution(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if _looks_like_mnist(path):
            from kexue.data.mnist import load_mnist

            return load_mnist(path, split)
        from kexue.data.image_folder import load_image_folder

        return load_image_folder(path)
    raise DataError(
        f"unknown data set {name_or_path!r}: use one of {', '.join(IMAGE_DATA + TOY_DATA)}, "
        "or a path to a folder of MNIST idx files or of PNG/JPEG images"
    )


def has_test_split(name_or_path: str, *, data_dir: str | Path | None = None) -> bool:
    """Whether the data set has a held-out test split (image folders and toys do not)."""
    return name_or_path in IMAGE_DATA or _looks_like_mnist(Path(name_or_path).expanduser())


def toy_dataset(dist: Any, n: int, seed: int) -> Dataset:
    """A fixed training sample of n points from a toy distribution (reproducible from the seed)."""
    import torch
    from torch.utils.data import TensorDataset

    return TensorDataset(dist.sample(n, generator=torch.Generator().manual_seed(seed)))


# ------------------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelSpec:
    """How `kexue train NAME` builds a model and its training set from data, and what it evaluates."""

    name: str
    config_cls: type
    build: Callable[[Any, Mapping[str, Any], int], tuple[nn.Module, Dataset]]  # (data, overrides, seed)
    model_cls: type
    evaluator: Callable[[Any], Callable[[nn.Module], dict[str, float]]] | None = None  # test data → fn


def _build_classifier(data: Any, overrides: Mapping[str, Any], seed: int):
    from kexue.data.images import ImageData
    from kexue.nn.classifier import Classifier, ClassifierConfig

    if not isinstance(data, ImageData) or data.y is None:
        raise KexueError(
            "the classifier needs labelled image data (digits, mnist, or an image folder with "
            "class sub-folders)"
        )
    base = {
        "in_shape": data.shape,
        "num_classes": data.num_classes,
        "arch": "mlp" if data.shape[1] < 16 else "conv",
    }
    config = ClassifierConfig(**{**base, **overrides})
    return Classifier(config), data.tensor_dataset("unit")


def _classifier_eval(test: Any) -> Callable[[nn.Module], dict[str, float]]:
    from kexue.nn.classifier import accuracy

    x, y = test.floats("unit"), test.y
    return lambda model: {"test_acc": accuracy(model, x, y)}


def _build_gaussian(data: Any, overrides: Mapping[str, Any], seed: int):
    from kexue.data.images import ImageData
    from kexue.nn.gaussian import Gaussian, GaussianConfig

    if set(overrides) & {"dim", "levels"}:
        raise KexueError("the Gaussian's dim and levels come from the data; drop them from --set")
    if isinstance(data, ImageData):
        c, h, w = data.shape
        return Gaussian(GaussianConfig(dim=c * h * w, levels=data.levels)), data.tensor_dataset("unit")
    return Gaussian(GaussianConfig(dim=2, levels=None)), toy_dataset(data, 50_000, seed)


def _build_ddpm(data: Any, overrides: Mapping[str, Any], seed: int):
    from kexue.data.images import ImageData
    from kexue.diffusion.ddpm import DDPM, DDPMConfig

    if "shape" in overrides:
        raise KexueError("the DDPM's shape comes from the data; drop it from --set")
    if isinstance(data, ImageData):
        big = data.shape[1] >= 16
        base = {"shape": data.shape, "net": "unet" if big else "resmlp", "width": 32 if big else 512}
        return DDPM(DDPMConfig(**{**base, **overrides})), data.tensor_dataset("symmetric")
    base = {"shape": (2,), "width": 256, "depth": 3, "dropout": 0.0}
    return DDPM(DDPMConfig(**{**base, **overrides})), toy_dataset(data, 50_000, seed)


def _ddpm_eval(test: Any) -> Callable[[nn.Module], dict[str, float]]:
    """L_simple on the test images with fixed noise and timesteps (comparable across evaluations)."""
    import torch

    from kexue.diffusion.ddpm import q_sample

    x0 = test.floats("symmetric")

    def evaluate(model: nn.Module) -> dict[str, float]:
        g = torch.Generator().manual_seed(0)
        t = torch.randint(1, model.config.steps + 1, (len(x0),), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        device = next(model.parameters()).device
        with torch.no_grad():
            xt = q_sample(x0, t, model.abar, noise).to(device)
            loss = (model.eps(xt, t.to(device)).cpu() - noise).pow(2).mean()
        return {"test_loss": float(loss)}

    return evaluate


def _build_sid(data: Any, overrides: Mapping[str, Any], seed: int):
    raise KexueError("`kexue train sid` distils a teacher: pass --teacher RUN_DIR (a `kexue train ddpm` run)")


def _flow_builder(config_cls: type, model_cls: type):
    """`kexue train nice|realnvp|glow`: the shape and grey levels come from the data."""

    def build(data: Any, overrides: Mapping[str, Any], seed: int):
        from kexue.data.images import ImageData

        if set(overrides) & {"shape", "levels"}:
            raise KexueError("a flow's shape and levels come from the data; drop them from --set")
        if isinstance(data, ImageData):
            config = config_cls(**{"shape": data.shape, "levels": data.levels, **overrides})
            return model_cls(config), data.tensor_dataset("unit")
        return model_cls(config_cls(**{"shape": (2,), **overrides})), toy_dataset(data, 50_000, seed)

    return build


def _flow_eval(test: Any) -> Callable[[nn.Module], dict[str, float]]:
    """Test bits/dim with fixed dequantization noise (comparable across evaluations)."""
    from kexue.metrics.likelihood import dequantized_bits_per_dim

    def evaluate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        return {"test_bpd": dequantized_bits_per_dim(model.log_prob, test.x, test.levels, device=device)}

    return evaluate


def _build_gan(data: Any, overrides: Mapping[str, Any], seed: int):
    """`kexue train gan`: images in [−1, 1] (conv nets from 16×16 up, MLPs below), or 2-D toy points."""
    from kexue.data.images import ImageData
    from kexue.gan import GAN, GANConfig

    if "shape" in overrides:
        raise KexueError("the GAN's shape comes from the data; drop it from --set")
    if isinstance(data, ImageData):
        return GAN(GANConfig(**{"shape": data.shape, **overrides})), data.tensor_dataset("symmetric")
    base = {"shape": (2,), "z_dim": 16, "width": 128, "lr_d": 1e-3, "lr_g": 1e-3}
    return GAN(GANConfig(**{**base, **overrides})), toy_dataset(data, 50_000, seed)


def _gan_eval(test: Any) -> Callable[[nn.Module], dict[str, float]]:
    """FID-proxy (kexue's own classifier features; not Inception-FID) of 2,000 samples from a fixed z."""
    import torch

    from kexue.metrics.fid_proxy import RECIPES, features_and_labels, load_feature_net
    from kexue.metrics.frechet import frechet_distance_from_features

    if test.name not in RECIPES:
        return lambda model: {}
    net = load_feature_net(test.name)
    real, _ = features_and_labels(net, test.floats("unit"))

    def evaluate(model: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            x = model.sample(2000, generator=torch.Generator(next(model.parameters()).device).manual_seed(0))
        feats, _ = features_and_labels(net, ((x + 1) / 2).clamp(0, 1).cpu())
        return {"fid_proxy": frechet_distance_from_features(feats, real)}

    return evaluate


def _build_vae(data: Any, overrides: Mapping[str, Any], seed: int):
    """`kexue train vae`: images in [0, 1], dynamically binarized per batch unless --set binarize=none."""
    from kexue.data.images import ImageData
    from kexue.vae import VAE, VAEConfig

    if not isinstance(data, ImageData):
        raise KexueError("the VAE trains on images (digits, mnist, or an image folder)")
    if "shape" in overrides:
        raise KexueError("the VAE's shape comes from the data; drop it from --set")
    config = VAEConfig(**{"shape": data.shape, "binarize": "dynamic", **overrides})
    return VAE(config), data.tensor_dataset("unit")


def _vae_eval(test: Any) -> Callable[[nn.Module], dict[str, float]]:
    """−ELBO and the IWAE NLL (k = 100) on 1,000 test images binarized once (static draw, seed 0)."""
    import torch

    from kexue.data.binarize import static_binarize
    from kexue.vae import nll

    x = static_binarize(test.floats("unit")[:1000], 0)

    def evaluate(model: nn.Module) -> dict[str, float]:
        dev = next(model.parameters()).device
        g = torch.Generator(device=dev).manual_seed(0)
        with torch.no_grad():
            neg_elbo = -float(model.elbo(x.to(dev), generator=g).mean())
        return {"test_neg_elbo": neg_elbo, "test_nll_k100": nll(model, x.to(dev), 100, generator=g)}

    return evaluate


def model_specs() -> dict[str, ModelSpec]:
    from kexue.diffusion.ddpm import DDPM, DDPMConfig
    from kexue.diffusion.sid import GeneratorConfig, OneStepGenerator
    from kexue.flows import NICE, Glow, GlowConfig, NICEConfig, RealNVP, RealNVPConfig
    from kexue.gan import GAN, GANConfig
    from kexue.nn.classifier import Classifier, ClassifierConfig
    from kexue.nn.gaussian import Gaussian, GaussianConfig
    from kexue.vae import VAE, VAEConfig

    return {
        "ddpm": ModelSpec("ddpm", DDPMConfig, _build_ddpm, DDPM, _ddpm_eval),
        "classifier": ModelSpec(
            "classifier", ClassifierConfig, _build_classifier, Classifier, _classifier_eval
        ),
        "gaussian": ModelSpec("gaussian", GaussianConfig, _build_gaussian, Gaussian),
        "sid": ModelSpec("sid", GeneratorConfig, _build_sid, OneStepGenerator),
        "nice": ModelSpec("nice", NICEConfig, _flow_builder(NICEConfig, NICE), NICE, _flow_eval),
        "realnvp": ModelSpec(
            "realnvp", RealNVPConfig, _flow_builder(RealNVPConfig, RealNVP), RealNVP, _flow_eval
        ),
        "glow": ModelSpec("glow", GlowConfig, _flow_builder(GlowConfig, Glow), Glow, _flow_eval),
        "gan": ModelSpec("gan", GANConfig, _build_gan, GAN, _gan_eval),
        "vae": ModelSpec("vae", VAEConfig, _build_vae, VAE, _vae_eval),
    }


def model_spec(name: str) -> ModelSpec:
    specs = model_specs()
    if name not in specs:
        raise KexueError(f"unknown model {name!r}; `kexue train` knows: {', '.join(sorted(specs))}")
    return specs[name]


# ------------------------------------------------------------------------------------------- samplers
def diffusion_samplers() -> dict[str, Callable[..., Any]]:
    """`kexue sample --sampler NAME`: name → fn(model, x_T, traj, *, eta, generator, data) → x_0.

    `data()` returns training images in [−1, 1] and their number of grey levels (Analytic-DPM estimates
    its moment ms_eps on them at the trajectory's timesteps: 100 draws per timestep).
    """
    from kexue.diffusion import analytic, ddim, dpm_solver

    def family(variance: str):
        def run(model, x, traj, *, eta, generator, data):
            return ddim.sample(
                model.eps, x, model.abar, traj, variance=variance, eta=eta, generator=generator
            )

        return run

    def analytic_family(variance: str):
        def run(model, x, traj, *, eta, generator, data):
            x0, levels = data()
            ms = analytic.estimate_ms_eps(
                model.eps, x0.to(x.device), model.abar, traj, m_per_t=100, generator=generator
            )
            return ddim.sample(
                model.eps,
                x,
                model.abar,
                traj,
                variance=variance,
                eta=eta,
                clip_x0=True,  # [ADPM] App. F.2: x̂0 clipped to the data range
                cov_x0=analytic.cov_fn(ms, model.abar),
                max_var_penultimate=analytic.penultimate_max_var(1.0, levels=levels),
                generator=generator,
            )

        return run

    def dpmpp_2m(model, x, traj, *, eta, generator, data):
        return dpm_solver.sample_dpmpp_2m(model.eps, x, model.abar, traj)

    return {
        "ddim": family("ddim"),
        "ddpm": family("beta_tilde"),
        "ddpm-large": family("beta"),
        "sigma-hat": family("sigma_hat"),
        "analytic-ddpm": analytic_family("beta_tilde"),
        "analytic-ddim": analytic_family("ddim"),
        "dpmpp-2m": dpmpp_2m,
    }


# ------------------------------------------------------------------------------------------- runs
def reproductions() -> dict[str, Any]:
    from kexue.experiments import (
        analytic_dpm,
        attention_scale,
        bigan_qp,
        cluster_vae,
        dae_generative,
        ddim,
        ddpm,
        discrete_distributions,
        extended_analytic_dpm,
        flows,
        gan_losses,
        gumbel_estimators,
        hierarchical_position,
        length_extrapolation,
        lipschitz,
        noise_vs_gradient_penalty,
        nvae,
        o_gan,
        optimizer_ode,
        poetry_vae,
        sde_ode,
        segmentation,
        sid,
        single_loss_gan,
        titles,
        transformer,
        transformer_vq,
        vae,
        vi_gan,
        word2vec_svd,
    )

    items = [
        noise_vs_gradient_penalty.REPRODUCTION,
        ddpm.REPRODUCTION,
        ddim.REPRODUCTION,
        analytic_dpm.REPRODUCTION,
        extended_analytic_dpm.REPRODUCTION,
        sde_ode.REPRODUCTION,
        sid.REPRODUCTION,
        dae_generative.REPRODUCTION,
        flows.REPRODUCTION,
        word2vec_svd.REPRODUCTION,
        segmentation.REPRODUCTION,
        discrete_distributions.REPRODUCTION,
        lipschitz.REPRODUCTION,
        vae.REPRODUCTION,
        gumbel_estimators.REPRODUCTION,
        vi_gan.REPRODUCTION,
        gan_losses.REPRODUCTION,
        single_loss_gan.REPRODUCTION,
        cluster_vae.REPRODUCTION,
        o_gan.REPRODUCTION,
        bigan_qp.REPRODUCTION,
        optimizer_ode.REPRODUCTION,
        poetry_vae.REPRODUCTION,
        nvae.REPRODUCTION,
        transformer.REPRODUCTION,
        attention_scale.REPRODUCTION,
        transformer_vq.REPRODUCTION,
        titles.REPRODUCTION,
        length_extrapolation.REPRODUCTION,
        hierarchical_position.REPRODUCTION,
    ]
    return {r.name: r for r in items}


def benchmarks() -> dict[str, Callable[..., dict]]:
    from kexue.bench import attention as bench_attention
    from kexue.bench import decoding as bench_decoding
    from kexue.bench import flows as bench_flows
    from kexue.bench import samplers as bench_samplers
    from kexue.bench import segment as bench_segment
    from kexue.bench import trainer as bench_trainer

    return {
        "attention": bench_attention.run,
        "decoding": bench_decoding.run,
        "flows": bench_flows.run,
        "samplers": bench_samplers.run,
        "segment": bench_segment.run,
        "trainer": bench_trainer.run,
    }
