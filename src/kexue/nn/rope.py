"""Rotary position embedding (RoPE) [8265; RoFormer, Su et al. 2021], 2-D RoPE [8397], general form [9403].

[8265] Transformer升级之路：2、博采众长的旋转式位置编码, kexue.fm/archives/8265
[8397] Transformer升级之路：4、二维位置的旋转式位置编码, kexue.fm/archives/8397
[9403] Transformer升级之路：6、旋转位置编码的完备性分析, kexue.fm/archives/9403
[9675] Transformer升级之路：10、RoPE是一种β进制编码 (NTK-aware base);  PI: Chen et al., arXiv 2306.15595

RoPE multiplies a query or key at position m by the block-diagonal rotation

    R_m = diag(R_{mθ_0}, …, R_{mθ_{d/2−1}}),   R_φ = [[cos φ, −sin φ], [sin φ, cos φ]],   θ_i = base^{−2i/d}

so that ⟨R_m q, R_n k⟩ = qᵀ R_{n−m} k depends on positions only through n − m ("relativity", [8265] eq. 12).

- 1-D, efficient form [8265] eq. 13                               → `apply_rope`; the matrix: `rope_matrix`
- 2-D [8397] R_{x,y} = diag(R_x, R_y): the first half of the features is a 1-D RoPE of size d/2 in x, the
  second half one in y (each half with its own ladder θ_i = base^{−2i/(d/2)})
                                                                   → `apply_rope_2d`, `rope_2d_matrix`
- General [8397, 9403]: R_m = exp(mB) for any skew-symmetric B (and O^m for orthogonal O); every even-order
  skew B = PΛPᵀ with Λ = diag(J_{θ_k}), J_θ = [[0, −θ], [θ, 0]], P orthogonal, so exp(mB) = P R_m(θ) Pᵀ and
  P is absorbed into W_q, W_k [9403]
                      → `general_rope_matrix`, `rope_generator`, `orthogonal_rope_matrix`, `block_diagonalize`
- Long-range decay [8265] §远程衰减: (1/(d/2))·Σ_j |S_j|, S_j = Σ_{i<j} e^{i r θ_i}      → `rope_decay_curve`
- Extrapolation knobs: position interpolation m → m/f [PI], NTK-aware base → base·f^{d/(d−2)} [9675]
                                                                   → `interpolate_positions`, `ntk_base`

Layout: **interleaved** pairs (x_0, x_1), (x_2, x_3), … as in RoFormer, bert4keras, HF RoFormer and
rotary-embedding-torch. HF LLaMA pairs (x_i, x_{i+d/2}) ("half-split", `apply_rope_half_split`); the two
differ by a fixed permutation of the feature axis, so weights move between them only after permuting the rows
of W_q and W_k (`interleaved_to_half_split`, `half_split_to_interleaved`).

Angles m·θ_i are computed in float64 and only then cast: in float32 the product drifts by ~1% near m ≈ 10⁶
(reference/transformer.md §2.4). Matrices (`rope_matrix`, `general_rope_matrix`, …) are float64: they are for
tests, for small d and for the general form, not for the fast path.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kexue.errors import KexueError


def _check_broadcast(positions: Tensor, x: Tensor, who: str) -> None:
    try:
        torch.broadcast_shapes(positions.shape, x.shape[:-1])
    except RuntimeError:
        raise KexueError(
            f"{who}: positions of shape {tuple(positions.shape)} do not broadcast against x.shape[:-1] = "
            f"{tuple(x.shape[:-1])} (pass (T,) or (B, 1, T) positions for x of shape (B, H, T, D))"
        ) from None


def rope_frequencies(dim: int, base: float = 10000.0) -> Tensor:
    """θ_i = base^{−2i/d} for i = 0 … d/2 − 1, float64 [8265]."""
    if dim <= 0 or dim % 2:
        raise KexueError(f"RoPE needs an even, positive feature size; got {dim} (use an even head dimension)")
    return base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (d/2,)


def rope_angles(positions: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """m·θ_i in float64, shape positions.shape + (d/2,); positions: integers or (interpolated) floats."""
    theta = rope_frequencies(dim, base).to(positions.device)
    return positions.to(torch.float64)[..., None] * theta  # (..., T, d/2)


def apply_rope(x: Tensor, positions: Tensor, *, base: float = 10000.0) -> Tensor:
    """R_m x for x of shape (..., T, D), interleaved layout; `positions` broadcasts against x.shape[:-1].

    Typical calls: x (B, H, T, D) with positions (T,) — one shared range — or (B, 1, T) per sequence
    (left padding, a KV-cache offset). Returns a tensor of x's dtype.
    """
    d = x.shape[-1]
    _check_broadcast(positions, x, "apply_rope")
    phi = rope_angles(positions.to(x.device), d, base)  # (..., T, d/2) float64
    cos, sin = phi.cos().to(x.dtype), phi.sin().to(x.dtype)
    x0, x1 = x.unflatten(-1, (d // 2, 2)).unbind(-1)  # (..., T, d/2) each
    # [8265] eq. 13: (x0, x1) ↦ (x0 cos − x1 sin, x0 sin + x1 cos), pair by pair
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


# ------------------------------------------------------------------------------------------------------------
# Layouts: interleaved (2i, 2i+1) ↔ half-split (i, i + d/2)


def apply_rope_half_split(x: Tensor, positions: Tensor, *, base: float = 10000.0) -> Tensor:
    """R_m x in the half-split layout (HF LLaMA `rotate_half`): pair i is (x_i, x_{i+d/2}), angle m·θ_i."""
    d = x.shape[-1]
    _check_broadcast(positions, x, "apply_rope_half_split")
    phi = rope_angles(positions.to(x.device), d, base)  # (..., T, d/2) float64
    cos, sin = phi.cos().to(x.dtype), phi.sin().to(x.dtype)
    x0, x1 = x.chunk(2, dim=-1)  # (..., T, d/2) each
    return torch.cat((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)  # same rotation, other order


def _half_split_order(d: int, device) -> Tensor:
    """perm with half_split[k] = interleaved[perm[k]]: [0, 2, …, d−2, 1, 3, …, d−1]."""
    return torch.arange(d, device=device).view(d // 2, 2).T.flatten()  # (d,)


def _permute_heads(w: Tensor, head_dim: int | None, dim: int, inverse: bool, who: str) -> Tensor:
    n = w.shape[dim]
    head_dim = n if head_dim is None else head_dim
    if head_dim <= 0 or head_dim % 2 or n % head_dim:
        raise KexueError(
            f"{who}: axis {dim} of size {n} must be a whole number of heads of even size head_dim, got "
            f"head_dim={head_dim} (pass head_dim=D for a fused (H·D, d_model) projection)"
        )
    perm = _half_split_order(head_dim, w.device)
    if inverse:
        perm = perm.argsort()
    w = w.movedim(dim, 0).unflatten(0, (n // head_dim, head_dim))  # (H, D, …)
    return w[:, perm].flatten(0, 1).movedim(0, dim)


def interleaved_to_half_split(w: Tensor, *, head_dim: int | None = None, dim: int = 0) -> Tensor:
    """Permute the output rows of W_q / W_k (or a bias) so that half-split RoPE on the result gives the
    same scores as interleaved RoPE on the original. `dim` indexes the H·D output features (dim 0 of an
    nn.Linear weight (H·D, d_model)); `head_dim` = D splits it into heads (None: one head)."""
    return _permute_heads(w, head_dim, dim, False, "interleaved_to_half_split")


def half_split_to_interleaved(w: Tensor, *, head_dim: int | None = None, dim: int = 0) -> Tensor:
    """The inverse permutation of `interleaved_to_half_split` (e.g. loading HF LLaMA weights)."""
    return _permute_heads(w, head_dim, dim, True, "half_split_to_interleaved")


# ------------------------------------------------------------------------------------------------------------
# 2-D RoPE [8397]


def _check_2d(d: int) -> None:
    if d <= 0 or d % 4:
        raise KexueError(f"2-D RoPE needs a feature size divisible by 4 (two halves of pairs), got {d}")


def apply_rope_2d(x: Tensor, pos_x: Tensor, pos_y: Tensor, *, base: float = 10000.0) -> Tensor:
    """R_{x,y} v of [8397] eq. 1 for v of shape (..., T, D), D divisible by 4.

    Features [0, D/2) are rotated as a 1-D (interleaved) RoPE of size D/2 at position x, features [D/2, D) as
    one at position y. `pos_x`, `pos_y` broadcast against x.shape[:-1] (e.g. (T,) each for a flattened h×w
    grid: x = t // w, y = t % w — not the flattened index t, which puts vertical neighbours w apart [8397]).
    """
    _check_2d(x.shape[-1])
    xa, xb = x.chunk(2, dim=-1)  # (..., T, D/2) each
    return torch.cat((apply_rope(xa, pos_x, base=base), apply_rope(xb, pos_y, base=base)), dim=-1)


# ------------------------------------------------------------------------------------------------------------
# Matrix forms and the general solution exp(mB) [8265, 8397, 9403]


def _block_diag2(blocks: Tensor) -> Tensor:
    """(..., h, 2, 2) 2×2 blocks → the (..., 2h, 2h) block-diagonal matrix."""
    h = blocks.shape[-3]
    eye = torch.eye(h, dtype=blocks.dtype, device=blocks.device)  # (h, h)
    full = blocks[..., :, None, :, :] * eye[:, :, None, None]  # (..., h, h, 2, 2)
    return full.transpose(-3, -2).reshape(*blocks.shape[:-3], 2 * h, 2 * h)  # (..., 2h, 2h)


def _theta(dim: int, base: float, theta: Tensor | None) -> Tensor:
    if theta is None:
        return rope_frequencies(dim, base)  # (d/2,)
    if theta.shape != (dim // 2,) or dim % 2:
        raise KexueError(
            f"theta must have shape (d/2,) = ({dim // 2},) for even d = {dim}, got {tuple(theta.shape)}"
        )
    return theta.to(torch.float64)


def rope_matrix(
    positions: Tensor | float, dim: int, *, base: float = 10000.0, theta: Tensor | None = None
) -> Tensor:
    """The explicit block-diagonal R_m of [8265] eq. 11, float64, shape positions.shape + (d, d).

    `theta` (d/2,) overrides the ladder base^{−2i/d} (e.g. the angles found by `block_diagonalize`).
    """
    m = torch.as_tensor(positions, dtype=torch.float64)
    th = _theta(dim, base, theta).to(m.device)
    phi = m[..., None] * th  # (..., d/2)
    c, s = phi.cos(), phi.sin()
    blocks = torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)  # (..., d/2, 2, 2) = R_φ
    return _block_diag2(blocks)  # (..., d, d)


def rope_generator(dim: int, *, base: float = 10000.0, theta: Tensor | None = None) -> Tensor:
    """The skew-symmetric B = diag(J_{θ_0}, …), J_θ = [[0, −θ], [θ, 0]], with exp(mB) = R_m [9403] eq. 6."""
    th = _theta(dim, base, theta)
    z = torch.zeros_like(th)
    blocks = torch.stack((torch.stack((z, -th), -1), torch.stack((th, z), -1)), -2)  # (d/2, 2, 2) = J_θ
    return _block_diag2(blocks)  # (d, d)


def rope_2d_matrix(
    pos_x: Tensor | float, pos_y: Tensor | float, dim: int, *, base: float = 10000.0
) -> Tensor:
    """R_{x,y} = diag(R_x, R_y) of [8397] eq. 1 (each a 1-D RoPE matrix of size d/2), float64 (..., d, d)."""
    _check_2d(dim)
    rx = rope_matrix(pos_x, dim // 2, base=base)  # (..., d/2, d/2)
    ry = rope_matrix(pos_y, dim // 2, base=base)
    rx, ry = torch.broadcast_tensors(rx, ry)
    z = torch.zeros_like(rx)
    return torch.cat((torch.cat((rx, z), -1), torch.cat((z, ry), -1)), -2)  # (..., d, d)


def _check_skew(b: Tensor, who: str) -> Tensor:
    b = b.to(torch.float64)
    if b.dim() != 2 or b.shape[0] != b.shape[1]:
        raise KexueError(f"{who} needs a square (d, d) matrix B, got shape {tuple(b.shape)}")
    tol = 1e-10 * max(1.0, float(b.abs().max()))
    if float((b + b.T).abs().max()) > tol:
        raise KexueError(
            f"{who} needs a skew-symmetric B (Bᵀ = −B, [9403] eq. 4), got max|B + Bᵀ| = "
            f"{float((b + b.T).abs().max()):.3g} (use (A − Aᵀ)/2)"
        )
    return b


def general_rope_matrix(m: Tensor | float, b: Tensor) -> Tensor:
    """R_m = exp(mB) for a skew-symmetric B (d, d), float64, shape m.shape + (d, d) [8397, 9403]."""
    b = _check_skew(b, "general_rope_matrix")
    m = torch.as_tensor(m, dtype=torch.float64, device=b.device)
    return torch.linalg.matrix_exp(m[..., None, None] * b)  # (..., d, d)


def apply_general_rope(x: Tensor, positions: Tensor, b: Tensor) -> Tensor:
    """exp(mB)·x for x (..., T, D): the general form, e.g. with a learned P for linear attention [9403]."""
    _check_broadcast(positions, x, "apply_general_rope")
    r = general_rope_matrix(positions.to(b.device), b).to(x.dtype)  # (..., T, D, D)
    return (r @ x[..., None]).squeeze(-1)  # (..., T, D)


def orthogonal_rope_matrix(n: int, o: Tensor) -> Tensor:
    """R_n = Oⁿ for an orthogonal O (d, d), n ∈ ℤ (O⁻¹ = Oᵀ) — the widest solution of [9403] §正交通解."""
    o = o.to(torch.float64)
    if o.dim() != 2 or o.shape[0] != o.shape[1]:
        raise KexueError(f"orthogonal_rope_matrix needs a square (d, d) matrix, got shape {tuple(o.shape)}")
    eye = torch.eye(o.shape[0], dtype=o.dtype, device=o.device)
    if float((o.T @ o - eye).abs().max()) > 1e-10:
        raise KexueError("orthogonal_rope_matrix needs an orthogonal O (OᵀO = I), e.g. from torch.linalg.qr")
    return torch.linalg.matrix_power(o if n >= 0 else o.T, abs(n))  # (d, d)


def block_diagonalize(b: Tensor) -> tuple[Tensor, Tensor]:
    """(P, θ) with B = P·diag(J_{θ_0}, …, J_{θ_{d/2−1}})·Pᵀ, P orthogonal, θ ≥ 0 descending [9403] eq. 8.

    How: iB is Hermitian, so `eigh` gives orthonormal eigenvectors v = a + ib with iBv = λv, i.e. Ba = λb and
    Bb = −λa. For λ > 0, v ⟂ v̄ (an eigenvector of −λ) gives |a| = |b| = 1/√2 and a ⟂ b, so the columns
    (√2·a, √2·b) carry one J_λ block and all such columns are orthonormal. The zero eigenspace (B singular)
    is real; its basis is rebuilt from the real and imaginary parts of its eigenvectors (θ = 0 blocks).
    """
    b = _check_skew(b, "block_diagonalize")
    d = b.shape[0]
    if d % 2:
        raise KexueError(
            f"block_diagonalize needs an even-order B (odd order always has a zero row), got d = {d}"
        )
    lam, v = torch.linalg.eigh(1j * b.to(torch.complex128))  # ascending λ (d,), columns v (d, d)
    tol = d * torch.finfo(torch.float64).eps * max(1.0, float(lam.abs().max()))
    pos = lam > tol  # the J_λ blocks, λ = θ > 0
    cols = torch.stack((v[:, pos].real, v[:, pos].imag), dim=-1).flatten(1) * math.sqrt(2.0)  # (d, 2k)
    theta = lam[pos]
    zero = lam.abs() <= tol  # real null space of B, dimension d − 2k
    if zero.any():
        ri = torch.cat((v[:, zero].real, v[:, zero].imag), dim=1)  # (d, 2z) spans null(B)
        u = torch.linalg.svd(ri, full_matrices=False).U[:, : int(zero.sum())]  # orthonormal real basis
        cols = torch.cat((cols, u), dim=1)
        theta = torch.cat((theta, lam.new_zeros(int(zero.sum()) // 2)))
    order = theta.argsort(descending=True)
    cols = cols.view(d, d // 2, 2)[:, order].flatten(1)  # (d, d), pairs in the order of θ
    return cols, theta[order]


# ------------------------------------------------------------------------------------------------------------
# Long-range decay [8265] and extrapolation knobs


def rope_decay_curve(dim: int, max_distance: int, *, base: float = 10000.0) -> Tensor:
    """(1/(d/2))·Σ_{j=1}^{d/2} |S_j(r)|, S_j(r) = Σ_{i<j} e^{i·r·θ_i}, for r = 0 … max_distance, float64.

    The factor of the Abel-summation bound |Σ_i h_i e^{irθ_i}| ≤ max_i|h_{i+1} − h_i|·Σ_j |S_j| that depends
    on the distance r ([8265] eq. 15–16; the post's figure at d = 128, r ≤ 256).
    """
    th = rope_frequencies(dim, base)  # (d/2,)
    r = torch.arange(max_distance + 1, dtype=torch.float64)  # (R,)
    phi = r[:, None] * th  # (R, d/2)
    s = torch.polar(torch.ones_like(phi), phi).cumsum(-1)  # (R, d/2): S_1 … S_{d/2}
    return s.abs().mean(-1)  # (R,)


def interpolate_positions(positions: Tensor, factor: float) -> Tensor:
    """Position interpolation [PI]: m → m/f (float64), squeezing f× the trained length into its range."""
    if factor <= 0:
        raise KexueError(f"position interpolation needs a scale factor f > 0, got {factor}")
    return positions.to(torch.float64) / factor


def ntk_base(base: float, factor: float, dim: int) -> float:
    """NTK-aware scaling [9675]: base·f^{d/(d−2)}, which keeps θ_0 = 1 (extrapolate the fastest pair) and
    divides the slowest θ_{d/2−1} by exactly f (interpolate the slowest pair)."""
    if factor <= 0 or dim <= 2 or dim % 2:
        raise KexueError(f"ntk_base needs f > 0 and an even dim > 2, got f={factor}, dim={dim}")
    return base * factor ** (dim / (dim - 2))
