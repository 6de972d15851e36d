"""Reproduction of [6387] 巧断梯度: one loss with stop-gradients trains a GAN as well as alternating, faster.

The same GAN (`kexue.gan.GAN`: the same nets, optimiser, data, steps and seeds) trains two ways:
- "alternating": one critic update, then one generator update, each on its own batch (two forward and
  backward passes, two optimizer steps per trainer step);
- "single": L = L_D(C_r, C(sg G(z))) + λ·[L_G(C(G(z))) − L_G(C(sg G(z)))], one batch, one backward pass,
  one optimizer step ([6387] eq. (dg-dg), `kexue.gan.losses.single_loss`).
Measured:
(i)   the identity behind the trick, exactly, in float64 at a fixed state (same batch, same z): the single
      loss's gradient equals (∇_D L_D, ∇_G L_G) of the alternating phases, and its value equals L_D's (the
      bracket is identically 0) — for every loss of the zoo (MLP nets) and for hinge/NS on the conv nets;
(ii)  quality per mode: 2-D modes covered, high-quality fraction, sliced W2 (and the MNIST FID-proxy);
(iii) time per trainer step (the same number of D and G updates in both modes): the median over steps
      after a warm-up, of this thread's CPU time (compared) and of wall time (reported);
(iv)  what λ does: [6387] reads it as the D:G learning-rate ratio 1:λ. Train from one state with the
      same batches and z for a few steps with λ ∈ {½, 2} against λ = 1, under SGD and under Adam; the
      effect is ‖θ_G(λ) − θ_G(1)‖ / ‖θ_G(1) − θ_G(start)‖. Under SGD the generator's step scales with λ;
      Adam divides each gradient by its running RMS, so λ cancels but for ε (reference §1.10: analysis,
      not from the source).

Sources: [6387] kexue.fm/archives/6387 (and bojone/gan gan_one_step_with_hinge_loss.py, RMSprop 1e-4, λ = 1);
reference/generative.md §1.10, §4 #8.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch
from torch import Tensor

from kexue.experiments import gan_losses as zoo
from kexue.experiments.runner import Context, Outcome, Reproduction, markdown_table
from kexue.gan import GAN, LOSSES, GANConfig
from kexue.gan import losses as L

POST = "https://kexue.fm/archives/6387"
MODES = ("alternating", "single")

PAPER = """[6387] gives no numbers. Its claims, in its words: the single loss "效果基本上等效于1:1的交替训练"
(works essentially like 1:1 alternating training), saves time because alternating training needs two data
transfers and two forward and backward passes ("省力省时"), at the cost of some memory; and λ "相当于让判别器
和生成器的学习率之比为1:λ" (acts as the D:G learning-rate ratio 1:λ). Reference §1.10 adds that this
reading holds for SGD only, since Adam and RMSprop are nearly invariant to the scale of a gradient."""


@dataclass(frozen=True)
class Config:
    toy: str = "ring8"  # ring8 or grid25 (kexue.data.toy2d)
    toy_points: int = 20000
    steps: int = 1500  # trainer steps: generator (and critic) updates per run, both modes
    seeds: tuple[int, ...] = (0, 1, 2)
    losses: tuple[str, ...] = ("hinge", "ns")  # [6387]'s example is the hinge loss
    batch: int = 256
    width: int = 64  # MLP hidden width of G and C
    z_dim: int = 16
    lr: float = 2e-3  # Adam, both nets (as in gan-losses)
    beta1: float = 0.5
    beta2: float = 0.9
    eval_n: int = 2500
    eval_points: int = 5  # 2-D metrics averaged over this many checkpoints in the last `eval_span`
    eval_span: float = 0.4
    mnist: bool = True
    data_dir: str | None = None
    mnist_losses: tuple[str, ...] = ("hinge", "ns")
    mnist_seeds: tuple[int, ...] = (0,)
    mnist_steps: int = 300
    mnist_width: int = 16
    mnist_z_dim: int = 64
    mnist_lr: float = 1e-3
    mnist_batch: int = 64
    train_limit: int | None = 20000
    fid_n: int = 2000
    ratios: tuple[float, ...] = (0.5, 2.0)  # λ against λ = 1
    ratio_steps: int = 20
    ratio_batch: int = 64
    sgd_lr: float = 0.05
    adam_lr: float = 1e-3
    modes_tol: float = 1.0  # "same quality": |Δ modes| ≤ max(2·SE of the difference, this)
    hq_tol: float = 0.1  # … and |Δ HQ fraction| ≤ max(2·SE, this)
    fid_tol: float = 0.1  # MNIST (≥ 2 seeds): |Δ FID| ≤ max(2·SE, this × alternating's FID)


QUICK = Config()
FULL = Config(
    toy="grid25",
    steps=20000,
    seeds=(0, 1, 2),
    mnist_seeds=(0, 1, 2),
    mnist_steps=3000,
    mnist_width=32,
    train_limit=None,
    fid_n=5000,
)


# ------------------------------------------------------------------------------------------- (i) identity
def _grads(model: GAN, x_r: Tensor, phase: str | None, seed: int) -> tuple[dict, float]:
    """Gradients (None where a parameter gets none) and the loss value of one `model.loss` call."""
    model.zero_grad(set_to_none=True)
    with torch.random.fork_rng():  # WGAN-GP's interpolation weights ε: the same draws in every call
        torch.manual_seed(seed)
        loss = model.loss((x_r,), phase)["loss"]
    loss.backward()
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    return grads, loss.item()


def gradient_identity(loss: str, shape: tuple[int, ...], *, width: int = 16, batch: int = 16, seed: int = 0):
    """max |∇ single − (∇_D L_D, ∇_G L_G)| over all parameters, in float64, at the initial weights.

    One batch x_r and one z for all three calls (`GAN.noise` is replaced by a function returning that z).
    Also returns |L_single − L_D| (the bracket is identically 0) and whether the critic phase leaves G
    without gradients and the generator phase leaves the critic without (the stop-gradient placement).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GAN(GANConfig(shape=shape, loss=loss, z_dim=4, width=width, mode="single")).double()
    x_r = torch.randn(batch, *shape, dtype=torch.float64, generator=g).clamp(-1, 1)  # (B, *shape)
    z = torch.randn(batch, 4, dtype=torch.float64, generator=g)  # (B, z_dim)
    model.noise = lambda n, *, generator=None, device=None: z  # the same z in every phase
    single, v_single = _grads(model, x_r, None, seed)
    d, v_d = _grads(model, x_r, "d", seed)
    gen, _ = _grads(model, x_r, "g", seed)
    is_critic = {n: n.startswith("critic.") for n in single}
    diff, scale = 0.0, 0.0
    for n, grad in single.items():
        ref = d[n] if is_critic[n] else gen[n]
        diff = max(diff, float((grad - ref).abs().max()))
        scale = max(scale, float(ref.abs().max()))
    return {
        "loss": loss,
        "nets": "conv" if len(shape) == 3 else "mlp",
        "max_abs_diff": diff,
        "max_abs_grad": scale,
        "value_diff": abs(v_single - v_d),
        "phases_separate": all(d[n] is None for n in d if not is_critic[n])
        and all(gen[n] is None for n in gen if is_critic[n]),
    }


# ------------------------------------------------------------------------------------------- (iv) λ
def single_loss_step(model: GAN, x_r: Tensor, z: Tensor, ratio: float) -> Tensor:
    """[6387]'s single loss with λ = ratio (`GAN` itself always uses λ = 1)."""
    x_f = model.generator(z)
    c = model.critic(torch.cat([x_r, x_f.detach(), x_f]))[:, 0]  # (3B,) scores of x_r, sg x_f, x_f
    c_r, c_f_sg, c_f = c.split(len(x_r))
    return L.single_loss(model.objective, c_r, c_f_sg, c_f, None, ratio)


def train_with_ratio(cfg: Config, optimizer: str, ratio: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """G's flat parameters at the start and after `ratio_steps` single-loss updates (float64, hinge)."""
    dist = zoo.toy_distribution(cfg.toy)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GAN(GANConfig(shape=(2,), loss="hinge", z_dim=cfg.z_dim, width=cfg.width, mode="single"))
    model.double()
    start = torch.nn.utils.parameters_to_vector(model.generator.parameters()).detach().clone()
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.sgd_lr)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.adam_lr, betas=(cfg.beta1, cfg.beta2))
    g = torch.Generator().manual_seed(seed + 1)  # the same batches and z for every λ
    for _ in range(cfg.ratio_steps):
        x_r = dist.sample(cfg.ratio_batch, generator=g).double()
        z = torch.randn(cfg.ratio_batch, cfg.z_dim, generator=g, dtype=torch.float64)
        loss = single_loss_step(model, x_r, z, ratio)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return start, torch.nn.utils.parameters_to_vector(model.generator.parameters()).detach()


def ratio_effects(cfg: Config) -> list[dict]:
    rows = []
    for optimizer in ("sgd", "adam"):
        start, at_1 = train_with_ratio(cfg, optimizer, 1.0)
        for ratio in cfg.ratios:
            _, at_r = train_with_ratio(cfg, optimizer, ratio)
            effect = float((at_r - at_1).norm() / (at_1 - start).norm())
            rows.append({"optimizer": optimizer, "lambda": ratio, "effect_on_G": effect})
    return rows


# ------------------------------------------------------------------------------------------- (ii), (iii)
def gan_config(cfg: Config, loss: str, mode: str, shape=(2,), **kw) -> GANConfig:
    base = {"z_dim": cfg.z_dim, "width": cfg.width, "lr_d": cfg.lr, "lr_g": cfg.lr}
    return GANConfig(shape=shape, loss=loss, mode=mode, beta1=cfg.beta1, beta2=cfg.beta2, **{**base, **kw})


def run_toy(cfg: Config, ctx: Context) -> tuple[list[dict], dict]:
    """Every seed × loss × mode, the two modes back to back (so both meet the same machine load)."""
    from kexue.registry import toy_dataset

    dist = zoo.toy_distribution(cfg.toy)
    rows, first = [], {}
    for seed in cfg.seeds:
        data = toy_dataset(dist, cfg.toy_points, seed)
        for loss in cfg.losses:
            for mode in MODES:
                at = zoo.checkpoints(cfg.steps, cfg.eval_points, cfg.eval_span)
                snaps = zoo.ToySnapshots(dist, cfg.eval_n, seed, at)
                model, fit = zoo.fit_gan(
                    gan_config(cfg, loss, mode),
                    data,
                    steps=cfg.steps,
                    batch=cfg.batch,
                    seed=seed,
                    ctx=ctx,
                    callbacks=[snaps],
                )
                metrics = zoo.toy_metrics(model, dist, cfg.eval_n, seed, snaps.values)
                r = {"loss": loss, "mode": mode, "seed": seed, **metrics}
                rows.append({**r, **fit, "run": f"{loss} {mode}"})
                first.setdefault(f"{loss} {mode}", model)
                ctx.say(
                    f"{cfg.toy} {loss} {mode} seed {seed}: {r['modes']} modes, HQ {r['hq']:.2f}, "
                    f"{fit['ms_step_cpu']:.2f} CPU-ms/step"
                )
    return rows, first


def run_mnist(cfg: Config, ctx: Context) -> tuple[list[dict], dict, Tensor]:
    """The MNIST rows, 10 samples per run for the figure, and 10 real images in [0, 1]."""
    from torch.utils.data import TensorDataset

    from kexue.metrics.fid_proxy import FidProxy

    fid = FidProxy("mnist", data_dir=cfg.data_dir, device=ctx.device)
    data = TensorDataset(zoo.mnist_train(fid, cfg))
    rows, grids = [], {}
    for seed in cfg.mnist_seeds:
        for loss in cfg.mnist_losses:
            for mode in MODES:
                config = gan_config(
                    cfg,
                    loss,
                    mode,
                    (1, 28, 28),
                    z_dim=cfg.mnist_z_dim,
                    width=cfg.mnist_width,
                    lr_d=cfg.mnist_lr,
                    lr_g=cfg.mnist_lr,
                )
                model, fit = zoo.fit_gan(
                    config, data, steps=cfg.mnist_steps, batch=cfg.mnist_batch, seed=seed, ctx=ctx
                )
                scores = zoo.mnist_scores(model, fid, cfg.fid_n, seed)
                grids.setdefault(f"{loss} {mode}", scores.pop("_images"))
                rows.append(
                    {"loss": loss, "mode": mode, "seed": seed, "run": f"{loss} {mode}", **scores, **fit}
                )
                ctx.say(f"mnist {loss} {mode} seed {seed}: FID-proxy {scores['fid_proxy']:.1f}")
    return rows, grids, fid.real_train[:10]


# ------------------------------------------------------------------------------------------- verdict
def paired(rows: list[dict], key: str) -> dict[str, list[tuple[float, float]]]:
    """loss → [(alternating, single)] values of `key`, one pair per seed."""
    out: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r["mode"] == "alternating":
            s = next(
                q for q in rows if q["mode"] == "single" and q["seed"] == r["seed"] and q["loss"] == r["loss"]
            )
            out.setdefault(r["loss"], []).append((r[key], s[key]))
    return out


def same_within_noise(pairs: list[tuple[float, float]], floor: float) -> tuple[bool, float, float]:
    """|mean(single) − mean(alternating)| ≤ max(2·SE of the difference of means, floor); (ok, Δ, bound).

    The SE combines the two modes' standard errors over seeds (independent runs); with one seed only the
    floor applies."""
    from kexue.experiments.runner import mean_stderr

    a, a_se = mean_stderr([p[0] for p in pairs])
    s, s_se = mean_stderr([p[1] for p in pairs])
    se = math.hypot(a_se, s_se) if len(pairs) > 1 else 0.0
    bound = max(2 * se, floor)
    return abs(s - a) <= bound, s - a, bound


def speedups(rows: list[dict]) -> dict[str, tuple[float, float]]:
    """loss → (mean, SE) over seeds of alternating / single CPU time per step."""
    from kexue.experiments.runner import mean_stderr

    return {
        loss: mean_stderr([a / s for a, s in pairs]) for loss, pairs in paired(rows, "ms_step_cpu").items()
    }


def verdict(cfg, toy_rows, identity, ratio_rows, mnist_rows) -> tuple[dict[str, bool], list[str]]:
    checks: dict[str, bool] = {}
    lines: list[str] = []
    worst = max(r["max_abs_diff"] for r in identity)
    checks["single-loss gradient = (∇_D L_D, ∇_G L_G), every loss (float64, max |Δ| ≤ 1e-12)"] = (
        worst <= 1e-12 and all(r["value_diff"] <= 1e-12 and r["phases_separate"] for r in identity)
    )
    for loss in cfg.losses:
        ok_m, dm, bm = same_within_noise(paired(toy_rows, "modes")[loss], cfg.modes_tol)
        ok_h, dh, bh = same_within_noise(paired(toy_rows, "hq")[loss], cfg.hq_tol)
        checks[f"{loss}: single-loss quality = alternating within seed noise (2-D modes and HQ)"] = (
            ok_m and ok_h
        )
        lines.append(
            f"{loss}: single − alternating = {dm:+.2f} modes (allowed ±{bm:.2f}), {dh:+.3f} HQ (±{bh:.3f})."
        )
    for loss, (mean, se) in speedups(toy_rows).items():
        margin = mean - 2 * se if se == se else mean  # one seed: no SE, the ratio itself
        checks[f"{loss}: a single-loss step is faster (2-D; alternating/single CPU time − 2 SE > 1)"] = (
            margin > 1
        )
        lines.append(f"{loss}: alternating / single CPU time per step = {mean:.3f} ± {se:.3f} (2-D).")
    for loss, (mean, se) in speedups(mnist_rows).items():
        lines.append(f"{loss}: alternating / single CPU time per step = {mean:.3f} ± {se:.3f} (MNIST).")
    if len(cfg.mnist_seeds) >= 2 and mnist_rows:
        for loss, pairs in paired(mnist_rows, "fid_proxy").items():
            ok, d, b = same_within_noise(pairs, cfg.fid_tol * statistics.fmean(p[0] for p in pairs))
            checks[f"{loss}: single-loss MNIST FID-proxy = alternating within seed noise"] = ok
            lines.append(f"{loss}: single − alternating FID-proxy = {d:+.1f} (allowed ±{b:.1f}).")
    sgd = min(r["effect_on_G"] for r in ratio_rows if r["optimizer"] == "sgd")
    adam = max(r["effect_on_G"] for r in ratio_rows if r["optimizer"] == "adam")
    checks["λ changes G's trajectory under SGD (effect > 0.1) but not under Adam (< 0.01)"] = (
        sgd > 0.1 and adam < 0.01
    )
    lines.append(f"λ: smallest SGD effect {sgd:.3f}, largest Adam effect {adam:.2e}.")
    return checks, lines


def run(cfg: Config, ctx: Context) -> Outcome:
    identity = [gradient_identity(loss, (2,)) for loss in LOSSES]
    identity += [gradient_identity(loss, (1, 28, 28), width=4, batch=4) for loss in ("hinge", "ns")]
    ctx.say(f"gradient identity: max |Δ| = {max(r['max_abs_diff'] for r in identity):.2e}")
    ratio_rows = ratio_effects(cfg)
    toy_rows, first = run_toy(cfg, ctx)
    keys = ("modes", "modes_final", "hq", "kl", "sw2", "ms_step_cpu", "ms_step_wall")
    toy_sum = zoo.summarise(toy_rows, keys, by="run")
    figures = ["single_loss_2d.png"]
    zoo.toy_figure(first, zoo.toy_distribution(cfg.toy), cfg.eval_n, ctx.figure_path(figures[0]))
    mnist_rows: list[dict] = []
    if cfg.mnist:
        mnist_rows, grids, real = run_mnist(cfg, ctx)
        figures.append("single_loss_mnist.png")
        zoo.mnist_figure(grids, real, ctx.figure_path(figures[1]))
    checks, lines = verdict(cfg, toy_rows, identity, ratio_rows, mnist_rows)
    mnist_sum = (
        zoo.summarise(mnist_rows, ("fid_proxy", "classes_5pct", "ms_step_cpu"), by="run")
        if mnist_rows
        else []
    )
    report = _report(cfg, toy_sum, toy_rows, identity, ratio_rows, mnist_sum, lines, figures)
    return Outcome(
        rows=toy_rows,
        checks=checks,
        report=report,
        figures=figures,
        extra={
            "toy_summary": toy_sum,
            "gradient_identity": identity,
            "lambda_effect": ratio_rows,
            "mnist": mnist_rows,
            "mnist_summary": mnist_sum,
            "speedup_alternating_over_single": {
                "toy": {k: v[0] for k, v in speedups(toy_rows).items()},
                "mnist": {k: v[0] for k, v in speedups(mnist_rows).items()},
            },
        },
    )


def _report(cfg, toy_sum, toy_rows, identity, ratio_rows, mnist_sum, lines, figures) -> str:
    parts = [
        f"2-D: {cfg.toy}, {cfg.toy_points} training points, MLP G and C (3×{cfg.width}, z {cfg.z_dim}), "
        f"Adam({cfg.lr:g}, β = ({cfg.beta1}, {cfg.beta2})) with one parameter group per net, batch "
        f"{cfg.batch}, {cfg.steps} trainer steps (= D updates = G updates in both modes), seeds "
        f"{list(cfg.seeds)}; {cfg.eval_n} samples scored at {cfg.eval_points} checkpoints over the last "
        f'{cfg.eval_span:.0%} of training and averaged. "Same quality" means |mean(single) − '
        f"mean(alternating)| ≤ max(2·SE of the difference over seeds, {cfg.modes_tol:g} mode / "
        f"{cfg.hq_tol:g} HQ).",
        "### Claims\n\n" + "\n".join(f"- {s}" for s in lines),
        "### (i) The identity at a fixed state (float64, one batch, one z, initial weights)",
        markdown_table(
            identity, ["loss", "nets", "max_abs_diff", "max_abs_grad", "value_diff", "phases_separate"]
        ),
        "### (ii, iii) 2-D: mean over seeds (± standard error)",
        markdown_table(
            toy_sum,
            [
                "run",
                "runs",
                "modes",
                "modes_se",
                "hq",
                "hq_se",
                "sw2",
                "sw2_se",
                "ms_step_cpu",
                "ms_step_wall",
            ],
        ),
        "### 2-D: every run",
        markdown_table(toy_rows, ["run", "seed", "modes", "hq", "kl", "sw2", "ms_step_cpu", "ms_step_wall"]),
    ]
    if mnist_sum:
        parts += [
            f"### MNIST (DCGAN-lite width {cfg.mnist_width}, Adam({cfg.mnist_lr:g}), batch "
            f"{cfg.mnist_batch}, {cfg.mnist_steps} steps, seeds {list(cfg.mnist_seeds)}, "
            f"{cfg.train_limit or 60000} training images; FID-proxy on {cfg.fid_n} samples: kexue's "
            "LeNet features, not Inception)",
            markdown_table(
                mnist_sum, ["run", "runs", "fid_proxy", "fid_proxy_se", "classes_5pct", "ms_step_cpu"]
            ),
        ]
        if len(cfg.mnist_seeds) < 2:
            parts.append(
                "One MNIST seed: the FIDs are reported, not checked (no seed noise to compare with)."
            )
    parts += [
        f"### (iv) λ: hinge single loss, {cfg.ratio_steps} updates from one state with the same batches "
        f"(float64); SGD lr {cfg.sgd_lr:g}, Adam lr {cfg.adam_lr:g}",
        markdown_table(ratio_rows),
        "Time per step: median after a 10% warm-up; `ms_step_cpu` is this thread's CPU time (compared), "
        "`ms_step_wall` wall time (which counts waits for a shared core).",
    ]
    parts += [f"![{f}]({f})" for f in figures]
    return "\n\n".join(parts)


REPRODUCTION = Reproduction(
    name="single-loss-gan",
    systems=(22,),
    post=POST,
    claim=(
        "With stop-gradients, one loss L_D(sg G) + λ[L_G(G) − L_G(sg G)] trains a GAN's critic and generator "
        "at once: its gradient is exactly (∇_D L_D, ∇_G L_G), it trains as well as 1:1 alternating updates, "
        "each step is cheaper (one data pass, one backward, one optimizer step), and λ acts as the D:G "
        "learning-rate ratio — under SGD; under Adam it has little effect ([6387]; reference §1.10, §4 #8)."
    ),
    expectation=(
        "The identity: max |Δ| ≤ 1e-12 in float64 for every loss of the zoo, the single loss's value "
        "equal to L_D's, and each alternating phase giving no gradient to the other net. Quality (each "
        "loss): mean modes and HQ fraction of the single-loss runs within max(2·SE of the difference over "
        "seeds, 1 mode / 0.1) of the alternating runs'. Speed (each loss): alternating/single median CPU "
        "time per step, mean over seeds minus 2 SE, above 1. λ: relative change of G's parameters after "
        "the same updates > 0.1 under SGD and < 0.01 under Adam. MNIST FIDs are checked only with ≥ 2 "
        "seeds (full preset)."
    ),
    paper=PAPER,
    presets={"quick": QUICK, "full": FULL},
    run=run,
)
