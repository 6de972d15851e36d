"""Reproduction of [6051] 深度学习中的Lipschitz约束：泛化与生成模型 (kexue.fm/archives/6051).

One ReLU MLP classifier (flatten → [Linear → ReLU] × depth → Linear, logits), trained on a SMALL subset of
the training images so that it over-fits, four ways under the same budget:
    none      cross-entropy only
    spectral  cross-entropy + λ Σ_l ‖W_l‖₂²   (eq. 16, power iteration with persistent u, [SNR])
    l2        cross-entropy + λ Σ_l ‖W_l‖_F²  (eq. 11–12: l2 weight decay, the post's cruder bound)
    sn        spectral normalisation W ← W/‖W‖₂ in every layer ([SN]; torch's parametrization)
λ of the two penalties is chosen from a grid by validation accuracy (validation images disjoint from the
subset, never the test set); the quick preset fixes it.

(a) The spectral bound (eq. 3, 6–8): on every trained net and on untrained ones with and without SN,
    ‖f(x) − f(y)‖/‖x − y‖ (logits, float64) over random pairs in [0, 1]^D, pairs of test images, and
    near pairs y = x + δv along the top right-singular vector v of the Jacobian at a test image (which
    make the ratio ≈ the local ‖∂f/∂x‖₂, the tightest a pair can get) never exceeds Π_l ‖W_l‖₂; with SN
    the product is ≤ 1 once the power iteration behind torch's σ̂ has converged (as trained, one step
    per update, σ̂ lags ‖W‖₂ and the product is reported as measured).
(b) Generalisation: the spectral regulariser lowers the train − test accuracy gap and does not cost test
    accuracy (paired over seeds: same subset, same initial weights, same data order).

Sources: [6051] kexue.fm/archives/6051; [SNR] Yoshida & Miyato, arXiv 1705.10941; [SN] Miyato et al.,
ICLR 2018.
"""

from __future__ import annotations

import copy
import itertools
import math
import statistics
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from kexue.experiments.runner import Context, Outcome, Reproduction, markdown_table
from kexue.nn.classifier import accuracy
from kexue.nn.lipschitz import (
    SpectralRegularizer,
    empirical_lipschitz,
    lipschitz_upper_bound,
    spectral_norm_all,
)
from kexue.train.trainer import TrainConfig, Trainer

POST = "https://kexue.fm/archives/6051"
REGIMES = ("none", "spectral", "l2", "sn")
LABELS = {
    "none": "none",
    "spectral": "spectral reg. λΣ‖W‖₂² (eq. 16)",
    "l2": "l2 reg. λΣ‖W‖_F² (eq. 11)",
    "sn": "spectral normalisation",
}
PAIR_KINDS = ("random", "real", "near")
CHECK_BOUND = "(a) no measured ratio ‖f(x)−f(y)‖/‖x−y‖ exceeds the product of layer norms Π‖W‖₂ (every net)"
CHECK_SN = (
    "(a) with spectral normalisation (σ̂ converged) the bound and every measured ratio are ≤ 1 + tolerance"
)
CHECK_GAP = "(b) the spectral regulariser lowers the train − test gap by more than {k:g} standard errors"
CHECK_TEST = "(b) the spectral regulariser does not lower test accuracy (paired mean gain ≥ 0)"


@dataclass(frozen=True)
class Config:
    data: str = "digits"  # digits (8×8, embedded) or mnist (28×28, from data_dir)
    data_dir: str | None = None  # where mnist/ lives (None: KEXUE_DATA, then the cache)
    n_train: int = 200  # the small training subset, drawn per seed from the training split
    n_valid: int = 300  # validation images for choosing λ, disjoint from the subset
    hidden: tuple[int, ...] = (256, 256)  # MLP hidden widths
    steps: int = 800  # optimizer steps per model (train accuracy reaches 100% well before)
    batch_size: int = 64
    lr: float = 1e-3  # Adam(W) without weight decay: the penalties are the only regularisers
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # paired: each seed fixes the subset, the init and the order
    regimes: tuple[str, ...] = REGIMES
    spectral_lambdas: tuple[float, ...] = (0.01,)  # λ grid of eq. 16 ([SNR] uses λ/2 = 0.01 → λ = 0.02)
    l2_lambdas: tuple[float, ...] = (1e-3,)  # λ grid of eq. 11
    pairs: int = 1000  # pairs of each kind per net for (a)
    near_step: float = 1e-3  # δ of the near pairs
    sn_refresh: int = 1000  # power steps that converge an SN net's σ̂ (no weight changes) before the SN check
    sn_tolerance: float = 1e-3  # product ≤ 1 + this once σ̂ has converged (σ̂ → ‖W‖₂ from below)
    gap_sigmas: float = 2.0  # (b): the gap must fall by more than this many standard errors

    def __post_init__(self) -> None:
        if not {"none", "spectral"} <= set(self.regimes) or not set(self.regimes) <= set(REGIMES):
            raise ValueError(
                f"regimes must include 'none' and 'spectral', from {REGIMES}, got {self.regimes}"
            )
        if len(self.seeds) < 2:
            raise ValueError("at least two seeds are needed for a standard error across seeds")
        if (
            not self.spectral_lambdas
            or not self.l2_lambdas
            or min(self.spectral_lambdas + self.l2_lambdas) <= 0
        ):
            raise ValueError("the λ grids must be non-empty and positive")
        if self.n_train < 10 or self.n_valid < 1 or self.pairs < 1:
            raise ValueError("n_train must be ≥ 10, n_valid and pairs ≥ 1")


QUICK = Config()
FULL = replace(
    QUICK,
    data="mnist",
    n_train=1000,  # 1,000 MNIST images: an MLP fits them exactly and over-fits
    n_valid=2000,
    steps=1500,  # ~100 epochs of the subset
    spectral_lambdas=(0.003, 0.01, 0.03, 0.1),
    l2_lambdas=(3e-4, 1e-3, 3e-3),
    pairs=2000,
)


# --------------------------------------------------------------------------------------------- model
def mlp(in_dim: int, hidden: tuple[int, ...], classes: int) -> nn.Sequential:
    """flatten → [Linear → ReLU] × len(hidden) → Linear: ReLU is 1-Lipschitz, so Π‖W‖₂ bounds it."""
    sizes = (in_dim, *hidden)
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], classes))


class Regularised(nn.Module):
    """A net and its training objective: cross-entropy + λ·penalty (the trainer calls `loss`)."""

    def __init__(self, net: nn.Module, regime: str, lam: float) -> None:
        super().__init__()
        self.net, self.regime, self.lam = net, regime, lam
        if regime == "sn":
            spectral_norm_all(net)
        self.spectral = SpectralRegularizer(net) if regime == "spectral" else None

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, K) logits

    def loss(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        x, y = batch
        ce = F.cross_entropy(self.net(x), y)
        if self.regime == "spectral":
            penalty = self.spectral(self.net)  # Σ‖W‖₂²   [6051] eq. 16
        elif self.regime == "l2":
            penalty = sum(m.weight.pow(2).sum() for m in self.net if isinstance(m, nn.Linear))  # eq. 12
        else:
            return {"loss": ce}
        return {"loss": ce + self.lam * penalty, "ce": ce.detach(), "penalty": penalty.detach()}


# --------------------------------------------------------------------------------------------- (a)
def _jacobian_top_direction(net: nn.Module, x: Tensor) -> Tensor:
    """The top right-singular vector of ∂f/∂x at each x, (N, D): K backward passes, one per logit."""
    x = x.detach().requires_grad_(True)
    logits = net(x)  # (N, K)
    rows = [
        torch.autograd.grad(logits[:, k].sum(), x, retain_graph=True)[0].flatten(1)
        for k in range(logits.shape[1])
    ]
    jac = torch.stack(rows, 1)  # (N, K, D)
    return torch.linalg.svd(jac, full_matrices=False)[2][:, 0]  # (N, D)


@torch.no_grad()
def _converge_sn(net: nn.Module, x: Tensor, steps: int) -> nn.Module:
    """A copy of an SN net after `steps` more power steps. torch's SN divides by σ̂ = uᵀWv, one step per
    training forward ([SN]), and σ̂ lags ‖W‖₂ while the weights move; training-mode forwards without an
    optimizer step only advance u, v, so the copy computes W/σ̂ with σ̂ → ‖W‖₂."""
    m = copy.deepcopy(net).train()
    for _ in range(steps):
        m(x)
    return m.eval()


def _max_ratios(m: nn.Module, x: Tensor, cfg: Config, seed: int) -> dict[str, float]:
    """Π‖W_l‖₂ of `m` and its largest ratio over each kind of pair (the same pairs for a given seed)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    n = cfg.pairs
    i = torch.randint(len(x), (n,), generator=g)
    j = (i + torch.randint(1, len(x), (n,), generator=g)) % len(x)  # another image
    near_x = x[torch.randperm(len(x), generator=g)[:n]]
    v = _jacobian_top_direction(m, near_x).view_as(near_x)
    pairs = {
        "random": (
            torch.rand((n, *x.shape[1:]), generator=g, dtype=x.dtype),
            torch.rand((n, *x.shape[1:]), generator=g, dtype=x.dtype),
        ),
        "real": (x[i], x[j]),
        "near": (near_x, near_x + cfg.near_step * v),
    }
    out = {"bound": lipschitz_upper_bound(m)}  # Π_l ‖W_l‖₂
    with torch.no_grad():
        for kind, (a, b) in pairs.items():
            out[f"max_ratio_{kind}"] = empirical_lipschitz(m, a, b).max().item()
    out["max_ratio"] = max(out[f"max_ratio_{k}"] for k in PAIR_KINDS)
    return out


def lipschitz_measurements(net: nn.Module, images: Tensor, cfg: Config, seed: int) -> dict[str, float]:
    """(a) on a float64 copy of `net` in eval mode: Π‖W‖₂ and the largest ratio of each kind of pair; for
    a spectral-normalised net the same again (keys ending in `_converged`) once its σ̂ has converged."""
    m = copy.deepcopy(net).cpu().double().eval()
    x = images.cpu().double()  # (N, C, H, W) in [0, 1]
    out = _max_ratios(m, x, cfg, seed)
    if any(parametrize.is_parametrized(layer) for layer in m.modules()):
        converged = _max_ratios(_converge_sn(m, x[:1], cfg.sn_refresh), x, cfg, seed)
        out |= {f"{k}_converged": v for k, v in converged.items()}
    return out


# --------------------------------------------------------------------------------------------- (b)
def _split(train, cfg: Config, seed: int):
    """The seed's small training subset and its disjoint validation images."""
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    if cfg.n_train + cfg.n_valid > len(train):
        raise ValueError(
            f"n_train + n_valid = {cfg.n_train + cfg.n_valid} exceeds the {len(train)} training images"
        )
    return train.subset(perm[: cfg.n_train]), train.subset(perm[cfg.n_train : cfg.n_train + cfg.n_valid])


def _fit(cfg: Config, regime: str, lam: float, seed: int, sub, shape, ctx: Context) -> Regularised:
    # a private copy of the global generators: the same seed gives every regime the same initial weights
    with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        torch.manual_seed(seed)
        net = mlp(math.prod(shape), cfg.hidden, 10)
        model = Regularised(net, regime, lam)
        train = TrainConfig(
            steps=cfg.steps,
            batch_size=min(cfg.batch_size, cfg.n_train),
            lr=cfg.lr,
            seed=seed,
            progress=ctx.progress,
        )
        from kexue.train.distributed import Dist

        Trainer(model, sub.tensor_dataset("unit"), train, dist=Dist(device=ctx.device)).fit()
    return model.eval()


def _row(cfg, regime, lam, seed, model, sub, valid, test, ctx) -> dict:
    def acc(d) -> float:
        return accuracy(model.net, d.floats("unit").to(ctx.device), d.y)

    row = {"regime": regime, "lambda": lam, "seed": seed}
    row.update(train_acc=acc(sub), valid_acc=acc(valid), test_acc=acc(test))
    row["gap"] = row["train_acc"] - row["test_acc"]
    row.update(lipschitz_measurements(model.net, test.floats("unit"), cfg, seed))
    return row


def _select(rows: list[dict]) -> dict[str, float]:
    """Per regime, the λ with the best mean validation accuracy over seeds (ties: the smaller λ)."""
    chosen = {}
    for regime in dict.fromkeys(r["regime"] for r in rows):
        lams = sorted({r["lambda"] for r in rows if r["regime"] == regime})
        score = {
            lam: statistics.fmean(
                r["valid_acc"] for r in rows if r["regime"] == regime and r["lambda"] == lam
            )
            for lam in lams
        }
        chosen[regime] = max(lams, key=lambda lam: (score[lam], -lam))
    return chosen


def _paired(rows: list[dict], key: str, better: str, base: str) -> dict[str, float]:
    """Mean over seeds of (better − base) in `key`, its standard error, and the per-seed differences."""
    by = {(r["regime"], r["seed"]): r[key] for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    d = [by[better, s] - by[base, s] for s in seeds]
    se = statistics.stdev(d) / math.sqrt(len(d))
    return {"mean": statistics.fmean(d), "stderr": se, "per_seed": d}


def _mean_std(rows: list[dict], regime: str, key: str) -> tuple[float, float]:
    vals = [r[key] for r in rows if r["regime"] == regime]
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def checks_from(
    cfg: Config, rows: list[dict], init_rows: list[dict], chosen: list[dict]
) -> tuple[dict, dict]:
    """The verdict, computed from the measured rows only."""
    nets = rows + init_rows
    sn = [r for r in nets if r["regime"] in ("sn", "init+sn")]
    gap = _paired(chosen, "gap", "spectral", "none")
    test = _paired(chosen, "test_acc", "spectral", "none")
    checks = {
        CHECK_BOUND: all(
            r[f"max_ratio{c}"] <= r[f"bound{c}"] * (1 + 1e-9)
            for r in nets
            for c in ("", "_converged")
            if f"bound{c}" in r
        ),
        CHECK_SN: bool(sn)
        and all(max(r["bound_converged"], r["max_ratio_converged"]) <= 1 + cfg.sn_tolerance for r in sn),
        CHECK_GAP.format(k=cfg.gap_sigmas): -gap["mean"] > cfg.gap_sigmas * gap["stderr"],
        CHECK_TEST: test["mean"] >= 0,
    }
    return checks, {"gap_change": gap, "test_acc_change": test}


# --------------------------------------------------------------------------------------------- figures
def _figures(
    cfg: Config, rows: list[dict], init_rows: list[dict], chosen: list[dict], ctx: Context
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = [*cfg.regimes, "init", "init+sn"]
    for k, group in enumerate(groups):
        rs = [r for r in rows + init_rows if r["regime"] == group]
        ax[0].scatter(
            [r["bound"] for r in rs],
            [r["max_ratio"] for r in rs],
            label=LABELS.get(group, group),
            color=f"C{k}",
        )
    lo = min(r["max_ratio"] for r in rows + init_rows)
    hi = max(r["bound"] for r in rows + init_rows)
    ax[0].plot([lo, hi], [lo, hi], "k--", lw=0.8, label="ratio = bound")
    ax[0].set_xscale("log")
    ax[0].set_yscale("log")
    ax[0].set_xlabel("Π‖W_l‖₂ (upper bound)")
    ax[0].set_ylabel("max measured ‖f(x)−f(y)‖/‖x−y‖")
    ax[0].set_title("(a) measured ratios stay under the bound")
    ax[0].legend(fontsize=7)
    x = range(len(cfg.regimes))
    for off, key, name in ((-0.2, "train_acc", "train"), (0.2, "test_acc", "test")):
        ms = [_mean_std(chosen, r, key) for r in cfg.regimes]
        ax[1].bar([i + off for i in x], [m for m, _ in ms], 0.4, yerr=[s for _, s in ms], label=name)
    ax[1].set_xticks(list(x), [LABELS[r].split(" (")[0] for r in cfg.regimes], fontsize=8)
    ax[1].set_ylim(min(_mean_std(chosen, r, "test_acc")[0] for r in cfg.regimes) - 0.1, 1.01)
    ax[1].set_ylabel(f"accuracy (mean ± std, {len(cfg.seeds)} seeds)")
    ax[1].set_title(f"(b) {cfg.n_train} training images of {cfg.data}")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ctx.figure_path("lipschitz.png"), dpi=120)
    plt.close(fig)
    return ["lipschitz.png"]


# --------------------------------------------------------------------------------------------- run
def _grid(cfg: Config) -> list[tuple[str, float]]:
    lams = {"spectral": cfg.spectral_lambdas, "l2": cfg.l2_lambdas}
    return [(r, lam) for r in cfg.regimes for lam in lams.get(r, (0.0,))]


def run(cfg: Config, ctx: Context) -> Outcome:
    from kexue.registry import load_data

    train = load_data(cfg.data, data_dir=cfg.data_dir, split="train")
    test = load_data(cfg.data, data_dir=cfg.data_dir, split="test")
    rows, init_rows, t0 = [], [], time.perf_counter()
    grid = _grid(cfg)
    for seed in cfg.seeds:
        sub, valid = _split(train, cfg, seed)
        for sn in (False, True):  # untrained nets for (a)
            with torch.random.fork_rng():  # the same initial weights as the trained nets of this seed
                torch.manual_seed(seed)
                net = mlp(math.prod(train.shape), cfg.hidden, 10)
                net = spectral_norm_all(net) if sn else net
            r = {"regime": "init+sn" if sn else "init", "seed": seed}
            init_rows.append(r | lipschitz_measurements(net, test.floats("unit"), cfg, seed))
        for regime, lam in grid:
            model = _fit(cfg, regime, lam, seed, sub, train.shape, ctx)
            rows.append(_row(cfg, regime, lam, seed, model, sub, valid, test, ctx))
            r = rows[-1]
            ctx.say(
                f"[{len(rows)}/{len(grid) * len(cfg.seeds)}] {regime} λ={lam:g} seed {seed}: train "
                f"{r['train_acc']:.3f} test {r['test_acc']:.3f}, bound {r['bound']:.3g} ≥ ratio "
                f"{r['max_ratio']:.3g} ({time.perf_counter() - t0:.0f} s so far)"
            )
    lam = _select(rows)
    chosen = [r for r in rows if r["lambda"] == lam[r["regime"]]]
    checks, found = checks_from(cfg, rows, init_rows, chosen)
    return Outcome(
        rows=rows,
        checks=checks,
        report=_report(cfg, rows, init_rows, chosen, lam, found, checks, len(train), len(test)),
        figures=_figures(cfg, rows, init_rows, chosen, ctx),
        extra={"init_rows": init_rows, "chosen_lambda": lam, **found, "summary": _summary(cfg, chosen, lam)},
    )


def _summary(cfg: Config, chosen: list[dict], lam: dict) -> list[dict]:
    out = []
    for regime in cfg.regimes:
        s = {"regime": regime, "lambda": lam[regime]}
        for key in ("train_acc", "test_acc", "gap", "bound", "max_ratio"):
            s[key], s[f"{key}_std"] = _mean_std(chosen, regime, key)
        out.append(s)
    return out


def _claims_table(cfg: Config, checks: dict[str, bool], found: dict, rows, init_rows, chosen) -> str:
    """Each claim of the post beside what was measured and whether it held."""
    nets = rows + init_rows
    worst = max(nets, key=lambda r: r["max_ratio"] / r["bound"])
    sn = [r for r in nets if "bound_converged" in r]
    g, t = found["gap_change"], found["test_acc_change"]
    yes = {True: "**held**", False: "**did not hold**"}
    lines = [
        (
            "\\|f\\|_L ≤ Π‖W_l‖₂ for \\|act'\\| ≤ 1 (eq. 3–8)",
            f"largest ratio/bound over {len(nets)} nets: {worst['max_ratio'] / worst['bound']:.4f}",
            yes[checks[CHECK_BOUND]],
        ),
        (
            "spectral normalisation gives \\|f\\|_L ≤ 1 (§谱归一化)",
            f"product ≤ {max(r['bound_converged'] for r in sn):.6f} with σ̂ converged; "
            f"{max(r['bound'] for r in sn):.3f} as trained "
            f"(ratio up to {max(r['max_ratio'] for r in sn):.3f})",
            yes[checks[CHECK_SN]],
        ),
        (
            "λ‖W‖₂² improves generalisation (eq. 16, citing [SNR])",
            f"gap {g['mean']:+.4f} ± {g['stderr']:.4f}, test accuracy {t['mean']:+.4f} ± {t['stderr']:.4f} "
            f"(spectral − none, paired over {len(cfg.seeds)} seeds)",
            yes[checks[CHECK_GAP.format(k=cfg.gap_sigmas)] and checks[CHECK_TEST]],
        ),
    ]
    return markdown_table([{"the post says": a, "measured": b, "verdict": c} for a, b, c in lines])


def _a_section(cfg: Config, rows: list[dict], init_rows: list[dict]) -> str:
    a_rows = [
        {"net": r["regime"], "λ": r.get("lambda", ""), "seed": r["seed"], "bound Π‖W‖₂": r["bound"]}
        | {f"max ratio {k}": r[f"max_ratio_{k}"] for k in PAIR_KINDS}
        | {"bound / max ratio": r["bound"] / r["max_ratio"]}
        | {
            "SN, σ̂ converged: bound": r.get("bound_converged", ""),
            "max ratio": r.get("max_ratio_converged", ""),
        }
        for r in init_rows + rows
    ]
    sn = [r for r in init_rows + rows if "bound_converged" in r]
    sn_note = (
        "\n\nSpectral-normalised nets as trained: the product of the layers' exact ‖W‖₂ is up to "
        f"{max(r['bound'] for r in sn):.4f} and the largest measured ratio "
        f"{max(r['max_ratio'] for r in sn):.4f} — torch's SN divides by σ̂ = uᵀWv after one power step per "
        "update, and σ̂ lags ‖W‖₂ from below while the weights move, so a net trained this way need not be "
        f"1-Lipschitz. After {cfg.sn_refresh} further power steps (weights unchanged) the product is at most "
        f"{max(r['bound_converged'] for r in sn):.6f} and the largest ratio "
        f"{max(r['max_ratio_converged'] for r in sn):.4f}. The post's |f|_L ≤ 1 is a statement about "
        "W/‖W‖₂ with the norm exact."
        if sn
        else ""
    )
    return (
        "### (a) Measured ratios against the product of layer norms (float64, logits)\n\n"
        f"Pairs per kind: {cfg.pairs}. random: uniform in [0, 1]^D; real: two test images; near: a test "
        f"image and a step δ = {cfg.near_step:g} along the top right-singular vector of its Jacobian "
        "(ratio ≈ the local ‖∂f/∂x‖₂). `init`: untrained nets.\n\n" + markdown_table(a_rows) + sn_note
    )


def _b_section(cfg: Config, rows: list[dict], chosen: list[dict], lam: dict, found: dict) -> str:
    summary = [
        {"regime": LABELS[s["regime"]], "λ": s["lambda"]}
        | {k: f"{s[k]:.4f} ± {s[f'{k}_std']:.4f}" for k in ("train_acc", "test_acc", "gap")}
        | {"Π‖W‖₂": f"{s['bound']:.3g}", "max ratio": f"{s['max_ratio']:.3g}"}
        for s in _summary(cfg, chosen, lam)
    ]
    grid = ""
    if len(rows) > len(chosen):  # a λ grid was searched: show what the validation images said
        cells = dict.fromkeys((r["regime"], r["lambda"]) for r in rows)
        table = [
            {
                "regime": reg,
                "λ": la,
                "valid_acc (mean over seeds)": _mean_std(
                    [r for r in rows if r["lambda"] == la], reg, "valid_acc"
                )[0],
            }
            for reg, la in cells
        ]
        grid = "\n\nValidation accuracy over the λ grids:\n\n" + markdown_table(table)
    g, t = found["gap_change"], found["test_acc_change"]

    def per_seed(d: dict) -> str:
        return ", ".join(f"{v:+.4f}" for v in d["per_seed"])

    return (
        "### (b) Generalisation at the chosen λ (mean ± std over seeds)\n\n"
        + markdown_table(summary)
        + grid
        + f"\n\nPaired over seeds, spectral regulariser minus none: gap {g['mean']:+.4f} ± {g['stderr']:.4f} "
        f"(standard error; per seed {per_seed(g)}), test accuracy {t['mean']:+.4f} ± {t['stderr']:.4f} "
        f"(per seed {per_seed(t)}).\n"
    )


def _report(cfg, rows, init_rows, chosen, lam, found, checks, n_pool, n_test) -> str:
    return (
        f"Data: {cfg.data}, a subset of {cfg.n_train} of its {n_pool} training images per seed "
        f"({cfg.n_valid} more for choosing λ), {n_test} test images; MLP {list(cfg.hidden)} with ReLU, "
        f"{cfg.steps} Adam steps of batch {min(cfg.batch_size, cfg.n_train)}, seeds {list(cfg.seeds)}.\n\n"
        "### The post's claims beside the measurements\n\n"
        + _claims_table(cfg, checks, found, rows, init_rows, chosen)
        + "\n\n"
        + _a_section(cfg, rows, init_rows)
        + "\n\n"
        + _b_section(cfg, rows, chosen, lam, found)
    )


PAPER = """The post derives and does not measure; its statements, beside which the checks stand:

- eq. (3)–(8): a net with activations of |f'| ≤ 1 satisfies ‖f(x₁) − f(x₂)‖ ≤ C‖x₁ − x₂‖ with C the
  product of the layers' ‖W‖₂ (the smallest C of eq. 6 for one layer); ‖W‖_F is a cruder C (eq. 10), which
  links l2 weight decay (eq. 11–12) to the L-constraint. → check (a), first part.
- "如果f所用的激活函数的导数绝对值都不超过1，那么我们就有|f|_L≤1": spectral normalisation makes the net
  1-Lipschitz. → check (a), second part.
- "C(w)越小意味着它对输入扰动越不敏感，泛化性越好", and eq. (16), loss + λ‖W‖₂², with "[SNR] 一文已经做了多个
  实验，表明‘谱正则化’在多个任务上都能提升模型性能". → checks (b). The post gives no numbers of its own;
  [SNR] reports smaller generalisation gaps and better test accuracy on CIFAR-10/STL-10 CNNs, mostly in
  large-batch training — a setting unlike this small MLP."""

REPRODUCTION = Reproduction(
    name="lipschitz",
    systems=(38,),
    post=POST,
    claim=(
        "(a) A ReLU network's Lipschitz constant is bounded by the product of its layers' spectral norms, "
        "so no pair of inputs changes the output by more than Π‖W_l‖₂ times their distance, and spectral "
        "normalisation makes the net 1-Lipschitz. (b) Penalising the squared spectral norms, λΣ‖W_l‖₂² "
        "(eq. 16), improves generalisation: a classifier over-fitting a small training set shows a smaller "
        "train − test gap without losing test accuracy."
    ),
    expectation=(
        "(a) the largest ratio over random, real and near (Jacobian-aligned) pairs, in float64, is ≤ the "
        "bound for every net (trained in each regime, and untrained with and without SN), and every SN "
        "net's product and measured ratios are ≤ 1 + 1e-3 once its power iteration has converged (1000 "
        "more steps, weights unchanged; the SN nets as trained are measured and reported beside it); "
        "derivation: [6051] eq. 3–8. (b) at the λ chosen on validation images, the gap of the spectral "
        "regulariser minus that of no regularisation, paired over ≥ 3 seeds, is below zero by more than 2 "
        "standard errors, and its paired test-accuracy change is ≥ 0; source: [6051] §谱正则化 citing "
        "[SNR]. The l2 and SN regimes are reported, not gated."
    ),
    paper=PAPER,
    presets={"quick": QUICK, "full": FULL},
    run=run,
)
