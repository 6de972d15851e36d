"""Scaled dot-product attention, its masks, and multi-head attention with a KV cache [4765].

[4765] 《Attention is All You Need》浅读（简介+代码）, kexue.fm/archives/4765 (equations numbered in order of
appearance in the post); [Vaswani] Vaswani et al., "Attention Is All You Need", NeurIPS 2017;
[8823] the entropy-invariant log-n scale; [8265] RoPE; [6853] local (windowed) attention.

- Attention (eq. 4):  Attention(Q, K, V) = softmax(QKᵀ/√d_k)V, Q (n, d_k), K (m, d_k), V (m, d_v)
                                                                                   → `attention`
- Multi-head (eq. 6–7): head_i = Attention(QW_i^Q, KW_i^K, VW_i^V), MultiHead = Concat(head_1..h)·W^O
  ([Vaswani] §3.2.2 adds the output map W^O); self-attention is MultiHead(X, X, X) (eq. 8)
                                                                                   → `MultiHeadAttention`
- Masks: "minus a large number before the softmax" ([4765], 代码实现). Here every mask is a bool tensor,
  True = the query may attend to that key, the convention of `F.scaled_dot_product_attention`.
  → `causal_mask`, `padding_mask`, `unilm_mask`, `window_mask`

Conventions of this module (they are the contract other modules test against):
- Tensors stay 4-D, (B, H, T, D): the fused CPU flash kernel of SDPA needs 4-D inputs, dropout 0 and equal
  head dims of q, k, v; anything else falls back silently to the O(n²)-memory math kernel
  (reference/transformer.md §2.4).
- Causal attention with Tq ≠ Tk aligns the LAST query with the LAST key (query i sits at position
  i + Tk − Tq): the keys are the past plus the present, as with a KV cache. (SDPA's own `is_causal` aligns
  the first ones; we pass it only when Tq = Tk, where the two agree.)
- A query row that may see no key returns 0 (not NaN), with zero gradient ([4765]'s "padded outputs are 0").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.errors import KexueError
from kexue.nn.attention_scale import log_n_scale, standard_scale
from kexue.nn.rope import apply_rope

Cache = tuple[Tensor, Tensor]  # (k, v), each (B, H, T_past, D): keys after RoPE, values


# ----------------------------------------------------------------------------------------------- masks
def causal_mask(tq: int, tk: int, *, offset: int = 0, device: torch.device | str | None = None) -> Tensor:
    """(Tq, Tk) bool: query i (at position i + offset) sees key j iff j ≤ i + offset.

    offset = Tk − Tq gives the bottom-right alignment used by `attention(causal=True)` and the KV cache.
    """
    i = torch.arange(tq, device=device)[:, None] + offset  # (Tq, 1) query positions
    j = torch.arange(tk, device=device)  # (Tk,) key positions
    return j <= i  # (Tq, Tk)


def window_mask(
    tq: int, tk: int, window: int, *, causal: bool, offset: int = 0, device: torch.device | str | None = None
) -> Tensor:
    """(Tq, Tk) bool band: query i at position p = i + offset sees key j iff |p − j| ≤ window, and j ≤ p
    when causal (p − window ≤ j ≤ p: window + 1 keys). This is the "Local" pattern of [6853]
    (|i − j| ≤ k) and the restricted self-attention of [4765]/[Vaswani] §4 (r neighbours each side).
    """
    if window < 0:
        raise KexueError(f"window_mask needs a window ≥ 0, got {window} (use None for no window)")
    i = torch.arange(tq, device=device)[:, None] + offset  # (Tq, 1)
    j = torch.arange(tk, device=device)  # (Tk,)
    band = (i - j).abs() <= window  # (Tq, Tk)
    return band & (j <= i) if causal else band


def padding_mask(lengths_or_bool: Tensor, *, length: int | None = None, left: bool = False) -> Tensor:
    """(B, 1, 1, T) bool key mask, True at real tokens.

    `lengths_or_bool`: (B,) integer lengths (then T = `length`, default max length; `left=True` puts the
    padding first), or a (B, T) bool tensor with True at real tokens, passed through.
    """
    x = lengths_or_bool
    if x.dtype == torch.bool:
        if x.dim() != 2:
            raise KexueError(f"padding_mask needs a (B, T) bool tensor or (B,) lengths, got {tuple(x.shape)}")
        return x[:, None, None, :]  # (B, 1, 1, T)
    if x.dim() != 1 or x.is_floating_point():
        raise KexueError(f"padding_mask needs (B,) integer lengths or a (B, T) bool mask, got {x.dtype}")
    t = int(x.max()) if length is None else length
    if bool((x > t).any()) or bool((x < 0).any()):
        raise KexueError(f"padding_mask: lengths must lie in [0, {t}], got {x.tolist()}")
    pos = torch.arange(t, device=x.device)  # (T,)
    real = pos >= t - x[:, None] if left else pos < x[:, None]  # (B, T)
    return real[:, None, None, :]  # (B, 1, 1, T)


def unilm_mask(segment_ids: Tensor) -> Tensor:
    """(B, 1, T, T) bool UniLM / prefix-LM mask (bert4keras `compute_attention_bias`, reference §1.7).

    With s = cumsum(segment_ids), query i sees key j iff s_j ≤ s_i: the source (segment 0) is
    bidirectional, the target (segment 1) causal and sees the whole source.
    """
    if segment_ids.dim() != 2:
        raise KexueError(f"unilm_mask needs (B, T) segment ids, got shape {tuple(segment_ids.shape)}")
    s = segment_ids.long().cumsum(-1)  # (B, T)
    return (s[:, None, :] <= s[:, :, None])[:, None]  # (B, 1, T, T): [b, 0, i, j] = s_j ≤ s_i


# ------------------------------------------------------------------------------------------- attention
def _broadcastable(shape: torch.Size, target: tuple[int, ...]) -> bool:
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


def _check(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: object) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        shapes = tuple(q.shape), tuple(k.shape), tuple(v.shape)
        raise KexueError(f"attention needs 4-D (B, H, T, D) q, k, v; got shapes {shapes}")
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or q.shape[-1] != k.shape[-1]:
        raise KexueError(
            f"attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not fit "
            "(need q (B,H,Tq,D), k (B,H,Tk,D), v (B,H,Tk,Dv))"
        )
    B, H, Tq, Tk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    if mask is not None:
        if mask.dtype != torch.bool:
            raise KexueError(f"attention: the mask must be bool (True = may attend), got {mask.dtype}")
        if not _broadcastable(mask.shape, (B, H, Tq, Tk)):
            raise KexueError(
                f"attention: mask of shape {tuple(mask.shape)} does not broadcast to (B,H,Tq,Tk) = "
                f"{(B, H, Tq, Tk)}"
            )
    if isinstance(scale, Tensor) and not _broadcastable(scale.shape, (B, H, Tq, 1)):
        raise KexueError(
            f"attention: a tensor scale must broadcast to (B,H,Tq,1) = {(B, H, Tq, 1)}, "
            f"got {tuple(scale.shape)}"
        )


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    scale: float | Tensor | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """softmax(QKᵀ·scale + mask)V [4765] eq. 4 via `F.scaled_dot_product_attention`; returns (B, H, Tq, Dv).

    q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv).
    mask: bool, broadcastable to (B, H, Tq, Tk), True = may attend.
    causal: query i sees keys j ≤ i + Tk − Tq (last query aligned with last key; combined with `mask`).
    scale: None (1/√D), a float, or a tensor broadcastable to (B, H, Tq, 1) — a per-row scale (log n),
        applied as q·scale, which is the same thing since each row's logits are linear in its query.
    dropout_p: attention dropout (SDPA draws it from the global generator; keep 0 in evaluation).
    Rows with no visible key return 0.
    """
    _check(q, k, v, mask, scale)
    tq, tk = q.shape[-2], k.shape[-2]
    if causal and (mask is not None or tq != tk):  # bottom-right causal as an explicit mask
        c = causal_mask(tq, tk, offset=tk - tq, device=q.device)  # (Tq, Tk)
        mask, causal = (c if mask is None else mask & c), False
    if isinstance(scale, Tensor):
        q, scale = q * scale.to(q.dtype), 1.0  # per-row scale folded into the queries
    if mask is None:  # the fast path: no extra work around SDPA
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=dropout_p, scale=scale)
    seen = mask.any(-1, keepdim=True)  # (.., Tq, 1): rows with at least one visible key
    # an all-False row would be 0/0 in the softmax: open it (finite everywhere), then zero its output
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~seen, dropout_p=dropout_p, scale=scale)
    return out.masked_fill(~seen, 0.0)


# ---------------------------------------------------------------------------------- multi-head module
class MultiHeadAttention(nn.Module):
    """Multi-head attention [4765] eq. 6–8 with optional RoPE, log-n scale, sliding window and KV cache.

    `forward(x, context=None, *, mask, causal, positions, cache) -> (out, new_cache)`:
    - self-attention (context None): x (B, T, d_model); with `cache` = (k, v) of (B, H, T_past, D) the new
      keys/values are appended, queries sit at positions T_past … T_past + T − 1, and `mask` must cover
      all T_past + T keys.
    - cross-attention (context (B, S, d_model)): k, v come from the context; with a cache they are taken
      from it and the context is not projected again (compute once per sequence, [Vaswani] §3.2.3).
    - positions: RoPE positions of the new tokens, (T,) or (B, T) (default T_past + arange(T)); RoPE is
      applied in self-attention only (query and context positions of cross-attention are unrelated).

    `scale` ("standard" | "log_n" | a float) and `window` (None | int) are plain attributes: they may be
    changed after training, e.g. to window or log-n-scale a model at inference only.
    """

    def __init__(
        self,
        d_model: int,
        heads: int,
        *,
        bias: bool = True,  # biases on the four projections (torch.nn.MultiheadAttention has them)
        dropout: float = 0.0,  # attention-probability dropout in training ([Vaswani] use it on outputs)
        rope: bool = False,  # rotate q, k by their positions [8265] (self-attention only)
        rope_base: float = 10000.0,  # θ_i = base^(−2i/d) [8265]
        scale: str | float = "standard",  # "standard" 1/√d [4765], "log_n" log_m(n)/√d [8823], or a float
        log_n_base: int = 512,  # m: the length at which log n equals the standard scale (Su: 512)
        log_n_min: int = 1,  # clamp of the visible-key count n (bert4keras 16, bert4torch 1)
        window: int | None = None,  # keys farther than this are masked (|i − j| ≤ window) [6853]
    ) -> None:
        super().__init__()
        if d_model % heads:
            raise KexueError(f"d_model = {d_model} is not divisible by heads = {heads}; pick a divisor")
        self.d_model, self.heads, self.head_dim = d_model, heads, d_model // heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)  # W^Q for all heads at once
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)  # W^K
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)  # W^V
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W^O
        self.dropout, self.rope, self.rope_base = dropout, rope, rope_base
        self.scale, self.log_n_base, self.log_n_min, self.window = scale, log_n_base, log_n_min, window

    def _heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def _visible(self, mask: Tensor | None, causal: bool, tq: int, tk: int, device) -> Tensor | None:
        """The combined bool mask (padding/user ∧ causal ∧ window), or None when every key is visible."""
        past = tk - tq  # query i sits at position past + i
        if self.window is not None:
            w = window_mask(tq, tk, self.window, causal=causal, offset=past, device=device)  # (Tq, Tk)
            mask = w if mask is None else mask & w
        elif causal:
            c = causal_mask(tq, tk, offset=past, device=device)  # (Tq, Tk)
            mask = c if mask is None else mask & c
        return mask

    def _scale(self, mask: Tensor | None, tk: int) -> float | Tensor:
        if self.scale == "standard":
            return standard_scale(self.head_dim)
        if self.scale == "log_n":  # n = keys this row may see (bert4keras softmax_plus, reference §1.3)
            kw = dict(head_dim=self.head_dim, base=self.log_n_base, min_n=self.log_n_min)
            if mask is None:
                return log_n_scale(tk, **kw)
            n = mask.sum(-1, keepdim=True)  # (.., Tq, 1) visible keys per query row
            return log_n_scale(n, **kw)
        if isinstance(self.scale, (int, float)) and not isinstance(self.scale, bool) and self.scale > 0:
            return float(self.scale)
        raise KexueError(
            f"MultiHeadAttention.scale must be 'standard', 'log_n' or a float > 0, not {self.scale!r}"
        )

    def _project_kv(self, x: Tensor, context: Tensor | None, cache: Cache | None, positions) -> Cache:
        if context is not None:  # cross-attention: the context's k, v, computed once
            if cache is not None:
                return cache
            return self._heads(self.k_proj(context)), self._heads(self.v_proj(context))  # (B, H, S, D) ×2
        k, v = self._heads(self.k_proj(x)), self._heads(self.v_proj(x))  # (B, H, T, D) each
        if self.rope:
            k = apply_rope(k, positions, base=self.rope_base)
        if cache is not None:  # append to the past: (B, H, T_past + T, D)
            k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
        return k, v

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        positions: Tensor | None = None,
        cache: Cache | None = None,
    ) -> tuple[Tensor, Cache]:
        """x (B, T, d_model) → (out (B, T, d_model), new cache (k, v) each (B, H, T_keys, D))."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise KexueError(
                f"MultiHeadAttention needs x of shape (B, T, {self.d_model}), got {tuple(x.shape)}"
            )
        if context is not None and (context.dim() != 3 or context.shape[-1] != self.d_model):
            raise KexueError(
                f"cross-attention needs a (B, S, {self.d_model}) context, got {tuple(context.shape)}"
            )
        B, T, _ = x.shape
        past = 0 if cache is None or context is not None else cache[0].shape[2]
        if self.rope and context is None:
            if positions is None:
                positions = torch.arange(past, past + T, device=x.device)  # (T,)
            elif positions.dim() == 2:
                positions = positions[:, None, :]  # (B, 1, T): broadcast over heads
        q = self._heads(self.q_proj(x))  # (B, H, T, D)
        if self.rope and context is None:
            q = apply_rope(q, positions, base=self.rope_base)
        k, v = self._project_kv(x, context, cache, positions)  # (B, H, Tk, D) each
        tk = k.shape[2]
        if context is not None and causal:
            raise KexueError("cross-attention cannot be causal; pass causal=False with a context")
        simple = self.window is None and self.scale != "log_n"  # let SDPA build the causal mask itself
        visible = mask if simple else self._visible(mask, causal, T, tk, x.device)
        scale = self._scale(visible, tk)
        p = self.dropout if self.training else 0.0
        out = attention(q, k, v, mask=visible, causal=causal and simple, scale=scale, dropout_p=p)
        out = out.transpose(1, 2).reshape(B, T, self.d_model)  # (B, T, H·D): Concat(head_1..h) eq. 7
        return self.out_proj(out), (k, v)  # · W^O
