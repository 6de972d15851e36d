"""Reproduction of [6409] O-GAN: a correlation term turns the GAN's discriminator into a useful encoder.

O-GAN (`kexue.gan.ogan`) trains on an MNIST training subset through the ordinary Trainer (one loss, one
RMSprop optimizer; GAN-QP adversarial terms). Measured at the end, per run:
- the FID-proxy of generated samples (kexue's LeNet-style Fréchet distance, NOT Inception FID) beside the
  real-vs-real floor at the same sample count, and the number of classes the samples cover;
- ρ(z, E(G(z))) averaged over fresh z;
- the reconstruction MSE of G(0.9·𝒩(E(x))) on test images ([0, 1] scale, per pixel), beside the MSE
  between random pairs of test images (what a reconstruction unrelated to its input scores);
- a linear probe: logistic regression (scikit-learn) on E(x) of training images, accuracy on test
  images, beside the same probe on the encoder as it was initialised (a random E).
The full preset adds ρ weight 0 (a plain GAN-QP whose critic is an avg-of-E) and the ablation
‖z − E(G(z))‖² in place of −ρ ([6409] "原理": "basically always fails").

Sources: [6409] kexue.fm/archives/6409, [OGAN] arXiv 1903.01931; reference/generative.md §1.8 and §4 #10.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from kexue.experiments.runner import Context, Outcome, Reproduction, markdown_table

POST = "https://kexue.fm/archives/6409"
VARIANTS = {  # run name → OGANConfig overrides
    "o-gan": {},
    "rho-weight-0": {"rho_weight": 0.0},  # the same model without the correlation term
    "mse": {"objective": "mse"},  # [6409] "原理": ‖z − E(G(z))‖² instead of −ρ
}

PAPER = """[6409] and [OGAN] report no numbers for O-GAN (no FID; reference/generative.md §2.4): the
evidence is qualitative — random samples, reconstructions G(𝒩(E(x))) and interpolations on CelebA-HQ,
FFHQ and LSUN at 128², with the verdict that (1) the correlation term does not hurt generation,
(2) reconstructions show that E(x) extracts the main features of x, (3) interpolations are smooth, and
that replacing ρ by ‖z − E(G(z))‖² "basically always fails". reference/generative.md §4 #10 expects
ρ ≈ 0.9 [U] on MNIST."""


@dataclass(frozen=True)
class Config:
    data: str = "mnist"  # mnist (28×28 conv nets) or digits (8×8 MLP nets; tests)
    data_dir: str | None = None
    train_limit: int | None = 15000  # first N training images (None: all)
    test_limit: int | None = 2000  # first N test images for reconstruction and the probe's test
    probe_train: int = 5000  # training images the linear probe fits on
    steps: int = 3000  # optimizer steps (one loss per step); ≈ 3 min on one CPU thread
    batch_size: int = 64  # official code: 64
    seed: int = 0
    model: dict = field(default_factory=dict)  # OGANConfig overrides (width, z_dim, rho_weight, lr, …)
    runs: tuple[str, ...] = ("o-gan",)  # names in VARIANTS
    fid: bool = True  # score samples with the FID-proxy (its classifier is trained once and cached)
    fid_n: int = 2000  # samples scored
    probe_margin: float = 0.05  # the trained E's probe must beat the random E's by this much
    recon_ratio: float = 0.5  # reconstruction MSE must be below this fraction of the random-pair MSE
    rho_min: float = 0.8  # ρ(z, E(G(z))) must reach this ([U] ≈ 0.9, reference §4 #10)
    fid_ratio: float = 1.25  # full: FID(o-gan) ≤ ratio × FID(ρ weight 0) ("does not hurt generation")


QUICK = Config()
FULL = Config(train_limit=None, test_limit=5000, steps=6000, runs=tuple(VARIANTS), fid_n=5000)


# ------------------------------------------------------------------------------------------- measurements
def unit(x: Tensor) -> Tensor:
    """[−1, 1] images → [0, 1]."""
    return ((x + 1) / 2).clamp(0, 1)


@torch.no_grad()
def batched(fn, x: Tensor, device: torch.device, batch: int = 500) -> Tensor:
    """fn over x in chunks on `device`, results back on the CPU."""
    return torch.cat([fn(xb.to(device)).cpu() for xb in x.split(batch)])


def linear_probe(f_train: Tensor, y_train: Tensor, f_test: Tensor, y_test: Tensor, *, seed: int = 0) -> float:
    """Test accuracy of a logistic regression on standardised features (scikit-learn, lbfgs)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probe.fit(f_train.double().numpy(), y_train.numpy())
    return float(probe.score(f_test.double().numpy(), y_test.numpy()))


def random_pair_mse(x: Tensor, *, seed: int = 0) -> float:
    """Per-pixel MSE between test images and other test images (a random permutation, shifted by one so
    no image meets itself): what a reconstruction unrelated to its input scores."""
    xp = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))]
    return float((xp - xp.roll(1, 0)).pow(2).mean())


def probe_accuracy(encoder: nn.Module, probe: dict, device: torch.device) -> float:
    """Linear-probe accuracy of encoder(x) features (probe: x_train, y_train, x_test, y_test)."""
    f_tr = batched(encoder, probe["x_train"], device)
    f_te = batched(encoder, probe["x_test"], device)
    if not (torch.isfinite(f_tr).all() and torch.isfinite(f_te).all()):
        return float("nan")  # a diverged encoder
    return linear_probe(f_tr, probe["y_train"], f_te, probe["y_test"])


def load_split(cfg) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_test, y_test) with images in [−1, 1], cut to the configured sizes."""
    from kexue.registry import load_data

    train = load_data(cfg.data, data_dir=cfg.data_dir, split="train")
    test = load_data(cfg.data, data_dir=cfg.data_dir, split="test")
    n_tr = cfg.train_limit or len(train)
    n_te = cfg.test_limit or len(test)
    return (
        train.floats("symmetric")[:n_tr],
        train.y[:n_tr],
        test.floats("symmetric")[:n_te],
        test.y[:n_te],
    )


def fit(model: nn.Module, x_train: Tensor, cfg, ctx: Context) -> tuple[dict, list[dict]]:
    """Train with the ordinary Trainer (the model's own optimizer and phases); a non-finite loss ends the
    run and is recorded, not raised (the ablations may diverge). Returns the run's summary and the
    training log: the mean of every logged term over each of 20 windows, as {"step", term: value}."""
    from kexue.errors import TrainingError
    from kexue.train.callbacks import Callback
    from kexue.train.distributed import Dist
    from kexue.train.trainer import TrainConfig, Trainer

    class History(Callback):
        def __init__(self) -> None:
            self.lines: list[dict] = []

        def on_step_end(self, trainer, logs) -> None:
            train = {k.removeprefix("train/"): v for k, v in logs.items() if k.startswith("train/")}
            if train:
                self.lines.append({"step": trainer.step, **train})

    history = History()
    trainer = Trainer(
        model,
        TensorDataset(x_train),
        TrainConfig(
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            progress=ctx.progress,
            log_every=max(1, cfg.steps // 20),
        ),
        dist=Dist(device=ctx.device),
        callbacks=[history],
    )
    t0, cpu0, diverged = time.perf_counter(), time.process_time(), False
    try:
        trainer.fit()
    except TrainingError:
        diverged = True
    model.eval()
    summary = {
        "steps": trainer.step,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - cpu0,  # this process's CPU time: wall time on an idle core
        "diverged": diverged,
    }
    return summary, history.lines


def sample_metrics(model: nn.Module, cfg, fid, ctx: Context) -> dict:
    """FID-proxy, KID-proxy and class coverage of cfg.fid_n samples (fixed noise), when fid is given."""
    if fid is None:
        return {}
    g = torch.Generator(device=ctx.device).manual_seed(cfg.seed + 1)
    x = torch.cat(
        [unit(model.sample(min(500, cfg.fid_n - i), generator=g)).cpu() for i in range(0, cfg.fid_n, 500)]
    )
    if not torch.isfinite(x).all():
        return {"fid_proxy": float("nan"), "classes_covered": 0}
    m = fid(x, generator=torch.Generator().manual_seed(cfg.seed))
    return {"fid_proxy": m["fid_proxy"], "kid_proxy": m["kid_proxy"], "classes_covered": m["classes_covered"]}


def pairs_figure(x: Tensor, x_hat: Tensor, path, title: str, per_row: int = 10) -> None:
    """Rows alternate inputs and their reconstructions ([−1, 1] images)."""
    from kexue.plots import image_grid

    rows = []
    for i in range(0, len(x), per_row):
        rows += [x[i : i + per_row], x_hat[i : i + per_row]]
    image_grid(unit(torch.cat(rows)), path, nrow=per_row, title=title)


# ------------------------------------------------------------------------------------------- the run
@torch.no_grad()
def mean_rho(model, n: int, seed: int, device: torch.device) -> float:
    """mean ρ(z, E(G(z))) over n fresh z (the same z for every call with this seed)."""
    from kexue.gan.ogan import correlation

    z = model.noise(n, generator=torch.Generator(device=device).manual_seed(seed), device=device)
    return float(correlation(z, model.encoder(model.generator(z))).mean())


def _train_variant(
    name: str, cfg: Config, data: dict, fid, ctx: Context
) -> tuple[nn.Module, dict, nn.Module, list[dict]]:
    from kexue.gan.ogan import OGAN, OGANConfig

    shape = tuple(data["x_train"].shape[1:])
    with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model = OGAN(OGANConfig(shape=shape, **{**cfg.model, **VARIANTS[name]})).to(ctx.device)
        initial_encoder = copy.deepcopy(model.encoder).eval()  # the random-E baseline of the probe
        rho_start = mean_rho(model.eval(), 1000, cfg.seed + 2, ctx.device)  # fit() sets train mode
        run, history = fit(model, data["x_train"], cfg, ctx)
    x_te = data["probe"]["x_test"]
    x_hat = batched(model.reconstruct, x_te, ctx.device)
    row = {
        "run": name,
        "rho_weight": model.config.rho_weight,
        "objective": model.config.objective,
        **run,
        "rho_start": rho_start,
        "rho": mean_rho(model, 1000, cfg.seed + 2, ctx.device),
        "recon_mse": float((unit(x_hat) - unit(x_te)).pow(2).mean()),
        "probe_acc": probe_accuracy(model.encoder, data["probe"], ctx.device),
        **sample_metrics(model, cfg, fid, ctx),
    }
    ctx.say(
        f"o-gan {name}: ρ {row['rho']:.3f}, recon MSE {row['recon_mse']:.4f}, probe {row['probe_acc']:.3f}"
        + (f", FID-proxy {row['fid_proxy']:.2f}" if "fid_proxy" in row else "")
        + f" ({run['steps']} steps, {run['seconds']:.0f} s)"
    )
    return model, row, initial_encoder, history


def _checks(cfg: Config, rows: list[dict], base: dict) -> dict[str, bool]:
    by = {r["run"]: r for r in rows}
    main = by["o-gan"]
    checks = {
        f"E is a useful encoder: probe accuracy ≥ random-E probe + {cfg.probe_margin:g}": main["probe_acc"]
        >= base["random_e_probe_acc"] + cfg.probe_margin,
        f"ρ(z, E(G(z))) rises high (≥ {cfg.rho_min:g})": main["rho"] >= cfg.rho_min,
        f"reconstructions G(0.9·𝒩(E(x))) resemble their inputs (MSE < {cfg.recon_ratio:g} × random-pair "
        "MSE)": main["recon_mse"] < cfg.recon_ratio * base["random_pair_mse"],
        "training stayed finite": not main["diverged"],
    }
    if "fid_proxy" in main:
        checks["samples cover all classes (≥ 1% each of 10)"] = main["classes_covered"] >= 10
    if "rho-weight-0" in by and "fid_proxy" in main:
        checks[f"ρ does not hurt generation: FID-proxy ≤ {cfg.fid_ratio:g} × that of ρ weight 0"] = (
            main["fid_proxy"] <= cfg.fid_ratio * by["rho-weight-0"]["fid_proxy"]
        )
    if "mse" in by:
        mse = by["mse"]
        failed = mse["diverged"] or mse["rho"] < main["rho"] - 0.1
        if "fid_proxy" in main:
            failed = failed or not mse["fid_proxy"] < 1.5 * main["fid_proxy"]
        checks["the ‖z − E(G(z))‖² ablation fails (diverges, or FID-proxy ≥ 1.5× or ρ ≥ 0.1 lower)"] = failed
    return checks


def train_variants(cfg, ctx: Context, train_variant, *, main: str):
    """Train every run of cfg.runs on the same split and measure the shared baselines: a linear probe on the
    randomly initialised encoder of the `main` run, the MSE between random pairs of test images and the
    FID-proxy's real-vs-real floor. Returns (rows, models, histories, base, x_test, (n_train, n_probe))."""
    x_tr, y_tr, x_te, y_te = load_split(cfg)
    n_probe = min(cfg.probe_train, len(x_tr))
    data = {
        "x_train": x_tr,
        "probe": {"x_train": x_tr[:n_probe], "y_train": y_tr[:n_probe], "x_test": x_te, "y_test": y_te},
    }
    fid = None
    if cfg.fid:
        from kexue.metrics.fid_proxy import FidProxy

        fid = FidProxy(cfg.data, data_dir=cfg.data_dir, device=ctx.device)
    rows, models, histories, initial = [], {}, {}, None
    for name in cfg.runs:
        model, row, init_e, histories[name] = train_variant(name, cfg, data, fid, ctx)
        rows.append(row)
        models[name] = model
        initial = init_e if name == main else initial
    base = {
        "random_e_probe_acc": probe_accuracy(initial, data["probe"], ctx.device),
        "random_pair_mse": random_pair_mse(unit(x_te), seed=cfg.seed),
    }
    if fid is not None:
        base["fid_proxy_floor"] = fid.floor(cfg.fid_n, generator=torch.Generator().manual_seed(cfg.seed))[
            "fid_proxy"
        ]
    return rows, models, histories, base, x_te, (len(x_tr), n_probe)


def run(cfg: Config, ctx: Context) -> Outcome:
    unknown = [r for r in cfg.runs if r not in VARIANTS]
    if "o-gan" not in cfg.runs or unknown:
        raise ValueError(f"runs must include 'o-gan' and come from {', '.join(VARIANTS)}, got {cfg.runs}")
    rows, models, histories, base, x_te, (n_train, n_probe) = train_variants(
        cfg, ctx, _train_variant, main="o-gan"
    )
    checks = _checks(cfg, rows, base)
    figures = _figures(models, x_te, cfg, ctx)
    cols = [
        c
        for c in (
            "run",
            "rho_weight",
            "objective",
            "steps",
            "seconds",
            "cpu_seconds",
            "diverged",
            "rho_start",
            "rho",
            "recon_mse",
            "probe_acc",
            "fid_proxy",
            "kid_proxy",
            "classes_covered",
        )
        if any(c in r for r in rows)
    ]
    report = "\n\n".join(
        [
            f"Data: {cfg.data}, {n_train} training images (probe fitted on the first {n_probe}), "
            f"{len(x_te)} test images; {cfg.steps} steps of batch {cfg.batch_size} on {ctx.device}; "
            f"model {models['o-gan'].config}.",
            markdown_table(rows, cols),
            "ρ(z, E(G(z))) during training (batch means over each logging window, step: ρ):\n\n"
            + "\n".join(
                f"- {name}: " + ", ".join(f"{h['step']}: {h['rho']:.3f}" for h in lines if "rho" in h)
                for name, lines in histories.items()
            ),
            "Baselines: "
            + ", ".join(f"{k} = {v:.4g}" for k, v in base.items())
            + " (random E: the o-gan run's encoder at initialisation; random pairs: test image i against "
            "another test image; floor: real training images against the test images at the same n).",
            "Reading: rho_start is ρ(z, E(G(z))) of the untrained model, rho that at the end; probe_acc "
            "is the accuracy of a logistic regression on the n_z-dimensional code E(x); "
            "recon_mse is per pixel on the [0, 1] scale. FID-proxy values are comparable only with each "
            "other and with the floor.",
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
        path = f"samples_{name}.png"
        image_grid(
            unit(model.sample(100, generator=g).cpu()),
            ctx.figure_path(path),
            nrow=10,
            title=f"{name}: samples",
        )
        names.append(path)
    model = models["o-gan"]
    x = x_te[:50]
    pairs_figure(
        x,
        batched(model.reconstruct, x, ctx.device),
        ctx.figure_path("reconstructions.png"),
        "rows: inputs, G(0.9·N(E(x)))",
    )
    return [*names, "reconstructions.png"]


REPRODUCTION = Reproduction(
    name="o-gan",
    systems=(11,),
    post=POST,
    claim=(
        "Adding −λ·ρ(z, E(G(z))) to a GAN whose discriminator is avg(E(x)) makes E a useful encoder at "
        "almost no cost: ρ rises high, G(𝒩(E(x))) reconstructs x, E(x) is a linearly useful feature, and "
        "generation does not suffer; ‖z − E(G(z))‖² in place of −ρ fails ([6409])."
    ),
    expectation=(
        "Single seed. The trained E's linear-probe test accuracy beats the same probe on the randomly "
        "initialised E by ≥ 0.05; mean ρ(z, E(G(z))) ≥ 0.8 ([U] ≈ 0.9, reference §4 #10); reconstruction "
        "MSE < 0.5× the random-pair MSE; samples cover all 10 classes; no non-finite loss. Full preset: "
        "FID-proxy ≤ 1.25× that of ρ weight 0, and the MSE ablation fails (diverges, FID-proxy ≥ 1.5× "
        "O-GAN's, or ρ lower by ≥ 0.1)."
    ),
    paper=PAPER,
    presets={"quick": QUICK, "full": FULL},
    run=run,
)
