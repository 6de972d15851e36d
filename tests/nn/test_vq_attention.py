"""Transformer-VQ [9844]: the linear forms equal softmax attention over the quantised keys, and the
quantiser's gradients and EMA follow their formulas."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import kexue.nn.vq_attention as vq_module
from kexue.errors import KexueError
from kexue.nn.vq_attention import (
    VectorQuantizer,
    VQAttention,
    VQAttentionConfig,
    _log_counts,
    codewords,
    quantize,
    vq_attention_linear,
    vq_attention_quadratic,
    vq_attention_step,
)
from kexue.train.aux_loss import collecting_losses

F64 = torch.float64


def _inputs(gen, *, B=2, H=2, T=21, D=4, Dv=5, c=6, per_head=True, dtype=F64):
    q = torch.randn(B, H, T, D, generator=gen, dtype=dtype)
    k = torch.randn(B, H, T, D, generator=gen, dtype=dtype)
    v = torch.randn(B, H, T, Dv, generator=gen, dtype=dtype)
    shape = (H, c, D) if per_head else (c, D)
    return q, k, v, torch.randn(shape, generator=gen, dtype=dtype)


def _naive(q, k, v, *, causal, scale, bias=None):
    """softmax(QKᵀ·scale + B)V by hand, bottom-right causal."""
    s = (q * scale) @ k.transpose(-1, -2)  # (B, H, Tq, Tk)
    tq, tk = s.shape[-2:]
    dist = torch.arange(tq)[:, None] + tk - tq - torch.arange(tk)  # query − key position
    if bias is not None:  # b[i − j] (1-D, or (H, W + 1)), or per query row b[i, i − j] (B, H, Tq, W + 1)
        w = bias.shape[-1] - 1
        if bias.dim() == 4:
            b = torch.stack([bias[..., i, dist[i].clamp(0, w)] for i in range(tq)], -2)  # (B, H, Tq, Tk)
        else:
            b = bias[..., dist.clamp(0, w)]
            b = b[:, None] if bias.dim() == 2 else b  # (H, 1, Tq, Tk): heads align with dim 1
        s = s + torch.where((dist >= 0) & (dist <= w), b.transpose(0, 1) if bias.dim() == 2 else b, 0.0)
    if causal:
        s = s.masked_fill(dist < 0, float("-inf"))
    return s.softmax(-1) @ v


# ------------------------------------------------------------------------------- linear = quadratic
@pytest.mark.parametrize(
    ("causal", "T", "block", "c", "per_head", "bias"),
    [
        (True, 32, 8, 1, False, "toeplitz"),  # n divisible by l; one code
        (True, 37, 8, 5, True, "toeplitz"),  # n not divisible by l; per-head codebook; b[i − j] per head
        (True, 37, 8, 5, False, "row"),  # a bias per query row and distance (Transformer-XL's)
        (True, 5, 8, 64, False, "toeplitz"),  # a single short block, most codes empty
        (True, 64, 4, 7, True, None),  # many blocks
        (True, 30, 8, 3, True, "short"),  # a window W < l
        (False, 21, None, 1, True, None),
        (False, 37, None, 5, False, None),
        (False, 9, None, 64, True, None),
    ],
)
def test_linear_equals_quadratic_over_the_same_keys_fp64(gen, causal, T, block, c, per_head, bias):
    q, k, v, C = _inputs(gen, T=T, c=c, per_head=per_head)
    k_hat, codes = quantize(k, C)
    w = (block or 1) + 1
    shapes = {None: None, "toeplitz": (2, w), "row": (2, 1, T, w), "short": (3,)}
    rb = None if bias is None else torch.randn(shapes[bias], generator=gen, dtype=F64) * 3
    want = vq_attention_quadratic(q, k_hat, v, causal=causal, rel_bias=rb)
    got = vq_attention_linear(q, codes, C, v, causal=causal, block_size=block, rel_bias=rb)
    assert (got - want).abs().max() <= 1e-10
    if rb is not None:
        assert (want - _naive(q, k_hat, v, causal=True, scale=0.5, bias=rb)).abs().max() <= 1e-12


@settings(max_examples=30, deadline=None)
@given(
    T=st.integers(1, 40),
    block=st.integers(1, 12),
    c=st.integers(1, 20),
    per_head=st.booleans(),
    bias=st.sampled_from([None, "toeplitz", "row"]),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_linear_equals_quadratic_for_any_shape(T, block, c, per_head, bias, causal, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v, C = _inputs(g, B=1, T=T, c=c, per_head=per_head)
    k_hat, codes = quantize(k, C)
    w = int(torch.randint(block + 1, (), generator=g)) + 1  # window W ≤ l
    shapes = {"toeplitz": (2, w), "row": (1, 2, T, w)}
    rb = torch.randn(shapes[bias], generator=g, dtype=F64) if bias and causal else None
    want = vq_attention_quadratic(q, k_hat, v, causal=causal, rel_bias=rb)
    got = vq_attention_linear(q, codes, C, v, causal=causal, block_size=block, rel_bias=rb)
    assert (got - want).abs().max() <= 1e-10


def test_linear_equals_quadratic_fp32_and_with_any_scale(gen):
    q, k, v, C = _inputs(gen, T=50, c=16, dtype=torch.float32)
    k_hat, codes = quantize(k, C)
    for causal in (True, False):
        want = vq_attention_quadratic(q, k_hat, v, causal=causal)
        got = vq_attention_linear(q, codes, C, v, causal=causal, block_size=8)
        assert (got - want).abs().max() <= 1e-5
    one_block = vq_attention_linear(q, codes, C, v, causal=True, block_size=64)  # T = 50: no cache at all
    assert (one_block - vq_attention_linear(q, codes, C, v, causal=True, block_size=3)).abs().max() <= 1e-5
    q, k, v, C = _inputs(gen, T=19, c=5)
    k_hat, codes = quantize(k, C)
    row_scale = torch.rand(2, 1, 19, 1, generator=gen, dtype=F64) * 3  # (B, 1, T, 1): per query row
    for scale in (0.3, row_scale):
        want = _naive(q, k_hat, v, causal=True, scale=scale)
        got = vq_attention_linear(q, codes, C, v, causal=True, block_size=4, scale=scale)
        assert (got - want).abs().max() <= 1e-10


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("dv", [6, 9])  # Dv = D + 1 (the keys' width) or wider
def test_block_groups_of_the_fused_kernel_change_nothing(gen, monkeypatch, dtype, dv):
    """The decoder runs SDPA on a few blocks at a time; one block, three or all of them per call give the
    quadratic form's output and gradients (q, v, codebook, the keys' straight-through part, the bias)."""
    tol = 1e-10 if dtype == F64 else 1e-5
    q, k, v, C = _inputs(gen, B=2, H=3, T=150, D=5, Dv=dv, c=7, dtype=dtype)  # 19 blocks of 8, the last short
    rows = torch.randn(2, 3, 150, 9, generator=gen, dtype=dtype)  # per-row bias, W = l

    def attend(linear, q, k, v, C, rows):
        k_hat, codes = quantize(k, C.detach())
        k_hat = k_hat.detach() + (k - k.detach()) + (codewords(codes, C) - codewords(codes, C).detach())
        if not linear:
            return vq_attention_quadratic(q, k_hat, v, causal=True, rel_bias=rows)
        return vq_attention_linear(
            q, codes, C, v, causal=True, block_size=8, k_hat=k_hat, rel_bias=rows, grad_through_cache=True
        )

    leaves = [x.clone().requires_grad_(True) for x in (q, k, v, C, rows)]
    want = attend(False, *leaves)
    grads = list(torch.autograd.grad(want.square().sum(), leaves))
    grads[1] = None  # the keys' straight-through gradient stops at the exact blocks: group sizes agree
    per_block = 2 * 2 * 3 * (7 + 16) * max(6, dv) * q.element_size()  # bytes of one block's keys and values
    for group_bytes in (1, 3 * per_block, 2**40):  # 1, 3 (so 19 = 6·3 + 1) and all 19 blocks per call
        monkeypatch.setattr(vq_module, "GROUP_BYTES", group_bytes)
        with torch.no_grad():
            assert (attend(True, q, k, v, C, rows) - want).abs().max() <= tol
        got = attend(True, *leaves)
        assert (got - want).abs().max() <= tol
        got_grads = torch.autograd.grad(got.square().sum(), leaves)
        grads[1] = got_grads[1] if grads[1] is None else grads[1]
        for name, g, w in zip("qkvCb", got_grads, grads):
            assert (g - w).abs().max() <= tol * 10, name


def test_non_causal_cross_attention_tq_differs_from_tk(gen):
    q = torch.randn(2, 2, 7, 4, generator=gen, dtype=F64)
    _, k, v, C = _inputs(gen, T=13, c=5)
    k_hat, codes = quantize(k, C)
    want = _naive(q, k_hat, v, causal=False, scale=0.5)
    assert torch.allclose(vq_attention_linear(q, codes, C, v, causal=False), want, atol=1e-12, rtol=0)


def test_quadratic_is_softmax_attention(gen):
    """The reference itself: SDPA with zero-padded head dims, bias and bottom-right causality = by hand."""
    for d, dv, tq, per_head in itertools.product((4, 7), (3, 4, 9), (6, 11), (False, True)):
        q = torch.randn(2, 2, tq, d, generator=gen, dtype=F64)
        k = torch.randn(2, 2, 11, d, generator=gen, dtype=F64)
        v = torch.randn(2, 2, 11, dv, generator=gen, dtype=F64)
        bias = torch.randn(*((2,) if per_head else ()), 4, generator=gen, dtype=F64)
        rows = torch.randn(1, 2, tq, 5, generator=gen, dtype=F64)  # per query row
        for causal, b in ((False, None), (True, None), (True, bias), (True, rows)):
            want = _naive(q, k, v, causal=causal, scale=d**-0.5, bias=b)
            got = vq_attention_quadratic(q, k, v, causal=causal, rel_bias=b)
            assert torch.allclose(got, want, atol=1e-12, rtol=0), (d, dv, tq, causal)


def test_every_key_its_own_codeword_is_dense_attention(gen):
    """C = the keys themselves (one codeword per position, per head): K̂ = K and the linear form is SDPA."""
    q, k, v, _ = _inputs(gen, B=1, T=23)
    C = k[0]  # (H, T, D)
    k_hat, codes = quantize(k, C)
    assert torch.equal(codes[0], torch.arange(23).expand(2, 23)) and torch.equal(k_hat, k)
    for causal in (True, False):
        want = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        got = vq_attention_linear(q, codes, C, v, causal=causal, block_size=5)
        assert (got - want).abs().max() <= 1e-12


# ------------------------------------------------------------------------------------ numerics
def test_log_count_bias_is_the_count_and_empty_codes_give_no_nan():
    s = torch.tensor([[0.3, -2.0, 5.0, 1.0]], dtype=F64)
    counts = torch.tensor([[3.0, 0.0, 1.0, 250.0]], dtype=F64)
    assert torch.equal(_log_counts(counts)[0, 1], torch.tensor(-1e30, dtype=F64))
    assert torch.allclose((s + _log_counts(counts)).exp(), counts * s.exp(), rtol=1e-15, atol=0)
    assert torch.isfinite(_log_counts(torch.zeros(3))).all()  # never log 0


def test_large_logits_and_empty_caches_stay_finite_with_finite_gradients(gen):
    """Logits of ±1e3 (exp overflows without the shared max) and c ≫ T (nearly every code empty)."""
    q, k, v, C = _inputs(gen, T=30, c=200, dtype=torch.float32)
    q = (q * 300).requires_grad_(True)
    v.requires_grad_(True)
    k_hat, codes = quantize(k, C)
    for causal in (True, False):
        out = vq_attention_linear(q, codes, C, v, causal=causal, block_size=4)
        want = vq_attention_quadratic(q, k_hat, v, causal=causal)
        assert torch.isfinite(out).all() and (out - want).abs().max() <= 1e-4
        gq, gv = torch.autograd.grad(out.square().sum(), (q, v))
        assert torch.isfinite(gq).all() and torch.isfinite(gv).all()


# ---------------------------------------------------------------------------------- causality, grads
def _jacobian(fn, x):
    """∂fn(x)/∂x summed over the feature dims: (T_out, T_in) magnitudes for (1, 1, T, ·) tensors."""
    jac = torch.autograd.functional.jacobian(fn, x)  # (1, 1, T, Dv, 1, 1, T, D)
    return jac[0, 0, :, :, 0, 0].abs().sum((1, 3))  # (T_out, T_in)


@pytest.mark.parametrize("grad_through_cache", [False, True])
def test_causality_jacobian_is_lower_triangular(gen, grad_through_cache):
    q, k, v, C = _inputs(gen, B=1, H=1, T=13, D=3, Dv=2, c=4)
    codes = quantize(k, C)[1]
    rb = torch.randn(5, generator=gen, dtype=F64)

    def attend(q=q, k=k, v=v):
        kh = quantize(k, C)[0]  # straight-through: the keys' gradient enters through the exact blocks
        return vq_attention_linear(
            q,
            codes,
            C,
            v,
            causal=True,
            block_size=4,
            k_hat=kh,
            rel_bias=rb,
            grad_through_cache=grad_through_cache,
        )

    future = torch.ones(13, 13).triu(1).bool()
    for name in ("q", "k", "v"):
        jac = _jacobian(lambda x, name=name: attend(**{name: x}), {"q": q, "k": k, "v": v}[name])
        assert (jac[future] == 0).all(), name
        assert (jac.diagonal()[1:] > 0).all(), name  # each position depends on itself (row 0 is v_0 alone)


def test_gradients_flow_as_designed(gen):
    """With grad_through_cache the linear form's gradients are the quadratic form's (q, v, codebook); with
    the paper's stop-gradient, q and C keep theirs, v gets none from queries ≥ 2 blocks later, and the keys'
    straight-through gradient reaches only the current and the previous block."""
    q, k, v, C = _inputs(gen, B=1, H=1, T=14, D=3, Dv=2, c=4)
    codes = quantize(k, C)[1]
    leaves = [x.clone().requires_grad_(True) for x in (q, v, C)]
    qq, vv, cc = leaves
    want = torch.autograd.grad(
        vq_attention_quadratic(qq, codewords(codes, cc), vv, causal=True).sum(), leaves
    )
    full = vq_attention_linear(qq, codes, cc, vv, causal=True, block_size=4, grad_through_cache=True)
    for g, w in zip(torch.autograd.grad(full.sum(), leaves), want):
        assert torch.allclose(g, w, atol=1e-12, rtol=0)
    paper = vq_attention_linear(qq, codes, cc, vv, causal=True, block_size=4)
    g_q, g_v, g_c = torch.autograd.grad(paper.sum(), leaves)
    assert torch.allclose(g_q, want[0], atol=1e-12) and torch.allclose(g_c, want[2], atol=1e-12)
    block = torch.arange(14) // 4
    reach = block[:, None] - block[None, :] <= 1  # (T_out, T_in): exact blocks i − 1 and i
    for x, name in ((v, "v"), (k, "k")):

        def attend(x, name=name):
            kh = quantize(x, C)[0] if name == "k" else None
            return vq_attention_linear(
                q, codes, C, x if name == "v" else v, causal=True, block_size=4, k_hat=kh
            )

        jac = _jacobian(attend, x)
        live = reach.tril()
        live[0, 0] = name == "v"  # out_0 = v_0 whatever k_0
        assert (jac[~reach] == 0).all() and (jac[live] > 0).all(), name
    assert not torch.allclose(g_v, want[1])  # the stop-gradient changed something


def test_straight_through_gradient_is_the_identity_on_keys(gen):
    k = torch.randn(2, 3, 5, 4, generator=gen, dtype=F64, requires_grad=True)
    C = torch.randn(3, 6, 4, generator=gen, dtype=F64, requires_grad=True)
    w = torch.randn(2, 3, 5, 4, generator=gen, dtype=F64)
    k_hat, codes = quantize(k, C)
    assert torch.equal(k_hat, codewords(codes, C))  # bit for bit the codewords
    (k_hat * w).sum().backward()
    assert torch.equal(k.grad, w) and C.grad is None


# ----------------------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("per_head", [False, True])
def test_recurrent_decode_equals_the_parallel_form(gen, per_head):
    q, k, v, C = _inputs(gen, T=29, c=5, per_head=per_head)
    codes = quantize(k, C)[1]
    rows = torch.randn(2, 2, 29, 5, generator=gen, dtype=F64)  # a bias per query row (B, H, T, W + 1)
    rb = rows if per_head else rows[0, 0, 0]  # or the same Toeplitz b on every row
    want = vq_attention_linear(q, codes, C, v, causal=True, block_size=4, rel_bias=rb)
    cuts = [0, 1, 2, 3, 9, 10, 17, 18, 19, 25, 29]  # single tokens and chunks across block boundaries
    one, chunks, cache, cache2 = [], [], None, None
    for t in range(29):
        out, cache = vq_attention_step(
            q[:, :, t : t + 1],
            codes[:, :, t : t + 1],
            C,
            v[:, :, t : t + 1],
            cache,
            block_size=4,
            rel_bias=rb[:, :, t : t + 1] if rb.dim() == 4 else rb,
        )
        one.append(out)
        assert cache.keys.shape[2] <= 8  # the recent window never exceeds two blocks
    for a, b in itertools.pairwise(cuts):
        sl = slice(a, b)
        out, cache2 = vq_attention_step(
            q[:, :, sl],
            codes[:, :, sl],
            C,
            v[:, :, sl],
            cache2,
            block_size=4,
            rel_bias=rb[:, :, sl] if per_head else rb,
        )
        chunks.append(out)
    assert (torch.cat(one, 2) - want).abs().max() <= 1e-12
    assert (torch.cat(chunks, 2) - want).abs().max() <= 1e-12
    assert int(cache.position[0]) == 29 and torch.equal(cache.counts, cache2.counts)
    assert cache.counts.sum() == 2 * 2 * 24  # blocks 0 … 5 folded (positions < 24) in each of B·H = 4 rows


def test_cache_means_are_the_codes_mean_values(gen):
    """The folded cache is (count, mean) per code: the mean recurrence gives ΔᵀV / Δᵀ1."""
    q, k, v, C = _inputs(gen, B=1, H=1, T=24, c=3)
    codes = quantize(k, C)[1]
    _, cache = vq_attention_step(q, codes, C, v, None, block_size=4)  # 24 tokens: blocks 0 … 3 folded
    for s in range(3):
        sel = codes[0, 0, :16] == s
        assert cache.counts[0, 0, s] == sel.sum()
        if sel.any():
            assert torch.allclose(cache.means[0, 0, s], v[0, 0, :16][sel].mean(0), atol=1e-14)


# ------------------------------------------------------------------------------------------ quantiser
def _brute_distances(k, C):
    if C.dim() == 2:
        return (k[..., None, :] - C).pow(2).sum(-1)  # (…, T, c)
    return (k[..., None, :] - C[:, None]).pow(2).sum(-1)  # (B, H, T, c)


@settings(max_examples=40, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    T=st.integers(1, 9),
    D=st.integers(1, 6),
    c=st.integers(1, 12),
    per_head=st.booleans(),
    double=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_quantize_is_a_nearest_codeword_for_any_shape(lead, T, D, c, per_head, double, seed):
    g = torch.Generator().manual_seed(seed)
    dtype = F64 if double else torch.float32
    shape = (2, 3, T, D) if per_head else (*lead, T, D)
    k = torch.randn(shape, generator=g, dtype=dtype) * 3
    C = torch.randn((3, c, D) if per_head else (c, D), generator=g, dtype=dtype)
    k_hat, codes = quantize(k, C)
    assert k_hat.shape == k.shape and k_hat.dtype == dtype and codes.shape == k.shape[:-1]
    assert codes.dtype == torch.long and 0 <= int(codes.min()) and int(codes.max()) < c
    assert torch.equal(k_hat, codewords(codes, C))
    dist = _brute_distances(k.double(), C.double())  # the argmin by brute force
    chosen = dist.gather(-1, codes[..., None])[..., 0]
    tol = 1e-10 if double else 1e-4 * (1 + dist.amin(-1))
    assert (chosen <= dist.amin(-1) + tol).all()


def test_nearest_code_equals_brute_force_argmin(gen):
    k = torch.randn(3, 2, 40, 5, generator=gen, dtype=F64)
    C = torch.randn(2, 17, 5, generator=gen, dtype=F64)
    assert torch.equal(quantize(k, C)[1], _brute_distances(k, C).argmin(-1))


@pytest.mark.parametrize("heads", [None, 2])
def test_ema_update_is_the_closed_form(gen, heads):
    vq = VectorQuantizer(4, 3, heads=heads, gamma=0.9, eps=1e-3, generator=gen).double()
    C0 = vq.codebook.clone()
    assert torch.allclose(C0, vq.cluster_sum)  # equal sizes: Laplace smoothing changes nothing
    n0, s0 = vq.cluster_size.clone(), vq.cluster_sum.clone()
    k = torch.randn(2, 2, 6, 3, generator=gen, dtype=F64)
    out = vq.train()(k)
    books = (
        [(slice(None), k.reshape(-1, 3), out.codes.reshape(-1))]
        if heads is None
        else [(h, k[:, h].reshape(-1, 3), out.codes[:, h].reshape(-1)) for h in range(2)]
    )
    for h, keys, z in books:
        n = torch.stack([(z == s).sum() for s in range(4)]).double()
        sums = torch.stack([keys[z == s].sum(0) for s in range(4)])
        size = 0.9 * n0[h] + 0.1 * n
        total = size.sum()
        assert torch.allclose(vq.cluster_size[h], size, atol=1e-14)
        assert torch.allclose(vq.cluster_sum[h], 0.9 * s0[h] + 0.1 * sums, atol=1e-14)
        smoothed = (size + 1e-3) / (total + 4e-3) * total
        assert torch.allclose(vq.codebook[h], vq.cluster_sum[h] / smoothed[:, None], atol=1e-14)
    n1, s1 = vq.cluster_size.clone(), vq.cluster_sum.clone()
    vq.eval()(k)  # evaluation never moves the codebook
    assert torch.equal(vq.cluster_size, n1) and torch.equal(vq.cluster_sum, s1)


def test_commitment_and_codebook_losses(gen):
    k = torch.randn(2, 5, 3, generator=gen, dtype=F64, requires_grad=True)
    vq = VectorQuantizer(4, 3, beta=0.25, ema=False, generator=gen).double()
    out = vq(k)
    err = (k - codewords(out.codes, vq.weight)).pow(2).sum(-1).mean()  # mean over keys of ‖k − c_z‖²
    assert torch.allclose(out.commit, err) and torch.allclose(out.loss, 1.25 * err)
    out.loss.backward()
    assert torch.allclose(k.grad, 0.25 * 2 * (k - out.k_hat).detach() / 10)  # β only: sg(k̂)
    z = out.codes.reshape(-1)
    want = torch.stack(
        [-2 * (k.detach().reshape(-1, 3)[z == s] - vq.weight[s]).sum(0) / 10 for s in range(4)]
    )
    assert torch.allclose(vq.weight.grad, want.detach())  # ‖sg(k) − C_z‖² moves the codebook only
    ema = VectorQuantizer(4, 3, generator=gen).double()
    out = ema(k)
    assert torch.allclose(out.loss, 1e-4 * out.commit) and not any(p.requires_grad for p in ema.buffers())


def test_dead_codes_restart_on_the_worst_keys(gen):
    vq = VectorQuantizer(3, 2, gamma=0.5, dead_threshold=0.8).double()
    with torch.no_grad():
        vq.cluster_sum.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [-50.0, 50.0]]))
    k = torch.tensor([[0.1, 0.0], [0.0, 0.2], [3.0, 4.0], [0.0, -1.0]], dtype=F64)
    vq.train()(k)  # all keys go to code 0; codes 1 and 2 drop to N = 0.5 < 0.8
    assert torch.equal(vq.cluster_size, torch.tensor([2.5, 1.0, 1.0], dtype=F64))
    assert torch.equal(vq.cluster_sum[1:], k[[2, 3]])  # the two largest errors, worst first


# ---------------------------------------------------------------------------------------------- layer
@pytest.mark.parametrize(("mode", "position"), [("vq", "xl"), ("dense", "xl"), ("vq", "toeplitz")])
def test_layer_step_equals_forward_and_records_its_loss(gen, mode, position):
    cfg = VQAttentionConfig(d_model=8, d_k=4, d_v=6, num_codes=5, block_size=4, mode=mode, position=position)
    torch.manual_seed(0)
    layer = VQAttention(cfg, generator=gen).double().eval()
    with torch.no_grad():  # non-zero position terms
        (layer.xl_v if position == "xl" else layer.toeplitz).copy_(
            torch.randn(5 if position != "xl" else 4, generator=gen)
        )
    x = torch.randn(2, 19, 8, generator=gen, dtype=F64)
    want = layer(x)
    outs, cache = [], None
    for a, b in itertools.pairwise([0, 7, 8, 9, 13, 19]):
        out, cache = layer.step(x[:, a:b], cache)
        outs.append(out)
    assert torch.allclose(torch.cat(outs, 1), want, atol=1e-12)
    if mode == "vq":
        quad = VQAttention(replace(cfg, form="quadratic")).double().eval()
        quad.load_state_dict(layer.state_dict())
        assert torch.allclose(quad(x), want, atol=1e-12)
        before = layer.quantizer.cluster_size.clone()
        with collecting_losses() as aux:
            layer.train()(x).sum().backward()
        assert set(aux) == {"vq"} and aux["vq"] > 0 and not torch.equal(before, layer.quantizer.cluster_size)
    else:
        layer.train()(x).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


def test_bad_input_raises_kexue_error(gen):
    q, k, v, C = _inputs(gen, T=8, c=3)
    codes = quantize(k, C)[1]
    bad = [
        lambda: quantize(k, C[0, :, :3]),  # codeword dim ≠ key dim
        lambda: quantize(k[:, :1], C),  # per-head codebook, wrong H
        lambda: quantize(k, C[:, :0]),  # empty codebook
        lambda: vq_attention_linear(q, codes, C, v, causal=True),  # no block size
        lambda: vq_attention_linear(q, codes + 3, C, v, causal=True, block_size=4),  # codes out of range
        lambda: vq_attention_linear(q, codes.int(), C, v, causal=True, block_size=4),
        lambda: vq_attention_linear(q[0], codes, C, v, causal=True, block_size=4),  # 3-D q
        lambda: vq_attention_linear(q, codes[:, :, :5], C, v, causal=True, block_size=4),
        lambda: vq_attention_linear(q, codes, C, v, causal=True, block_size=2, rel_bias=torch.zeros(4)),
        lambda: vq_attention_linear(q, codes, C, v, causal=False, rel_bias=torch.zeros(2)),
        lambda: vq_attention_quadratic(q, k[:, :, :4], v[:, :, :4], causal=True),  # Tq > Tk causal
        lambda: vq_attention_quadratic(q, k, v[:, :, :5], causal=False),
        lambda: vq_attention_step(q, codes, C, v, None, block_size=0),
        lambda: VectorQuantizer(0, 3),
        lambda: VQAttentionConfig(mode="sparse"),
        lambda: vq_attention_linear(
            q, codes, C, v, causal=True, block_size=4, rel_bias=torch.zeros(2, 2, 7, 3)
        ),
        lambda: VQAttentionConfig(causal=False),  # the local bias needs the decoder
        lambda: VQAttentionConfig(position="rope"),
    ]
    for call in bad:
        with pytest.raises(KexueError):
            call()
