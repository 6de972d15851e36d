"""Identities of [4765] attention: = naive softmax(QKᵀ·scale)V in float64, = SDPA on its fused CPU kernel,
= torch.nn.MultiheadAttention with copied weights, masks = brute force, KV cache = recompute, log-n counts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from kexue.errors import KexueError
from kexue.nn.attention import (
    MultiHeadAttention,
    attention,
    causal_mask,
    padding_mask,
    unilm_mask,
    window_mask,
)

f64 = torch.float64


def naive(q, k, v, mask=None, scale=None):
    """softmax(QKᵀ·scale)V row by row, masked logits −∞, a row with no visible key → 0 ([4765] eq. 4)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = (q @ k.transpose(-1, -2)) * scale  # (B, H, Tq, Tk)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return s.softmax(-1).nan_to_num(0.0) @ v


def qkv(gen, b=2, h=3, tq=4, tk=6, d=8, dv=8, dtype=f64):
    q = torch.randn(b, h, tq, d, generator=gen, dtype=dtype)
    k = torch.randn(b, h, tk, d, generator=gen, dtype=dtype)
    v = torch.randn(b, h, tk, dv, generator=gen, dtype=dtype)
    return q, k, v


def brute_causal(tq, tk, offset):
    return torch.tensor([[j <= i + offset for j in range(tk)] for i in range(tq)])


MASKS = ["none", "padding", "random", "causal", "causal+padding"]


def _mask(kind, gen, b, tq, tk):
    lengths = torch.tensor([tk - 2, tk])[:b]
    if kind == "padding":
        return padding_mask(lengths, length=tk), False
    if kind == "random":
        return torch.rand(b, 1, tq, tk, generator=gen) < 0.7, False
    if kind == "causal":
        return None, True
    if kind == "causal+padding":
        return padding_mask(lengths, length=tk), True
    return None, False


# ------------------------------------------------------------------------------------------------ masks
@pytest.mark.parametrize("tq,tk,offset", [(4, 4, 0), (3, 6, 3), (5, 2, -3), (4, 7, 1)])
def test_causal_mask_is_the_brute_force_triangle(tq, tk, offset):
    assert torch.equal(causal_mask(tq, tk, offset=offset), brute_causal(tq, tk, offset))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("tq,tk,window,offset", [(6, 6, 2, 0), (3, 8, 1, 5), (5, 5, 0, 0), (4, 9, 3, 2)])
def test_window_mask_is_the_band(causal, tq, tk, window, offset):
    """|p − j| ≤ window with p = i + offset, and j ≤ p when causal ([6853] Local)."""
    want = torch.tensor(
        [
            [abs(i + offset - j) <= window and (not causal or j <= i + offset) for j in range(tk)]
            for i in range(tq)
        ]
    )
    assert torch.equal(window_mask(tq, tk, window, causal=causal, offset=offset), want)
    if causal:  # a window wider than the sequence is plain causal attention
        assert torch.equal(
            window_mask(tq, tk, tk, causal=True, offset=offset), causal_mask(tq, tk, offset=offset)
        )


def test_padding_mask_from_lengths_and_bool():
    m = padding_mask(torch.tensor([2, 4, 0]), length=4)
    want = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    assert m.shape == (3, 1, 1, 4) and torch.equal(m[:, 0, 0], want)
    assert torch.equal(padding_mask(want), m)
    left = padding_mask(torch.tensor([2, 4, 0]), length=4, left=True)[:, 0, 0]
    assert torch.equal(left, want.flip(-1))
    assert padding_mask(torch.tensor([1, 3])).shape == (2, 1, 1, 3)  # default length: the longest


def test_unilm_mask_is_bidirectional_on_the_source_and_causal_on_the_target():
    """Segment ids 0 0 0 1 1: the 3 source tokens see each other, target token t sees the source and
    targets ≤ t (bert4keras UniLM, reference §1.7)."""
    seg = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 1, 1, 1]])
    m = unilm_mask(seg)
    assert m.shape == (2, 1, 5, 5)
    for b in range(2):
        ns = int((seg[b] == 0).sum())
        want = torch.zeros(5, 5, dtype=torch.bool)
        want[:, :ns] = True  # everyone sees the whole source
        for i in range(ns, 5):
            want[i, ns : i + 1] = True  # target: causal among targets
        assert torch.equal(m[b, 0], want)


# ------------------------------------------------------------------------------------------ functional
@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("tq,tk,dv", [(5, 5, 8), (3, 6, 8), (4, 6, 5), (6, 3, 8)])
def test_attention_equals_naive_softmax(gen, kind, tq, tk, dv):
    q, k, v = qkv(gen, tq=tq, tk=tk, dv=dv)
    mask, causal = _mask(kind, gen, 2, tq, tk)
    full = mask
    if causal:  # the last query sits with the last key
        c = brute_causal(tq, tk, tk - tq)
        full = c if mask is None else mask & c
    out = attention(q, k, v, mask=mask, causal=causal)
    assert out.shape == (2, 3, tq, dv)
    torch.testing.assert_close(out, naive(q, k, v, full), atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_attention_runs_on_the_fused_cpu_flash_kernel(gen, kind, dtype):
    """With flash as the only allowed backend SDPA raises rather than fall back, so a result proves the
    fused kernel ran (4-D, equal head dims, dropout 0: reference §2.4)."""
    q, k, v = qkv(gen, tq=5, tk=5, dtype=dtype)
    mask, causal = _mask(kind, gen, 2, 5, 5)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        out = attention(q, k, v, mask=mask, causal=causal)
    with sdpa_kernel(SDPBackend.MATH):
        ref = attention(q, k, v, mask=mask, causal=causal)
    tol = 1e-12 if dtype == f64 else 1e-5
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)


@pytest.mark.filterwarnings("ignore:.*[Ff]lash attention:UserWarning")
def test_unequal_value_dim_leaves_the_flash_kernel(gen):
    """d_v ≠ d_k is computed correctly, but not by the fused CPU kernel (the pitfall of reference §5)."""
    q, k, v = qkv(gen, dv=5)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION), pytest.raises(RuntimeError):
        attention(q, k, v)
    torch.testing.assert_close(attention(q, k, v), naive(q, k, v), atol=1e-12, rtol=0)


def test_attention_without_mask_is_sdpa_itself(gen):
    q, k, v = qkv(gen, tq=5, tk=5)
    assert torch.equal(attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    assert torch.equal(
        attention(q, k, v, causal=True), F.scaled_dot_product_attention(q, k, v, is_causal=True)
    )
    assert torch.equal(attention(q, k, v, scale=0.3), F.scaled_dot_product_attention(q, k, v, scale=0.3))


def test_fully_masked_rows_are_zero_with_zero_gradient(gen):
    q, k, v = (t.requires_grad_() for t in qkv(gen))
    mask = torch.rand(2, 1, 4, 6, generator=gen) < 0.6
    mask[0, 0, 1] = False  # query row 1 of batch 0 sees nothing
    mask[1, 0, 3] = False
    out = attention(q, k, v, mask=mask)
    assert torch.equal(out[0, :, 1], torch.zeros_like(out[0, :, 1]))
    assert torch.equal(out[1, :, 3], torch.zeros_like(out[1, :, 3]))
    torch.testing.assert_close(out, naive(q, k, v, mask), atol=1e-12, rtol=0)
    out.square().sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all() and torch.isfinite(v.grad).all()
    assert torch.equal(q.grad[0, :, 1], torch.zeros_like(q.grad[0, :, 1]))


def test_causal_with_more_queries_than_keys_zeroes_the_early_rows(gen):
    """Bottom-right alignment: with Tq = 6 > Tk = 3, queries 0–2 sit before every key and return 0."""
    q, k, v = qkv(gen, tq=6, tk=3)
    out = attention(q, k, v, causal=True)
    assert torch.equal(out[:, :, :3], torch.zeros_like(out[:, :, :3]))
    torch.testing.assert_close(out, naive(q, k, v, brute_causal(6, 3, -3)), atol=1e-12, rtol=0)


def test_per_row_tensor_scale_equals_scaling_the_queries(gen):
    q, k, v = qkv(gen)
    s = torch.rand(2, 1, 4, 1, generator=gen, dtype=f64) + 0.5  # (B, 1, Tq, 1)
    mask = padding_mask(torch.tensor([4, 6]), length=6)
    out = attention(q, k, v, mask=mask, scale=s)
    torch.testing.assert_close(out, attention(q * s, k, v, mask=mask, scale=1.0), atol=1e-13, rtol=0)
    torch.testing.assert_close(out, naive(q, k, v, mask, scale=s), atol=1e-12, rtol=0)


def test_tiny_scale_averages_and_huge_scale_picks_the_argmax(gen):
    """scale → 0: softmax → uniform over visible keys, the mean of visible V; scale → ∞: one-hot at the
    largest logit, the V of the argmax key."""
    q, k, v = qkv(gen)
    mask = padding_mask(torch.tensor([3, 6]), length=6)
    flat = attention(q, k, v, mask=mask, scale=1e-12)
    vis = mask[:, :, 0, :, None].to(f64)  # (B, 1, Tk, 1)
    mean = (v * vis).sum(-2, keepdim=True) / vis.sum(-2, keepdim=True)  # (B, H, 1, Dv)
    torch.testing.assert_close(flat, mean.expand_as(flat), atol=1e-10, rtol=0)
    sharp = attention(q, k, v, mask=mask, scale=1e6)
    logits = (q @ k.transpose(-1, -2)).masked_fill(~mask, float("-inf"))
    best = logits.argmax(-1)  # (B, H, Tq)
    torch.testing.assert_close(sharp, torch.gather(v, 2, best[..., None].expand(-1, -1, -1, v.shape[-1])))


def test_keys_permuted_with_their_values_change_nothing(gen):
    """Attention is a weighted sum over keys: a bag of (k, v) pairs ([4765]: 顶多是一个词袋模型)."""
    q, k, v = qkv(gen)
    perm = torch.randperm(6, generator=gen)
    torch.testing.assert_close(
        attention(q, k[:, :, perm], v[:, :, perm]), attention(q, k, v), atol=1e-13, rtol=0
    )


def test_gradcheck(gen):
    q, k, v = (t.requires_grad_() for t in qkv(gen, b=1, h=2, tq=3, tk=4, d=4, dv=3))
    mask = torch.tensor([[True, True, False, True], [False, True, True, True], [True, False, False, False]])
    assert torch.autograd.gradcheck(lambda a, b, c: attention(a, b, c, mask=mask), (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: attention(a, b, c, causal=True), (q, k, v))


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 2),
    h=st.integers(1, 3),
    tq=st.integers(1, 6),
    tk=st.integers(1, 6),
    d=st.integers(1, 5),
    dv=st.integers(1, 5),
    causal=st.booleans(),
    masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_attention_equals_naive_for_any_shape(b, h, tq, tk, d, dv, causal, masked, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = qkv(gen, b=b, h=h, tq=tq, tk=tk, d=d, dv=dv)
    mask = torch.rand(b, 1, tq, tk, generator=gen) < 0.6 if masked else None
    full = mask
    if causal:
        c = brute_causal(tq, tk, tk - tq)
        full = c if mask is None else mask & c
    torch.testing.assert_close(
        attention(q, k, v, mask=mask, causal=causal), naive(q, k, v, full), atol=1e-12, rtol=0
    )


def test_bad_inputs_raise_clear_errors(gen):
    q, k, v = qkv(gen)
    with pytest.raises(KexueError, match="4-D"):
        attention(q[0], k[0], v[0])
    with pytest.raises(KexueError, match="do not fit"):
        attention(q, k[..., :5], v)
    with pytest.raises(KexueError, match="do not fit"):
        attention(q, k, v[:, :, :5])
    with pytest.raises(KexueError, match="bool"):
        attention(q, k, v, mask=torch.zeros(4, 6))
    with pytest.raises(KexueError, match="does not broadcast"):
        attention(q, k, v, mask=torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(KexueError, match="tensor scale"):
        attention(q, k, v, scale=torch.ones(2, 1, 4, 6))
    with pytest.raises(KexueError, match="window"):
        window_mask(3, 3, -1, causal=True)
    with pytest.raises(KexueError, match="segment ids"):
        unilm_mask(torch.zeros(5))
    with pytest.raises(KexueError, match="lengths must lie"):
        padding_mask(torch.tensor([5]), length=3)


# ------------------------------------------------------------------------------------------ the module
def _copied_torch_mha(mha: MultiHeadAttention) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(mha.d_model, mha.heads, batch_first=True, dtype=f64)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias]))
        ref.out_proj.weight.copy_(mha.out_proj.weight)
        ref.out_proj.bias.copy_(mha.out_proj.bias)
    return ref


@pytest.mark.parametrize(
    "cross,padded,causal",  # every combination but causal cross-attention, which has no meaning
    [(c, p, k) for c in (False, True) for p in (False, True) for k in (False, True) if not (c and k)],
)
def test_multihead_equals_torch_multihead_attention(gen, cross, padded, causal):
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, 3).double()
    ref = _copied_torch_mha(mha)
    x = torch.randn(2, 5, 12, generator=gen, dtype=f64)
    ctx = torch.randn(2, 7, 12, generator=gen, dtype=f64) if cross else x
    tk = ctx.shape[1]
    lengths = torch.tensor([tk - 2, tk])
    real = padding_mask(lengths, length=tk) if padded else None  # (B, 1, 1, Tk)
    out, _ = mha(x, ctx if cross else None, mask=real, causal=causal)
    kpm = ~real[:, 0, 0] if padded else None  # torch: True = ignore
    am = ~brute_causal(5, 5, 0) if causal else None
    want, _ = ref(x, ctx, ctx, key_padding_mask=kpm, attn_mask=am, need_weights=False)
    torch.testing.assert_close(out, want, atol=1e-12, rtol=0)


def test_self_attention_without_positions_is_permutation_equivariant(gen):
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).double()
    x = torch.randn(2, 6, 8, generator=gen, dtype=f64)
    perm = torch.randperm(6, generator=gen)
    out, _ = mha(x)
    torch.testing.assert_close(mha(x[:, perm])[0], out[:, perm], atol=1e-13, rtol=0)
    rope = MultiHeadAttention(8, 2, rope=True).double()
    rope.load_state_dict(mha.state_dict())  # RoPE breaks it: positions matter
    assert not torch.allclose(rope(x[:, perm])[0], rope(x)[0][:, perm], atol=1e-6)


KNOBS = [
    dict(),
    dict(rope=True),
    dict(scale="log_n", log_n_base=4),
    dict(window=2),
    dict(rope=True, scale="log_n", window=3, log_n_base=3, log_n_min=2),
    dict(scale=0.7),
]


@pytest.mark.parametrize("knobs", KNOBS)
@pytest.mark.parametrize("padded", [False, True])
def test_kv_cache_chunks_equal_the_full_pass(gen, knobs, padded):
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, **knobs).double()
    x = torch.randn(2, 7, 8, generator=gen, dtype=f64)
    real = padding_mask(torch.tensor([7, 5]), length=7, left=True) if padded else None  # (B, 1, 1, 7)
    full, (k, v) = mha(x, mask=real, causal=True)
    assert k.shape == v.shape == (2, 2, 7, 4)
    cache, outs = None, []
    for a, b in [(0, 3), (3, 4), (4, 7)]:
        m = real[..., :b] if padded else None  # the mask covers past + new keys
        o, cache = mha(x[:, a:b], mask=m, causal=True, cache=cache)
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-12, rtol=0)
    torch.testing.assert_close(cache[0], k, atol=0, rtol=0)


def test_cross_attention_cache_is_computed_once(gen):
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).double()
    x = torch.randn(2, 4, 8, generator=gen, dtype=f64)
    ctx = torch.randn(2, 5, 8, generator=gen, dtype=f64)
    full, cache = mha(x, ctx)
    assert cache[0].shape == (2, 2, 5, 4)
    steps = [mha(x[:, i : i + 1], ctx, cache=cache)[0] for i in range(4)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-13, rtol=0)
    again, same = mha(x, torch.zeros_like(ctx), cache=cache)  # the cache wins: context not re-projected
    torch.testing.assert_close(again, full, atol=0, rtol=0)
    assert same[0] is cache[0]


def test_log_n_equals_standard_where_the_visible_count_is_the_base(gen):
    """log_m(n)/√d = 1/√d at n = m [8823]: 6 keys, base 6."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, scale="log_n", log_n_base=6).double()
    x = torch.randn(2, 6, 8, generator=gen, dtype=f64)
    out = mha(x)[0]
    mha.scale = "standard"  # a plain attribute, flipped after construction
    torch.testing.assert_close(out, mha(x)[0], atol=1e-13, rtol=0)


@pytest.mark.parametrize("window", [None, 2])
def test_log_n_counts_visible_keys_per_row(gen, window):
    """n_i = keys row i may see under causal + padding (+ window) masks, clamped at log_n_min; each row's
    logits are scaled by log(n_i)/log(base)/√d (bert4keras softmax_plus, reference §1.3)."""
    torch.manual_seed(0)
    base, lo = 3, 2
    mha = MultiHeadAttention(8, 2, scale="log_n", log_n_base=base, log_n_min=lo, window=window).double()
    x = torch.randn(2, 6, 8, generator=gen, dtype=f64)
    lengths = [6, 4]  # batch 1: the last 2 keys are padding
    real = padding_mask(torch.tensor(lengths), length=6)
    out = mha(x, mask=real, causal=True)[0]
    counts = torch.zeros(2, 1, 6, 1, dtype=f64)
    for b in range(2):
        for i in range(6):
            w = i + 1 if window is None else min(i + 1, window + 1)
            counts[b, 0, i, 0] = sum(1 for j in range(i - w + 1, i + 1) if j < lengths[b])
    scale = torch.log(counts.clamp(min=lo)) / math.log(base) / math.sqrt(4)
    q, k, v = (mha._heads(p(x)) for p in (mha.q_proj, mha.k_proj, mha.v_proj))
    full = real & causal_mask(6, 6)
    if window is not None:
        full = full & window_mask(6, 6, window, causal=True)
    want = naive(q, k, v, full, scale=scale).transpose(1, 2).reshape(2, 6, 8)
    torch.testing.assert_close(out, mha.out_proj(want), atol=1e-12, rtol=0)


def test_window_as_wide_as_the_sequence_changes_nothing(gen):
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, rope=True).double()
    x = torch.randn(2, 6, 8, generator=gen, dtype=f64)
    for causal in (False, True):
        dense = mha(x, causal=causal)[0]
        mha.window = 5
        torch.testing.assert_close(mha(x, causal=causal)[0], dense, atol=1e-13, rtol=0)
        mha.window = 1
        assert not torch.allclose(mha(x, causal=causal)[0], dense)
        mha.window = None


def test_module_errors_are_clear():
    with pytest.raises(KexueError, match="not divisible"):
        MultiHeadAttention(10, 3)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(KexueError, match=r"\(B, T, 8\)"):
        mha(torch.zeros(2, 3, 6))
    with pytest.raises(KexueError, match="context"):
        mha(torch.zeros(2, 3, 8), torch.zeros(2, 3, 5))
    with pytest.raises(KexueError, match="cannot be causal"):
        mha(torch.zeros(2, 3, 8), torch.zeros(2, 4, 8), causal=True)
    mha.scale = "bogus"
    with pytest.raises(KexueError, match="scale"):
        mha(torch.zeros(2, 3, 8))
