"""Transformer-VQ: quantise the keys and softmax attention becomes linear in the sequence length [9844].

[9844] VQ一下Key，Transformer的复杂度就变成线性了, kexue.fm/archives/9844 (equations numbered in order of
appearance in the post); [TVQ] Lingle, "Transformer-VQ: Linear-Time Transformers via Vector Quantization",
ICLR 2024, and its repository transformer-vq/transformer_vq ([TVQ-code]); [VQVAE] van den Oord et al.,
NeurIPS 2017 (straight-through estimator, commitment loss, EMA codebook in its appendix).

Notation (code name → post symbol): `codebook` C ∈ ℝ^{c×d_k}; `codes` the index of the 1 in each row of
the one-hot Δ ∈ {0,1}^{n×c}; `k_hat` K̂ = ΔC; `block_size` l; `counts` Δᵀ1 and `means` ΔᵀV / Δᵀ1 of the
cache U; `scale` the logit factor the post omits (1/√d_k unless given).

- VQ attention (eq. 2): softmax(QK̂ᵀ)V with K̂ = VQ(K, C)                      → `vq_attention_quadratic`
- "挑出" trick (eq. 4): exp(QK̂ᵀ)V = exp(QCᵀ)(ΔᵀV), so the encoder is
      exp(QCᵀ)(ΔᵀV) / exp(QCᵀ)(Δᵀ1), O(nc(d_k + d_v))                → `vq_attention_linear(causal=False)`
- Decoder, block form with the local bias B (eq. 9):
      O_[i] = exp(Q_[i]K̂_[i]ᵀ + B_[i,i])V_[i] + exp(Q_[i]K̂_[i−1]ᵀ + B_[i,i−1])V_[i−1] + exp(Q_[i]Cᵀ)U_{i−2},
      U_i = U_{i−1} + Δ_[i]ᵀV_[i], and the same with V → 1 for the denominator
                                                                   → `vq_attention_linear(causal=True)`
  The current and the previous block are exact (K̂ with its straight-through gradient); older blocks are
  read through the cache U. The same recurrence one token (or chunk) at a time → `vq_attention_step`.
- Numerics of [TVQ-code] (reference/transformer.md §1.6, §5): the cache holds per-code counts and MEANS
  (not raw sums); its logits are q·c_s + log count_s, with −1e30 (never log 0) for empty codes; one
  shared max is subtracted from the cache and the recent logits; the weights are divided by the
  denominator before the product with V.
- Speed: `vq_attention_linear` hands each block's softmax over its c + 2l keys — [C | log n] for the
  cache (one extra key column carries the log count, the queries a 1 there) then blocks i − 1 and i — to
  `F.scaled_dot_product_attention` (CPU's fused flash kernel: one pass, no exp in the float underflow
  range), a few blocks per call; the cache grows by `index_add` (O(l·Dv) a block, not a one-hot product).
- Gradients (post §梯度回传, [TVQ-code] `grad_thru_cache=False`): keys get the straight-through gradient
  in the two exact blocks only, and U is built from stop_gradient(V), so older values get no gradient —
  Transformer-XL's trade. `grad_through_cache=True` makes the linear form's gradient equal the quadratic
  one's. The encoder form has no exact blocks: there V gets its full gradient, the keys none.

The quantiser (`VectorQuantizer`): nearest codeword by Euclidean distance; k̂ = sg(C[z]) + (k − sg(k)),
equal to the codeword in value with ∂k̂/∂k = I (the straight-through estimator of [VQVAE]); the codebook
learns by EMA of cluster sums and counts (γ = 0.99, [TVQ]) or by gradient of ‖sg(k) − C[z]‖²; the keys
are pulled to their codes by the commitment loss β‖k − sg(k̂)‖² (β = 1e-4, [TVQ]).

The layer (`VQAttention`) is [TVQ]'s single-head gated attention unit (GAU): un-parameterised LayerNorm
× d_k^{−1/4} on q and k (so q·k carries 1/√d_k), SiLU values and gate, and a learned Toeplitz bias
b[i − j] for 0 ≤ i − j ≤ l, the post's B (zero beyond l, so it touches only the two exact blocks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.errors import KexueError
from kexue.nn.positions import sinusoidal_positions
from kexue.train.aux_loss import add_loss

MASK_INFTY_APPROX = 1e30  # the logit of an empty code is −1e30: exp gives 0 and nothing is ever log 0


# ------------------------------------------------------------------------------------------- checks
def _check_codebook(codebook: Tensor, d: int, heads: int | None, where: str) -> None:
    if codebook.dim() not in (2, 3) or not codebook.is_floating_point():
        raise KexueError(
            f"{where}: the codebook must be a float (c, D) or (H, c, D) tensor, got {tuple(codebook.shape)}"
        )
    if codebook.shape[-1] != d:
        raise KexueError(f"{where}: codeword dim {codebook.shape[-1]} ≠ key/query dim {d}; use one width")
    if codebook.dim() == 3 and heads is not None and codebook.shape[0] != heads:
        raise KexueError(
            f"{where}: a per-head codebook {tuple(codebook.shape)} needs H = {heads} rows, one per head"
        )


def _check_4d(where: str, **tensors: Tensor) -> None:
    for name, t in tensors.items():
        if t.dim() != 4:
            raise KexueError(f"{where}: {name} must be 4-D (B, H, T, D), got shape {tuple(t.shape)}")


def _check_codes(codes: Tensor, c: int, where: str) -> None:
    if codes.dtype != torch.long:
        raise KexueError(f"{where}: codes must be a LongTensor of code indices, got {codes.dtype}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= c):
        raise KexueError(f"{where}: codes must lie in [0, {c}) for a codebook of {c} codewords")


def _check_rel_bias(rel_bias: Tensor | None, q: Tensor, causal: bool, where: str) -> int:
    """The window W of a bias (…, W + 1) (−1 when there is none)."""
    if rel_bias is None:
        return -1
    if not causal:
        raise KexueError(f"{where}: rel_bias is the decoder's local bias B of [9844]; it needs causal=True")
    B, H, tq = q.shape[:3]
    shape = tuple(rel_bias.shape)
    toeplitz = rel_bias.dim() == 1 or (rel_bias.dim() == 2 and shape[0] in (1, H))
    per_row = rel_bias.dim() == 4 and shape[0] in (1, B) and shape[1] in (1, H) and shape[2] == tq
    if not (toeplitz or per_row) or shape[-1] < 1:
        raise KexueError(
            f"{where}: rel_bias must be (W + 1,), (H, W + 1) or per query row (B|1, H|1, Tq, W + 1) with "
            f"Tq = {tq}, got {shape}"
        )
    return shape[-1] - 1


def _scaled(q: Tensor, scale: float | Tensor | None) -> Tensor:
    """q·scale (None: 1/√D). A tensor scale broadcasts to (B, H, T, 1): one factor per query row."""
    return q * (1.0 / math.sqrt(q.shape[-1]) if scale is None else scale)


# ---------------------------------------------------------------------------------------- quantise
def codewords(codes: Tensor, codebook: Tensor) -> Tensor:
    """C[z]: (…, T) codes → (…, T, D) codewords; a per-head codebook (H, c, D) needs codes (B, H, T)."""
    if codebook.dim() == 2:
        return codebook[codes]  # (…, T, D)
    heads = torch.arange(codebook.shape[0], device=codes.device)[:, None]  # (H, 1) broadcasts on (B, H, T)
    return codebook[heads, codes]  # (B, H, T, D)


def _code_logits(q: Tensor, codebook: Tensor) -> Tensor:
    """q·c_s for every code: q (B, H, …, D) → (B, H, …, c)."""
    flat = q.flatten(2, -2)  # (B, H, N, D)
    ct = codebook.transpose(-1, -2)  # (D, c) or (H, D, c): broadcasts over B
    return (flat @ ct).view(*q.shape[:-1], codebook.shape[-2])  # (B, H, …, c)


def quantize(k: Tensor, codebook: Tensor) -> tuple[Tensor, Tensor]:
    """(k̂, codes): each key's nearest codeword (Euclidean), with the straight-through gradient [9844].

    k: (…, T, D) with a shared codebook (c, D), or (B, H, T, D) with a per-head codebook (H, c, D).
    Returns k̂ (same shape as k), equal in value to C[codes] (bit for bit), with ∂k̂/∂k = I and no gradient
    to the codebook (k̂ = sg(C[z]) + k − sg(k), [VQVAE]); codes: (…, T) long.
    """
    if k.dim() < 2 or not k.is_floating_point():
        raise KexueError(f"quantize: k must be a float (…, T, D) tensor, got {k.dtype} {tuple(k.shape)}")
    _check_codebook(codebook, k.shape[-1], None, "quantize")
    if codebook.dim() == 3 and (k.dim() != 4 or k.shape[1] != codebook.shape[0]):
        raise KexueError(
            f"quantize: a per-head codebook {tuple(codebook.shape)} needs k of shape "
            f"(B, {codebook.shape[0]}, T, D), got {tuple(k.shape)}"
        )
    if codebook.shape[-2] == 0:
        raise KexueError("quantize: the codebook is empty; give it at least one codeword")
    with torch.no_grad():  # ‖k − c‖² = ‖k‖² − 2k·c + ‖c‖²; ‖k‖² does not change the argmin
        cb = codebook.to(k.dtype)
        if cb.dim() == 2:
            dist = cb.pow(2).sum(-1) - 2 * (k @ cb.T)  # (…, T, c)
        else:
            dist = cb.pow(2).sum(-1)[:, None, :] - 2 * (k @ cb.transpose(-1, -2))  # (B, H, T, c)
        codes = dist.argmin(-1)  # (…, T)
    k_hat = codewords(codes, codebook).detach().to(k.dtype) + (k - k.detach())  # STE [VQVAE] eq. 3
    return k_hat, codes


# --------------------------------------------------------------------------------- the two forms
def _row_bias(rel_bias: Tensor, tq: int, dtype: torch.dtype) -> Tensor:
    """Any accepted bias as one per query row, (B|1, H|1, Tq, W + 1); a Toeplitz b repeats on every row."""
    rel_bias = rel_bias.to(dtype)
    if rel_bias.dim() == 4:
        return rel_bias
    heads = rel_bias.shape[0] if rel_bias.dim() == 2 else 1
    return rel_bias.view(1, heads, 1, -1).expand(1, heads, tq, rel_bias.shape[-1])  # no copy


def _bias(row_bias: Tensor, dist: Tensor) -> Tensor:
    """B_ij = b[row i, i − j] for 0 ≤ i − j ≤ W, else 0 (the window of [9844]'s B).

    row_bias (…, P, W + 1) and dist (P, K), the query − key positions → (…, P, K).
    """
    w = row_bias.shape[-1] - 1
    idx = dist.clamp(0, w).expand(*row_bias.shape[:-1], dist.shape[-1])  # (…, P, K)
    return torch.where((dist >= 0) & (dist <= w), row_bias.gather(-1, idx), 0.0)


def vq_attention_quadratic(
    q: Tensor,
    k_hat: Tensor,
    v: Tensor,
    *,
    causal: bool,
    scale: float | Tensor | None = None,
    rel_bias: Tensor | None = None,
) -> Tensor:
    """softmax(QK̂ᵀ·scale + B)V [9844] eq. 2, O(n²): the reference the linear form must equal.

    q (B, H, Tq, D), k_hat (B, H, Tk, D), v (B, H, Tk, Dv) → (B, H, Tq, Dv). Nothing here is specific to
    quantised keys: with raw keys it is dense attention (the layer's "dense" mode).
    causal: query i sits at position i + Tk − Tq (the last query aligned with the last key, as with a KV
        cache) and sees keys j ≤ its position.
    scale: None (1/√D), a float, or a tensor broadcastable to (B, H, Tq, 1).
    rel_bias: the local bias, added for 0 ≤ i − j ≤ W (causal only): b[i − j] from a (W + 1,) or (H, W + 1)
        tensor, or b[i, i − j] from a per-query-row (B|1, H|1, Tq, W + 1) tensor.
    Runs `F.scaled_dot_product_attention`; when D ≠ Dv the narrower side is zero-padded so that the CPU
    flash kernel (which needs equal head dims) is used instead of the O(n²)-memory math kernel.
    """
    _check_4d("vq_attention_quadratic", q=q, k_hat=k_hat, v=v)
    if q.shape[:2] != k_hat.shape[:2] or k_hat.shape[:3] != v.shape[:3] or q.shape[-1] != k_hat.shape[-1]:
        raise KexueError(
            f"vq_attention_quadratic: q {tuple(q.shape)}, k_hat {tuple(k_hat.shape)}, v {tuple(v.shape)} "
            "do not fit (need q (B,H,Tq,D), k_hat (B,H,Tk,D), v (B,H,Tk,Dv))"
        )
    tq, tk = q.shape[2], k_hat.shape[2]
    if causal and tq > tk:
        raise KexueError(f"vq_attention_quadratic: causal attention needs Tq ≤ Tk, got {tq} > {tk}")
    _check_rel_bias(rel_bias, q, causal, "vq_attention_quadratic")
    q = _scaled(q, scale)
    mask = None
    if rel_bias is not None or (causal and tq != tk):  # an explicit additive mask, bottom-right causal
        pos_q = torch.arange(tq, device=q.device)[:, None] + (tk - tq)  # (Tq, 1)
        dist = pos_q - torch.arange(tk, device=q.device)  # (Tq, Tk) query − key position
        mask = torch.zeros(tq, tk, dtype=q.dtype, device=q.device)
        if rel_bias is not None:
            mask = _bias(_row_bias(rel_bias, tq, q.dtype), dist)  # (B|1, H|1, Tq, Tk)
        mask = mask.masked_fill(dist < 0, float("-inf"))  # causal: keys after the query are invisible
    d, dv = q.shape[-1], v.shape[-1]
    if d < dv:  # zero columns change no q·k: equal head dims keep SDPA on its flash kernel
        q, k_hat = F.pad(q, (0, dv - d)), F.pad(k_hat, (0, dv - d))
    elif dv < d:
        v = F.pad(v, (0, d - dv))
    out = F.scaled_dot_product_attention(
        q, k_hat, v, attn_mask=mask, is_causal=causal and mask is None, scale=1.0
    )  # (B, H, Tq, max(D, Dv))
    return out[..., :dv]


def _log_counts(counts: Tensor) -> Tensor:
    """log count_s, −1e30 for an empty code; the log only ever sees counts ≥ 1 [TVQ-code]."""
    return torch.where(counts > 0, counts.clamp(min=1).log(), -MASK_INFTY_APPROX)


def _encoder(q: Tensor, codes: Tensor, codebook: Tensor, v: Tensor) -> Tensor:
    """exp(QCᵀ)(ΔᵀV) / exp(QCᵀ)(Δᵀ1) [9844] eq. 4, as softmax_s(q·c_s + log count_s) · mean_s."""
    acc = torch.promote_types(v.dtype, torch.float32)  # counts and sums in ≥ fp32
    delta = F.one_hot(codes, codebook.shape[-2]).to(acc)  # (B, H, Tk, c) one-hot Δ
    counts = delta.sum(-2)  # (B, H, c) Δᵀ1
    means = (delta.transpose(-1, -2) @ v.to(acc)) / counts.clamp(min=1)[..., None]  # (B, H, c, Dv) ΔᵀV/Δᵀ1
    logits = _code_logits(q, codebook) + _log_counts(counts).to(q.dtype)[..., None, :]  # (B, H, Tq, c)
    return logits.softmax(-1) @ means.to(v.dtype)  # (B, H, Tq, Dv): divided before the product with V


def _window(x: Tensor, start: int, stop: int) -> Tensor:
    """Positions start … stop − 1 of x (B, H, T, …), zero outside [0, T): (B, H, stop − start, …)."""
    T = x.shape[2]
    rows = x[:, :, min(max(start, 0), T) : max(min(stop, T), 0)]
    before = min(max(0, -start), stop - start)
    after = stop - start - before - rows.shape[2]
    if before or after:
        zeros = [rows.new_zeros(*rows.shape[:2], n, *rows.shape[3:]) for n in (before, after)]
        rows = torch.cat([zeros[0], rows, zeros[1]], 2)
    return rows


def _widen(x: Tensor, e: int, column: Tensor | float) -> Tensor:
    """[x | column | 0]: (…, D) → (…, e) with `column` (a scalar, or broadcastable to (…, 1)) at index D."""
    col = column if isinstance(column, Tensor) else x.new_full((1,), column)
    parts = [x, col.to(x.dtype).expand(*x.shape[:-1], 1), x.new_zeros(*x.shape[:-1], e - x.shape[-1] - 1)]
    return torch.cat(parts, -1)


def _combine(s_recent: Tensor, v_recent: Tensor, s_cache: Tensor, means: Tensor) -> Tensor:
    """Σ exp(s − m)·V over the recent keys and the cache, / the matching Σ exp(s − m) [TVQ-code].

    One shared max m (detached: the result does not depend on it), and the weights are divided by the
    denominator before they meet V or the cache means.
    """
    mx = torch.maximum(s_recent.amax(-1), s_cache.amax(-1)).detach()[..., None]  # (…, l, 1) shared max
    a_recent, a_cache = (s_recent - mx).exp(), (s_cache - mx).exp()  # (…, l, R), (…, l, c)
    denom = a_recent.sum(-1, keepdim=True) + a_cache.sum(-1, keepdim=True)  # (…, l, 1)
    return (a_recent / denom) @ v_recent + (a_cache / denom) @ means  # (…, l, Dv)


GROUP_BYTES = 2**24  # bytes of the keys and values of one SDPA call: a few blocks, still cache-sized


def _decoder(q, codes, codebook, v, k_hat, l, rel_bias, grad_through_cache) -> Tensor:
    """The block recurrence [9844] eq. 9 as one softmax per block over c + 2l keys; q already scaled.

    Block i's queries [q | 1] attend to the keys [C | log n] (the cache U_{i−2}: one key per code, its
    value the code's mean — [TVQ-code]'s logit q·c_s + log count_s, −1e30 for an empty code) and
    [k̂ | 0] of blocks i − 1 and i (causal in block i, local bias B as an additive mask; the keys before
    position 0 get −1e30 like an empty code). One `F.scaled_dot_product_attention` call then does the
    shared max, the exp, the sums and the division — CPU's fused flash kernel — for a group of blocks;
    the cache folds block i − 2 in by `index_add` (O(l·Dv)). Returns (B, H, T, Dv).
    """
    B, H, T, D = q.shape
    m, c, dv = -(-T // l), codebook.shape[-2], v.shape[-1]
    S, e = c + 2 * l, max(D + 1, dv)  # keys per block; the common width (SDPA's flash kernel needs one)
    group = max(1, min(m, GROUP_BYTES // (2 * B * H * S * e * q.element_size())))
    acc = torch.promote_types(v.dtype, torch.float32)  # counts and sums in ≥ fp32
    cb = _widen(codebook, e, 0.0)  # (c, e) or (H, c, e); column D gets log n
    dist = torch.arange(l, device=q.device)[:, None] + l - torch.arange(2 * l, device=q.device)  # (l, 2l)
    mask = torch.zeros(l, S, dtype=q.dtype, device=q.device)  # the cache and block i − 1 are all visible
    mask[:, c:] = mask[:, c:].masked_fill(dist < 0, float("-inf"))  # (l, S): block i is causal
    rows = None if rel_bias is None else _row_bias(rel_bias, T, q.dtype)  # (B|1, H|1, T, W + 1)
    slot0 = torch.arange(B * H, device=q.device).view(B, H, 1) * c  # (B, H, 1): row b·H + h of the cache
    counts = torch.zeros(B * H * c, dtype=acc, device=q.device)  # Δᵀ1 of the folded blocks
    sums = torch.zeros(B * H * c, dv, dtype=acc, device=q.device)  # ΔᵀV of the folded blocks
    ones = torch.ones(B * H * l, dtype=acc, device=q.device)
    vc = v if grad_through_cache else v.detach()  # the paper's stop_gradient through U
    outs = []
    for i0 in range(0, m, group):
        i1 = min(m, i0 + group)
        g = i1 - i0
        keys = q.new_empty(B, H, g, S, e)  # per block [C | log n ; k̂_{i−1} | 0 ; k̂_i | 0]
        values = v.new_empty(B, H, g, S, e)  # per block [means ; v_{i−1} ; v_i], zero-padded to e
        for j, i in enumerate(range(i0, i1)):  # block by block: each piece is still in cache for the next
            if i >= 2:  # U_{i−2} = U_{i−3} + Δ_[i−2]ᵀV_[i−2]
                slot = (slot0 + codes[:, :, (i - 2) * l : (i - 1) * l]).flatten()  # (B·H·l,)
                counts = counts.index_add(0, slot, ones)
                sums = sums.index_add(0, slot, vc[:, :, (i - 2) * l : (i - 1) * l].reshape(-1, dv).to(acc))
            keys[:, :, j, :c] = cb
            keys[:, :, j, :c, D] = _log_counts(counts).view(B, H, c).to(q.dtype)
            values[:, :, j, :c, :dv] = (sums / counts.clamp(min=1)[:, None]).view(B, H, c, dv).to(v.dtype)
            values[:, :, j, :c, dv:] = 0
        pos = torch.arange((i0 - 1) * l, i1 * l, device=q.device)[:, None]  # (R, 1), R = (g + 1)·l
        before = torch.where(pos < 0, -MASK_INFTY_APPROX, 0.0)  # (R, 1): keys before position 0 are empty
        kw = _widen(_window(k_hat, (i0 - 1) * l, i1 * l), e, before).view(B, H, g + 1, l, e)
        vw = F.pad(_window(v, (i0 - 1) * l, i1 * l), (0, e - dv)).view(B, H, g + 1, l, e)
        keys[..., c : c + l, :], keys[..., c + l :, :] = kw[:, :, :-1], kw[:, :, 1:]
        values[..., c : c + l, :], values[..., c + l :, :] = vw[:, :, :-1], vw[:, :, 1:]
        qw = _widen(_window(q, i0 * l, i1 * l), e, 1.0)  # (B, H, g·l, e): [q | 1 | 0]
        attn_mask = mask if rows is None else _group_mask(rows, mask, dist, i0, i1, l, H)
        out = F.scaled_dot_product_attention(
            qw.view(B, H * g, l, e),
            keys.view(B, H * g, S, e),
            values.view(B, H * g, S, e),
            attn_mask=attn_mask,
            scale=1.0,
        )  # (B, H·g, l, e)
        outs.append(out.view(B, H, g * l, e)[..., :dv])
    return torch.cat(outs, 2)[:, :, :T] if outs else v.new_zeros(B, H, 0, dv)


def _group_mask(rows: Tensor, mask: Tensor, dist: Tensor, i0: int, i1: int, l: int, heads: int) -> Tensor:
    """The causal mask plus the local bias B of blocks i0 … i1 − 1: (B|1, H·g, l, S) for SDPA."""
    g = i1 - i0
    b = _bias(_window(rows, i0 * l, i1 * l).unflatten(2, (g, l)), dist)  # (B|1, H|1, g, l, 2l)
    c = mask.shape[-1] - 2 * l
    full = torch.cat([b.new_zeros(*b.shape[:-1], c), b], -1) + mask  # (B|1, H|1, g, l, S)
    return full.expand(full.shape[0], heads, *full.shape[2:]).flatten(1, 2)  # (B|1, H·g, l, S)


def vq_attention_linear(
    q: Tensor,
    codes: Tensor,
    codebook: Tensor,
    v: Tensor,
    *,
    causal: bool,
    block_size: int | None = None,
    scale: float | Tensor | None = None,
    k_hat: Tensor | None = None,
    rel_bias: Tensor | None = None,
    grad_through_cache: bool = False,
) -> Tensor:
    """softmax(QK̂ᵀ·scale + B)V with K̂ = C[codes] in time and memory linear in T [9844] eq. 4 and 9.

    q (B, H, Tq, D); codes (B, H, Tk) long; codebook (H, c, D) per head or (c, D) shared; v (B, H, Tk, Dv)
    → (B, H, Tq, Dv). Equals `vq_attention_quadratic(q, codewords(codes, codebook), v, …)`.
    causal=False: the encoder form (Tq may differ from Tk); block_size is not used.
    causal=True: self-attention (Tq = Tk = T, any T — the last block may be short) in blocks of
        `block_size` l: block i attends exactly to blocks i − 1 and i and to blocks ≤ i − 2 through the
        cache. Costs O(T·(c + 2l)·(D + Dv)) time and O(T·Dv) memory plus the keys and values of one
        SDPA call (≈ `GROUP_BYTES`; with rel_bias also its (l, c + 2l) masks).
    scale: None (1/√D), a float, or a tensor broadcastable to (B, H, Tq, 1).
    k_hat: (B, H, T, D), the quantiser's output: its straight-through gradient reaches the keys through
        the two exact blocks (its value must be C[codes]; default C[codes] itself). Causal only.
    rel_bias: the post's B, causal only, W ≤ block_size: b[i − j] for 0 ≤ i − j ≤ W from (W + 1,) or
        (H, W + 1), or b[i, i − j] per query row from (B|1, H|1, T, W + 1) (e.g. Transformer-XL's
        (q_i + v)·R_{i−j}).
    grad_through_cache: False (the paper): the cache is built from stop_gradient(v); True: the exact
        gradient of the quadratic form, except the keys' straight-through part in old blocks.
    """
    where = "vq_attention_linear"
    _check_4d(where, q=q, v=v)
    _check_codebook(codebook, q.shape[-1], q.shape[1], where)
    if codes.dim() != 3 or codes.shape != v.shape[:3] or q.shape[:2] != v.shape[:2]:
        raise KexueError(
            f"{where}: q {tuple(q.shape)}, codes {tuple(codes.shape)}, v {tuple(v.shape)} do not fit "
            "(need q (B,H,Tq,D), codes (B,H,Tk), v (B,H,Tk,Dv))"
        )
    _check_codes(codes, codebook.shape[-2], where)
    w = _check_rel_bias(rel_bias, q, causal, where)
    q, codebook = _scaled(q, scale), codebook.to(q.dtype)
    if not causal:
        if k_hat is not None:
            raise KexueError(f"{where}: k_hat feeds the exact blocks of the causal form; pass causal=True")
        return _encoder(q, codes, codebook, v)
    if block_size is None or block_size < 1:
        raise KexueError(f"{where}: the causal form needs block_size ≥ 1, got {block_size}")
    if q.shape[2] != codes.shape[2]:
        raise KexueError(f"{where}: causal VQ attention is self-attention: Tq = {q.shape[2]} ≠ Tk")
    if w > block_size:
        raise KexueError(f"{where}: rel_bias reaches {w} > block_size {block_size} back; the cache has no B")
    if k_hat is None:
        k_hat = codewords(codes, codebook).to(q.dtype)
    elif k_hat.shape != q.shape:
        raise KexueError(f"{where}: k_hat must have q's shape {tuple(q.shape)}, got {tuple(k_hat.shape)}")
    return _decoder(q, codes, codebook, v, k_hat, block_size, rel_bias, grad_through_cache)


# --------------------------------------------------------------------------------------- decoding
class VQCache(NamedTuple):
    """The decoder's state after t tokens, every tensor batch-first (so decoders can `index_select(0, …)`).

    With i = t // l the block of the next token: `counts`/`means` summarise blocks ≤ i − 2 (the cache U),
    and keys/values/codes hold the R ≤ 2l tokens of blocks i − 1 and i seen so far.
    Any 6-tuple in this order is accepted where a VQCache is.
    """

    counts: Tensor  # (B, H, c) per-code counts Δᵀ1 of the folded blocks
    means: Tensor  # (B, H, c, Dv) per-code means ΔᵀV / Δᵀ1 (0 for an empty code)
    keys: Tensor  # (B, H, R, D) k̂ of the recent tokens
    values: Tensor  # (B, H, R, Dv)
    codes: Tensor  # (B, H, R) long
    position: Tensor  # (B,) long: t, the same for every row


def empty_vq_cache(q: Tensor, codebook: Tensor, v: Tensor) -> VQCache:
    """The state before the first token, shaped after q (B, H, ·, D), the codebook and v (B, H, ·, Dv)."""
    B, H, _, d = q.shape
    c, dv = codebook.shape[-2], v.shape[-1]
    acc = torch.promote_types(v.dtype, torch.float32)
    return VQCache(
        counts=torch.zeros(B, H, c, dtype=acc, device=q.device),
        means=torch.zeros(B, H, c, dv, dtype=v.dtype, device=q.device),
        keys=q.new_zeros(B, H, 0, d),
        values=v.new_zeros(B, H, 0, dv),
        codes=torch.zeros(B, H, 0, dtype=torch.long, device=q.device),
        position=torch.zeros(B, dtype=torch.long, device=q.device),
    )


def _fold(counts: Tensor, means: Tensor, codes: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """U ← U + ΔᵀV in [TVQ-code]'s relative form: mean' = mean·n/n' + ΔᵀV/n', n' = n + Δᵀ1."""
    delta = F.one_hot(codes, counts.shape[-1]).to(counts.dtype)  # (B, H, r, c)
    new = counts + delta.sum(-2)  # (B, H, c)
    denom = new.clamp(min=1)
    upd = (delta / denom[..., None, :]).transpose(-1, -2) @ v.to(counts.dtype)  # (B, H, c, Dv)
    return new, ((counts / denom)[..., None] * means.to(counts.dtype) + upd).to(means.dtype)


def vq_attention_step(
    q: Tensor,
    codes: Tensor,
    codebook: Tensor,
    v: Tensor,
    cache: VQCache | tuple | None,
    *,
    block_size: int,
    scale: float | Tensor | None = None,
    k_hat: Tensor | None = None,
    rel_bias: Tensor | None = None,
    grad_through_cache: bool = False,
) -> tuple[Tensor, VQCache]:
    """Causal VQ attention of n new tokens after the `cache`'s t: (out (B, H, n, Dv), the new cache).

    The recurrence of [9844] eq. 7/9 token by token (or chunk by chunk): equal to `vq_attention_linear`
    over the whole sequence, with memory O(c·Dv + l·(D + Dv)) whatever t. q (B, H, n, D), codes (B, H, n),
    v (B, H, n, Dv); cache None = no tokens yet; rel_bias as in `vq_attention_linear`, a per-row one
    with the n new queries' rows. A chunk that crosses block boundaries is processed one block piece at a
    time (the cache each piece reads differs).
    """
    where = "vq_attention_step"
    _check_4d(where, q=q, v=v)
    _check_codebook(codebook, q.shape[-1], q.shape[1], where)
    if codes.shape != q.shape[:3] or v.shape[:3] != q.shape[:3]:
        raise KexueError(
            f"{where}: q {tuple(q.shape)}, codes {tuple(codes.shape)}, v {tuple(v.shape)} "
            "must share (B, H, n)"
        )
    _check_codes(codes, codebook.shape[-2], where)
    if block_size < 1 or _check_rel_bias(rel_bias, q, True, where) > block_size:
        raise KexueError(f"{where}: need block_size ≥ 1 and a rel_bias window ≤ block_size")
    counts, means, keys, values, zs, position = cache if cache is not None else empty_vq_cache(q, codebook, v)
    l, t, q = block_size, int(position[0]) if len(position) else 0, _scaled(q, scale)
    codebook = codebook.to(q.dtype)
    k_hat = codewords(codes, codebook).to(q.dtype) if k_hat is None else k_hat
    outs, start = [], 0
    while start < q.shape[2]:
        i = (t + start) // l  # block of this piece
        stop = min(q.shape[2], (i + 1) * l - t)  # the piece ends with the block
        fold = max(0, (i - 1) * l - (t + start - keys.shape[2]))  # recent tokens now in blocks ≤ i − 2
        vf = values[:, :, :fold] if grad_through_cache else values[:, :, :fold].detach()
        counts, means = _fold(counts, means, zs[:, :, :fold], vf)
        keys = torch.cat([keys[:, :, fold:], k_hat[:, :, start:stop]], 2)  # (B, H, R, D)
        values = torch.cat([values[:, :, fold:], v[:, :, start:stop]], 2)  # (B, H, R, Dv)
        zs = torch.cat([zs[:, :, fold:], codes[:, :, start:stop]], 2)  # (B, H, R)
        # queries at positions t+start … t+stop−1, keys at the last R positions up to t+stop−1
        pos_q = torch.arange(t + start, t + stop, device=q.device)[:, None]  # (p, 1)
        dist = pos_q - torch.arange(t + stop - keys.shape[2], t + stop, device=q.device)  # (p, R)
        s_recent = q[:, :, start:stop] @ keys.transpose(-1, -2)  # (B, H, p, R)
        if rel_bias is not None:  # the rows of this piece's queries
            s_recent = s_recent + _bias(_row_bias(rel_bias, q.shape[2], q.dtype)[:, :, start:stop], dist)
        s_recent = s_recent.masked_fill(dist < 0, float("-inf"))
        s_cache = _code_logits(q[:, :, start:stop], codebook) + _log_counts(counts).to(q.dtype)[..., None, :]
        outs.append(_combine(s_recent, values, s_cache, means))  # (B, H, p, Dv)
        start = stop
    position = position + q.shape[2]
    return torch.cat(outs, 2), VQCache(counts, means, keys, values, zs, position)


# ------------------------------------------------------------------------------------- quantiser
class VQOutput(NamedTuple):
    k_hat: Tensor  # (…, T, D) codewords in value, straight-through gradient to k
    codes: Tensor  # (…, T) long
    codebook: Tensor  # (c, D) or (H, c, D), detached: the codebook the codes index (before the EMA step)
    loss: Tensor  # β·commit (+ the codebook loss of a learned codebook): add it to the objective
    commit: Tensor  # mean over keys of ‖k − sg(k̂)‖² (summed over D, as [TVQ-code])


class VectorQuantizer(nn.Module):
    """A codebook of c codewords of dim D (one shared, or one per head) and its training rule.

    ema=True ([TVQ], [VQVAE] appendix A.1): buffers N (cluster sizes) and S (cluster sums), updated in
    each training forward with the batch's assignment counts n_s and key sums Σ_{z=s} k:
        N ← γN + (1 − γ)n,   S ← γS + (1 − γ)Σk,   C = S / Ñ,
    with Laplace-smoothed sizes Ñ_s = (N_s + ε)/(ΣN + cε)·ΣN, so no codeword divides by 0. A code that
    receives nothing decays (S and N both shrink by γ) and drifts towards the origin; with
    `dead_threshold` > 0, every code whose N falls below it after the update is restarted on one of the
    batch's worst-quantised keys (largest ‖k − k̂‖², distinct keys; deterministic), with N = 1.
    ema=False: C is a parameter learned by the codebook loss ‖sg(k) − C[z]‖² of [VQVAE] eq. 3.
    Both: the commitment loss β‖k − sg(k̂)‖² pulls the keys to their codes.
    Under DDP each process updates the EMA from its own batch (no all-reduce); with DDP's default
    broadcast_buffers=True, rank 0's buffers overwrite the others at every forward.
    """

    def __init__(
        self,
        num_codes: int,  # c (the paper: 512)
        dim: int,  # D, the key width
        *,
        heads: int | None = None,  # None: one (c, D) codebook shared by all heads; H: (H, c, D)
        ema: bool = True,  # EMA codebook ([TVQ]) or a learned one with the codebook loss
        gamma: float = 0.99,  # EMA decay γ ([TVQ])
        beta: float = 1e-4,  # commitment weight β ([TVQ]; [VQVAE] uses 0.25 at a larger key scale)
        eps: float = 1e-5,  # Laplace smoothing of the cluster sizes ([VQVAE] / Sonnet)
        dead_threshold: float = 0.0,  # restart codes whose EMA size N falls below this (0: never)
        init_scale: float | None = None,  # codeword init std (default D^{−1/4}: the GAU keys' scale)
        generator: torch.Generator | None = None,  # for the initial codebook
    ) -> None:
        super().__init__()
        if num_codes < 1 or dim < 1 or (heads is not None and heads < 1):
            raise KexueError(f"VectorQuantizer needs c, D, H ≥ 1, got c={num_codes}, D={dim}, H={heads}")
        if not 0 <= gamma < 1 or beta < 0 or eps <= 0:
            raise KexueError(f"VectorQuantizer needs 0 ≤ γ < 1, β ≥ 0, ε > 0; got {gamma}, {beta}, {eps}")
        self.num_codes, self.dim, self.heads, self.ema = num_codes, dim, heads, ema
        self.gamma, self.beta, self.eps, self.dead_threshold = gamma, beta, eps, dead_threshold
        shape = (num_codes, dim) if heads is None else (heads, num_codes, dim)
        std = dim**-0.25 if init_scale is None else init_scale
        init = torch.randn(shape, generator=generator) * std
        if ema:
            self.register_buffer("cluster_size", torch.ones(shape[:-1]))  # N, (c,) or (H, c)
            self.register_buffer("cluster_sum", init)  # S, (c, D) or (H, c, D)
        else:
            self.weight = nn.Parameter(init)

    @property
    def codebook(self) -> Tensor:
        """C: (c, D) or (H, c, D)."""
        if not self.ema:
            return self.weight
        n = self.cluster_size
        total = n.sum(-1, keepdim=True)  # ΣN per codebook
        smoothed = (n + self.eps) / (total + self.num_codes * self.eps) * total  # Laplace
        return self.cluster_sum / smoothed[..., None]

    def forward(self, k: Tensor) -> VQOutput:
        """k (…, T, D) (per-head: (B, H, T, D)) → VQOutput; a training forward also updates the EMA."""
        codebook = self.codebook
        k_hat, codes = quantize(k, codebook)
        commit = (k - k_hat.detach()).pow(2).sum(-1).mean()  # ‖k − sg(k̂)‖²  [VQVAE] eq. 3, 3rd term
        loss = self.beta * commit
        if not self.ema:  # ‖sg(k) − C[z]‖²: moves the codebook only  [VQVAE] eq. 3, 2nd term
            loss = loss + (k.detach() - codewords(codes, codebook)).pow(2).sum(-1).mean()
        elif self.training:
            self.ema_update(k.detach(), codes)
        return VQOutput(k_hat, codes, codebook.detach(), loss, commit)

    def _per_codebook(self, k: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
        """(assignment counts n (…c), key sums (…c, D)) over all keys, per head for a per-head codebook."""
        delta = F.one_hot(codes, self.num_codes).to(self.cluster_sum.dtype)  # (…, T, c)
        k = k.to(self.cluster_sum.dtype)
        if self.heads is None:
            delta, k = delta.reshape(-1, self.num_codes), k.reshape(-1, self.dim)  # (N, c), (N, D)
            return delta.sum(0), delta.T @ k  # (c,), (c, D)
        delta, k = delta.transpose(0, 1).flatten(1, 2), k.transpose(0, 1).flatten(1, 2)  # (H, B·T, ·)
        return delta.sum(1), delta.transpose(1, 2) @ k  # (H, c), (H, c, D)

    @torch.no_grad()
    def ema_update(self, k: Tensor, codes: Tensor) -> None:
        """One EMA step on keys k (…, T, D) assigned to `codes` (…, T) ([VQVAE] A.1; γ of [TVQ])."""
        n, sums = self._per_codebook(k, codes)
        g = self.gamma
        self.cluster_size.mul_(g).add_((1 - g) * n)  # N ← γN + (1 − γ)n
        self.cluster_sum.mul_(g).add_((1 - g) * sums)  # S ← γS + (1 − γ)Σk
        if self.dead_threshold > 0:
            self._restart_dead(k, codes)

    def _restart_dead(self, k: Tensor, codes: Tensor) -> None:
        """Move codes with N < dead_threshold onto the worst-quantised keys of the batch (N = 1, S = k)."""
        err = (k - codewords(codes, self.codebook.to(k.dtype))).pow(2).sum(-1)  # (…, T)
        books = (
            [(None, k.reshape(-1, self.dim), err.reshape(-1))]
            if self.heads is None
            else [(h, k[:, h].reshape(-1, self.dim), err[:, h].reshape(-1)) for h in range(self.heads)]
        )
        for h, keys, e in books:
            size = self.cluster_size if h is None else self.cluster_size[h]
            sums = self.cluster_sum if h is None else self.cluster_sum[h]
            dead = (size < self.dead_threshold).nonzero().flatten()[: len(keys)]  # (r,)
            worst = e.topk(len(dead)).indices  # (r,) distinct keys, largest error first
            size[dead] = 1.0
            sums[dead] = keys[worst].to(sums.dtype)


# ------------------------------------------------------------------------------------------ layer
@dataclass(frozen=True)
class VQAttentionConfig:
    d_model: int = 128  # residual width
    d_k: int = 64  # query/key width (the paper: 128)
    d_v: int = 256  # value and gate width (the paper: 2·d_model, and no separate MLP)
    num_codes: int = 128  # c (the paper: 512)
    block_size: int = 64  # l: blocks i − 1 and i exact, older blocks through the cache; the bias window
    mode: str = "vq"  # "vq" (quantised keys) or "dense" (the same layer with raw keys, O(n²))
    form: str = "linear"  # vq mode: "linear" (the block recurrence) or "quadratic" (softmax over K̂)
    causal: bool = True  # decoder (the post's eq. 9) or encoder (eq. 4)
    position: str = "xl"  # the post's B (decoder only), 0 ≤ i − j ≤ l: "xl" (q_i + v)·R_{i−j} as [TVQ-code],
    # "toeplitz" a learned scalar b[i − j], or "none"
    ema: bool = True  # EMA codebook ([TVQ]) or a learned one
    gamma: float = 0.99  # EMA decay ([TVQ])
    beta: float = 1e-4  # commitment weight ([TVQ])
    dead_threshold: float = 0.0  # restart codes whose EMA size falls below this (0: never, as [TVQ])
    grad_through_cache: bool = False  # False: stop_gradient through U, as the paper

    def __post_init__(self) -> None:
        if self.mode not in ("vq", "dense") or self.form not in ("linear", "quadratic"):
            raise KexueError(f"VQAttention: mode must be vq|dense and form linear|quadratic, got {self}")
        if self.position not in ("xl", "toeplitz", "none"):
            raise KexueError(f"VQAttention: position must be xl|toeplitz|none, got {self.position!r}")
        if self.position != "none" and not self.causal:
            raise KexueError("VQAttention: the local bias B belongs to the decoder; set position='none'")
        if min(self.d_model, self.d_k, self.d_v, self.num_codes, self.block_size) < 1:
            raise KexueError(f"VQAttention: every width, c and block_size must be ≥ 1, got {self}")


def _unit_layer_norm(x: Tensor) -> Tensor:
    return F.layer_norm(x, x.shape[-1:])  # no gain, no bias ([TVQ-code] q_ln, k_ln)


class VQAttention(nn.Module):
    """[TVQ]'s single-head gated attention unit with VQ keys; returns the residual branch (B, T, d_model).

        x̃ = LN(x);  q = LN₀(x̃W_q)·d_k^{−1/4};  k = LN₀(x̃W_k)·d_k^{−1/4};  v = SiLU(x̃W_v);  g = SiLU(x̃W_g)
        out = (softmax(qk̂ᵀ + B)v ⊙ g)·W_o,   k̂ = VQ(k) (mode "vq") or k (mode "dense")

    LN₀ has no parameters, so |q·k| ≤ √d_k: the logits carry 1/√d_k (the attention itself uses scale 1).
    B, the post's local bias, acts for 0 ≤ i − j ≤ l only (so only the two exact blocks see it):
    position "xl" is [TVQ-code]'s Transformer-XL term B_ij = (q_i + v)·R_{i−j} with
    R = W_r·sinusoid(i − j)·d_k^{−1/4}; "toeplitz" a learned scalar b[i − j] (slow to learn: one number
    per distance, each moving by ~lr a step). In training, the quantiser's loss (β·commitment) is recorded
    with `add_loss` under "vq".
    """

    def __init__(self, config: VQAttentionConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        cfg = self.config = config
        self.norm = nn.LayerNorm(cfg.d_model)
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_k, bias=False)
        self.kvg_proj = nn.Linear(cfg.d_model, cfg.d_k + 2 * cfg.d_v, bias=False)  # k, v, gate at once
        self.out_proj = nn.Linear(cfg.d_v, cfg.d_model, bias=False)
        if cfg.position == "xl":
            sin = sinusoidal_positions(cfg.block_size + 1, cfg.d_model)  # (l + 1, d_model), distances 0 … l
            self.register_buffer("sinusoid", sin, persistent=False)
            self.r_proj = nn.Linear(cfg.d_model, cfg.d_k, bias=False)  # W_r
            self.xl_v = nn.Parameter(torch.zeros(cfg.d_k))  # v: the query-independent position term
        elif cfg.position == "toeplitz":
            self.toeplitz = nn.Parameter(torch.zeros(cfg.block_size + 1))  # b[0 … l]
        self.quantizer = (
            VectorQuantizer(
                cfg.num_codes,
                cfg.d_k,
                ema=cfg.ema,
                gamma=cfg.gamma,
                beta=cfg.beta,
                dead_threshold=cfg.dead_threshold,
                generator=generator,
            )
            if cfg.mode == "vq"
            else None
        )

    def _qkvg(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        cfg = self.config
        x = self.norm(x)  # (B, T, d_model)
        k, v, g = self.kvg_proj(x).split([cfg.d_k, cfg.d_v, cfg.d_v], -1)
        tau = cfg.d_k**-0.25
        q = (_unit_layer_norm(self.q_proj(x)) * tau).unsqueeze(1)  # (B, 1, T, d_k): one head
        k = (_unit_layer_norm(k) * tau).unsqueeze(1)  # (B, 1, T, d_k)
        return q, k, F.silu(v).unsqueeze(1), F.silu(g)  # v (B, 1, T, d_v), g (B, T, d_v)

    def _bias(self, q: Tensor) -> Tensor | None:
        """B for these queries: (B, 1, T, l + 1) per row ("xl"), (l + 1,) ("toeplitz"), or None."""
        if self.config.position == "xl":
            tau = self.config.d_k**-0.25
            r = self.r_proj(self.sinusoid.to(q.dtype)) * tau  # (l + 1, d_k) R_{i−j}
            return (q + self.xl_v * tau) @ r.T  # (B, 1, T, l + 1)   [TVQ-code] recent_scores_bd
        return self.toeplitz if self.config.position == "toeplitz" else None

    def _quantize(self, k: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(k̂, codes, codebook): the codebook is detached — it learns only from its own rule."""
        out = self.quantizer(k)
        add_loss(self, out.loss, "vq")
        return out.k_hat, out.codes, out.codebook.to(k.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, d_model) → (B, T, d_model), the whole sequence at once (causal per the config)."""
        cfg = self.config
        q, k, v, g = self._qkvg(x)
        bias = self._bias(q)
        if cfg.mode == "dense":
            o = vq_attention_quadratic(q, k, v, causal=cfg.causal, scale=1.0, rel_bias=bias)
        else:
            k_hat, codes, codebook = self._quantize(k)
            if cfg.form == "quadratic":
                o = vq_attention_quadratic(q, k_hat, v, causal=cfg.causal, scale=1.0, rel_bias=bias)
            else:
                o = vq_attention_linear(
                    q,
                    codes,
                    codebook,
                    v,
                    causal=cfg.causal,
                    block_size=cfg.block_size,
                    scale=1.0,
                    k_hat=k_hat if cfg.causal else None,
                    rel_bias=bias,
                    grad_through_cache=cfg.grad_through_cache,
                )
        return self.out_proj(o.squeeze(1) * g)  # (B, T, d_model)

    def step(self, x: Tensor, cache: tuple | None) -> tuple[Tensor, tuple]:
        """Incremental causal decoding: x (B, t, d_model) new tokens → (out (B, t, d_model), new cache).

        Cache: vq mode a `VQCache` (constant size); dense mode (k, v) of all past tokens (B, 1, T, ·).
        Equals `forward` on the whole sequence.
        """
        cfg = self.config
        if not cfg.causal:
            raise KexueError("VQAttention.step decodes causally; this layer has causal=False")
        q, k, v, g = self._qkvg(x)
        bias = self._bias(q)
        if cfg.mode == "dense":
            if cache is not None:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)  # (B, 1, T_past + t, ·)
            o = vq_attention_quadratic(q, k, v, causal=True, scale=1.0, rel_bias=bias)
            new_cache: tuple = (k, v)
        else:
            k_hat, codes, codebook = self._quantize(k)
            o, new_cache = vq_attention_step(
                q, codes, codebook, v, cache, block_size=cfg.block_size, scale=1.0, k_hat=k_hat, rel_bias=bias
            )
        return self.out_proj(o.squeeze(1) * g), new_cache
