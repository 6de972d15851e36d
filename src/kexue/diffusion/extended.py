r"""Extended Analytic-DPM: a state-dependent diagonal reverse covariance learned by a small head on a FROZEN
ε-net, for a perfect mean (SN-DPM) and for the imperfect mean the net really has (NPR-DPM).

Sources:
  [EADPM] Bao, Li, Sun, Zhu & Zhang, "Estimating the Optimal Covariance with Imperfect Mean in Diffusion
          Probabilistic Models", ICML 2022 (arXiv 2206.07309); official code github.com/baofff/Extended-
          Analytic-DPM (methods `pred_eps_eps2_pretrained` = SN, `pred_eps_epsc_pretrained` = NPR). Its
          equation numbers are not quoted here (the PDF was not at hand); the objects are named instead.
  [9246]  kexue.fm/archives/9246 "最优扩散方差估计（下）". Equations numbered in order of appearance:
          eq. 4 Σ(x_t) for a perfect mean, eq. 9 the scalar NPR σ̄_t², eq. 10 its diagonal form, eq. 11 the
          conditional σ̄_t²(x_t), eq. 13 the NPR regression. Su writes ᾱ_t for √ᾱ_t here, so his β̄²/ᾱ² is
          β̄_t/ᾱ_t here (reference/diffusion.md §0).
  [ADPM]  Bao et al., "Analytic-DPM", ICLR 2022: Thm 1 (σ² = λ² + γ²·cov_x0), Thm 2 (clamp cov_x0 to [0, 1]).

With ε = (x_t − √ᾱ_t x0)/√β̄_t and x̂0 = (x_t − √β̄_t ε̂)/√ᾱ_t, per element (Hadamard squares):

    x0 − x̂0 = −√(β̄_t/ᾱ_t)·(ε − ε̂)                                    so
    E[(x0 − x̂0)²|x_t] = (β̄_t/ᾱ_t)·E[(ε − ε̂)²|x_t]                    NPR: any ε̂    [9246] eq. 11
    Var[x0|x_t]       = (β̄_t/ᾱ_t)·(E[ε²|x_t] − E[ε|x_t]²)             SN: ε̂ = E[ε|x_t]  [9246] eq. 4

Each conditional expectation is the minimiser of a regression on (x0, ε) pairs ([9246] eq. 12), so a head
on the ε-net's last features learns it with the ε-net frozen ([EADPM] parameter sharing, two-stage training):

| kind      | head output            | regression target | cov_x0(x_t), clamped to [0, 1]  |
|-----------|------------------------|-------------------|---------------------------------|
| "sn"      | h_φ = u_φ(x_t, t)      | ε² (elementwise)  | (β̄_t/ᾱ_t)·(h_φ − ε̂²)            |
| "npr"     | g_φ = u_φ(x_t, t)      | (ε − sg ε̂_θ)²     | (β̄_t/ᾱ_t)·g_φ                   |
| "sn_skip" | h_φ = sg(ε̂_θ)² + u_φ   | ε² (elementwise)  | (β̄_t/ᾱ_t)·(h_φ − ε̂²)            |

u_φ is the zero-initialised head. "sn" and "npr" are [EADPM]'s heads as written. "sn_skip" is kexue's
reparameterisation of SN (not in the paper): the same loss E‖h_φ − ε²‖² and the same minimiser
E[ε²|x_t], but h_φ starts at ε̂² and the head learns only E[ε²|x_t] − ε̂², because a linear readout of the
features cannot form ε̂² — the square of another linear readout of the same features — on its own.

The step t → s then injects σ² = λ² + γ²·cov_x0 per element ([ADPM] Thm 1 on the diagonal); `cov_fn(kind)`
is the `cov_x0(t, x_t, ε̂)` callable of `ddim.sample` and `likelihood.VarianceChoice`. The training-free
scalar NPR, σ̄_t² = (β̄_t/ᾱ_t)·E‖ε − ε_θ(x_t)‖²/d from (x0, ε) pairs ([9246] eq. 9), is `npr_scalar_cov_fn`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kexue.diffusion import analytic, ddim
from kexue.diffusion.ddpm import DDPM, q_sample

KINDS = ("sn", "npr", "sn_skip")  # head kinds (module table); ExtendedDPM trains ("sn", "npr") by default


# --------------------------------------------------------------------------------------------- targets
def head_target(kind: str, eps: Tensor, eps_hat: Tensor) -> Tensor:
    """The regression target of a head, per element: ε² (SN) or (ε − sg ε̂)² (NPR).  [EADPM], [9246] eq. 13"""
    _check_kind(kind)
    return (eps - eps_hat.detach()) ** 2 if kind == "npr" else eps**2


def ideal_heads(x: Tensor, abar_t: Tensor | float, x0_mean: Tensor, x0_var: Tensor, eps_hat: Tensor) -> dict:
    r"""The heads' regression optima E[target|x_t] from the posterior moments of x0, per element.

    x, x0_mean = E[x0|x_t], x0_var = diag Var[x0|x_t], eps_hat = ε̂(x_t): (B, …) alike. Since
    ε = (x_t − √ᾱ x0)/√β̄ is affine in x0: E[ε|x_t] = (x_t − √ᾱ·E[x0|x_t])/√β̄, Var[ε|x_t] = (ᾱ/β̄)·Var[x0|x_t],
        sn  = E[ε²|x_t]        = E[ε|x_t]² + (ᾱ/β̄)·Var[x0|x_t]     (also "sn_skip"'s)
        npr = E[(ε − ε̂)²|x_t]  = (E[ε|x_t] − ε̂)² + (ᾱ/β̄)·Var[x0|x_t]
    """
    a = torch.as_tensor(abar_t, dtype=x.dtype, device=x.device)
    mean_eps = (x - a.sqrt() * x0_mean) / (1 - a).sqrt()
    var_eps = a / (1 - a) * x0_var
    sn = mean_eps**2 + var_eps
    return {"sn": sn, "npr": (mean_eps - eps_hat) ** 2 + var_eps, "sn_skip": sn}  # sn_skip: SN's minimiser


def cov_x0_sn(h: Tensor, eps_hat: Tensor, abar_t: Tensor | float) -> Tensor:
    """SN-DPM: cov_x0 = (β̄_t/ᾱ_t)(h − ε̂²), clamped to [0, 1].  [EADPM] SN, [9246] eq. 4, [ADPM] Thm 2"""
    a = torch.as_tensor(abar_t, dtype=h.dtype, device=h.device)
    return ((1 - a) / a * (h - eps_hat**2)).clamp(0, 1)


def cov_x0_npr(g: Tensor, abar_t: Tensor | float) -> Tensor:
    """NPR-DPM: cov_x0 = (β̄_t/ᾱ_t)·g, clamped to [0, 1].  [EADPM] NPR, [9246] eq. 11, [ADPM] Thm 2"""
    a = torch.as_tensor(abar_t, dtype=g.dtype, device=g.device)
    return ((1 - a) / a * g).clamp(0, 1)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown head kind {kind!r}; use one of {', '.join(KINDS)}")


# --------------------------------------------------------------------------------------------- the head
class CovHead(nn.Module):
    """A zero-initialised output head on the ε-net's last features (its `features(x, t)`).

    ResMLP (features (B, W)):        LayerNorm → SiLU → Linear(W, D)               → (B, D)
    UNet   (features (B, c, H, W)):  GroupNorm → SiLU → Conv3×3(c, C)               → (B, C, H, W)
    the same shape as the net's own ε head, as in [EADPM]'s parameter sharing (reference/diffusion.md
    §1.5: GroupNorm → SiLU → conv). The last layer starts at zero, so the head outputs 0 at init.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        from kexue.nn.resmlp import ResMLP
        from kexue.nn.unet import UNet

        if isinstance(net, ResMLP):
            width, dim = net.width, net.out[-1].out_features
            self.layers = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))
        elif isinstance(net, UNet):
            c, channels = net.width, net.out.out_channels
            self.layers = nn.Sequential(
                nn.GroupNorm(min(8, c), c), nn.SiLU(), nn.Conv2d(c, channels, 3, padding=1)
            )
        else:
            raise TypeError(f"CovHead needs a ResMLP or UNet ε-net (with features(x, t)), got {type(net)}")
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, feats: Tensor) -> Tensor:
        return self.layers(feats)


def _eps_from_features(net: nn.Module, feats: Tensor) -> Tensor:
    """The net's own ε head applied to its features: net(x, t) without a second pass through the trunk."""
    from kexue.nn.resmlp import ResMLP

    if isinstance(net, ResMLP):
        return net.out(feats)  # ResMLP.forward
    return net.out(nn.functional.silu(net.out_norm(feats)))  # UNet.forward


class ExtendedDPM(nn.Module):
    r"""Heads (`kinds` ⊆ {"sn", "npr"}) on a frozen ε-net; `loss(batch)` trains the heads only.

    The ε-net (a `DDPM`) is put in eval mode with requires_grad False and held OUTSIDE the module tree, so
    `parameters()`, `state_dict()`, the Trainer's optimizer and EMA, `.train()` and `.to()` see the heads
    only: the net stays bit-identical and its dropout stays off while the Trainer calls `.train()`.
    Put the net on the training device first (the heads are created on its device).
    Training several kinds at once shares one frozen forward pass; the heads have disjoint parameters and
    the loss is their sum, so with Adam (per-parameter) and no gradient clipping each head follows exactly
    the updates it would get alone on the same batches.
    """

    def __init__(self, ddpm: DDPM, kinds: Sequence[str] = ("sn", "npr")) -> None:
        super().__init__()
        kinds = tuple(kinds)
        if not kinds or len(set(kinds)) != len(kinds):
            raise ValueError(f"kinds must be a non-empty list of distinct head kinds, got {kinds}")
        for k in kinds:
            _check_kind(k)
        if not (hasattr(ddpm, "net") and hasattr(ddpm.net, "features")):
            raise TypeError("ExtendedDPM needs a DDPM whose net exposes features(x, t)")
        ddpm.eval().requires_grad_(False)  # [EADPM] two-stage training: the mean model is frozen
        self._frozen = (ddpm,)  # a tuple is not registered as a sub-module
        self.kinds = kinds
        device = next(ddpm.parameters()).device
        self.heads = nn.ModuleDict({k: CovHead(ddpm.net) for k in kinds}).to(device)

    @property
    def ddpm(self) -> DDPM:
        return self._frozen[0]

    def eps_and_heads(self, x: Tensor, t: int | Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """ε̂_θ(x_t, t) (no gradient) and each head's output h_φ or g_φ, all (B, *shape) in x's dtype.

        x: (B, *shape) in any float dtype; t: 1-based timesteps, an int or (B,). Gradients reach the heads.
        """
        ddpm = self.ddpm
        if ddpm.training:  # dropout would corrupt both ε̂ and the features
            ddpm.eval()
        dtype = next(ddpm.parameters()).dtype
        t = torch.full((len(x),), t, device=x.device) if not isinstance(t, Tensor) else t.to(x.device)
        t = t.expand(len(x)) if t.dim() == 0 else t
        flat = ddpm.config.net == "resmlp"
        h = (x.reshape(len(x), -1) if flat else x).to(dtype)  # (B, D) or (B, C, H, W)
        with torch.no_grad():
            feats = ddpm.net.features(h, t.to(dtype))  # (B, W) or (B, c, H, W); sg: frozen
            eps = _eps_from_features(ddpm.net, feats).reshape(x.shape).to(x.dtype)
        outs = {k: head(feats).reshape(x.shape).to(x.dtype) for k, head in self.heads.items()}
        if "sn_skip" in outs:
            outs["sn_skip"] = outs["sn_skip"] + eps**2  # h_φ = sg(ε̂)² + u_φ (module table)
        return eps, outs

    def loss(self, batch, *, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Σ_kinds E_{t, x0, ε}‖head(x_t, t) − target‖² (mean over elements); "loss" is the sum.

        t ~ U{1..N} and ε ~ N(0, I) as in L_simple ([EADPM] trains the heads on the same distribution).
        """
        x0 = batch[0] if isinstance(batch, (tuple, list)) else batch
        cfg, abar = self.ddpm.config, self.ddpm.abar
        x0 = x0.reshape(len(x0), *cfg.shape)  # (B, *shape)
        t = torch.randint(1, cfg.steps + 1, (len(x0),), device=x0.device, generator=generator)  # (B,)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        eps_hat, outs = self.eps_and_heads(q_sample(x0, t, abar, noise), t)
        terms = {k: (out - head_target(k, noise, eps_hat)).pow(2).mean() for k, out in outs.items()}
        return {**terms, "loss": sum(terms.values())}

    def eps_fn(self, x: Tensor, t: Tensor) -> Tensor:
        """The frozen ε̂_θ(x_t, t), the `EpsFn` of the samplers and the ELBO."""
        with torch.no_grad():
            return self.ddpm.eps(x, t)

    def cov_fn(self, kind: str) -> ddim.CovFn:
        """The per-element `cov_x0(t, x_t, ε̂)` (B, *shape) of head `kind`, for `ddim.sample` and the ELBO.

        SN uses the ε̂ the caller passes (the sampler's own ε̂_θ(x_t, t)); NPR needs only its head. Each
        call runs the frozen trunk once more (the samplers call ε̂ and cov_x0 separately).
        """
        _check_kind(kind)
        if kind not in self.heads:
            raise ValueError(f"this ExtendedDPM has no {kind!r} head (it has {', '.join(self.kinds)})")
        abar = self.ddpm.abar

        @torch.no_grad()
        def cov_x0(t: int, x: Tensor, eps: Tensor) -> Tensor:
            tt = torch.full((len(x),), int(t), device=x.device, dtype=torch.int64)
            _, outs = self.eps_and_heads(x, tt)
            a = abar[int(t)].to(device=x.device, dtype=x.dtype)
            return cov_x0_npr(outs[kind], a) if kind == "npr" else cov_x0_sn(outs[kind], eps, a)

        return cov_x0


# --------------------------------------------------------------------------------------------- scalar NPR
@torch.no_grad()
def estimate_ms_residual(
    eps_fn: ddim.EpsFn,
    x0: Tensor,
    abar: Tensor,
    timesteps: Tensor | None = None,
    *,
    m_per_t: int = 10,
    generator: torch.Generator | None = None,
    batch_size: int = 4096,
    with_stderr: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Monte Carlo E_{x0, ε}‖ε − ε_θ(√ᾱ_t x0 + √β̄_t ε, t)‖²/d at each t: the training-free NPR moment.

    [9246] eq. 9 (and [EADPM]'s NPR with a scalar covariance): σ̄_t² = (β̄_t/ᾱ_t)·this. It needs the pairs
    (x0, ε), not x_t alone; unlike ms_eps it has no 1 − (…) cancellation, so plain averaging is accurate.
    x0: (M, …) data; m_per_t draws per timestep, each a random row of x0 with fresh noise. Layout as
    `analytic.estimate_ms_eps`: the (N + 1,) float64 table, NaN where not estimated, 0 at t = 0; with
    with_stderr also the standard error of each entry.
    """

    def stats(noise: Tensor, eps: Tensor) -> Tensor:  # (B, 1): ‖ε − ε_θ‖²/d per draw
        return (noise - eps).flatten(1).pow(2).mean(1, keepdim=True)

    ts, values = analytic.monte_carlo_per_t(
        stats, eps_fn, x0, abar, timesteps, m_per_t=m_per_t, generator=generator, batch_size=batch_size
    )
    return analytic.timestep_table(ts, values[..., 0], len(abar) - 1, with_stderr=with_stderr)


def cov_x0_from_ms_residual(ms_res: Tensor, abar: Tensor) -> Tensor:
    """σ̄_t² = (β̄_t/ᾱ_t)·ms_res_t clamped to [0, 1]: the (N + 1,) table.  [9246] eq. 9, [ADPM] Thm 2"""
    ms = analytic.check_mean_square_table(ms_res, abar, "ms_res", "E‖ε − ε_θ‖²/d", "estimate_ms_residual")
    a = abar.to(torch.float64)
    return ((1 - a) / a * ms).clamp(0, 1)  # NaN (not estimated) stays NaN


def npr_scalar_cov_fn(ms_res: Tensor, abar: Tensor) -> ddim.CovFn:
    """The `cov_x0(t, x_t, ε̂)` callable of the training-free scalar NPR, from `estimate_ms_residual`."""
    return analytic.table_cov_fn(cov_x0_from_ms_residual(ms_res, abar), "ms_res", "estimate_ms_residual")
