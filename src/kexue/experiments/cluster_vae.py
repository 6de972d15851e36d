"""Reproduction of [5887]: the one-step clustering VAE clusters unlabelled MNIST (≈ 83%, majority label).

Per seed: train `kexue.vae.cluster_vae.ClusterVAE` (Su's loss, λ = 2.5, μ_y zero-initialised) on the
training images without labels, cluster the test images by argmax p(y|μ(x)), and score the clusters
against the true digits three ways (`kexue.metrics.clustering`): majority-label purity — the number [5887]
reports ("以每一类对应的数目最多的那个真实标签为类标签", test ≈ 83%) — the one-to-one Hungarian accuracy
(the usual number in papers, ≤ majority) and NMI; plus the cluster sizes. The baseline is k-means on raw
pixels (sklearn, k = 10, fitted on the same training images, scored on the same test images the same
ways). Figures: generated samples G(μ_k + ε), one row per cluster (Su's 类别采样), and test images
assigned to each cluster, one row per cluster (Su's 聚类图示).

Presets. `full` is Su's setup (conv nets, batch 100, 50 epochs of the 60k training images, Adam 1e-3).
`quick` fits one CPU thread in a few minutes: the dense ("mlp") encoder/decoder (about 3× cheaper per
step than the conv nets, reference/generative.md §4 row 4 allows either), Adam 3e-3 (the clusters form in
fewer steps; measured) and a few thousand steps — far from Su's 30,000, so it is not expected to reach 83%.

`metrics.json["accuracy"]` is the MEAN majority-label test accuracy over seeds (not the best seed: with
μ_y starting at zero the seeds differ a lot, and the mean is the honest number); min and max are beside
it, and `kmeans_accuracy` is k-means's majority-label test accuracy.

Sources: [5887] kexue.fm/archives/5887; code bojone/vae vae_keras_cluster.py; [DEC] Xie et al. ICML 2016.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from kexue.experiments.runner import Context, Outcome, Reproduction, markdown_table
from kexue.metrics.clustering import cluster_sizes, hungarian_accuracy, majority_accuracy, nmi

POST = "https://kexue.fm/archives/5887"
POST_ACCURACY = 0.83  # [5887] "最终的test准确率大约有83%" (majority label, MNIST test, 50 epochs)
NEAR = 0.05  # "near the post": within 5 points

PAPER = """[5887], MNIST test set, each cluster labelled with its majority digit: **about 83%** (Su's Keras
code, 50 epochs); Fashion-MNIST about 58.5%. Su compares with DEC's "about 84% at best" (DEC reports
Hungarian accuracy, a stricter number). Reference/generative.md §2.3: VaDE 94.46%, DEC 84.30%, k-means
53.49% are unverified [U] recollections; a commenter on the post found VaDE-style additions lowered
accuracy."""


@dataclass(frozen=True)
class Config:
    data: str = "mnist"  # mnist (the post's data) or digits (tests)
    data_dir: str | None = None  # folder holding mnist/ (default: kexue.paths)
    seeds: tuple[int, ...] = (0, 1)  # one model per seed; "accuracy" is their mean
    steps: int = 2500  # optimizer steps per seed (Su: 50 epochs × 600 = 30,000)
    batch_size: int = 100  # Su's batch_size
    lr: float = 3e-3  # Adam (Su: Keras default 1e-3); measured: 3e-3 forms clusters sooner on short runs
    model: dict = field(default_factory=lambda: {"arch": "mlp"})  # ClusterVAEConfig overrides
    train_limit: int | None = None  # first N training images (None: all 60,000)
    test_limit: int | None = None  # first N test images (None: all 10,000)
    kmeans_limit: int | None = 10_000  # k-means fits on the first N training images (None: all)
    kmeans_n_init: int = 4  # k-means restarts (the best inertia is kept)
    samples_per_cluster: int = 10  # columns of the two figures


QUICK = Config()
FULL = Config(
    steps=30_000,  # 50 epochs of 60,000 at batch 100, as Su
    lr=1e-3,
    model={"arch": "conv"},
    kmeans_limit=None,
    kmeans_n_init=10,
)


def kmeans_clusters(train: Tensor, test: Tensor, k: int, *, n_init: int, seed: int) -> np.ndarray:
    """k-means on flattened pixels: fit on `train` (N, C, H, W), return the cluster of each test image."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    km.fit(train.flatten(1).double().numpy())  # (N, C·H·W)
    return km.predict(test.flatten(1).double().numpy())


def scores(pred, labels, k: int) -> dict:
    """Majority-label and Hungarian accuracy, NMI and cluster sizes of one clustering."""
    return {
        "accuracy": majority_accuracy(pred, labels),
        "hungarian_accuracy": hungarian_accuracy(pred, labels),
        "nmi": nmi(pred, labels),
        "sizes": cluster_sizes(pred, k),
    }


def _train_one(cfg: Config, seed: int, x_train: Tensor, ctx: Context):
    from kexue.train.distributed import Dist
    from kexue.train.trainer import TrainConfig, Trainer
    from kexue.vae.cluster_vae import ClusterVAE, ClusterVAEConfig

    shape = tuple(x_train.shape[1:])
    with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        torch.manual_seed(seed)  # initial weights and the reparameterisation noise
        model = ClusterVAE(ClusterVAEConfig(shape=shape, **cfg.model))
        trainer = Trainer(
            model,
            TensorDataset(x_train),
            TrainConfig(
                steps=cfg.steps,
                batch_size=cfg.batch_size,
                lr=cfg.lr,
                seed=seed,
                progress=ctx.progress,
                log_every=max(1, cfg.steps // 10),
            ),
            dist=Dist(device=ctx.device),
        )
        t0 = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - t0
    model.eval()
    nan_stop = trainer.stop_reason is not None and "not finite" in trainer.stop_reason
    return model, {"steps": trainer.step, "seconds": seconds, "nan_stop": nan_stop}


def _figures(model, x_test: Tensor, pred: Tensor, n: int, ctx: Context, seed: int) -> list[str]:
    """samples.png: G(μ_k + ε), one row per cluster; members.png: test images in each cluster, a row each."""
    from kexue.plots import image_grid

    k = model.config.clusters
    g = torch.Generator(device=model.mu_y.device).manual_seed(seed)
    samples = torch.cat([model.sample_cluster(c, n, generator=g).cpu() for c in range(k)])  # (K·n, C, H, W)
    image_grid(samples, ctx.figure_path("samples.png"), nrow=n, title="row k: G(μ_k + ε), cluster k")
    blank = torch.ones(n, *x_test.shape[1:])
    rows = []
    for c in range(k):
        members = x_test[pred == c][:n]  # the first n test images assigned to cluster c
        rows.append(torch.cat([members, blank[len(members) :]]))
    image_grid(
        torch.cat(rows), ctx.figure_path("members.png"), nrow=n, title="row k: test images in cluster k"
    )
    return ["samples.png", "members.png"]


def _load(cfg: Config):
    from kexue.registry import load_data

    train = load_data(cfg.data, data_dir=cfg.data_dir, split="train")
    test = load_data(cfg.data, data_dir=cfg.data_dir, split="test")
    x_train = train.floats("unit")[: cfg.train_limit] if cfg.train_limit else train.floats("unit")
    test = test.subset(slice(0, cfg.test_limit)) if cfg.test_limit else test
    return x_train, test.floats("unit"), test.y, train.y[: len(x_train)]


def run(cfg: Config, ctx: Context) -> Outcome:
    x_train, x_test, y_test, y_train = _load(cfg)
    k = 10  # ten digits, Su's num_classes
    t0 = time.perf_counter()
    km_train = x_train[: cfg.kmeans_limit] if cfg.kmeans_limit else x_train
    km = scores(kmeans_clusters(km_train, x_test, k, n_init=cfg.kmeans_n_init, seed=0), y_test, k)
    km_seconds = time.perf_counter() - t0
    ctx.say(f"k-means on pixels: majority {km['accuracy']:.4f}, Hungarian {km['hungarian_accuracy']:.4f}")
    rows: list[dict] = [{"method": "k-means (pixels)", "seed": 0, **km, "seconds": km_seconds}]
    figures: list[str] = []
    for seed in cfg.seeds:
        model, fit = _train_one(cfg, seed, x_train, ctx)
        pred = model.cluster(x_test)
        row = {"method": "cluster VAE", "seed": seed, **scores(pred, y_test, k), **fit}
        row["train_accuracy"] = majority_accuracy(model.cluster(x_train[:10_000]), y_train[:10_000])
        rows.append(row)
        ctx.say(
            f"cluster VAE seed {seed}: majority {row['accuracy']:.4f}, Hungarian "
            f"{row['hungarian_accuracy']:.4f}, NMI {row['nmi']:.4f} "
            f"({fit['steps']} steps, {fit['seconds']:.0f} s)"
        )
        if seed == cfg.seeds[0]:
            figures = _figures(model, x_test, pred, cfg.samples_per_cluster, ctx, seed)
    vae = [r for r in rows if r["method"] == "cluster VAE"]
    summary = {
        metric: {
            "min": min(r[metric] for r in vae),
            "mean": statistics.fmean(r[metric] for r in vae),
            "max": max(r[metric] for r in vae),
        }
        for metric in ("accuracy", "hungarian_accuracy", "nmi")
    }
    acc = summary["accuracy"]["mean"]
    checks = {
        "mean majority accuracy above k-means on pixels": acc > km["accuracy"],
        f"mean majority accuracy within {NEAR:.0%} of the post's {POST_ACCURACY:.0%} or above": acc
        >= POST_ACCURACY - NEAR,
        "no training stopped on a non-finite loss": not any(r["nan_stop"] for r in vae),
    }
    report = _report(cfg, rows, summary, km, len(x_train), len(x_test))
    return Outcome(
        rows=rows,
        checks=checks,
        report=report,
        figures=figures,
        extra={
            "accuracy": acc,  # mean over seeds of the majority-label test accuracy (the post's metric)
            "accuracy_min": summary["accuracy"]["min"],
            "accuracy_max": summary["accuracy"]["max"],
            "hungarian_accuracy": summary["hungarian_accuracy"]["mean"],
            "nmi": summary["nmi"]["mean"],
            "kmeans_accuracy": km["accuracy"],
            "kmeans_hungarian_accuracy": km["hungarian_accuracy"],
            "kmeans_nmi": km["nmi"],
            "summary": summary,
            "post_accuracy": POST_ACCURACY,
        },
    )


def _report(cfg: Config, rows, summary, km, n_train: int, n_test: int) -> str:
    arch = cfg.model.get("arch", "conv")
    epochs = cfg.steps * cfg.batch_size / n_train
    table = [{"metric": m, **v} for m, v in summary.items()]
    return "\n\n".join(
        [
            f"Data: {cfg.data}, {n_train} training images (no labels used), scored on {n_test} test images. "
            f"Cluster VAE: {arch} nets, {cfg.steps} steps of batch {cfg.batch_size} (≈ {epochs:.1f} epochs; "
            f"Su: 50), Adam lr {cfg.lr:g}, seeds {list(cfg.seeds)}. k-means: sklearn, k = 10, "
            f"{cfg.kmeans_n_init} restarts on {cfg.kmeans_limit or n_train} training images' pixels.",
            "### Cluster VAE over seeds (test set)",
            markdown_table(table, ["metric", "min", "mean", "max"]),
            f"k-means on pixels: majority {km['accuracy']:.4f}, Hungarian {km['hungarian_accuracy']:.4f}, "
            f"NMI {km['nmi']:.4f}.",
            "### Every run",
            markdown_table(
                rows,
                [
                    "method",
                    "seed",
                    "accuracy",
                    "hungarian_accuracy",
                    "nmi",
                    "train_accuracy",
                    "steps",
                    "seconds",
                ],
            ),
            "### Cluster sizes (test images per cluster)",
            "\n".join(f"- {r['method']} seed {r['seed']}: {r['sizes']}" for r in rows),
            "`accuracy` is the majority-label purity [5887] measures (two clusters may share a digit); the "
            "Hungarian accuracy maps clusters to digits one-to-one and is never larger. The headline "
            "`accuracy` in metrics.json is the mean over seeds, not the best seed.",
        ]
    )


REPRODUCTION = Reproduction(
    name="cluster-vae",
    systems=(19,),
    post=POST,
    claim=(
        "A VAE with latent (z, y) — a Gaussian q(z|y) = N(μ_y, I) per cluster and a classifier p(y|z) — "
        "trained on unlabelled MNIST with Su's one-step loss clusters the digits: about 83% test accuracy "
        "when each cluster takes its majority label, above k-means on the pixels ([5887])."
    ),
    expectation=(
        "Mean over seeds of the majority-label test accuracy must exceed k-means on pixels (same training "
        f"and test images, same metric) and be at least {POST_ACCURACY - NEAR:.0%} (the post's ≈ 83% less "
        f"{NEAR:.0%}); no run may stop on a non-finite loss. Hungarian accuracy, NMI and cluster sizes are "
        "reported beside it (reference/generative.md §5 gotcha 4). The quick preset trains ~4 epochs, "
        "not Su's 50."
    ),
    paper=PAPER,
    presets={"quick": QUICK, "full": FULL},
    run=run,
)
