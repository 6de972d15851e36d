"""Reproduction of [9812] 从梯度最大化看Attention的Scale操作 (kexue.fm/archives/9812), with the log-n scale of
[8823] 从熵不变性看Attention的Scale操作.

No training: every number is computed from the formulas of `kexue.nn.attention_scale` or from sampled scores.

(a) Mean field. For p = softmax(αs), s ~ N(0, 1)^n, the post maximises α(1 − e^{α²}/n) (eq. 6) and fits
    α* ≈ 0.84√(ln n). Here α* is exact (α*² = W(n√e/2) − ½); the rows n = 64 … 65536 set it beside the fit,
    the fit coefficient is recomputed on the post's own grid (n = 40, 80, …, 20000), and the cosine variant
    (d = 128, fit 3.5 ln n) is reported beside it.
(b) Sampled. E[α(1 − Σp²)] over draws of s ~ N(0, 1)^n, several seeds: the objective at 2.5 against 1 (the
    post's "2.5/√d"), the arg-max over an α grid per seed, and the α → ∞ plateau f_Δ(0) that explains why
    that arg-max is noisy (the sampled curve rises to a plateau instead of peaking).
(c) Focus [8823]. One query, n keys, one planted key at cosine 0.5 (d = 64): its attention mass and the
    attention entropy for n = 512 … 16 × 512 under 1/√d and under log₅₁₂ n/√d.

Sources: [9812] kexue.fm/archives/9812; [8823] kexue.fm/archives/8823; reference/transformer.md §1.3, §2.1,
§2.4 ("Scale factor", "Log n focus"), §4 (Scale row).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

import torch

from kexue.experiments.runner import Context, Outcome, Reproduction, markdown_table
from kexue.nn.attention_scale import (
    SU_FIT,
    cosine_mean_field_optimum,
    log_n_scale,
    mean_field_objective,
    mean_field_optimum,
    planted_key_focus,
    planted_key_mass_mean_field,
    sampled_objective,
    sampled_objective_limit,
    standard_scale,
    su_cosine_fit,
    su_fit,
)

POST = "https://kexue.fm/archives/9812"
CHECK_MF = "(a) the mean-field α* is within {tol:.0%} of 0.84√(ln n) for every n in [{lo}, {hi}]"
CHECK_FIT = (
    "(a) α* grows like √(ln n): least squares α* ≈ c√(ln n) over the post's grid n = 40, 80, …, 20000 "
    "gives c = 0.84 ± {tol:g}"
)
CHECK_SAMPLED = (
    "(b) the sampled objective at α = 2.5 exceeds that at α = 1 by more than {k:g} standard errors "
    "(paired draws) for every n ≥ 512 and every seed"
)
CHECK_FOCUS = (
    "(c) at n = {mult} × {base} the log-n scale keeps ≥ {ratio:g}× the standard scale's planted-key mass"
)


@dataclass(frozen=True)
class Config:
    ns: tuple[int, ...] = tuple(2**k for k in range(6, 17))  # the rows: n = 64 … 65536 keys
    fit_range: tuple[int, int] = (512, 16384)  # where α* must be within `tolerance` of 0.84√ln n (ref. §4)
    tolerance: float = 0.10  # relative, ref. §4 Scale row
    fit_tolerance: float = 0.01  # |c − 0.84| for the least-squares c on the post's grid
    alpha_max: float = 32.0  # sampled α grid: 0.25 … 4 in steps of 0.25, then 4·2^{k/4} up to this
    samples: int = 32  # draws of s ~ N(0, 1)^n per seed and n
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # the sampled arg-max is reported per seed (its noise)
    sampled_sigmas: float = 3.0  # objective(2.5) − objective(1) must exceed this many standard errors
    cosine_dim: int = 128  # d of the cosine variant, as in the post
    head_dim: int = 64  # d of the planted-key experiment (ref. §2.4)
    planted_cos: float = 0.5  # cosine of the planted key to the query (ref. §2.4)
    base: int = 512  # m of log_m n: the length at which log n equals 1/√d  [8823]
    multiples: tuple[int, ...] = (1, 2, 4, 8, 16)  # focus rows at n = base × multiple
    trials: int = 512  # queries per focus row
    check_multiple: int = 16  # the focus check is at n = base × this (ref. §4: "16× the base length")
    mass_ratio: float = 2.0  # log n must keep ≥ this × the standard mass there (ref. §4)
    curve_ns: tuple[int, ...] = (64, 512, 4096, 65536)  # the figure's objective curves

    def __post_init__(self) -> None:
        lo, hi = self.fit_range
        if not any(lo <= n <= hi for n in self.ns) or not any(n >= 512 for n in self.ns):
            raise ValueError(f"ns must include an n in {self.fit_range} and one ≥ 512; got {self.ns}")
        if len(self.seeds) < 2 or self.samples < 2:
            raise ValueError("the sampled arg-max's noise needs ≥ 2 seeds and ≥ 2 samples per seed")
        if self.check_multiple not in self.multiples or not set(self.curve_ns) <= set(self.ns):
            raise ValueError("check_multiple must be one of multiples, and curve_ns a subset of ns")
        if self.alpha_max < 8:
            raise ValueError(f"alpha_max must be ≥ 8 (the table shows α = 8); got {self.alpha_max}")


QUICK = Config()
FULL = replace(QUICK, samples=256, seeds=tuple(range(10)), trials=8192, multiples=(1, 2, 4, 8, 16, 32, 64))


def alpha_grid(cfg: Config) -> torch.Tensor:
    """0.25, 0.5, …, 4 (holds 1 and 2.5 exactly), then 4·2^{k/4} (8, 16, 32 exactly) to alpha_max, float64."""
    fine = [0.25 * k for k in range(1, 17)]
    coarse = [4 * 2 ** (k / 4) for k in range(1, 200) if 4 * 2 ** (k / 4) < cfg.alpha_max * (1 - 1e-9)]
    return torch.tensor([*fine, *coarse, cfg.alpha_max], dtype=torch.float64)


# --------------------------------------------------------------------------------------------- (a) + (b)
def _sampled_row(cfg: Config, n: int, k: int, grid: torch.Tensor, alpha_mf: float, ctx: Context) -> dict:
    """The sampled objective at n for every seed; per-seed arg-max and the paired 2.5-vs-1 difference."""
    i1, i25, i8 = ((grid == a).nonzero().item() for a in (1.0, 2.5, 8.0))
    alphas = torch.cat([grid, torch.tensor([alpha_mf], dtype=torch.float64)])  # the last: the mean-field α*
    per_seed, pooled = [], []
    for seed in cfg.seeds:
        g = torch.Generator(device=ctx.device).manual_seed(1000 * seed + k)
        v = sampled_objective(alphas, n, samples=cfg.samples, generator=g).cpu()  # (S, A + 1)
        diff = v[:, i25] - v[:, i1]  # paired over the same draws
        per_seed.append(
            {
                "argmax": grid[v[:, :-1].mean(0).argmax()].item(),
                "diff": diff.mean().item(),
                "diff_se": (diff.std() / math.sqrt(len(diff))).item(),
            }
        )
        pooled.append(v)
    v = torch.cat(pooled)  # (seeds·S, A + 1)
    mean, se = v.mean(0), v.std(0) / math.sqrt(len(v))
    argmax = [p["argmax"] for p in per_seed]
    return {
        "sampled_argmax_per_seed": argmax,
        "sampled_argmax_median": statistics.median(argmax),
        "sampled_argmax_min": min(argmax),
        "sampled_argmax_max": max(argmax),
        "argmax_at_grid_edge": sum(a == grid[-1].item() for a in argmax),
        "obj_1": mean[i1].item(),
        "obj_2.5": mean[i25].item(),
        "obj_2.5_se": se[i25].item(),
        "obj_at_alpha_mf": mean[-1].item(),
        "mf_obj_at_alpha_mf": mean_field_objective(torch.tensor(alpha_mf), n).item(),
        "obj_8": mean[i8].item(),
        "obj_8_se": se[i8].item(),
        "obj_alpha_max": mean[-2].item(),
        "obj_alpha_max_se": se[-2].item(),
        "obj_max": mean[:-1].max().item(),
        "plateau_limit": sampled_objective_limit(n),
        "diff_per_seed": [p["diff"] for p in per_seed],
        "diff_se_per_seed": [p["diff_se"] for p in per_seed],
        "curve_mean": mean[:-1].tolist(),
        "curve_se": se[:-1].tolist(),
    }


def scale_rows(cfg: Config, ctx: Context) -> list[dict]:
    ns = torch.tensor(cfg.ns, dtype=torch.float64)
    alpha_mf, fit = mean_field_optimum(ns), su_fit(ns)
    alpha_cos = cosine_mean_field_optimum(ns, head_dim=cfg.cosine_dim)
    grid, rows = alpha_grid(cfg), []
    for k, n in enumerate(cfg.ns):
        row = {"n": n, "alpha_mf": alpha_mf[k].item(), "su_fit": fit[k].item()}
        row["rel_dev"] = row["alpha_mf"] / row["su_fit"] - 1
        row |= {"alpha_cos_mf": alpha_cos[k].item(), "su_cos_fit": su_cosine_fit(n).item()}
        row |= _sampled_row(cfg, n, k, grid, row["alpha_mf"], ctx)
        rows.append(row)
        ctx.say(
            f"n={n}: α*={row['alpha_mf']:.3f} (fit {row['su_fit']:.3f}); sampled arg-max per seed "
            f"{row['sampled_argmax_per_seed']}; objective(2.5)={row['obj_2.5']:.3f} vs (1)={row['obj_1']:.3f}"
        )
    return rows


def fits(cfg: Config, rows: list[dict]) -> dict:
    """c of α* ≈ c√(ln n) by least squares on the post's grid and on the rows in fit_range; the local
    exponent b of α* ∝ (ln n)^b over fit_range; α*/√(ln n) far out (→ 1)."""
    n = 40 * torch.arange(1, 501, dtype=torch.float64)  # [9812]'s Mathematica: nRange = 40*Range[1, 500]
    x, y = n.log().sqrt(), mean_field_optimum(n)
    lo, hi = cfg.fit_range
    sub = [r for r in rows if lo <= r["n"] <= hi]
    xs = torch.tensor([math.sqrt(math.log(r["n"])) for r in sub], dtype=torch.float64)
    ys = torch.tensor([r["alpha_mf"] for r in sub], dtype=torch.float64)
    exponent = (
        torch.linalg.lstsq(torch.stack([2 * xs.log(), torch.ones_like(xs)], 1), ys.log()[:, None]).solution[
            0, 0
        ]
        if len(sub) > 1
        else torch.tensor(float("nan"))
    )
    far = torch.tensor([1e6, 1e12, 1e50, 1e300], dtype=torch.float64)
    scan = torch.logspace(0, 16, 20001, dtype=torch.float64)  # where the fit holds to `tolerance`
    inside = scan[(mean_field_optimum(scan) / su_fit(scan) - 1).abs() <= cfg.tolerance]
    return {
        "within_tolerance_from": inside.min().item(),
        "within_tolerance_to": inside.max().item(),
        "c_post_grid": (x @ y / (x @ x)).item(),
        "c_rows_in_range": (xs @ ys / (xs @ xs)).item(),
        "exponent_in_range": exponent.item(),
        "alpha_over_sqrt_ln_n_far": dict(
            zip(["1e6", "1e12", "1e50", "1e300"], (mean_field_optimum(far) / far.log().sqrt()).tolist())
        ),
    }


# --------------------------------------------------------------------------------------------- (c)
def focus_rows(cfg: Config, ctx: Context) -> list[dict]:
    """Planted-key mass and entropy under the standard and the log-n scale; the same draws for both."""
    d, rows = cfg.head_dim, []
    for mult in cfg.multiples:
        n = cfg.base * mult
        row = {"n": n, "multiple": mult, "ln_n": math.log(n)}
        for name, scale in (("std", standard_scale(d)), ("log_n", log_n_scale(n, head_dim=d, base=cfg.base))):
            g = torch.Generator(device=ctx.device).manual_seed(n)  # common draws: the scales differ only
            block = max(1, (1 << 22) // n)  # queries per call: bounded memory at large n
            parts = [
                planted_key_focus(
                    n,
                    head_dim=d,
                    cos=cfg.planted_cos,
                    scale=scale,
                    trials=min(block, cfg.trials - t),
                    generator=g,
                )
                for t in range(0, cfg.trials, block)
            ]
            mass, entropy = (torch.cat(p).cpu() for p in zip(*parts))
            row |= {
                f"mass_{name}": mass.mean().item(),
                f"mass_{name}_se": (mass.std() / math.sqrt(cfg.trials)).item(),
                f"entropy_{name}": entropy.mean().item(),
                f"mass_{name}_mean_field": planted_key_mass_mean_field(
                    n, head_dim=d, cos=cfg.planted_cos, scale=scale
                ).item(),
            }
        row["mass_ratio"] = row["mass_log_n"] / row["mass_std"]
        rows.append(row)
        ctx.say(f"focus n={n}: mass log-n {row['mass_log_n']:.4f} vs standard {row['mass_std']:.4f}")
    return rows


# --------------------------------------------------------------------------------------------- verdict
def checks_from(cfg: Config, rows: list[dict], focus: list[dict], fit: dict) -> dict[str, bool]:
    lo, hi = cfg.fit_range
    at = [r for r in focus if r["multiple"] == cfg.check_multiple]
    return {
        CHECK_MF.format(tol=cfg.tolerance, lo=lo, hi=hi): all(
            abs(r["rel_dev"]) <= cfg.tolerance for r in rows if lo <= r["n"] <= hi
        ),
        CHECK_FIT.format(tol=cfg.fit_tolerance): abs(fit["c_post_grid"] - SU_FIT) <= cfg.fit_tolerance,
        CHECK_SAMPLED.format(k=cfg.sampled_sigmas): all(
            d > cfg.sampled_sigmas * se
            for r in rows
            if r["n"] >= 512
            for d, se in zip(r["diff_per_seed"], r["diff_se_per_seed"])
        ),
        CHECK_FOCUS.format(mult=cfg.check_multiple, base=cfg.base, ratio=cfg.mass_ratio): bool(at)
        and at[0]["mass_ratio"] >= cfg.mass_ratio,
    }


# --------------------------------------------------------------------------------------------- figures
def _figures(cfg: Config, rows: list[dict], focus: list[dict], ctx: Context) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    grid = alpha_grid(cfg)
    fig, ax = plt.subplots(2, 2, figsize=(12, 9))
    a = ax[0, 0]
    fine = torch.linspace(0.05, float(grid[-1]), 800, dtype=torch.float64)
    for k, n in enumerate(cfg.curve_ns):
        r = next(r for r in rows if r["n"] == n)
        mf = mean_field_objective(fine, n)
        mf = torch.where(mf > -1, mf, float("nan"))  # eq. 6 dives to −∞ (e^{α²} overflows): cut below −1
        a.plot(fine, mf, color=f"C{k}", label=f"n={n}: mean field α(1 − exp(α²)/n)")
        a.plot(grid, r["curve_mean"], "--", color=f"C{k}", label=f"n={n}: sampled E[α(1 − Σp²)]")
        a.plot([r["alpha_mf"]], [r["mf_obj_at_alpha_mf"]], "o", color=f"C{k}")
        a.axhline(r["plateau_limit"], color=f"C{k}", lw=0.6, ls=":")
    a.set_xscale("log")
    a.set_ylim(0, 1.1 * max(r["plateau_limit"] for r in rows))
    a.set_xlabel("α (scale × √d)")
    a.set_ylabel("½‖∂p/∂s‖₁")
    a.set_title("objective vs α; ● mean-field maximum, ┈ sampled α→∞ plateau f_Δ(0)")
    a.legend(fontsize=6)
    a = ax[0, 1]
    n = [r["n"] for r in rows]
    a.plot(n, [r["alpha_mf"] for r in rows], "o-", label="mean-field α* (exact)")
    a.plot(n, [r["su_fit"] for r in rows], "k--", label="0.84√(ln n) (post's fit)")
    med = [r["sampled_argmax_median"] for r in rows]
    err = [
        [m - r["sampled_argmax_min"] for m, r in zip(med, rows)],
        [r["sampled_argmax_max"] - m for m, r in zip(med, rows)],
    ]
    a.errorbar(
        n,
        med,
        yerr=err,
        fmt="s",
        capsize=3,
        label=f"sampled arg-max (median, min–max, {len(cfg.seeds)} seeds)",
    )
    a.axvspan(*cfg.fit_range, color="0.9")
    a.set_xscale("log", base=2)
    a.set_yscale("log")
    a.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    a.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    a.set_yticks([1, 2, 3, 4, 6, 8, 16, 32])
    a.set_xlabel("n (keys)")
    a.set_ylabel("α")
    a.set_title("optimum vs n (shaded: the checked range)")
    a.legend(fontsize=7)
    fn = [r["n"] for r in focus]
    for key, label, c in (("std", "1/√d", "C0"), ("log_n", f"log_{cfg.base} n/√d", "C3")):
        ax[1, 0].errorbar(
            fn,
            [r[f"mass_{key}"] for r in focus],
            yerr=[r[f"mass_{key}_se"] for r in focus],
            fmt="o-",
            color=c,
            label=f"{label}: sampled",
        )
        ax[1, 0].plot(
            fn, [r[f"mass_{key}_mean_field"] for r in focus], ":", color=c, label=f"{label}: mean field"
        )
        ax[1, 1].plot(fn, [r[f"entropy_{key}"] for r in focus], "o-", color=c, label=label)
    ax[1, 1].plot(fn, [r["ln_n"] for r in focus], "k--", lw=0.8, label="ln n (uniform)")
    for a, ylabel in ((ax[1, 0], "planted-key attention mass"), (ax[1, 1], "attention entropy (nats)")):
        a.set_xscale("log", base=2)
        a.set_xlabel("n (keys)")
        a.set_ylabel(ylabel)
        a.legend(fontsize=7)
    ax[1, 0].set_yscale("log")
    ax[1, 0].set_title(f"one key at cos {cfg.planted_cos} to the query, d = {cfg.head_dim}")
    ax[1, 1].set_title("entropy vs n")
    fig.tight_layout()
    fig.savefig(ctx.figure_path("attention_scale.png"), dpi=120)
    plt.close(fig)
    return ["attention_scale.png"]


# --------------------------------------------------------------------------------------------- run
def run(cfg: Config, ctx: Context) -> Outcome:
    rows = scale_rows(cfg, ctx)
    fit = fits(cfg, rows)
    focus = focus_rows(cfg, ctx)
    checks = checks_from(cfg, rows, focus, fit)
    return Outcome(
        rows=rows,
        checks=checks,
        report=_report(cfg, rows, focus, fit),
        figures=_figures(cfg, rows, focus, ctx),
        extra={"focus_rows": focus, "fit": fit, "alpha_grid": alpha_grid(cfg).tolist()},
    )


def _a_section(cfg: Config, rows: list[dict], fit: dict) -> str:
    lo, hi = cfg.fit_range
    table = [
        {
            "n": r["n"],
            "α* mean field": r["alpha_mf"],
            "0.84√ln n": r["su_fit"],
            "rel. dev.": f"{r['rel_dev']:+.1%}",
            f"cosine α* (d={cfg.cosine_dim})": r["alpha_cos_mf"],
            "3.5 ln n": r["su_cos_fit"],
        }
        for r in rows
    ]
    far = ", ".join(f"{v:.3f} at n = {k}" for k, v in fit["alpha_over_sqrt_ln_n_far"].items())
    cos_dev = max(abs(r["alpha_cos_mf"] / r["su_cos_fit"] - 1) for r in rows if lo <= r["n"] <= hi)
    return (
        "### (a) The mean-field optimum of α(1 − e^{α²}/n) (eq. 6), exact\n\n"
        "α*² = W(n√e/2) − ½ (Lambert W), from the stationarity condition 1 − (1 + 2α²)e^{α²}/n = 0.\n\n"
        + markdown_table(table)
        + f"\n\nLeast squares α* ≈ c√(ln n): c = {fit['c_post_grid']:.4f} on the post's grid n = 40, 80, …, "
        f"20000 (the post: 0.84); c = {fit['c_rows_in_range']:.4f} on the rows in [{lo}, {hi}]. Over that "
        f"range a power law gives α* ∝ (ln n)^{fit['exponent_in_range']:.3f}: locally α* rises a little "
        f"faster than √(ln n), and asymptotically α*/√(ln n) → 1, not 0.84 ({far}). So 0.84√(ln n) "
        "describes the range the post plots; it is not a law. It is within "
        f"{cfg.tolerance:.0%} of α* from n ≈ {fit['within_tolerance_from']:.0f} to n ≈ "
        f"{fit['within_tolerance_to']:.1e}. The cosine variant (d = {cfg.cosine_dim}) is within "
        f'{cos_dev:.1%} of 3.5 ln n over the rows in [{lo}, {hi}] (the post: "拟合得也不错").'
    )


def _b_section(cfg: Config, rows: list[dict]) -> str:
    table = [
        {
            "n": r["n"],
            "obj(1)": r["obj_1"],
            "obj(2.5)": f"{r['obj_2.5']:.4f} ± {r['obj_2.5_se']:.4f}",
            "obj(α* mf)": r["obj_at_alpha_mf"],
            "eq. 6 at α*": r["mf_obj_at_alpha_mf"],
            "obj(8)": f"{r['obj_8']:.3f} ± {r['obj_8_se']:.3f}",
            f"obj({cfg.alpha_max:g})": f"{r['obj_alpha_max']:.3f} ± {r['obj_alpha_max_se']:.3f}",
            "max over grid": r["obj_max"],
            "plateau f_Δ(0)": r["plateau_limit"],
            "arg-max per seed": ", ".join(f"{a:.3g}" for a in r["sampled_argmax_per_seed"]),
            "median [min, max]": f"{r['sampled_argmax_median']:.3g} "
            f"[{r['sampled_argmax_min']:.3g}, {r['sampled_argmax_max']:.3g}]",
        }
        for r in rows
    ]
    big = [r for r in rows if r["n"] >= 512]
    gain = [r["obj_2.5"] / r["obj_1"] for r in big]
    reach = [r["obj_at_alpha_mf"] / r["plateau_limit"] for r in big]
    reach8 = [r["obj_8"] / r["plateau_limit"] for r in big]
    edge = sum(r["argmax_at_grid_edge"] for r in rows)
    n0 = big[0]
    return (
        "### (b) The sampled objective E[α(1 − Σp²)], s ~ N(0, 1)^n\n\n"
        f"{cfg.samples} draws per seed, seeds {list(cfg.seeds)}; α grid 0.25 … {cfg.alpha_max:g} "
        f"({len(alpha_grid(cfg))} points); values ± one standard error over all draws.\n\n"
        + markdown_table(table)
        + "\n\nWhat the sampled curve shows. At α ≤ 1 it equals eq. 6 closely. Past the mean-field α* it "
        "does not fall: eq. 4 replaces Σe^{2αs} by its expectation, which needs many terms to contribute, "
        f"and that fails once α² ≳ ln(n)/2 — already below α*: at n = {n0['n']}, √(ln n / 2) = "
        f"{math.sqrt(math.log(n0['n']) / 2):.2f} < α* = {n0['alpha_mf']:.2f}. For large α only the top two "
        "scores count, and E[α(1 − Σp²)] tends to f_Δ(0) = n(n−1)∫φ²Φ^{n−2}dx, the density of the top-two "
        'gap at 0 (column "plateau"). At the mean-field α* the sampled objective is '
        f"{min(reach):.0%}–{max(reach):.0%} of that plateau over the rows n ≥ 512; at α = 8 it is "
        f"{min(reach8):.0%}–{max(reach8):.0%}. Near the plateau the per-draw values are heavy-tailed — a "
        "near tie of the top two scores gives up to α/2, so the standard error grows with α — and the "
        "arg-max of a finite-sample mean lands anywhere on it, often at the grid's end ("
        f"{edge} of {len(rows) * len(cfg.seeds)} per-seed arg-maxes sit at α = {cfg.alpha_max:g}; "
        '"max over grid" can exceed the plateau by noise alone). This is the heavy-tailed "7–25" of the '
        "reference notes: the sampled objective has no maximum near 0.84√(ln n) to find. What survives is "
        f"the comparison the post acts on: α = 2.5 gives {min(gain):.2f}–{max(gain):.2f}× the objective of "
        "α = 1 over the rows n ≥ 512, so 1/√d sits well below the gradient-maximising range however it is "
        "estimated."
    )


def _c_section(cfg: Config, focus: list[dict]) -> str:
    table = [
        {
            "n": r["n"],
            "× base": r["multiple"],
            "mass 1/√d": f"{r['mass_std']:.4g} ± {r['mass_std_se']:.2g}",
            "mass log n": f"{r['mass_log_n']:.4g} ± {r['mass_log_n_se']:.2g}",
            "ratio": r["mass_ratio"],
            "mean field 1/√d": r["mass_std_mean_field"],
            "mean field log n": r["mass_log_n_mean_field"],
            "entropy 1/√d": r["entropy_std"],
            "entropy log n": r["entropy_log_n"],
            "ln n": r["ln_n"],
        }
        for r in focus
    ]
    return (
        f"### (c) Attention focus as n grows: 1/√d against log_{cfg.base} n/√d [8823]\n\n"
        f"One query q ~ N(0, I_{cfg.head_dim}), n − 1 keys N(0, I), one planted key at cosine "
        f"{cfg.planted_cos}; {cfg.trials} queries per n, the same draws under both scales (so they agree "
        f"exactly at n = {cfg.base}). Mean field: ‖q‖ = √d and Σ e^{{λq·k}} ≈ (n − 1)e^{{λ²d/2}}.\n\n"
        + markdown_table(table)
        + "\n\nUnder 1/√d the planted key's mass falls like 1/n; under log n its logit grows with ln n and "
        "the mass falls more slowly. The entropy under log n grows more slowly than under 1/√d but is not "
        "constant: the entropy invariance of [8823] is an approximation, and this is one planted key among "
        "Gaussian distractors, not a trained model. Su's MLM experiment behind the log-n table below is not "
        "re-run here; the `length-extrapolation` reproduction trains models with and without log n."
    )


def _report(cfg: Config, rows: list[dict], focus: list[dict], fit: dict) -> str:
    return "\n\n".join([_a_section(cfg, rows, fit), _b_section(cfg, rows), _c_section(cfg, focus)]) + "\n"


PAPER = """[9812] derives and fits; its statements:

- ½‖∂p/∂s‖₁ = α(1 − Σp²) (eq. 3); for s ~ N(0, 1) the mean field gives α(1 − e^{α²}/n) (eq. 6), whose
  maximiser "一定范围内" fits **α\\* ≈ 0.84√(log n)**, 2–3 over a wide range of n; hence "盲取 2.5/√d".
  → checks (a) and (b).
- Cosine scores, d = 128: α\\* ≈ 3.5 log n, "25∼35" over a wide range (explains the ~30 temperatures of
  AM-Softmax and SimCSE). → reported in (a), not gated.
- Decoders: each row sees a different n; take n = L_max/2. → `gradient_max_scale` (documentation).

Reference measurements [R] (reference/transformer.md §2.4): mean-field α\\* 1.55 / 2.15 / 2.65 at n = 64 / 1k
/ 16k against the fit's 1.71 / 2.21 / 2.62; the sampled arg-max is noisy, 7–25; planted-key mass at
n = 8192, 0.0139 (log n) against 0.0040 (standard), entropy 7.98 against 8.51.

[8823] (log n scale; not re-run here): RoFormer-small MLM trained at n = 64, MLM accuracy (%) by
evaluation length:

| Scale | 64 | 128 | 256 | 512 | 1024 |
|---|---|---|---|---|---|
| standard | 43.27 | 36.53 | 23.02 | 15.12 | 11.54 |
| log n | 43.11 | **41.17** | **34.04** | **20.15** | **13.58** |"""

REPRODUCTION = Reproduction(
    name="attention-scale",
    systems=(6,),
    post=POST,
    claim=(
        "(a) The scale α that maximises the softmax gradient ½‖∂p/∂s‖₁ = α(1 − Σp²) for unit-variance scores "
        "over n keys is, in the mean-field approximation, α* ≈ 0.84√(ln n) — about 2–3 for practical n — so "
        "2.5/√d suits attention better than 1/√d. (b) On sampled Gaussian scores, α = 2.5 gives a larger "
        "gradient than α = 1. (c) The log-n scale log_m n/√d keeps attention focused as n grows past the "
        "training length m ([8823])."
    ),
    expectation=(
        "(a) the exact mean-field α* is within 10% of 0.84√(ln n) for every row n in [512, 16384] (ref. "
        "§4), and least squares over the post's grid n = 40 … 20000 returns c = 0.84 ± 0.01; (b) for every "
        "n ≥ 512 and each seed, the sampled objective at α = 2.5 exceeds that at α = 1 by > 3 paired "
        "standard errors (ref. §4: test only this, as the sampled arg-max is heavy-tailed); (c) at 16 × 512 "
        "keys, the planted-key mass under log n is ≥ 2× that under 1/√d (ref. §4). The sampled arg-max, the "
        "cosine variant and the entropies are reported, not gated."
    ),
    paper=PAPER,
    presets={"quick": QUICK, "full": FULL},
    run=run,
)
