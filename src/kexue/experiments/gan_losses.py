"""Reproduction of [6163] GAN-QP against the GAN loss zoo ([6110], [6240]): one budget, every loss.

Every loss of `kexue.gan.losses.LOSSES`, plus hinge and NS with a spectrally normalised critic ("-sn" rows,
[6051]), trains with the same MLP nets, optimiser, batch, steps and seeds on a 2-D Gaussian mixture (the
8-Gaussian ring in the quick preset, the 5×5 grid in the full one; reference/generative.md §4 #6), and the
DCGAN-lite nets on MNIST (a subset of losses in quick, all in full; §4 #7). Measured per run:
- 2-D: modes covered and high-quality fraction (a sample within 3σ of its nearest mode; a mode counts when
  ≥ 1% of all samples are HQ samples of it, [VEEGAN] Sec. 5.1), KL of the HQ mode histogram to uniform,
  sliced W2 to fresh data, max ‖∇_x C‖ over real and fake samples, and time per step;
- MNIST: the FID-proxy (kexue's LeNet-style Fréchet distance, NOT Inception FID) beside its real-vs-real
  floor, the number of classes holding ≥ 5% of the samples (the proxy classifier's labels), time per step.
Time per step is the median over steps after a warm-up, of wall time and of this thread's CPU time; the CPU
time is the one compared, because it does not count time the process waited for a shared core.

The GAN-QP bound ([6163] "解的分析"): at the critic's optimum ΔT/(λd) ∈ [−1, 1]. G is frozen, a fresh critic
(the GAN's own architecture, the unary T(x_r) − T(x_f) of GAN-QP's code) is trained to convergence with full
batches on n fixed pairs (x_r[i], x_f[i]), and max_i |ΔT_i|/(λd_i) is reported. The objective is
E[(Δ − λd)²/(2λd)] − E[λd]/2, so on fixed pairs its infimum is −E[λd]/2 (Δ_i = λd_i, ratio 1 for every
pair); the relative gap to it says whether the optimum was reached. Done for G at its initialisation (real
and fake samples apart) and for the trained GAN-QP generator (real and fake samples interleaved).

Sources: [6163] kexue.fm/archives/6163, [QP] Su, arXiv 1811.07296; [6110] kexue.fm/archives/6110, [RGAN]
Jolicoeur-Martineau, arXiv 1807.00734; [6240] kexue.fm/archives/6240; [6051] kexue.fm/archives/6051;
[GP] Gulrajani et al. 2017; [VEEGAN] Srivastava et al. 2017; reference/generative.md §1.6, §1.9, §2.4, §4.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kexue.experiments.runner import Context, Outcome, Reproduction, markdown_table, mean_stderr
from kexue.gan import GAN, LOSSES, GANConfig
from kexue.gan import losses as L
from kexue.train.callbacks import Callback

POST = "https://kexue.fm/archives/6163"
SN_ROWS = ("hinge-sn", "ns-sn")  # hinge / NS with spectral normalisation on every critic layer
ROWS = (*LOSSES, *SN_ROWS)
QP_ROWS = ("gan-qp-l1", "gan-qp-l2")

PAPER = """Best FID, CelebA-HQ 128² ([6163] table; [QP]; Inception FID on 10k samples; reference §2.4) [P]:

| | GAN-QP-L1 | GAN-QP-L2 | WGAN-GP | WGAN-SN | SGAN-SN | LSGAN-SN |
|---|---|---|---|---|---|---|
| best FID | 45.0 | 44.7 | 55.5 | 47.8 | 44.5 | 45.8 |
| speed | 1× | 1× | 1.5× (slower) | 1× | 1× | 1× |

At 256²: GAN-QP 22.7 against SGAN-SN 27.9; at 512², GAN-QP ends at 26.44. RelativisticGAN README [P]: CAT
64² RaLSGAN 11.97; CAT 256² RaSGAN 32.11, RaLSGAN 35.21, SpectralSGAN 54.73, WGAN-GP > 100; CIFAR-10 [S]:
RSGAN 36.61, RaSGAN 31.98, RSGAN-GP 25.60. These are context only: different data, nets and metric.
[6163] claims no 2-D mode counts; "GAN-QP covers modes without GP or SN" is reference §4 #6's reading of
"不用L约束又不会梯度消失". The bound |ΔT|/(λd) ≤ 1 at the optimum is [6163]'s eq. after "解的分析"."""


@dataclass(frozen=True)
class Config:
    toy: str = "ring8"  # ring8 (quick) or grid25 (full), kexue.data.toy2d
    toy_points: int = 20000  # fixed training sample
    toy_steps: int = 1300  # trainer steps (generator updates) per run
    toy_seeds: tuple[int, ...] = (0, 1)
    toy_batch: int = 256
    toy_width: int = 64  # MLP hidden width of G and C (3 hidden layers)
    z_dim: int = 16
    lr: float = 2e-3  # Adam, both nets (calibrated on the ring: 1e-3 needs ~2× the steps)
    beta1: float = 0.5  # DCGAN's β1
    beta2: float = 0.9  # [GP]'s β2
    d_steps: int = 1  # critic updates per generator update, every loss (GAN-QP's code: 2; [GP]: 5)
    losses: tuple[str, ...] = ROWS
    eval_n: int = 2500  # samples scored ([VEEGAN]: 2500)
    eval_points: int = 5  # 2-D metrics are averaged over this many checkpoints …
    eval_span: float = 0.4  # … spread over the last 40% of training (GAN samples oscillate step to step)
    mnist: bool = True  # the MNIST part (skipped when False)
    data_dir: str | None = None
    mnist_losses: tuple[str, ...] = ("ns", "hinge", "wgan-gp", "gan-qp-l1", "rasgan")
    mnist_steps: int = 300
    mnist_width: int = 16  # DCGAN-lite base channels
    mnist_z_dim: int = 64
    mnist_lr: float = 1e-3
    mnist_batch: int = 64
    mnist_seed: int = 0
    train_limit: int | None = 20000  # first N MNIST training images (None: all)
    fid_n: int = 2000  # samples scored by the FID-proxy (and real images for its floor)
    bound_pairs: int = 256  # fixed (x_r, x_f) pairs of the bound check
    bound_steps: int = 2000  # full-batch critic updates (Adam, cosine decay to 0)
    bound_lr: float = 1e-3
    bound_width: int = 128
    bound_tol: float = 0.1  # max |ΔT|/(λd) ≤ 1 + tol: a smooth critic fits the optimum's ratio 1 to ±~5%
    bound_gap: float = 0.01  # "at the optimum": loss within 1% of the infimum −E[λd]/2
    coverage_tol: float = 0.1  # GAN-QP within max(1, tol·K) modes of the best other loss
    speed_margin: float = 1.1  # "WGAN-GP is slower": CPU time per step ratio above this


QUICK = Config()
FULL = Config(
    toy="grid25",
    toy_steps=20000,
    toy_seeds=(0, 1, 2),
    d_steps=2,  # GAN-QP's code and comparisons: 2 critic steps per generator step
    mnist_losses=ROWS,
    mnist_steps=3000,
    mnist_width=32,
    train_limit=None,
    fid_n=5000,
    bound_steps=4000,
)


# ------------------------------------------------------------------------------------------- training
class StepTimer(Callback):
    """Wall and this thread's CPU seconds of every trainer step (all phases of an alternating cycle)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_step_begin(self, trainer) -> None:
        self._w, self._c = time.perf_counter(), time.thread_time()

    def on_step_end(self, trainer, logs) -> None:
        self.wall.append(time.perf_counter() - self._w)
        self.cpu.append(time.thread_time() - self._c)

    def medians_ms(self, warmup: float = 0.1) -> dict[str, float]:
        """Median ms per step after dropping the first `warmup` fraction (at least 5 steps)."""
        if not self.wall:  # stopped before its first step ended
            return {"ms_step_cpu": float("nan"), "ms_step_wall": float("nan")}
        k = min(len(self.wall) - 1, max(5, int(warmup * len(self.wall))))
        return {
            "ms_step_cpu": 1e3 * statistics.median(self.cpu[k:]),
            "ms_step_wall": 1e3 * statistics.median(self.wall[k:]),
        }


def row_config(row: str, **kw) -> GANConfig:
    """The GANConfig of a row: a loss name, or hinge/ns + "-sn" for a spectrally normalised critic."""
    sn = row in SN_ROWS
    return GANConfig(loss=row.removesuffix("-sn") if sn else row, spectral_norm=sn, **kw)


def fit_gan(
    config: GANConfig, data, *, steps: int, batch: int, seed: int, ctx: Context, callbacks=()
) -> tuple[GAN, dict]:
    """Build (seeded) and train a GAN with the ordinary Trainer; a non-finite loss ends the run, recorded."""
    from kexue.errors import TrainingError
    from kexue.train.distributed import Dist
    from kexue.train.trainer import TrainConfig, Trainer

    timer = StepTimer()
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # init and z draws seeded; the caller's state kept
        torch.manual_seed(seed)
        model = GAN(config)
        trainer = Trainer(
            model,
            data,
            TrainConfig(steps=steps, batch_size=batch, seed=seed, progress=False),
            dist=Dist(device=ctx.device),
            callbacks=[timer, *callbacks],
        )
        diverged = False
        try:
            trainer.fit()
        except TrainingError:
            diverged = True
    model.eval()
    return model, {"steps": trainer.step, "diverged": diverged, **timer.medians_ms()}


# ------------------------------------------------------------------------------------------- 2-D toy
def toy_distribution(name: str):
    from kexue.data import toy2d

    if name not in ("ring8", "grid25"):
        raise ValueError(f"the 2-D part uses ring8 or grid25, got {name!r}")
    return getattr(toy2d, name)()


def critic_grad_max(critic: nn.Module, x: Tensor) -> float:
    """max_b ‖∇_x C(x_b)‖ over the points x (B, 2): the critic's steepest slope where it is evaluated."""
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x).sum(), x)  # rows are independent: row b's gradient is ∇C(x_b)
    return float(g.flatten(1).norm(dim=1).max())


def toy_snapshot(model: GAN, dist, n: int, seed: int) -> dict:
    """Mode coverage [VEEGAN] and sliced W2 to fresh data, from seeded draws (the same z every time)."""
    from kexue.metrics.coverage import mode_coverage
    from kexue.metrics.sliced_wasserstein import sliced_wasserstein

    g = torch.Generator().manual_seed(10_000 + seed)
    x_f = model.sample(n, generator=torch.Generator(device=_device(model)).manual_seed(seed)).cpu()
    cov = mode_coverage(x_f, torch.tensor(dist.means), torch.tensor(dist.stds))
    return {
        "modes": cov["modes_covered"],
        "hq": cov["high_quality_fraction"],
        "kl": cov["kl_to_weights"],
        "sw2": sliced_wasserstein(x_f, dist.sample(n, generator=g), generator=g),
    }


def checkpoints(steps: int, points: int, span: float) -> set[int]:
    """`points` steps evenly over the last `span` of training, the last step included."""
    return {round(steps * (1 - span * k / max(1, points - 1))) for k in range(points)}


class ToySnapshots(Callback):
    """`toy_snapshot` at the given trainer steps (sampling only: the training run is not disturbed)."""

    def __init__(self, dist, n: int, seed: int, at: set[int]) -> None:
        self.dist, self.n, self.seed, self.at = dist, n, seed, at
        self.values: list[dict] = []

    def on_step_end(self, trainer, logs) -> None:
        if trainer.step in self.at:
            self.values.append(toy_snapshot(trainer.model, self.dist, self.n, self.seed))


def toy_metrics(model: GAN, dist, n: int, seed: int, snapshots: list[dict]) -> dict:
    """The snapshots' means (modes, hq, kl, sw2), the final values (`*_final`), and max ‖∇C‖ at the end."""
    final = toy_snapshot(model, dist, n, seed)
    snaps = snapshots or [final]  # a run stopped (non-finite loss) before its first checkpoint
    out = {}
    for k in final:
        vals = [v[k] for v in snaps if v[k] == v[k]]  # KL is NaN without any HQ sample
        out[k] = statistics.fmean(vals) if vals else float("nan")
        out[f"{k}_final"] = final[k]
    x_f = model.sample(n, generator=torch.Generator(device=_device(model)).manual_seed(seed)).cpu()
    x = torch.cat([dist.sample(n, generator=torch.Generator().manual_seed(seed)), x_f])  # (2n, 2)
    return {**out, "checkpoints": len(snaps), "grad_max": critic_grad_max(model.critic, x.to(_device(model)))}


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def toy_config(cfg: Config, row: str) -> GANConfig:
    return row_config(
        row,
        shape=(2,),
        z_dim=cfg.z_dim,
        width=cfg.toy_width,
        lr_d=cfg.lr,
        lr_g=cfg.lr,
        beta1=cfg.beta1,
        beta2=cfg.beta2,
        d_steps=cfg.d_steps,
    )


def run_toy(cfg: Config, ctx: Context) -> tuple[list[dict], dict]:
    """Every row × seed on the 2-D mixture; returns the rows and the seed-0 models (for figures)."""
    from kexue.registry import toy_dataset

    dist = toy_distribution(cfg.toy)
    rows, first = [], {}
    for seed in cfg.toy_seeds:
        data = toy_dataset(dist, cfg.toy_points, seed)
        for row in cfg.losses:
            snaps = ToySnapshots(
                dist, cfg.eval_n, seed, checkpoints(cfg.toy_steps, cfg.eval_points, cfg.eval_span)
            )
            model, fit = fit_gan(
                toy_config(cfg, row),
                data,
                steps=cfg.toy_steps,
                batch=cfg.toy_batch,
                seed=seed,
                ctx=ctx,
                callbacks=[snaps],
            )
            r = {"loss": row, "seed": seed, **toy_metrics(model, dist, cfg.eval_n, seed, snaps.values), **fit}
            rows.append(r)
            first.setdefault(row, model)
            ctx.say(
                f"{cfg.toy} {row} seed {seed}: {r['modes']} modes, HQ {r['hq']:.2f}, SW2 {r['sw2']:.3f}, "
                f"{r['ms_step_cpu']:.2f} CPU-ms/step"
            )
    return rows, first


def summarise(rows: list[dict], keys: tuple[str, ...], by: str = "loss") -> list[dict]:
    """Mean and standard error over seeds of each key, one line per `by` value (in first-seen order)."""
    out = []
    for name in dict.fromkeys(r[by] for r in rows):
        mine = [r for r in rows if r[by] == name]
        line: dict = {by: name, "runs": len(mine)}
        for k in keys:
            vals = [r[k] for r in mine if r[k] == r[k]]  # NaN (no HQ sample) left out of the mean
            mean, se = mean_stderr(vals) if vals else (float("nan"), float("nan"))
            line[k], line[f"{k}_se"] = mean, se
        out.append(line)
    return out


# ------------------------------------------------------------------------------------------- MNIST
def mnist_scores(model: GAN, fid, n: int, seed: int) -> dict:
    """FID-proxy, KID-proxy and classes with ≥ 5% of the samples, for n seeded samples in eval mode."""
    g = torch.Generator(device=_device(model)).manual_seed(seed)
    x = torch.cat([model.sample(min(500, n - i), generator=g).cpu() for i in range(0, n, 500)])
    return image_scores(((x + 1) / 2).clamp(0, 1), fid, seed) | {"_images": x[:10]}


def image_scores(images: Tensor, fid, seed: int) -> dict:
    """The FID-proxy's metrics plus class coverage at 5% for images (N, 1, 28, 28) in [0, 1]."""
    from kexue.metrics.coverage import class_coverage
    from kexue.metrics.fid_proxy import features_and_labels

    scores = fid(images, generator=torch.Generator().manual_seed(seed))
    _, labels = features_and_labels(fid.net, images)
    cov = class_coverage(labels, fid.net.config.num_classes, min_fraction=0.05)
    return {
        "fid_proxy": scores["fid_proxy"],
        "kid_proxy": scores["kid_proxy"],
        "classes_5pct": cov["classes_covered"],
        "class_kl": cov["kl_to_uniform"],
    }


def mnist_train(fid, cfg) -> Tensor:
    """The first `train_limit` MNIST training images in [−1, 1], (N, 1, 28, 28): the FID-proxy already
    holds the training set in [0, 1] (for its floor), so it is not loaded twice."""
    x = fid.real_train[: cfg.train_limit] if cfg.train_limit else fid.real_train
    return 2 * x - 1


def run_mnist(cfg: Config, ctx: Context) -> tuple[list[dict], dict, Tensor]:
    """The MNIST rows (plus a real-vs-real floor row), and 10 samples per loss for the figure."""
    from torch.utils.data import TensorDataset

    from kexue.metrics.fid_proxy import FidProxy

    fid = FidProxy("mnist", data_dir=cfg.data_dir, device=ctx.device)
    data = TensorDataset(mnist_train(fid, cfg))
    pick = torch.randperm(len(fid.real_train), generator=torch.Generator().manual_seed(0))[: cfg.fid_n]
    real = fid.real_train[pick]  # (fid_n, 1, 28, 28) in [0, 1], as FidProxy.floor draws them
    rows = [{"loss": "real vs real (floor)", **image_scores(real, fid, 0)}]
    grids = []
    for row in cfg.mnist_losses:
        config = row_config(
            row,
            shape=(1, 28, 28),
            z_dim=cfg.mnist_z_dim,
            width=cfg.mnist_width,
            lr_d=cfg.mnist_lr,
            lr_g=cfg.mnist_lr,
            beta1=cfg.beta1,
            beta2=cfg.beta2,
            d_steps=cfg.d_steps,
        )
        model, fit = fit_gan(
            config, data, steps=cfg.mnist_steps, batch=cfg.mnist_batch, seed=cfg.mnist_seed, ctx=ctx
        )
        scores = mnist_scores(model, fid, cfg.fid_n, cfg.mnist_seed)
        grids.append(scores.pop("_images"))
        rows.append({"loss": row, **scores, **fit})
        ctx.say(f"mnist {row}: FID-proxy {scores['fid_proxy']:.1f}, {fit['ms_step_cpu']:.1f} CPU-ms/step")
    return rows, dict(zip(cfg.mnist_losses, grids)), real[:10]


# ------------------------------------------------------------------------------------------- the bound
def qp_bound(generator: nn.Module, dist, cfg: Config, *, lam: float, seed: int = 0) -> dict:
    """Fit a fresh critic to the GAN-QP objective on n fixed pairs with G frozen; |ΔT|/(λd) at the end.

    L(T) = mean[−Δ + Δ²/(2λd)] = mean[(Δ − λd)²/(2λd)] − mean[λd]/2, Δ_i = T(x_r[i]) − T(x_f[i]): its
    infimum on fixed pairs is −mean[λd]/2, at Δ_i = λd_i ([6163] eq. "解的分析": ratio 1 where p·q' ≫ p'·q).
    """
    from kexue.gan.nets import critic_for

    dev, n = _device(generator), cfg.bound_pairs
    g = torch.Generator().manual_seed(20_000 + seed)
    with torch.no_grad():
        x_r = dist.sample(n, generator=g).to(dev)  # (n, 2)
        x_f = generator(torch.randn(n, cfg.z_dim, generator=g).to(dev))  # (n, 2), G frozen
    lam_d = L.qp_distance(x_r, x_f, "l1", lam)  # (n,) λ·mean|x_r − x_f|, GAN-QP-L1's distance
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        critic = critic_for((2,), cfg.bound_width).to(dev)
    opt = torch.optim.Adam(critic.parameters(), lr=cfg.bound_lr, betas=(cfg.beta1, cfg.beta2))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.bound_steps)  # decay to 0: settle at the fit
    for _ in range(cfg.bound_steps):
        c = critic(torch.cat([x_r, x_f]))[:, 0]  # (2n,)
        loss = L.qp_d(c[:n], c[n:], lam_d)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        c = critic(torch.cat([x_r, x_f]))[:, 0]
        delta = c[:n] - c[n:]
        ratio = (delta / lam_d).abs()  # (n,)
        final, inf = float(L.qp_d(c[:n], c[n:], lam_d)), float(-(lam_d / 2).mean())
    return {
        "max_ratio": float(ratio.max()),
        "p99_ratio": float(ratio.quantile(0.99)),
        "mean_ratio": float((delta / lam_d).mean()),
        "frac_above_1": float((ratio > 1).double().mean()),
        "rms_fit_error": float((delta / lam_d - 1).pow(2).mean().sqrt()),  # spread of the ratio around 1
        "loss": final,
        "infimum": inf,
        "rel_gap": (final - inf) / abs(inf),
    }


def run_bound(cfg: Config, trained: GAN | None, ctx: Context) -> list[dict]:
    """The bound check for G at its initialisation and for the trained GAN-QP-L1 generator (seed 0)."""
    dist = toy_distribution(cfg.toy)
    seed = cfg.toy_seeds[0]
    with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        torch.manual_seed(seed)  # the same initial weights as the trained run's
        init = GAN(toy_config(cfg, "gan-qp-l1")).to(ctx.device).eval()
    rows = []
    for state, model in (("G at initialisation", init), ("G trained (GAN-QP-L1)", trained)):
        if model is None:
            continue
        r = {"G": state, **qp_bound(model.generator, dist, cfg, lam=model.config.qp_lambda, seed=seed)}
        rows.append(r)
        ctx.say(f"GAN-QP bound, {state}: max |ΔT|/(λd) {r['max_ratio']:.4f}, gap {r['rel_gap']:.2e}")
    return rows


# ------------------------------------------------------------------------------------------- figures
def toy_figure(models: dict, dist, n: int, path) -> None:
    """One scatter panel per loss (seed-0 models) over the data."""
    from kexue.plots import _plt

    plt = _plt()
    cols = min(5, len(models))
    rows = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    real = dist.sample(n, generator=torch.Generator().manual_seed(0))
    for ax, (name, model) in zip(axes.flat, models.items()):
        x = model.sample(n, generator=torch.Generator(device=_device(model)).manual_seed(0)).cpu()
        ax.scatter(real[:, 0], real[:, 1], s=1, c="tab:gray", alpha=0.3)
        ax.scatter(x[:, 0], x[:, 1], s=1, c="tab:blue", alpha=0.4)
        ax.set_title(name, fontsize=9)
        ax.set_xlim(-5, 5)
        ax.set_ylim(-5, 5)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(models) :]:
        ax.axis("off")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def mnist_figure(grids: dict, real: Tensor, path) -> None:
    """10 samples per loss, one row each (first row: real training images)."""
    from kexue.plots import image_grid

    images = torch.cat([real] + [((x + 1) / 2).clamp(0, 1) for x in grids.values()])
    image_grid(images, path, nrow=10, title="rows: real, " + ", ".join(grids))


# ------------------------------------------------------------------------------------------- verdict
def coverage_checks(summary: list[dict], k: int, tol_frac: float) -> tuple[dict[str, bool], str]:
    """GAN-QP (each distance) within max(1, tol·K) modes of the best other loss, on mean modes covered."""
    modes = {s["loss"]: s["modes"] for s in summary}
    others = {n: m for n, m in modes.items() if n not in QP_ROWS}
    checks, lines = {}, []
    if not others:
        return checks, ""
    best = max(others, key=others.get)
    tol = max(1.0, tol_frac * k)
    for qp in (q for q in QP_ROWS if q in modes):
        ok = modes[qp] >= others[best] - tol
        checks[f"{qp} (no GP, no SN) covers within {tol:g} of the best other loss's modes"] = ok
        lines.append(
            f"{qp}: {modes[qp]:.2f} modes (mean over seeds and checkpoints) against {others[best]:.2f} "
            f"for the best other loss, {best}: {'held' if ok else 'not held'} at a tolerance of {tol:g} "
            f"of {k} modes."
        )
    return checks, "\n".join(f"- {s}" for s in lines)


def speed_ratio(rows: list[dict]) -> float | None:
    """Median CPU time per step of WGAN-GP over GAN-QP-L1's (same nets, batch and data)."""
    by = {r["loss"]: r for r in rows if "ms_step_cpu" in r}
    if {"wgan-gp", "gan-qp-l1"} <= set(by):
        return by["wgan-gp"]["ms_step_cpu"] / by["gan-qp-l1"]["ms_step_cpu"]
    return None


def verdict(cfg: Config, toy_sum, bound_rows, toy_rows, mnist_rows) -> tuple[dict[str, bool], str]:
    k = len(toy_distribution(cfg.toy).means)
    checks, lines = coverage_checks(toy_sum, k, cfg.coverage_tol)
    at_init = next((b for b in bound_rows if b["G"].startswith("G at init")), None)
    if at_init is not None:
        name = (
            f"at the critic's optimum (G at init, gap < {cfg.bound_gap:g}) "
            f"max |ΔT|/(λd) ≤ 1 + {cfg.bound_tol:g}"
        )
        checks[name] = at_init["rel_gap"] < cfg.bound_gap and at_init["max_ratio"] <= 1 + cfg.bound_tol
        lines += f"\n- GAN-QP bound: {'held' if checks[name] else 'not held'}. " + bound_reading(
            bound_rows, cfg
        )
    ratios = {"MNIST": speed_ratio(mnist_rows), "2-D": speed_ratio(toy_rows)}
    where = "MNIST" if ratios["MNIST"] is not None else "2-D"
    if ratios[where] is not None:
        checks[
            f"WGAN-GP is slower per step than GAN-QP-L1 ({where}, CPU-time ratio > {cfg.speed_margin:g})"
        ] = ratios[where] > cfg.speed_margin
    speed = "; ".join(f"{w}: {v:.2f}×" for w, v in ratios.items() if v is not None)
    if speed:
        lines += f"\n- WGAN-GP / GAN-QP-L1 CPU time per step: {speed} (the paper: 1.5× at 128², GPU)."
    return checks, lines


def bound_reading(bound_rows: list[dict], cfg: Config) -> str:
    parts = []
    for b in bound_rows:
        reached = b["rel_gap"] < cfg.bound_gap
        parts.append(
            f"{b['G']}: max |ΔT|/(λd) = {b['max_ratio']:.4f} with the loss "
            f"{'within' if reached else 'NOT within'} {cfg.bound_gap:.0%} of its infimum "
            f"(gap {b['rel_gap']:.2e})."
        )
    return (
        " ".join(parts) + " The bound is a property of the optimum: where real and fake samples interleave, "
        "a smooth unary critic cannot make Δ_i = λd_i for every pair (it would have to change by λ·d "
        "between samples a few σ apart), so it stays far from the optimum and small-d pairs can exceed 1; "
        "only a converged fit tests the post's statement, and only that row is checked."
    )


def run(cfg: Config, ctx: Context) -> Outcome:
    toy_rows, first = run_toy(cfg, ctx)
    keys = ("modes", "modes_final", "hq", "kl", "sw2", "grad_max", "ms_step_cpu", "ms_step_wall")
    toy_sum = summarise(toy_rows, keys)
    dist = toy_distribution(cfg.toy)
    g = torch.Generator().manual_seed(1)
    from kexue.metrics.sliced_wasserstein import sliced_wasserstein

    sw_floor = sliced_wasserstein(dist.sample(cfg.eval_n, generator=g), dist.sample(cfg.eval_n, generator=g))
    bound_rows = run_bound(cfg, first.get("gan-qp-l1"), ctx)
    figures = ["gan_losses_2d.png"]
    toy_figure(first, dist, cfg.eval_n, ctx.figure_path(figures[0]))
    mnist_rows: list[dict] = []
    if cfg.mnist:
        mnist_rows, grids, real = run_mnist(cfg, ctx)
        figures.append("gan_losses_mnist.png")
        mnist_figure(grids, real, ctx.figure_path(figures[1]))
    checks, lines = verdict(cfg, toy_sum, bound_rows, toy_rows, mnist_rows)
    report = _report(cfg, toy_sum, toy_rows, sw_floor, bound_rows, mnist_rows, lines, figures)
    return Outcome(
        rows=toy_rows,
        checks=checks,
        report=report,
        figures=figures,
        extra={
            "toy_summary": toy_sum,
            "sw2_real_vs_real": sw_floor,
            "bound": bound_rows,
            "mnist": mnist_rows,
            "speed_ratio_wgan_gp_over_qp": {"mnist": speed_ratio(mnist_rows), "toy": speed_ratio(toy_rows)},
        },
    )


def _report(cfg, toy_sum, toy_rows, sw_floor, bound_rows, mnist_rows, lines, figures) -> str:
    toy_cols = [
        "loss",
        "runs",
        "modes",
        "modes_se",
        "modes_final",
        "hq",
        "hq_se",
        "kl",
        "sw2",
        "grad_max",
        "ms_step_cpu",
    ]
    parts = [
        f"2-D: {cfg.toy} ({len(toy_distribution(cfg.toy).means)} modes), {cfg.toy_points} training points, "
        f"MLP G and C (3×{cfg.toy_width}, z {cfg.z_dim}), Adam({cfg.lr:g}, β = ({cfg.beta1}, {cfg.beta2})) "
        f"for both nets, batch {cfg.toy_batch}, {cfg.toy_steps} steps of {cfg.d_steps} critic and one "
        f"generator update, seeds {list(cfg.toy_seeds)}; {cfg.eval_n} samples scored at "
        f"{cfg.eval_points} checkpoints over the last {cfg.eval_span:.0%} of training and averaged "
        "(`modes_final`: the last step alone). "
        "GAN-QP: λ = 10 on per-coordinate mean distances, no GP, no SN; WGAN-GP: λ_GP = 10.",
        "### Claims\n\n" + lines,
        "### 2-D: mean over seeds (± standard error)",
        markdown_table(toy_sum, toy_cols),
        f"Sliced W2 between two real samples of {cfg.eval_n}: {sw_floor:.4f} (the floor). `grad_max`: max "
        "‖∇_x C‖ over real and generated points (the critic's steepest slope).",
        "Reading: every loss gets the same budget and the same critic:generator step ratio "
        f"({cfg.d_steps}:1). The Lipschitz-constrained critics (WGAN-GP, whose paper uses 5:1, and the "
        "-sn rows) learn slowest under a small ratio; a small `grad_max` shows a critic that barely "
        "separates real from fake.",
        "### 2-D: every run",
        markdown_table(
            toy_rows, ["loss", "seed", "modes", "modes_final", "hq", "kl", "sw2", "diverged", "ms_step_wall"]
        ),
        f"### GAN-QP bound (G frozen; {cfg.bound_pairs} fixed pairs; critic 3×{cfg.bound_width} trained "
        f"{cfg.bound_steps} full-batch Adam steps with cosine decay)",
        markdown_table(
            bound_rows,
            [
                "G",
                "max_ratio",
                "p99_ratio",
                "mean_ratio",
                "rms_fit_error",
                "frac_above_1",
                "loss",
                "infimum",
                "rel_gap",
            ],
        ),
    ]
    if mnist_rows:
        parts += [
            f"### MNIST ({cfg.train_limit or 60000} training images, DCGAN-lite width {cfg.mnist_width}, "
            f"Adam({cfg.mnist_lr:g}), batch {cfg.mnist_batch}, {cfg.mnist_steps} steps, seed "
            f"{cfg.mnist_seed}; {cfg.fid_n} samples; FID-proxy = kexue's LeNet features, not Inception)",
            markdown_table(
                mnist_rows,
                ["loss", "fid_proxy", "kid_proxy", "classes_5pct", "class_kl", "ms_step_cpu", "ms_step_wall"],
            ),
        ]
    parts.append(
        f"Time per step: median after a 10% warm-up, one trainer step = {cfg.d_steps} critic + one "
        "generator update; `ms_step_cpu` is this thread's CPU time, `ms_step_wall` the wall time (which "
        "counts waits for a shared core)."
    )
    parts += [f"![{f}]({f})" for f in figures]
    return "\n\n".join(parts)


REPRODUCTION = Reproduction(
    name="gan-losses",
    systems=(10, 20, 21),
    post=POST,
    claim=(
        "GAN-QP needs neither a gradient penalty nor spectral normalisation, yet does not suffer vanishing "
        "gradients: under one budget it covers as many modes of a 2-D mixture as the best of the GAN loss "
        "zoo (or close); at the critic's optimum |ΔT|/(λd) ≤ 1, an automatic Lipschitz bound; and it is "
        "faster per step than WGAN-GP (the paper: WGAN-GP 1.5× slower) ([6163]; reference §4 #6, #7)."
    ),
    expectation=(
        "Modes covered (mean over seeds of the mean over 5 checkpoints in the last 40% of training): each "
        "of GAN-QP-L1/L2 ≥ (best other loss) − max(1, 0.1·K). Bound: "
        "with G frozen at its initialisation, a fresh critic fitted on fixed pairs must come within 1% of "
        "the objective's infimum and then have max |ΔT|/(λd) ≤ 1.1 (the optimum's ratio is exactly 1 for "
        "every pair; a smooth critic fits it to a few % rms, so the max over the pairs sits a few % above "
        "1). Speed: median CPU time per step of WGAN-GP over GAN-QP-L1 > 1.1, on MNIST when that part "
        "runs (conv nets, closest to the paper), else on the 2-D nets. The trained-G bound row and the "
        "MNIST FIDs are reported, not checked."
    ),
    paper=PAPER,
    presets={"quick": QUICK, "full": FULL},
    run=run,
)
