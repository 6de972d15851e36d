"""Reproduction of [6214] BiGAN-QP: GAN-QP's joint critic plus two stop-gradient guide terms give a
generator and an encoder whose reconstructions G(E(x)) resemble their inputs without blurring.

BiGAN-QP (`kexue.gan.bigan`) trains on an MNIST training subset through the ordinary Trainer with the
phases protocol: each step is ("d", "d", "g") — two critic updates, then one generator/encoder update —
with Adam(2e-4, β1 = 0.5) as the official code. Measured at the end, per run:
- the reconstruction MSE of G(E(x)) on test images ([0, 1] scale, per pixel), beside the MSE between
  random pairs of test images (what a reconstruction unrelated to its input scores);
- a linear probe (logistic regression, scikit-learn) on E(x), beside the encoder at initialisation;
- the FID-proxy of samples (kexue's LeNet-style Fréchet distance, NOT Inception FID) and of the
  reconstructions, beside the real-vs-real floor, and class coverage;
- sharpness = mean |finite difference| of the [0, 1] images divided by that of the real test images
  (1 = as sharp as MNIST, lower = blurrier), for samples and reconstructions.
The full preset adds the ablation without the stop-gradients ([6214]: the coupled guide terms make the
images blurry) and ALI's BCE joint discriminator in place of GAN-QP's (same guide terms; informative).

Sources: [6214] kexue.fm/archives/6214; [6163] GAN-QP; reference/generative.md §1.7 and §4 #11.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from kexue.experiments.o_gan import (
    batched,
    fit,
    pairs_figure,
    probe_accuracy,
    sample_metrics,
    train_variants,
    unit,
)
from kexue.experiments.runner import Context, Outcome, Reproduction, markdown_table

POST = "https://kexue.fm/archives/6214"
VARIANTS = {  # run name → BiGANQPConfig overrides
    "bigan-qp": {},
    "no-stop-gradient": {"stop_gradient": False},  # [6214] eq. 3: the guide terms without sg
    "ali": {"objective": "ali"},  # ALI/BiGAN's BCE joint discriminator, same guide terms
}

PAPER = """[6214] reports no numbers (no FID for BiGAN-QP; reference/generative.md §2.4). The evidence is
qualitative: 256×256 CelebA-HQ faces encoded to 256 dimensions and reconstructed "without the blur of an
ordinary autoencoder" (the reconstruction keeps identity and pose, not every pixel: glasses come back as
another pair of glasses), sharp random samples, smooth interpolations between real images, and nearest
neighbours in code space that look alike. Without the stop-gradients the two guide terms are "too
strong" and the images blur."""


@dataclass(frozen=True)
class Config:
    data: str = "mnist"  # mnist (28×28 conv nets) or digits (8×8 MLP nets; tests)
    data_dir: str | None = None
    train_limit: int | None = 15000  # first N training images (None: all)
    test_limit: int | None = 2000  # first N test images for reconstruction and the probe's test
    probe_train: int = 5000  # training images the linear probe fits on
    steps: int = 1000  # trainer steps, each ("d", "d", "g"): generator/encoder updates
    batch_size: int = 64  # official code: 64
    seed: int = 0
    model: dict = field(default_factory=dict)  # BiGANQPConfig overrides (width, z_dim, hidden, …)
    runs: tuple[str, ...] = ("bigan-qp",)  # names in VARIANTS
    fid: bool = True  # score samples with the FID-proxy (its classifier is trained once and cached)
    fid_n: int = 2000  # samples scored
    probe_margin: float = 0.05  # the trained E's probe must beat the random E's by this much
    recon_ratio: float = 0.5  # reconstruction MSE must be below this fraction of the random-pair MSE


QUICK = Config()
FULL = Config(train_limit=None, test_limit=5000, steps=4000, runs=tuple(VARIANTS), fid_n=5000)


def sharpness(x: Tensor) -> float:
    """mean |x[h+1, w] − x[h, w]| + mean |x[h, w+1] − x[h, w]| of (N, C, H, W) images in [0, 1]."""
    return float(
        (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    )


def _train_variant(
    name: str, cfg: Config, data: dict, fid, ctx: Context
) -> tuple[nn.Module, dict, nn.Module, list[dict]]:
    from kexue.gan.bigan import BiGANQP, BiGANQPConfig

    shape = tuple(data["x_train"].shape[1:])
    with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model = BiGANQP(BiGANQPConfig(shape=shape, **{**cfg.model, **VARIANTS[name]})).to(ctx.device)
        initial_encoder = copy.deepcopy(model.encoder).eval()  # the random-E baseline of the probe
        run, history = fit(model, data["x_train"], cfg, ctx)
    x_te = data["probe"]["x_test"]
    x_hat = unit(batched(model.reconstruct, x_te, ctx.device))
    real_sharp = sharpness(unit(x_te))
    g = torch.Generator(device=ctx.device).manual_seed(cfg.seed + 4)
    samples = unit(model.sample(min(1000, len(x_te)), generator=g).cpu())
    row = {
        "run": name,
        "objective": model.config.objective,
        "stop_gradient": model.config.stop_gradient,
        **run,
        "recon_mse": float((x_hat - unit(x_te)).pow(2).mean()),
        "probe_acc": probe_accuracy(model.encoder, data["probe"], ctx.device),
        "sharpness_samples": sharpness(samples) / real_sharp,
        "sharpness_recon": sharpness(x_hat) / real_sharp,
        **sample_metrics(model, cfg, fid, ctx),
    }
    if fid is not None and torch.isfinite(x_hat).all():
        row["fid_proxy_recon"] = fid(x_hat, generator=torch.Generator().manual_seed(cfg.seed))["fid_proxy"]
    ctx.say(
        f"bigan-qp {name}: recon MSE {row['recon_mse']:.4f}, probe {row['probe_acc']:.3f}, sharpness "
        f"{row['sharpness_samples']:.2f}/{row['sharpness_recon']:.2f}"
        + (f", FID-proxy {row['fid_proxy']:.2f}" if "fid_proxy" in row else "")
        + f" ({run['steps']} steps, {run['seconds']:.0f} s)"
    )
    return model, row, initial_encoder, history


WORSE = "without the stop-gradients the outputs get worse (FID-proxy of samples and reconstructions rises)"
BLURRY = "without the stop-gradients the outputs blur (sharpness of samples and reconstructions drops)"


def _checks(cfg: Config, rows: list[dict], base: dict) -> dict[str, bool]:
    by = {r["run"]: r for r in rows}
    main = by["bigan-qp"]
    recon = f"reconstructions G(E(x)) resemble their inputs (MSE < {cfg.recon_ratio:g} × random-pair MSE)"
    probe = f"E is a useful encoder: probe accuracy ≥ random-E probe + {cfg.probe_margin:g}"
    checks = {
        recon: main["recon_mse"] < cfg.recon_ratio * base["random_pair_mse"],
        probe: main["probe_acc"] >= base["random_e_probe_acc"] + cfg.probe_margin,
        "training stayed finite": not main["diverged"],
    }
    if "fid_proxy" in main:
        checks["samples cover all classes (≥ 1% each of 10)"] = main["classes_covered"] >= 10
    if "no-stop-gradient" in by:  # [6214]: the coupled guide terms make the images blurry
        nsg = by["no-stop-gradient"]
        if "fid_proxy" in main:  # NaN (a diverged run) counts as worse
            checks[WORSE] = nsg["diverged"] or not (
                nsg["fid_proxy"] <= main["fid_proxy"]
                or nsg.get("fid_proxy_recon", math.nan) <= main.get("fid_proxy_recon", math.nan)
            )
        checks[BLURRY] = nsg["diverged"] or (
            nsg["sharpness_samples"] < main["sharpness_samples"]
            and nsg["sharpness_recon"] < main["sharpness_recon"]
        )
    return checks


def run(cfg: Config, ctx: Context) -> Outcome:
    unknown = [r for r in cfg.runs if r not in VARIANTS]
    if "bigan-qp" not in cfg.runs or unknown:
        raise ValueError(f"runs must include 'bigan-qp' and come from {', '.join(VARIANTS)}, got {cfg.runs}")
    rows, models, histories, base, x_te, (n_train, n_probe) = train_variants(
        cfg, ctx, _train_variant, main="bigan-qp"
    )
    checks = _checks(cfg, rows, base)
    figures = _figures(models, x_te, cfg, ctx)
    columns = (
        "run",
        "objective",
        "stop_gradient",
        "steps",
        "seconds",
        "cpu_seconds",
        "diverged",
        "recon_mse",
        "probe_acc",
        "sharpness_samples",
        "sharpness_recon",
        "fid_proxy",
        "fid_proxy_recon",
        "classes_covered",
    )
    report = "\n\n".join(
        [
            f"Data: {cfg.data}, {n_train} training images (probe fitted on the first {n_probe}), "
            f"{len(x_te)} test images; {cfg.steps} steps of (d, d, g) with batch {cfg.batch_size} on "
            f"{ctx.device}; model {models['bigan-qp'].config}.",
            markdown_table(rows, [c for c in columns if any(c in r for r in rows)]),
            "Guide terms during training (batch means over each logging window, step: mean(x − G(E(x)))² "
            "/ mean(z − E(G(z)))²):\n\n"
            + "\n".join(
                f"- {name}: "
                + ", ".join(
                    f"{h['step']}: {h['g/rec_x']:.3f}/{h['g/rec_z']:.3f}" for h in lines if "g/rec_x" in h
                )
                for name, lines in histories.items()
            ),
            "Baselines: "
            + ", ".join(f"{k} = {v:.4g}" for k, v in base.items())
            + " (random E: the bigan-qp run's encoder at initialisation; random pairs: test image i "
            "against another test image; floor: real training images against the test images).",
            "Reading: recon_mse is per pixel on the [0, 1] scale; sharpness is relative to the real test "
            "images (1 = as sharp as MNIST); probe_acc is a logistic regression on the code E(x). "
            "FID-proxy values are comparable only with each other and with the floor.",
        ]
    )
    return Outcome(
        rows=rows, checks=checks, report=report, figures=figures, extra={**base, "history": histories}
    )


def _figures(models: dict, x_te: Tensor, cfg: Config, ctx: Context) -> list[str]:
    from kexue.plots import image_grid

    names = []
    for name, model in models.items():
        g = torch.Generator(device=ctx.device).manual_seed(cfg.seed + 3)
        image_grid(
            unit(model.sample(100, generator=g).cpu()),
            ctx.figure_path(f"samples_{name}.png"),
            nrow=10,
            title=f"{name}: samples",
        )
        x = x_te[:50]
        pairs_figure(
            x,
            batched(model.reconstruct, x, ctx.device),
            ctx.figure_path(f"reconstructions_{name}.png"),
            f"{name}: rows alternate inputs x and G(E(x))",
        )
        names += [f"samples_{name}.png", f"reconstructions_{name}.png"]
    return names


REPRODUCTION = Reproduction(
    name="bigan-qp",
    systems=(10,),
    post=POST,
    claim=(
        "BiGAN-QP — GAN-QP's critic on (x, z) pairs plus the guide terms 2·‖z − E(sg G(z))‖² + "
        "3·‖x − G(sg E(x))‖² — learns a generator and an encoder together: G(E(x)) resembles x, E(x) is "
        "a useful feature, samples are reasonable, and without the stop-gradients the images blur ([6214])."
    ),
    expectation=(
        "Single seed. Reconstruction MSE of G(E(x)) on test images < ½ the MSE between random pairs of test "
        "images; the trained E's linear-probe accuracy ≥ that of the randomly initialised E + 0.05; samples "
        "cover all 10 classes; no non-finite loss. Full preset, without the stop-gradients: the FID-proxy "
        "of both samples and reconstructions is higher, and — the post's word — the images blur: the "
        "sharpness (mean |finite difference|) of both samples and reconstructions is lower than with them."
    ),
    paper=PAPER,
    presets={"quick": QUICK, "full": FULL},
    run=run,
)
