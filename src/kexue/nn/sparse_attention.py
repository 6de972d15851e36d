"""Sparse self-attention computed block by block: Local, Atrous, Sparse = Local ∪ Atrous [6853], and the
Sparse Transformer's strided and fixed patterns [Child].

[6853] 为节约而生：从标准Attention到稀疏Attention, kexue.fm/archives/6853; [Child] Child, Gray, Radford,
Sutskever, "Generating Long Sequences with Sparse Transformers", arXiv 1904.10509 (repository
openai/sparse_attention).

Notation: query i, key j, 0-based positions, n = T. [6853] calls both the window and the dilation k; here
they are `window` (w) and `dilation` (k). [Child] calls the stride l and the summary width c.

Patterns (True = query i may attend to key j), and what computing them block-wise costs:
- Local [6853]:   |i − j| ≤ w  (causal: 0 ≤ i − j ≤ w)                  O(n·w)         → `local_attention`
- Atrous [6853]:  |i − j| mod k = 0  (causal: and j ≤ i)                 O(n²/k)        → `atrous_attention`
- Sparse [6853]:  Local ∪ Atrous in one softmax                          O(n·w + n²/k)  → `sparse_attention`
  ("局部紧密相关和远程稀疏相关": dense nearby, sparse far away)
- strided [Child]: A⁽¹⁾ = {i − l < j ≤ i} ∪ A⁽²⁾ = {j ≤ i, (i − j) mod l = 0} in one head ("merged head")
  = Sparse with w = l − 1, k = l, causal; l ≈ √n gives O(n√n)             → `strided_attention`
  (the paper's A⁽¹⁾ starts at i − l, openai/sparse_attention's "local" at i − l + 1; i − l is in A⁽²⁾, so
  the union is the same)
- fixed [Child]: A⁽¹⁾ = {⌊j/l⌋ = ⌊i/l⌋} ∪ A⁽²⁾ = {j mod l ∈ {l − c, …, l − 1}} (causal: and j ≤ i)
                                                        O(n·l + n²c/l)    → `fixed_attention`
The `*_pattern` functions build these (n, n) masks for reference, documentation and tests. Masking a dense
score matrix with them is correct but saves nothing ([6853] 代码实现: "并不能提速，也不能省显存"); the
functions here never form the n×n matrix:
- Local: cut the sequence into blocks of b positions (default b = ⌈w/4⌉); query block t attends to key
  blocks t − r … t + r (r = ⌈w/b⌉; t − r … t when causal) with an in-block band mask, so every query scores
  (2r + 1)·b ≈ 2.25w keys (causal: 1.25w) instead of n. One `F.scaled_dot_product_attention` call over all
  blocks at once, with a 4-D mask so that the CPU flash kernel is used (it refuses 3-D masks).
- Atrous: positions i ≡ g (mod k) form k interleaved sub-sequences of length ⌈n/k⌉ (a reshape); dense
  attention within each is exactly the atrous pattern (causal stays causal: the order is kept).
- A union (Sparse, strided, fixed) is one softmax over the union of keys. Each part computes its
  unnormalised sums — numerator Σ_j e^{s_ij − m_i} v_j, denominator Σ_j e^{s_ij − m_i} and row max m_i, i.e.
  its log-sum-exp m_i + log Σ e^{s_ij − m_i} kept split — and the parts are added after rescaling to a
  common max (the online-softmax identity). Keys shared by two parts are counted once: the second part
  masks out what the first already covers.
The sequence is padded to a whole number of blocks internally; padded keys are never visible to real
queries and padded query rows are dropped. Every function is self-attention on (B, H, T, D) tensors and
respects the input's device and dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from kexue.errors import KexueError
from kexue.nn.attention_scale import standard_scale

Parts = tuple[Tensor, Tensor, Tensor]  # (numerator (.., T, Dv), denominator (.., T, 1), row max (.., T, 1))


# ---------------------------------------------------------------------------------------- patterns
def _ij(n: int, device: torch.device | str | None) -> tuple[Tensor, Tensor]:
    i = torch.arange(n, device=device)[:, None]  # (n, 1) queries
    return i, torch.arange(n, device=device)[None, :]  # (1, n) keys


def local_pattern(n: int, window: int, *, causal: bool, device: torch.device | str | None = None) -> Tensor:
    """(n, n) bool: |i − j| ≤ window, and j ≤ i when causal [6853] Local Self Attention."""
    _int_at_least("local_pattern", "window", window, 0)
    i, j = _ij(n, device)
    d = i - j  # (n, n)
    return (d >= 0) & (d <= window) if causal else d.abs() <= window


def atrous_pattern(
    n: int, dilation: int, *, causal: bool, device: torch.device | str | None = None
) -> Tensor:
    """(n, n) bool: |i − j| mod k = 0, and j ≤ i when causal [6853] Atrous Self Attention."""
    _int_at_least("atrous_pattern", "dilation", dilation, 1)
    i, j = _ij(n, device)
    keep = (i - j).remainder(dilation) == 0  # (n, n)
    return keep & (j <= i) if causal else keep


def sparse_pattern(
    n: int, window: int, dilation: int, *, causal: bool, device: torch.device | str | None = None
) -> Tensor:
    """(n, n) bool: Local ∪ Atrous [6853] Sparse Self Attention."""
    return local_pattern(n, window, causal=causal, device=device) | atrous_pattern(
        n, dilation, causal=causal, device=device
    )


def strided_pattern(n: int, stride: int, *, device: torch.device | str | None = None) -> Tensor:
    """(n, n) bool: j ≤ i and (i − j) mod l = 0 — [Child]'s strided component A⁽²⁾ (openai/sparse_attention
    `get_attn_mask(attn_mode="strided")`). The full strided head is this ∪ local_pattern(n, l − 1, causal)."""
    _int_at_least("strided_pattern", "stride", stride, 1)
    return atrous_pattern(n, stride, causal=True, device=device)


def fixed_pattern(
    n: int, stride: int, summary: int, *, causal: bool, device: torch.device | str | None = None
) -> Tensor:
    """(n, n) bool: ⌊j/l⌋ = ⌊i/l⌋ or j mod l ≥ l − c, and j ≤ i when causal — [Child] "fixed"."""
    _int_at_least("fixed_pattern", "stride", stride, 1)
    _int_at_least("fixed_pattern", "summary", summary, 1, at_most=stride)
    i, j = _ij(n, device)
    keep = (i // stride == j // stride) | (j % stride >= stride - summary)  # (n, n)
    return keep & (j <= i) if causal else keep


# ------------------------------------------------------------------------------------------ checks
def _int_at_least(fn: str, name: str, value: object, low: int, *, at_most: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if ok and (at_most is None or value <= at_most):
        return
    bound = f"an integer ≥ {low}" + ("" if at_most is None else f" and ≤ {at_most}")
    raise KexueError(f"{fn}: {name} must be {bound}, got {value!r}")


def _prepare(fn: str, q: Tensor, k: Tensor, v: Tensor, scale: float | Tensor | None) -> tuple[Tensor, float]:
    """Validate self-attention shapes; fold a per-row tensor scale into q. Returns (q, float scale)."""
    if q.dim() != 4 or k.shape != q.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3] or q.shape[2] == 0:
        shapes = tuple(q.shape), tuple(k.shape), tuple(v.shape)
        raise KexueError(
            f"{fn}: needs self-attention q, k (B, H, T, D) of equal shape and v (B, H, T, Dv) with T ≥ 1; "
            f"got {shapes}"
        )
    if scale is None:
        return q, standard_scale(q.shape[-1])  # 1/√d_k [4765]
    if isinstance(scale, Tensor):
        if scale.dim() > 4 or any(s not in (1, t) for s, t in zip(scale.shape[::-1], (1, *q.shape[2::-1]))):
            raise KexueError(f"{fn}: a tensor scale must broadcast to (B, H, T, 1), got {tuple(scale.shape)}")
        return q * scale.to(q.dtype), 1.0  # each row's logits are linear in its query
    return q, float(scale)


# ---------------------------------------------------------------------------------- block layouts
GROUP_BYTES = 2**22  # keys + values copied per SDPA call in local_attention: a few MB, cache-sized


def _query_blocks(x: Tensor, b: int, nb: int) -> Tensor:
    """(B, H, T, D) → (B, H, nb, b, D), zero-padded at the end to nb·b positions."""
    return F.pad(x, (0, 0, 0, nb * b - x.shape[-2])).unflatten(-2, (nb, b))  # (B, H, nb, b, D)


def _key_blocks(x: Tensor, b: int, nb: int, before: int, after: int) -> Tensor:
    """(B, H, T, D) → (B, H, nb, (before + 1 + after)·b, D): for query block t, the key blocks
    t − before … t + after (zero-padded outside the sequence)."""
    width = (before + 1 + after) * b
    xp = F.pad(x, (0, 0, before * b, (nb + after) * b - x.shape[-2]))  # (B, H, (nb + before + after)·b, D)
    return xp.unfold(-2, width, b).transpose(-1, -2)  # (B, H, nb, width, D)


def _block_slice(x: Tensor, b: int, i: int, j: int, before: int, after: int) -> Tensor:
    """For the query blocks i … j − 1: their key blocks t − before … t + after, (B, H, j − i, K, D), from a
    slice of x zero-padded outside the sequence (the same rows as `_key_blocks`, only for these blocks)."""
    n = x.shape[-2]
    lo, hi = (i - before) * b, (j + after) * b  # positions of the first and past-the-last key needed
    xs = F.pad(x[..., max(lo, 0) : min(hi, n), :], (0, 0, max(-lo, 0), max(hi - n, 0)))  # (B, H, hi − lo, D)
    return xs.unfold(-2, (before + 1 + after) * b, b).transpose(-1, -2)  # (B, H, j − i, K, D)


def _local_layout(
    n: int, window: int, causal: bool, device: torch.device, block: int | None = None
) -> tuple[int, int, int, Tensor]:
    """Block size b, block count nb, neighbour blocks r, and the (nb, b, K) visibility of the local band."""
    b = max(1, min(block or math.ceil(window / 4), n))  # w/4: K = (2r + 1)·b ≈ 2.25w keys scored, not 3w
    nb = math.ceil(n / b)
    r = min(math.ceil(window / b), nb - 1)  # neighbour blocks needed to cover w positions
    width = (r + 1 + (0 if causal else r)) * b  # K keys per query block
    a = torch.arange(b, device=device)[:, None]  # (b, 1) query offset in its block
    c = torch.arange(width, device=device)[None, :] - r * b  # (1, K) key offset from the block's start
    d = a - c  # (b, K): i − j, the same in every block
    band = (d >= 0) & (d <= window) if causal else d.abs() <= window  # [6853] Local
    j = torch.arange(0, nb * b, b, device=device)[:, None] + c  # (nb, K) absolute key positions
    visible = band & ((j >= 0) & (j < n))[:, None, :]  # (nb, b, K): keys outside the sequence hidden
    if nb * b > n:  # padded query rows (last block) see their own zero key: no row is empty
        pad = torch.arange(n - (nb - 1) * b, b, device=device)
        visible[-1, pad, pad + r * b] = True
    return b, nb, r, visible


def _atrous_groups(x: Tensor, k: int) -> Tensor:
    """(B, H, T, D) → (B, H, k, m, D), m = ⌈T/k⌉: row g holds positions g, g + k, g + 2k, … [6853] Atrous."""
    m = math.ceil(x.shape[-2] / k)
    return F.pad(x, (0, 0, 0, m * k - x.shape[-2])).unflatten(-2, (m, k)).transpose(2, 3)  # (B, H, k, m, D)


def _ungroup(y: Tensor, n: int) -> Tensor:
    """Inverse of `_atrous_groups`: (B, H, k, m, D) → (B, H, n, D)."""
    return y.transpose(2, 3).flatten(2, 3)[..., :n, :]  # (B, H, n, D)


# ------------------------------------------------------------------------ one softmax over parts
def _partial(q: Tensor, k: Tensor, v: Tensor, visible: Tensor) -> Parts:
    """Unnormalised softmax sums of one part: (Σ_j e^{s_ij − m_i} v_j, Σ_j e^{s_ij − m_i}, m_i), visible j.

    q (.., Tq, D) already scaled, k (.., Tk, D), v (.., Tk, Dv), visible broadcastable to (.., Tq, Tk). A row
    with no visible key has numerator 0, denominator 0 and m = −∞ (so it weighs nothing in `_merge`, and no
    NaN appears in the forward or the backward pass). The score tensor is updated in place: it is the only
    O(Tq·Tk) buffer, and autograd saves just the exponentials.
    """
    s = (q @ k.transpose(-1, -2)).masked_fill_(~visible, float("-inf"))  # (.., Tq, Tk) logits s_ij
    m = s.detach().amax(-1, keepdim=True)  # (.., Tq, 1): a shift only, the result does not depend on it
    e = s.sub_(torch.where(m.isfinite(), m, 0.0)).exp_()  # masked keys: e^{−∞} = 0
    return e @ v, e.sum(-1, keepdim=True), m


def _merge(*parts: Parts) -> Tensor:
    """softmax over the union of the parts' (disjoint) key sets: rescale every part to the common row max
    M = max_p m_p and add, out = Σ_p e^{m_p − M}·num_p / Σ_p e^{m_p − M}·den_p (online-softmax identity)."""
    big = torch.stack([m for _, _, m in parts]).amax(0)  # (.., T, 1)
    big = torch.where(big.isfinite(), big, 0.0)
    w = [torch.exp(m - big) for _, _, m in parts]  # e^{m_p − M}; 0 for a part with no key in that row
    num = sum(wp * nump for wp, (nump, _, _) in zip(w, parts))  # (.., T, Dv)
    den = sum(wp * denp for wp, (_, denp, _) in zip(w, parts))  # (.., T, 1)
    return num / torch.where(den > 0, den, 1.0)  # a row with no key at all returns 0


def _local_parts(q: Tensor, k: Tensor, v: Tensor, window: int, causal: bool, scale: float) -> Parts:
    """The Local part in block layout, as unnormalised sums over the band |i − j| ≤ w, per position."""
    n = q.shape[-2]
    b, nb, r, visible = _local_layout(n, window, causal, q.device)
    after = 0 if causal else r
    qb = _query_blocks(q, b, nb)  # (B, H, nb, b, D)
    kb, vb = (_key_blocks(x, b, nb, r, after) for x in (k, v))  # (B, H, nb, K, D)
    return tuple(x.flatten(2, 3)[..., :n, :] for x in _partial(qb * scale, kb, vb, visible))  # (B, H, n, ·)


# -------------------------------------------------------------------------------------- attention
def local_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    window: int,
    causal: bool,
    scale: float | Tensor | None = None,
    block: int | None = None,
) -> Tensor:
    """Local self-attention [6853]: query i sees keys |i − j| ≤ window (causal: i − window ≤ j ≤ i).

    q, k (B, H, T, D), v (B, H, T, Dv) → (B, H, T, Dv). Time and memory O(T·window): blocks of `block`
    positions (default ⌈window/4⌉), each attending to the r = ⌈window/block⌉ blocks on either side (before
    only, when causal) through one batched `F.scaled_dot_product_attention` with an in-block band mask.
    scale: None (1/√D), a float, or a tensor broadcastable to (B, H, T, 1). window ≥ T is dense attention.
    """
    _int_at_least("local_attention", "window", window, 0)
    if block is not None:
        _int_at_least("local_attention", "block", block, 1)
    q, scale = _prepare("local_attention", q, k, v, scale)
    (B, H, n, _), dv = q.shape, v.shape[-1]
    b, nb, r, visible = _local_layout(n, window, causal, q.device, block)
    after = 0 if causal else r
    width = visible.shape[-1]  # K keys per query block
    # SDPA on a few blocks at a time, each call gathering only its own blocks' keys from slices of k and v:
    # the working set stays cache-sized, and no padded copy of the whole of q, k or v is ever allocated
    g = max(1, GROUP_BYTES // (B * H * width * (k.shape[-1] + dv) * k.element_size()))
    outs = []
    for i in range(0, nb, g):
        j = min(i + g, nb)
        qg = _block_slice(q, b, i, j, 0, 0)  # (B, H, j − i, b, D)
        kg, vg = (_block_slice(x, b, i, j, r, after) for x in (k, v))  # (B, H, j − i, K, ·)
        outs.append(
            F.scaled_dot_product_attention(  # 4-D inputs and mask: SDPA's CPU flash kernel, not O(n²) math
                qg.flatten(0, 1),
                kg.flatten(0, 1),
                vg.flatten(0, 1),
                attn_mask=visible[None, i:j],
                scale=scale,
            )  # (B·H, j − i, b, Dv)
        )
    return torch.cat(outs, 1).reshape(B, H, nb * b, dv)[..., :n, :]  # (B, H, T, Dv)


def atrous_attention(
    q: Tensor, k: Tensor, v: Tensor, *, dilation: int, causal: bool, scale: float | Tensor | None = None
) -> Tensor:
    """Atrous (dilated) self-attention [6853]: query i sees keys with |i − j| mod k = 0 (causal: and j ≤ i).

    q, k (B, H, T, D), v (B, H, T, Dv) → (B, H, T, Dv). Time and memory O(T²/k): the k interleaved
    sub-sequences attend densely within themselves. dilation = 1 is dense attention.
    """
    _int_at_least("atrous_attention", "dilation", dilation, 1)
    q, scale = _prepare("atrous_attention", q, k, v, scale)
    B, H, n, _ = q.shape
    kk = min(dilation, n)  # k ≥ n: only j = i, the same as k = n
    qg, kg, vg = (_atrous_groups(x, kk).flatten(0, 1) for x in (q, k, v))  # (B·H, k, m, D)
    m = qg.shape[-2]
    if causal or m * kk == n:  # padded keys sit after every real query: causality (or nothing) hides them
        out = F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal, scale=scale)  # (B·H, k, m, Dv)
    else:
        pos = torch.arange(m, device=q.device) * kk + torch.arange(kk, device=q.device)[:, None]  # (k, m)
        # every group holds its position g < n, so no query row is left without keys
        real = (pos < n)[None, :, None, :]  # (1, k, 1, m) real keys, 4-D for the flash kernel
        out = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=real, scale=scale)  # (B·H, k, m, Dv)
    return _ungroup(out.unflatten(0, (B, H)), n)  # (B, H, T, Dv)


def sparse_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    window: int,
    dilation: int,
    causal: bool,
    scale: float | Tensor | None = None,
) -> Tensor:
    """Sparse self-attention [6853] = Local(window) ∪ Atrous(dilation) in one softmax.

    q, k (B, H, T, D), v (B, H, T, Dv) → (B, H, T, Dv). Time and memory O(T·window + T²/dilation): the Local
    part block-wise, the Atrous part on the interleaved sub-sequences minus the keys the band already has
    (|i − j| ≤ window ⇔ |a − c| ≤ ⌊window/k⌋ for i = a·k + g, j = c·k + g), merged by their log-sum-exps.
    """
    _int_at_least("sparse_attention", "window", window, 0)
    _int_at_least("sparse_attention", "dilation", dilation, 1)
    q, scale = _prepare("sparse_attention", q, k, v, scale)
    n = q.shape[-2]
    local = _local_parts(q, k, v, window, causal, scale)  # (B, H, T, ·)
    kk = min(dilation, n)
    qg, kg, vg = (_atrous_groups(x, kk) for x in (q, k, v))  # (B, H, k, m, D)
    m = qg.shape[-2]
    a = torch.arange(m, device=q.device)
    gap = a[:, None] - a[None, :]  # (m, m): (i − j)/k within a group
    visible = (gap > 0) if causal else (gap != 0)  # [6853] Atrous (same residue mod k)
    visible = visible & (gap.abs() > window // kk)  # … minus the Local band, counted in `local` already
    real = (a * kk + torch.arange(kk, device=q.device)[:, None] < n)[:, None, :]  # (k, 1, m) real keys
    atrous = tuple(_ungroup(x, n) for x in _partial(qg * scale, kg, vg, visible & real))  # (B, H, T, ·)
    return _merge(local, atrous)


def strided_attention(
    q: Tensor, k: Tensor, v: Tensor, *, stride: int, causal: bool = True, scale: float | Tensor | None = None
) -> Tensor:
    """[Child]'s strided attention, both components merged in one head: i − l < j ≤ i or (i − j) mod l = 0.

    This is [6853]'s Sparse with window l − 1 and dilation l (causal as in [Child]; causal=False gives the
    bidirectional |i − j| < l or |i − j| mod l = 0). l ≈ √T gives O(T√T) time and memory.
    """
    _int_at_least("strided_attention", "stride", stride, 1)
    return sparse_attention(q, k, v, window=stride - 1, dilation=stride, causal=causal, scale=scale)


def fixed_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    stride: int,
    summary: int,
    causal: bool,
    scale: float | Tensor | None = None,
) -> Tensor:
    """[Child]'s fixed attention, both components in one head: query i sees its own block of l positions
    (⌊j/l⌋ = ⌊i/l⌋) and the last c = `summary` positions of every block (j mod l ≥ l − c); causal: j ≤ i.

    q, k (B, H, T, D), v (B, H, T, Dv) → (B, H, T, Dv). Time and memory O(T·l + T²·c/l).
    """
    _int_at_least("fixed_attention", "stride", stride, 1)
    _int_at_least("fixed_attention", "summary", summary, 1, at_most=stride)
    q, scale = _prepare("fixed_attention", q, k, v, scale)
    n, dev = q.shape[-2], q.device
    l = stride
    nb = math.ceil(n / l)
    # A⁽¹⁾: block-diagonal, blocks of l
    qb, kb, vb = (_query_blocks(x, l, nb) for x in (q, k, v))  # (B, H, nb, l, D)
    pos = torch.arange(nb * l, device=dev).view(nb, l)  # (nb, l) absolute positions
    d = pos[:, :, None] - pos[:, None, :]  # (nb, l, l): i − j within a block
    own = ((d >= 0) if causal else torch.ones_like(d, dtype=torch.bool)) & (pos[:, None, :] < n) | (d == 0)
    block = tuple(x.flatten(2, 3)[..., :n, :] for x in _partial(qb * scale, kb, vb, own))  # (B, H, T, ·)
    # A⁽²⁾: the summary keys (last c of each block) of the OTHER blocks (earlier ones when causal)
    ks, vs = (x[..., l - summary :, :].flatten(2, 3) for x in (kb, vb))  # (B, H, nb·c, D)
    tq = torch.arange(n, device=dev)[:, None] // l  # (T, 1) block of each query
    tk = torch.arange(nb, device=dev).repeat_interleave(summary)[None, :]  # (1, nb·c) block of each key
    js = pos[:, l - summary :].reshape(1, -1)  # (1, nb·c) key positions
    other = ((tk < tq) if causal else (tk != tq)) & (js < n)  # (T, nb·c)
    return _merge(block, _partial(q * scale, ks, vs, other))  # (B, H, T, Dv)
