"""Reproduction of [6234] 从动力学角度看优化算法（二）：自适应学习率算法 (kexue.fm/archives/6234), with the
gradient-flow picture of [5655] 从动力学角度看优化算法（一）.

The post's ODE is the gradient flow θ̇ = −∇L(θ) (its eq. for θ̇ = −L'(θ)). Gradient descent is its Euler
step of size γ. RMSprop picks the time step per component, γ = γ̃/√(G + ε), with G a moving average of
g⊗g, advanced "at time t + γ̃": G_{t+γ̃} = λG_t + (1−λ)g², θ_{t+γ} = θ_t − γ g. Measured in the
rescaled time τ, in which every step has length γ̃ (dt_i = dτ/√(G_i + ε) for component i), this is

    dθ/dτ = −∇L(θ) ⊘ √(G + ε),      dG/dτ = c (∇L ⊗ ∇L − G),     c = (1 − λ)/γ̃            (rescaled ODE)

and RMSprop is exactly its Euler step of size γ̃. G is updated first and θ then uses G_{n+1}, as the
post's γ = γ̃/√(G_{t+γ̃} + ε). Adam ("RMSprop与动量加速的结合") replaces −∇L by the moving average −m,
dm/dτ = c₁(∇L − m), with the bias corrections m̂ = m/(1 − β₁ⁿ), v̂ = v/(1 − β₂ⁿ). torch and the Adam paper
add ε outside the root, √G + ε; at ε = 0 that is the post's formula.

(a) Exactness: one step of torch.optim.RMSprop and of torch.optim.Adam, from random states, equals the
    Euler step of the rescaled ODE. The Euler step is computed in numpy with the analytic gradient of a
    random quadratic; float64, relative error ≤ 1e-12.
(b) An ill-conditioned quadratic L = ½θᵀAθ:
    - Tracking. With c fixed (λ = 1 − cγ̃) and γ̃ → 0, RMSprop's iterates approach the ODE's solution.
      The solution comes from scipy's solve_ivp (LSODA, rtol 1e-11). The error is O(γ̃), a log-log slope
      of 1, over τ ∈ [0, T] before θ reaches the minimum; there G → 0 and the ODE turns stiff. SGD against
      the gradient flow e^{−At}θ₀ is the same check for [5655].
    - Progress along small curvatures. On a diagonal A with condition number κ = 1000, after N steps,
      compare the part of the flat (smallest-curvature quarter) eigen-directions left. SGD with any
      stable constant rate η < 2/a_max keeps at least (1 − 2a_i/a_max)^N of direction i. RMSprop's
      per-component rate moves every coordinate at about γ̃ per step, whatever its curvature. The
      post's remark that the per-component G works better than the scalar G = EMA(‖g‖²) is checked
      on the same runs. A randomly rotated A is reported, not gated: per-coordinate rates help only
      along the axes.

Sources: [6234] kexue.fm/archives/6234; [5655] kexue.fm/archives/5655; Kingma & Ba, ICLR 2015 (Adam).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from kexue.experiments.runner import Context, Outcome, Reproduction, markdown_table

POST = "https://kexue.fm/archives/6234"
F64 = torch.float64
METHODS = ("sgd", "rmsprop", "rmsprop-scalar")
LABELS = {"sgd": "SGD", "rmsprop": "RMSprop (per-component G)", "rmsprop-scalar": "RMSprop (scalar G = ‖g‖²)"}
CHECK_EXACT = (
    "(a) one RMSprop step and one Adam step equal an Euler step of the rescaled ODE (rel. error ≤ {tol:g})"
)
CHECK_TRACK = (
    "(b) RMSprop's iterates converge to the rescaled ODE's solution at first order (slope 1 ± {s:g})"
)
CHECK_SGD = "(b) SGD's iterates converge to the gradient flow θ̇ = −∇L at first order (slope 1 ± {s:g})"
CHECK_FLAT = (
    "(b) on the diagonal quadratic, RMSprop leaves ≥ {m:g}× less of the flat directions than any stable "
    "constant-rate SGD could (every seed)"
)
CHECK_VECTOR = (
    "(b) per-component G leaves ≥ {m:g}× less of the flat directions than the scalar G = EMA(‖g‖²) "
    "(every seed)"
)


@dataclass(frozen=True)
class Config:
    # (a) exactness
    exact_cases: int = 6  # random (A, θ, state, n) per optimizer and ε
    exact_dim: int = 5
    exact_eps: tuple[float, ...] = (0.0, 1e-3)  # 0: the post's formula exactly; > 0: torch's √G + ε
    exact_tolerance: float = 1e-12
    # (b) tracking, 2-D: L = ½(a₁θ₁² + a₂θ₂²)
    curvatures_2d: tuple[float, float] = (100.0, 1.0)  # κ = 100
    theta0_2d: tuple[float, float] = (0.6, 1.0)
    ema_rate: float = 10.0  # c = (1 − λ)/γ̃, the EMA's rate in τ, held fixed as γ̃ → 0
    track_time: float = 0.5  # τ window; the stiff coordinate reaches 0 near τ ≈ 0.75
    rmsprop_lrs: tuple[float, ...] = (0.02, 0.01, 0.005, 0.0025)  # γ̃ (λ = 0.8 … 0.975)
    sgd_lrs: tuple[float, ...] = (0.004, 0.002, 0.001, 0.0005)  # η a_max ≤ 0.4
    sgd_time: float = 1.0  # t window of the gradient flow
    slope_tolerance: float = 0.15
    figure_steps: int = 150  # SGD and RMSprop steps drawn in the 2-D panel
    figure_lr: float = 0.01  # γ̃ of the drawn RMSprop (SGD draws at 2/(a_max + a_min))
    # (b) progress, d-D with eigenvalues log-spaced in [1, κ]
    dim: int = 20
    condition: float = 1000.0
    steps: int = 300  # N: τ = Nγ̃ = 3, thrice the distance max|θ_i(0)| = 1 each coordinate travels
    lr: float = 0.01  # γ̃ of both RMSprop variants
    alpha: float = 0.99  # λ: torch's default
    eps: float = 1e-8  # torch's default
    flat_fraction: float = 0.25  # the flat directions: this fraction of the smallest eigenvalues
    margin: float = 10.0  # required factor between the residuals
    seeds: tuple[int, ...] = (0, 1, 2)
    ode_rtol: float = 1e-11
    ode_atol: float = 1e-13

    def __post_init__(self) -> None:
        if len(self.rmsprop_lrs) < 3 or len(self.sgd_lrs) < 3:
            raise ValueError("at least three learning rates each are needed to fit a convergence order")
        if max(self.sgd_lrs) * max(self.curvatures_2d) >= 1:
            raise ValueError("sgd_lrs must keep η·a_max < 1, where the Euler picture applies")
        if max(self.rmsprop_lrs) * self.ema_rate >= 1:
            raise ValueError("rmsprop_lrs must keep λ = 1 − c·γ̃ > 0")
        if len(self.seeds) < 3 or self.dim < 4 or self.condition <= 1:
            raise ValueError("need ≥ 3 seeds, dim ≥ 4 and condition > 1")


QUICK = Config()
FULL = replace(
    QUICK,
    exact_cases=20,
    rmsprop_lrs=(0.02, 0.01, 0.005, 0.0025, 0.00125, 0.000625),
    sgd_lrs=(0.004, 0.002, 0.001, 0.0005, 0.00025),
    dim=100,
    seeds=(0, 1, 2, 3, 4),
)


# --------------------------------------------------------------------------------------------- the ODE
def rescaled_field(A: np.ndarray, c: float, eps: float = 0.0):
    """f(τ, y) for y = (θ, G) ∈ R^{2d}: the post's rescaled ODE on L = ½θᵀAθ (ε outside the root)."""
    d = len(A)

    def f(tau: float, y: np.ndarray) -> np.ndarray:
        theta, G = y[:d], y[d:]
        g = A @ theta  # ∇L
        return np.concatenate([-g / (np.sqrt(G) + eps), c * (g * g - G)])

    return f


def euler_rmsprop(theta, G, g, h, lam, eps):
    """One Euler step of size h of the rescaled ODE, G first (the post's G_{t+γ̃}), c = (1 − λ)/h."""
    c = (1 - lam) / h
    G1 = G + h * c * (g * g - G)  # = λG + (1−λ)g²
    return theta + h * (-g / (np.sqrt(G1) + eps)), G1  # θ + γ̃·(−g/√G₁)


def euler_adam(theta, m, v, n, g, h, b1, b2, eps):
    """One Euler step of size h of dθ/dτ = −m̂/(√v̂ + ε), dm/dτ = c₁(∇L − m), dv/dτ = c₂(∇L⊗∇L − v)."""
    m1 = m + h * ((1 - b1) / h) * (g - m)
    v1 = v + h * ((1 - b2) / h) * (g * g - v)
    m_hat, v_hat = m1 / (1 - b1 ** (n + 1)), v1 / (1 - b2 ** (n + 1))  # bias corrections at step n + 1
    return theta + h * (-m_hat / (np.sqrt(v_hat) + eps)), m1, v1


def solve_rescaled(A: np.ndarray, theta0: np.ndarray, c: float, taus: np.ndarray, cfg: Config) -> np.ndarray:
    """θ(τ) at the given times, G(0) = g₀⊗g₀ (the average started at its value for the first gradient)."""
    from scipy.integrate import solve_ivp

    g0 = A @ theta0
    y0 = np.concatenate([theta0, g0 * g0])
    sol = solve_ivp(
        rescaled_field(A, c),
        (0.0, float(taus[-1])),
        y0,
        method="LSODA",  # stiff near the minimum, where G → 0
        t_eval=taus,
        rtol=cfg.ode_rtol,
        atol=cfg.ode_atol,
    )
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    return sol.y[: len(A)].T  # (n, d)


# --------------------------------------------------------------------------------------------- optimizers
def run_torch(
    opt_name: str,
    A: Tensor,
    theta0: Tensor,
    lr: float,
    steps: int,
    *,
    alpha: float = 0.99,
    eps: float = 1e-8,
    square_avg: Tensor | None = None,
) -> Tensor:
    """Iterates (steps + 1, d) of torch's SGD or RMSprop(λ = alpha) on ½θᵀAθ; `square_avg` sets G₀."""
    p = torch.nn.Parameter(theta0.detach().clone())
    if opt_name == "sgd":
        opt = torch.optim.SGD([p], lr=lr)
    else:
        opt = torch.optim.RMSprop([p], lr=lr, alpha=alpha, eps=eps, foreach=False)
        if square_avg is not None:  # torch starts G at 0; a state already present is used as it is
            opt.state[p] = {"step": torch.zeros((), dtype=F64), "square_avg": square_avg.clone()}
    out = [p.detach().clone()]
    for _ in range(steps):
        p.grad = A @ p.detach()  # ∇L, analytic
        opt.step()
        out.append(p.detach().clone())
    return torch.stack(out)  # (steps + 1, d)


def run_scalar_rmsprop(A: Tensor, theta0: Tensor, lr: float, steps: int, alpha: float, eps: float) -> Tensor:
    """The post's first high-dimensional form: G a scalar EMA of ‖g‖², θ ← θ − γ̃ g/√(G + ε)."""
    theta, G = theta0.clone(), torch.zeros((), dtype=theta0.dtype, device=theta0.device)
    out = [theta]
    for _ in range(steps):
        g = A @ theta
        G = alpha * G + (1 - alpha) * g.pow(2).sum()  # [6234] first variant
        theta = theta - lr * g / (G + eps).sqrt()
        out.append(theta)
    return torch.stack(out)


# --------------------------------------------------------------------------------------------- (a)
def _random_state(gen: torch.Generator, d: int):
    M = torch.randn(d, d, generator=gen, dtype=F64)
    A = M @ M.T / d + 0.1 * torch.eye(d, dtype=F64)  # SPD, not diagonal
    b, theta = torch.randn(d, generator=gen, dtype=F64), torch.randn(d, generator=gen, dtype=F64)
    return A, b, theta


def exactness_rows(cfg: Config, device: torch.device) -> list[dict]:
    """Max relative error of torch's update θ' − θ against the Euler step's, per (optimizer, ε)."""
    gen = torch.Generator().manual_seed(0)
    rows = []
    for name in ("rmsprop", "adam"):
        for eps in cfg.exact_eps:
            worst = 0.0
            for _ in range(cfg.exact_cases):
                A, b, theta = _random_state(gen, cfg.exact_dim)
                u = torch.rand(5, generator=gen, dtype=F64).tolist()
                h, lam = 1e-3 + 0.1 * u[0], 0.5 + 0.49 * u[1]
                p = torch.nn.Parameter(theta.clone().to(device))
                loss = 0.5 * p @ A.to(device) @ p - b.to(device) @ p
                loss.backward()  # torch's gradient by autograd; the Euler side uses Aθ − b
                g = (A @ theta - b).numpy()
                if name == "rmsprop":
                    G = torch.rand(cfg.exact_dim, generator=gen, dtype=F64) + 0.1
                    opt = torch.optim.RMSprop([p], lr=h, alpha=lam, eps=eps, foreach=False)
                    opt.state[p] = {"step": torch.zeros((), dtype=F64), "square_avg": G.to(device)}
                    ref, _ = euler_rmsprop(theta.numpy(), G.numpy(), g, h, lam, eps)
                else:
                    m = torch.randn(cfg.exact_dim, generator=gen, dtype=F64)
                    v = torch.rand(cfg.exact_dim, generator=gen, dtype=F64) + 0.1
                    n = int(1 + 50 * u[2])  # steps already taken
                    b1, b2 = 0.5 + 0.45 * u[3], 0.9 + 0.0999 * u[4]
                    opt = torch.optim.Adam([p], lr=h, betas=(b1, b2), eps=eps, foreach=False)
                    opt.state[p] = {
                        "step": torch.tensor(float(n), dtype=F64),
                        "exp_avg": m.to(device),
                        "exp_avg_sq": v.to(device),
                    }
                    ref, _, _ = euler_adam(theta.numpy(), m.numpy(), v.numpy(), n, g, h, b1, b2, eps)
                opt.step()
                step_torch, step_euler = p.detach().cpu().numpy() - theta.numpy(), ref - theta.numpy()
                worst = max(worst, float(np.abs(step_torch - step_euler).max() / np.abs(step_euler).max()))
            rows.append(
                {"part": "a", "optimizer": name, "eps": eps, "cases": cfg.exact_cases, "max_rel_error": worst}
            )
    return rows


# --------------------------------------------------------------------------------------------- (b)
def tracking_rows(cfg: Config, device: torch.device) -> list[dict]:
    """Max ‖θ_n − θ(τ_n)‖_∞ over the window, per learning rate, for RMSprop and for SGD."""
    a = np.array(cfg.curvatures_2d)
    A_np, theta0_np = np.diag(a), np.array(cfg.theta0_2d)
    A, theta0 = torch.tensor(A_np, device=device), torch.tensor(theta0_np, device=device)
    G0 = (A @ theta0).pow(2)
    rows = []
    for lr in cfg.rmsprop_lrs:
        n = round(cfg.track_time / lr)
        taus = np.arange(n + 1) * lr  # the n-th iterate sits at τ = nγ̃
        ode = solve_rescaled(A_np, theta0_np, cfg.ema_rate, taus, cfg)
        lam = 1 - cfg.ema_rate * lr  # c fixed
        it = run_torch("rmsprop", A, theta0, lr, n, alpha=lam, eps=0.0, square_avg=G0).cpu().numpy()
        rows.append(
            {"part": "b-track", "method": "rmsprop", "lr": lr, "steps": n, "max_error": _err(it, ode)}
        )
    for lr in cfg.sgd_lrs:
        n = round(cfg.sgd_time / lr)
        flow = np.exp(-np.outer(np.arange(n + 1) * lr, a)) * theta0_np  # gradient flow e^{−At}θ₀ [5655] (4)
        it = run_torch("sgd", A, theta0, lr, n).cpu().numpy()
        rows.append({"part": "b-track", "method": "sgd", "lr": lr, "steps": n, "max_error": _err(it, flow)})
    return rows


def _err(iterates: np.ndarray, solution: np.ndarray) -> float:
    return float(np.abs(iterates - solution).max())


def slope(rows: list[dict], method: str) -> float:
    """The fitted order p of error ∝ lrᵖ (least squares in log-log)."""
    r = [x for x in rows if x["part"] == "b-track" and x["method"] == method]
    return float(np.polyfit(np.log([x["lr"] for x in r]), np.log([x["max_error"] for x in r]), 1)[0])


def quadratic(cfg: Config, seed: int, rotated: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(A, Q, eigenvalues ascending, θ₀): A = Q diag(a) Qᵀ, a log-spaced in [1, κ], θ₀ = u/max|u| with
    u ~ N(0, I)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.logspace(0, math.log10(cfg.condition), cfg.dim, dtype=F64)
    theta0 = torch.randn(cfg.dim, generator=gen, dtype=F64)
    theta0 = theta0 / theta0.abs().max()  # max_i |θ_i| = 1
    Q = torch.eye(cfg.dim, dtype=F64)
    if rotated:
        Q = torch.linalg.qr(torch.randn(cfg.dim, cfg.dim, generator=gen, dtype=F64))[0]
    return (Q * a) @ Q.T, Q, a, theta0  # (Q * a) = Q diag(a)


def progress_rows(cfg: Config, device: torch.device) -> tuple[list[dict], dict]:
    """Flat-direction residual ‖z_flat(N)‖/‖z_flat(0)‖ (z = Qᵀθ) and L(θ_N)/L(θ₀) per method and seed."""
    rows, curves = [], {}
    k = max(1, int(cfg.flat_fraction * cfg.dim))
    for rotated in (False, True):
        for seed in cfg.seeds:
            A, Q, a, theta0 = (x.to(device) for x in quadratic(cfg, seed, rotated))
            eta = 2 / (a.max() + a.min()).item()  # SGD's best worst-case constant rate
            runs = {
                "sgd": run_torch("sgd", A, theta0, eta, cfg.steps),
                "rmsprop": run_torch("rmsprop", A, theta0, cfg.lr, cfg.steps, alpha=cfg.alpha, eps=cfg.eps),
                "rmsprop-scalar": run_scalar_rmsprop(A, theta0, cfg.lr, cfg.steps, cfg.alpha, cfg.eps),
            }
            z0 = Q.T @ theta0
            loss0 = 0.5 * theta0 @ A @ theta0
            for method, traj in runs.items():
                z = traj @ Q  # (N + 1, d) eigen-coordinates
                flat = (z[:, :k].norm(dim=1) / z0[:k].norm()).cpu()
                loss = 0.5 * traj[-1] @ A @ traj[-1]
                rows.append(
                    {
                        "part": "b-progress",
                        "quadratic": "rotated" if rotated else "diagonal",
                        "seed": seed,
                        "method": method,
                        "lr": eta if method == "sgd" else cfg.lr,
                        "flat_remaining": float(flat[-1]),
                        "loss_ratio": float(loss / loss0),
                    }
                )
                curves[(rotated, seed, method)] = flat.numpy()
            # any stable constant η < 2/a_max keeps ≥ |1 − ηa_i|^N ≥ (1 − 2a_i/a_max)^N of direction i
            floor = ((1 - 2 * a[:k] / a.max()) ** cfg.steps * z0[:k]).norm() / z0[:k].norm()
            rows.append(
                {
                    "part": "b-progress",
                    "quadratic": "rotated" if rotated else "diagonal",
                    "seed": seed,
                    "method": "sgd-bound",
                    "lr": None,
                    "flat_remaining": float(floor),
                    "loss_ratio": None,
                }
            )
    return rows, curves


# --------------------------------------------------------------------------------------------- checks
def checks_from(cfg: Config, rows: list[dict]) -> dict[str, bool]:
    exact = [r for r in rows if r["part"] == "a"]
    s = cfg.slope_tolerance
    tracks = {m: [r for r in rows if r["part"] == "b-track" and r["method"] == m] for m in ("rmsprop", "sgd")}

    def first_order(method: str) -> bool:
        errs = [r["max_error"] for r in sorted(tracks[method], key=lambda r: -r["lr"])]
        decreasing = all(e2 < e1 for e1, e2 in itertools.pairwise(errs))
        return decreasing and abs(slope(rows, method) - 1) <= s

    def flat(seed: int, method: str) -> float:
        return next(
            r["flat_remaining"]
            for r in rows
            if r["part"] == "b-progress"
            and r["quadratic"] == "diagonal"
            and r["seed"] == seed
            and r["method"] == method
        )

    return {
        CHECK_EXACT.format(tol=cfg.exact_tolerance): bool(exact)
        and {r["optimizer"] for r in exact} == {"rmsprop", "adam"}
        and all(r["max_rel_error"] <= cfg.exact_tolerance for r in exact),
        CHECK_TRACK.format(s=s): first_order("rmsprop"),
        CHECK_SGD.format(s=s): first_order("sgd"),
        CHECK_FLAT.format(m=cfg.margin): all(
            flat(seed, "rmsprop") * cfg.margin <= flat(seed, "sgd-bound") for seed in cfg.seeds
        ),
        CHECK_VECTOR.format(m=cfg.margin): all(
            flat(seed, "rmsprop") * cfg.margin <= flat(seed, "rmsprop-scalar") for seed in cfg.seeds
        ),
    }


# --------------------------------------------------------------------------------------------- figure
def _figure(cfg: Config, rows: list[dict], curves: dict, device: torch.device, ctx: Context) -> str:
    from kexue.plots import _plt

    plt = _plt()
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.8))
    # 1) 2-D trajectories on the contours of L
    a = np.array(cfg.curvatures_2d)
    A = torch.tensor(np.diag(a), dtype=F64, device=device)
    theta0 = torch.tensor(cfg.theta0_2d, dtype=F64, device=device)
    n, lr = cfg.figure_steps, cfg.figure_lr
    eta = 2 / (a.max() + a.min())
    sgd = run_torch("sgd", A, theta0, eta, n).cpu().numpy()
    rms = (
        run_torch(
            "rmsprop", A, theta0, lr, n, alpha=1 - cfg.ema_rate * lr, eps=0.0, square_avg=(A @ theta0).pow(2)
        )
        .cpu()
        .numpy()
    )
    ode = solve_rescaled(np.diag(a), np.array(cfg.theta0_2d), cfg.ema_rate, np.linspace(0, n * lr, 600), cfg)
    t = np.linspace(0, n * eta, 600)
    flow = np.exp(-np.outer(t, a)) * np.array(cfg.theta0_2d)
    lim = 1.15 * max(abs(v) for v in cfg.theta0_2d)
    x, y = np.meshgrid(np.linspace(-lim, lim, 200), np.linspace(-0.2 * lim, lim, 200))
    ax[0].contour(x, y, 0.5 * (a[0] * x**2 + a[1] * y**2), levels=np.geomspace(1e-3, 60, 14), colors="0.85")
    ax[0].plot(
        sgd[:, 0], sgd[:, 1], ".-", ms=3, lw=0.6, color="tab:red", label=f"SGD, η = 2/(a₁+a₂), {n} steps"
    )
    ax[0].plot(flow[:, 0], flow[:, 1], "--", color="tab:red", lw=1, label="gradient flow θ̇ = −∇L (SGD's ODE)")
    ax[0].plot(rms[:, 0], rms[:, 1], "o", ms=3, color="tab:blue", label=f"RMSprop, γ̃ = {lr:g}, {n} steps")
    ax[0].plot(ode[:, 0], ode[:, 1], "-", color="k", lw=1, label="rescaled ODE (solve_ivp)")
    ax[0].plot([0], [0], "k*", ms=10)
    ax[0].set_title(f"L = ½({a[0]:g}θ₁² + {a[1]:g}θ₂²)")
    ax[0].set_xlabel("θ₁ (stiff)")
    ax[0].set_ylabel("θ₂ (flat)")
    ax[0].legend(fontsize=7, loc="lower left")
    # 2) error against the learning rate
    for method, color, label in (
        ("rmsprop", "tab:blue", f"RMSprop vs rescaled ODE (τ ≤ {cfg.track_time:g})"),
        ("sgd", "tab:red", f"SGD vs gradient flow (t ≤ {cfg.sgd_time:g})"),
    ):
        r = [x for x in rows if x["part"] == "b-track" and x["method"] == method]
        lrs, errs = [x["lr"] for x in r], [x["max_error"] for x in r]
        ax[1].loglog(lrs, errs, "o-", color=color, label=f"{label}: slope {slope(rows, method):.3f}")
        ax[1].loglog(lrs, errs[0] * np.array(lrs) / lrs[0], ":", color="0.5")
    ax[1].set_xlabel("learning rate (γ̃ or η)")
    ax[1].set_ylabel("max |iterate − ODE solution|")
    ax[1].set_title("first-order convergence to the ODE (dotted: slope 1)")
    ax[1].legend(fontsize=7)
    # 3) flat-direction residual over the steps
    seed = cfg.seeds[0]
    colors = {"sgd": "tab:red", "rmsprop": "tab:blue", "rmsprop-scalar": "tab:green"}
    for rotated, style in ((False, "-"), (True, "--")):
        for method in METHODS:
            kind = "rotated" if rotated else "diagonal"
            ax[2].semilogy(
                curves[(rotated, seed, method)],
                style,
                color=colors[method],
                label=f"{LABELS[method]}, {kind}",
            )
    ax[2].set_xlabel("step")
    ax[2].set_ylabel("‖flat part of θ‖ / initial")
    ax[2].set_title(f"d = {cfg.dim}, κ = {cfg.condition:g}, seed {seed}")
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    name = "optimizer_ode.png"
    fig.savefig(ctx.figure_path(name), dpi=120)
    plt.close(fig)
    return name


# --------------------------------------------------------------------------------------------- run
def run(cfg: Config, ctx: Context) -> Outcome:
    device = ctx.device
    rows = exactness_rows(cfg, device)
    ctx.say("optimizer-ode: (a) exactness done")
    rows += tracking_rows(cfg, device)
    ctx.say("optimizer-ode: (b) tracking done")
    progress, curves = progress_rows(cfg, device)
    rows += progress
    ctx.say("optimizer-ode: (b) progress done")
    checks = checks_from(cfg, rows)
    extra = {"slope_rmsprop": slope(rows, "rmsprop"), "slope_sgd": slope(rows, "sgd")}
    return Outcome(
        rows=rows,
        checks=checks,
        report=_report(cfg, rows, extra),
        figures=[_figure(cfg, rows, curves, device, ctx)],
        extra=extra,
    )


def _report(cfg: Config, rows: list[dict], extra: dict) -> str:
    exact = [r for r in rows if r["part"] == "a"]
    track = [r for r in rows if r["part"] == "b-track"]
    prog = [r for r in rows if r["part"] == "b-progress"]
    summary = []
    for kind in ("diagonal", "rotated"):
        for method in (*METHODS, "sgd-bound"):
            r = [x for x in prog if x["quadratic"] == kind and x["method"] == method]
            summary.append(
                {
                    "quadratic": kind,
                    "method": "SGD: bound for any stable η" if method == "sgd-bound" else LABELS[method],
                    "flat left (per seed)": ", ".join(f"{x['flat_remaining']:.3g}" for x in r),
                    "L_N/L_0 (per seed)": "—"
                    if method == "sgd-bound"
                    else ", ".join(f"{x['loss_ratio']:.3g}" for x in r),
                }
            )
    return (
        "### (a) One step of torch's optimizer against the Euler step of the rescaled ODE (float64)\n\n"
        f"Random SPD quadratics L = ½θᵀAθ − bᵀθ in d = {cfg.exact_dim}, random θ, states (G > 0, m, v), "
        "step sizes, λ or (β₁, β₂) and Adam step counts; torch's gradient by autograd, the Euler side by "
        "Aθ − b in numpy; the error is relative to the Euler step θ' − θ. ε = 0 is the post's formula; "
        "ε > 0 uses torch's placement √G + ε.\n\n"
        + markdown_table(exact, ["optimizer", "eps", "cases", "max_rel_error"])
        + "\n\n### (b) Iterates against the ODE solutions as the learning rate shrinks\n\n"
        f"L = ½({cfg.curvatures_2d[0]:g}θ₁² + {cfg.curvatures_2d[1]:g}θ₂²) from θ₀ = {cfg.theta0_2d}. "
        f"RMSprop: torch.optim.RMSprop(ε = 0) with λ = 1 − cγ̃, c = {cfg.ema_rate:g}, G₀ = g₀⊗g₀, against "
        f"solve_ivp (LSODA, rtol {cfg.ode_rtol:g}) over τ ≤ {cfg.track_time:g}; SGD against e^(−At)θ₀ over "
        f"t ≤ {cfg.sgd_time:g}. Fitted orders: RMSprop {extra['slope_rmsprop']:.3f}, SGD "
        f"{extra['slope_sgd']:.3f}.\n\n"
        + markdown_table(track, ["method", "lr", "steps", "max_error"])
        + "\n\nOn a diagonal quadratic with ε = 0 and G₀ = g₀⊗g₀, coordinate i of the rescaled ODE obeys "
        "θ̇_i = −θ_i/√w_i, ẇ_i = c(θ_i² − w_i) with w_i = G_i/a_i²: its path depends on θ_i(0) only, not on "
        "its curvature a_i, which is what the per-component rate buys. Beyond the window, as a coordinate "
        "nears 0, G decays like e^(−cτ) and the ODE turns stiff (rate a/√G). RMSprop's iterates then "
        "oscillate at an amplitude of about γ̃ instead of following it, the sign-like behaviour the post "
        "notes for γ = γ̃/|L'|.\n\n"
        f"### (b) Progress along the flat directions: d = {cfg.dim}, κ = {cfg.condition:g}, "
        f"{cfg.steps} steps\n\n"
        f"Eigenvalues log-spaced in [1, {cfg.condition:g}]; flat = the {cfg.flat_fraction:g} smallest; "
        "θ₀ = u/max|u|, u ~ N(0, I), so no coordinate starts farther than 1 from the minimum. SGD at "
        f"η = 2/(a_max + a_min); both RMSprop variants at γ̃ = {cfg.lr:g}, λ = {cfg.alpha:g}, ε = {cfg.eps:g} "
        f"(torch's defaults, G₀ = 0). N = {cfg.steps} is fixed in advance: τ = Nγ̃ = {cfg.steps * cfg.lr:g}, "
        "enough for every coordinate to travel its distance at RMSprop's speed of about γ̃ per step. "
        "At a constant γ̃ RMSprop then stalls at an O(γ̃) floor, while SGD keeps contracting, so much "
        "longer runs would narrow the gap. The bound row is the least that any constant η < 2/a_max can "
        "leave: a factor (1 − 2a_i/a_max)^N on each direction i. Seeds "
        f"{list(cfg.seeds)}.\n\n"
        + markdown_table(summary)
        + "\n\nThe rotated rows (A = Q diag(a) Qᵀ, random Q) are reported, not gated. There the "
        "per-coordinate G no longer matches the eigen-directions, and the flat directions are not served "
        "better than by SGD (compare the loss column too). The post's per-parameter learning rate "
        "is a diagonal preconditioner. The scalar variant, G = EMA(‖g‖²), is normalised gradient descent: "
        "its step along the flat directions is set by the stiff gradient, as the post says of the "
        "first form (实验效果第二种更为有效).\n"
    )


PAPER = """The post derives and does not measure. Its statements, beside which the checks stand:

- GD is the Euler method for θ̇ = −∇L(θ) ([5655] eq. 2–4, restated in [6234]); the Taylor error per step
  is O(γ²). → the SGD tracking check (global error O(η)).
- RMSprop is the same Euler method with the time step chosen per step and component, γ = γ̃/√(G + ε),
  with G advanced at t + γ̃ ([6234] eq. for G_{t+γ̃}, γ, θ_{t+γ}). → check (a) and the RMSprop tracking
  check, in the time τ in which every step has length γ̃.
- "至于我们更常用的Adam，则是RMSprop与动量加速的结合" → check (a) for Adam.
- Per-component G (the usual RMSprop) against the scalar ‖g‖² form: "从实验效果来看，却是第二种更为有效"
  → the vector-vs-scalar check. Using the gradient's size to set each component's rate → the
  flat-direction check against SGD."""

REPRODUCTION = Reproduction(
    name="optimizer-ode",
    systems=(37,),
    post=POST,
    claim=(
        "Optimizers are ODE solvers: gradient descent is the Euler method for θ̇ = −∇L, and RMSprop (and "
        "Adam, RMSprop with momentum) is the Euler method with a per-component time step γ̃/√(G + ε), "
        "i.e. the Euler method in a rescaled time. Its iterates follow that ODE as γ̃ → 0, and the "
        "per-component rate moves along flat directions of an ill-conditioned loss as fast as along "
        "steep ones, unlike SGD and unlike the scalar-G variant."
    ),
    expectation=(
        "(a) torch's RMSprop and Adam steps from random states equal the Euler step of the rescaled ODE to "
        "a relative 1e-12 in float64; derivation: [6234]. (b) On L = ½(100θ₁² + θ₂²), the max error between "
        "the iterates and the ODE solution (solve_ivp, rtol 1e-11) decreases with the learning rate with a "
        "fitted log-log slope of 1 ± 0.15, for RMSprop (λ = 1 − 10γ̃, τ ≤ 0.5) and for SGD against the "
        "gradient flow (t ≤ 1); source: Euler's method is first order. On a diagonal quadratic with "
        "condition number 1000 (d = 20 quick, 100 full), after N steps RMSprop (torch's defaults, γ̃ = 0.01) "
        "leaves at least 10× less of the smallest-curvature quarter of the directions than any stable "
        "constant-rate SGD can (the analytic bound Π(1 − 2a_i/a_max)^N), and at least 10× less than the "
        "scalar-G variant, for every seed (≥ 3); source: [6234]'s per-component rate and its remark on the "
        "two variants. The rotated quadratic is reported, not gated."
    ),
    paper=PAPER,
    presets={"quick": QUICK, "full": FULL},
    run=run,
)

__all__ = ["FULL", "QUICK", "REPRODUCTION", "Config", "run"]
