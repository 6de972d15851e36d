"""Lipschitz control of a network: spectral norms, their regulariser, spectral normalisation, WGAN-GP.

[6051] 深度学习中的Lipschitz约束：泛化与生成模型, kexue.fm/archives/6051 (equations numbered in order of
appearance in the post). Papers: [SNR] Yoshida & Miyato, arXiv 1705.10941; [SN] Miyato et al., ICLR 2018;
[GP] Gulrajani et al., NeurIPS 2017.

- The L-constraint (eq. 3): ‖f(x₁) − f(x₂)‖ ≤ C(w)·‖x₁ − x₂‖. For a layer act(Wx + b) with |act'| ≤ 1 it
  reduces to ‖W(x₁ − x₂)‖ ≤ C‖x₁ − x₂‖ (eq. 6), whose smallest C is the spectral norm (eq. 7)
      ‖W‖₂ = max_{x≠0} ‖Wx‖/‖x‖ ≤ ‖W‖_F                                        (eq. 7, 10)
  and layer by layer, C(w) ≤ Π_l ‖W_l‖₂                                → `lipschitz_upper_bound`
- Power iteration (eq. 15): v ← Wᵀu/‖Wᵀu‖, u ← Wv/‖Wv‖, ‖W‖₂ ≈ uᵀWv         → `power_iteration`
- Spectral regularisation (eq. 16): loss + λ‖W‖₂², summed over the layers as in [SNR]; the post's
  point is that l2 weight decay, λ‖W‖_F² (eq. 11–12), penalises an upper bound of the same thing
                                                                      → `SpectralRegularizer`
- Spectral normalisation: every W ← W/‖W‖₂, so |f|_L ≤ 1 for 1-Lipschitz activations ([SN]; torch's own
  parametrization)                                                     → `spectral_norm_all`
- Gradient penalty (eq. 19–21): λ(‖∇f(x_inter)‖ − 1)², or the one-sided λ·max(‖∇f‖ − 1, 0)² that the
  post prefers, at x_inter = εx_real + (1 − ε)x_fake, ε ~ U[0, 1]           → `gradient_penalty`

A weight is read as a matrix (C_out, −1): conv kernels (C_out, C_in, k…) are flattened from dim 1, and
ConvTranspose kernels (C_in, C_out, k…) first move C_out to the front — torch's spectral_norm convention.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
WEIGHT_LAYERS = (nn.Linear, *_CONV, *_CONV_T)  # the layers whose weight is a linear map
# activations and shape-only layers with Lipschitz constant ≤ 1 in the L2 norm (|act'| ≤ 1, [6051] eq. 5)
_ONE_LIPSCHITZ = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Hardtanh,
    nn.ELU,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
)


def weight_matrix(layer: nn.Module) -> Tensor:
    """The layer's weight as the (C_out, −1) matrix whose norm is taken (ConvTranspose: dim 1 first)."""
    if not isinstance(layer, WEIGHT_LAYERS):
        raise ValueError(f"weight_matrix needs a Linear/Conv/ConvTranspose layer, got {type(layer).__name__}")
    w = layer.weight
    if isinstance(layer, _CONV_T):
        w = w.movedim(1, 0)  # (C_out, C_in, k…)
    return w.flatten(1)  # (C_out, C_in·k…)


def _unit(x: Tensor) -> Tensor:
    return x / x.norm().clamp_min(1e-12)


def power_iteration(
    weight: Tensor, iters: int = 20, *, u: Tensor | None = None, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(σ, u, v): ‖W‖₂ ≈ σ = uᵀWv by `iters` rounds of [6051] eq. 15, with W = weight.flatten(1), (C_out, D).

    u: (C_out,) start vector (None: a random unit vector drawn from `generator`). u and v are computed
    without gradient; σ = uᵀWv is differentiable in W with ∂σ/∂W = uvᵀ, the exact gradient of ‖W‖₂ once
    the iteration has converged. Power iteration approaches ‖W‖₂ from below (σ ≤ ‖W‖₂ for any u, v).
    """
    if weight.dim() < 2:
        raise ValueError(f"power_iteration needs a matrix or a conv kernel, got shape {tuple(weight.shape)}")
    if iters < 1:
        raise ValueError(f"power_iteration needs iters ≥ 1, got {iters}")
    w = weight.flatten(1)  # (C_out, D)
    if u is None:
        u = torch.randn(w.shape[0], generator=generator, dtype=w.dtype, device=w.device)
    elif u.shape != (w.shape[0],):
        raise ValueError(f"u must have shape ({w.shape[0]},) for a weight of shape {tuple(weight.shape)}")
    with torch.no_grad():
        wd = w.detach()
        u = _unit(u.to(wd))
        for _ in range(iters):
            v = _unit(wd.T @ u)  # v ← Wᵀu/‖Wᵀu‖   [6051] eq. 15
            u = _unit(wd @ v)  # u ← Wv/‖Wv‖
    return u @ w @ v, u, v  # σ ≈ uᵀWv


def spectral_norm_all(module: nn.Module, *, n_power_iterations: int = 1) -> nn.Module:
    """Wrap every Linear/Conv/ConvTranspose weight in torch's spectral-norm parametrization, in place.

    W ← W/σ(W) with σ from `n_power_iterations` rounds per training forward and a persistent u ([SN]);
    ConvTranspose layers normalise over dim 1 (their C_out), torch's default for them. Layers already
    spectral-normalised are left as they are. Returns `module`.
    """
    if n_power_iterations < 1:
        raise ValueError(f"n_power_iterations must be ≥ 1, got {n_power_iterations}")
    for layer in list(module.modules()):  # a list: the parametrizations add modules while we walk
        if not isinstance(layer, WEIGHT_LAYERS) or _is_spectral_normed(layer):
            continue
        if isinstance(layer.weight, nn.parameter.UninitializedParameter):
            raise ValueError(f"{type(layer).__name__} is lazy: run one forward pass before spectral_norm_all")
        spectral_norm(layer, n_power_iterations=n_power_iterations)
    return module


def _is_spectral_normed(layer: nn.Module) -> bool:
    if not parametrize.is_parametrized(layer, "weight"):
        return False  # torch's parametrization class is private: recognise it by name
    return any(type(p).__name__ == "_SpectralNorm" for p in layer.parametrizations["weight"])


class SpectralRegularizer(nn.Module):
    """Σ_l ‖W_l‖₂² over a network's weight layers — the spectral regulariser of [6051] eq. 16 ([SNR]).

    Train on `loss + λ · reg(net)`. Each ‖W_l‖₂ is `power_iteration` from a persistent u_l (a buffer here,
    so it is saved, restored and moved with the model), `iters` rounds per call: as in [SN], one round
    per training step is enough because W changes little between steps. The value is differentiable in
    the weights (gradient 2σ_l u_l v_lᵀ per layer).

    The regulariser keeps no reference to the network: pass it to each call, `reg(net)`, so that a model
    holding both has no duplicated parameters. `net` must have the same weight layers as at construction.
    """

    def __init__(self, net: nn.Module, *, iters: int = 1, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if iters < 1:
            raise ValueError(f"SpectralRegularizer needs iters ≥ 1, got {iters}")
        self.iters = iters
        self.names = [name for name, m in net.named_modules() if isinstance(m, WEIGHT_LAYERS)]
        if not self.names:
            raise ValueError(f"{type(net).__name__} has no Linear, Conv or ConvTranspose layer to regularise")
        layers = dict(net.named_modules())
        for i, name in enumerate(self.names):
            w = weight_matrix(layers[name])
            u = torch.randn(w.shape[0], generator=generator, dtype=w.dtype, device=w.device)
            self.register_buffer(f"u{i}", _unit(u))  # (C_out,) persistent start vector of layer i

    def sigmas(self, net: nn.Module) -> Tensor:
        """‖W_l‖₂ estimates, (L,), differentiable; advances each persistent u by `iters` rounds."""
        layers = dict(net.named_modules())
        out = []
        for i, name in enumerate(self.names):
            layer, u = layers.get(name), getattr(self, f"u{i}")
            if not isinstance(layer, WEIGHT_LAYERS):
                raise ValueError(f"the net's layer {name!r} is not the one this regulariser was built for")
            w = weight_matrix(layer)  # read once: a spectral-normed weight advances its own u when read
            if w.shape[0] != u.shape[0]:
                raise ValueError(f"the net's layer {name!r} is not the one this regulariser was built for")
            sigma, u_new, _ = power_iteration(w, self.iters, u=u)
            u.copy_(u_new)  # persistent u ([SN] Alg. 1)
            out.append(sigma)
        return torch.stack(out)

    def forward(self, net: nn.Module) -> Tensor:
        return self.sigmas(net).pow(2).sum()  # Σ_l ‖W_l‖₂²   [6051] eq. 16


def _walk(net: nn.Module):
    """The leaf modules of `net` in registration order (the forward order of a Sequential-like net); a
    weight layer counts as a leaf even when a parametrization hangs modules under it."""
    children = list(net.children())
    if isinstance(net, WEIGHT_LAYERS) or not children:
        yield net
        return
    for child in children:
        yield from _walk(child)


@torch.no_grad()
def lipschitz_upper_bound(net: nn.Module) -> float:
    """Π_l ‖W_l‖₂ over the weight layers of a Sequential-like `net`: an upper bound of its Lipschitz
    constant in the L2 norm ([6051] eq. 6–8 applied layer by layer).

    The net must apply its leaf modules in registration order, and every other leaf must be 1-Lipschitz
    (ReLU, LeakyReLU, Tanh, Sigmoid, Softplus, Hardtanh, ELU, Flatten, Identity, Dropout); anything else
    (normalisation, pooling, GELU, residual wiring that registration order does not show) raises.
    Biases do not change the constant.

    Linear: ‖W‖₂ exactly (torch.linalg.matrix_norm). Conv/ConvTranspose: the norm of the reshaped
    kernel (C_out, C_in·k…), the post's heuristic ("CNN … 本质上还是特殊的全连接"); it is NOT the operator
    norm of the convolution, which can exceed it (by up to √(k₁k₂…) for stride 1), so for nets with
    convolutions the product is an estimate, not a guaranteed bound.

    Spectral-normalised layers are read as they act in eval mode (the stored u, v; no power step is run).
    """
    modes = {m: m.training for m in net.modules()}
    net.eval()  # reading a spectral-normed weight in train mode would advance its power iteration
    try:
        bound = 1.0
        for m in _walk(net):
            if isinstance(m, WEIGHT_LAYERS):
                w = weight_matrix(m)
                bound *= torch.linalg.matrix_norm(w.double(), 2).item()  # ‖W‖₂   [6051] eq. 7
            elif isinstance(m, nn.LeakyReLU) and abs(m.negative_slope) > 1:
                raise ValueError(f"LeakyReLU with slope {m.negative_slope} is not 1-Lipschitz")
            elif isinstance(m, nn.ELU) and m.alpha > 1:
                raise ValueError(f"ELU with alpha {m.alpha} is not 1-Lipschitz")
            elif not isinstance(m, _ONE_LIPSCHITZ):
                raise ValueError(f"lipschitz_upper_bound cannot bound a {type(m).__name__} layer")
    finally:
        for m, mode in modes.items():
            m.training = mode
    return bound


def empirical_lipschitz(f: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> Tensor:
    """‖f(x_b) − f(y_b)‖ / ‖x_b − y_b‖ per pair, shape (B,), norms over each flattened sample ([6051] eq. 3).

    x, y: (B, …) of the same shape, no pair equal. Each ratio is a lower bound of f's Lipschitz constant.
    """
    if x.shape != y.shape or x.dim() < 2:
        raise ValueError(f"x and y must be (B, …) batches of one shape: {tuple(x.shape)}, {tuple(y.shape)}")
    dx = (x - y).flatten(1).norm(dim=1)  # (B,)
    if (dx == 0).any():
        raise ValueError("empirical_lipschitz needs x_b ≠ y_b for every pair")
    return (f(x) - f(y)).flatten(1).norm(dim=1) / dx  # (B,)


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    *,
    generator: torch.Generator | None = None,
    one_sided: bool = False,
    center: float = 1.0,
) -> Tensor:
    """WGAN-GP: mean_b (‖∇_x f(x̂_b)‖ − center)², or mean_b max(‖∇f‖ − center, 0)² when one_sided.

    x̂ = ε·real + (1 − ε)·fake with one ε ~ U[0, 1] per sample ([6051] eq. 19–21; [GP] Alg. 1). real, fake:
    (B, …) of one shape; critic(x̂): (B,) or (B, 1). The norm is over each sample's FLATTENED gradient
    (not per channel or row). x̂ is built from detached inputs, so the penalty trains the critic only; the
    gradient is taken with create_graph=True so the penalty itself can be backpropagated. Multiply by λ
    (10 in [GP]) outside.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have one shape, got {tuple(real.shape)}, {tuple(fake.shape)}")
    if real.dim() < 2 or len(real) == 0:
        raise ValueError(f"real and fake must be non-empty batches (B, …), got shape {tuple(real.shape)}")
    if not real.is_floating_point():
        raise ValueError(f"real and fake must be floating point, got {real.dtype}")
    b = len(real)
    shape = (b,) + (1,) * (real.dim() - 1)  # (B, 1, 1, …): one ε per sample
    eps = torch.rand(shape, generator=generator, dtype=real.dtype, device=real.device)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)  # eq. 21, (B, …)
    out = critic(x_hat)
    if out.shape not in ((b,), (b, 1)):
        raise ValueError(f"the critic must return (B,) or (B, 1) scores, got {tuple(out.shape)} for B = {b}")
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)  # rows of the sum are independent
    norm = grad.flatten(1).norm(dim=1)  # (B,) ‖∇_x f(x̂_b)‖ over the whole sample
    excess = norm - center
    if one_sided:
        excess = excess.clamp_min(0)  # max(‖∇f‖ − 1, 0)   eq. 20
    return excess.pow(2).mean()  # (‖∇f‖ − 1)²   eq. 19
