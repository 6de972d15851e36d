"""Sparse attention [6853, Child]: every pattern against its definition, every block-wise computation against
dense masked attention (values and gradients, fp64), the two-layer reach of factorised patterns, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.errors import KexueError
from kexue.nn import sparse_attention as sa

F64 = torch.float64


def dense(q, k, v, visible, scale=None):
    """softmax(QKᵀ·scale masked)V in plain torch: the reference every block-wise function must equal."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ k.transpose(-1, -2) * scale).masked_fill(~visible, float("-inf"))  # (B, H, T, T)
    return s.softmax(-1) @ v


def qkv(gen, n, *, b=2, h=3, d=4, dv=None, dtype=F64):
    q, k = torch.randn(2, b, h, n, d, generator=gen, dtype=dtype)
    return q, k, torch.randn(b, h, n, dv or d, generator=gen, dtype=dtype)


# (name, block-wise function with its parameters, the pattern it must compute)
CASES = [
    ("local w=3", lambda c: (lambda *x: sa.local_attention(*x, window=3, causal=c), sa.local_pattern, (3,))),
    ("local w=0", lambda c: (lambda *x: sa.local_attention(*x, window=0, causal=c), sa.local_pattern, (0,))),
    (
        "atrous k=3",
        lambda c: (lambda *x: sa.atrous_attention(*x, dilation=3, causal=c), sa.atrous_pattern, (3,)),
    ),
    (
        "sparse w=2 k=4",
        lambda c: (
            lambda *x: sa.sparse_attention(*x, window=2, dilation=4, causal=c),
            sa.sparse_pattern,
            (2, 4),
        ),
    ),
    (
        "sparse w=5 k=2",  # the band swallows several atrous keys: counted once
        lambda c: (
            lambda *x: sa.sparse_attention(*x, window=5, dilation=2, causal=c),
            sa.sparse_pattern,
            (5, 2),
        ),
    ),
    (
        "fixed l=4 c=2",
        lambda c: (
            lambda *x: sa.fixed_attention(*x, stride=4, summary=2, causal=c),
            sa.fixed_pattern,
            (4, 2),
        ),
    ),
]


@pytest.mark.parametrize("n", [12, 13])  # divisible by every block, and not
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_block_wise_equals_dense_masked(gen, case, causal, n):
    fn, pattern, args = case[1](causal)
    q, k, v = qkv(gen, n, dv=5)
    assert (fn(q, k, v) - dense(q, k, v, pattern(n, *args, causal=causal))).abs().max() < 1e-10


@pytest.mark.parametrize("n", [12, 13])
def test_strided_is_child_local_union_strided(gen, n):
    """[Child] strided, merged in one head: A⁽¹⁾ = {i − l < j ≤ i} ∪ A⁽²⁾ = strided_pattern."""
    l = 4
    q, k, v = qkv(gen, n)
    mask = sa.local_pattern(n, l - 1, causal=True) | sa.strided_pattern(n, l)
    # the paper's A⁽¹⁾ = {max(0, i − l), …, i} has one key more, already in A⁽²⁾: the same union
    assert torch.equal(mask, sa.local_pattern(n, l, causal=True) | sa.strided_pattern(n, l))
    assert (sa.strided_attention(q, k, v, stride=l) - dense(q, k, v, mask)).abs().max() < 1e-10


@pytest.mark.parametrize("causal", [False, True])
def test_equals_kexue_dense_attention(gen, causal):
    """The same check against kexue.nn.attention.attention, the library's dense path, given the mask."""
    attention = pytest.importorskip("kexue.nn.attention").attention
    n = 11
    q, k, v = qkv(gen, n)
    got = sa.sparse_attention(q, k, v, window=2, dilation=3, causal=causal)
    ref = attention(q, k, v, mask=sa.sparse_pattern(n, 2, 3, causal=causal))
    assert (got - ref).abs().max() < 1e-10


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 24),
    window=st.integers(0, 30),
    dilation=st.integers(1, 30),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_window_and_dilation_equal_dense(n, window, dilation, causal, seed):
    """Windows and dilations larger than T, T = 1, window 0, dilation 1: all equal the masked dense form."""
    q, k, v = qkv(torch.Generator().manual_seed(seed), n, b=1, h=2, d=3)
    for got, mask in [
        (
            sa.local_attention(q, k, v, window=window, causal=causal),
            sa.local_pattern(n, window, causal=causal),
        ),
        (
            sa.atrous_attention(q, k, v, dilation=dilation, causal=causal),
            sa.atrous_pattern(n, dilation, causal=causal),
        ),
        (
            sa.sparse_attention(q, k, v, window=window, dilation=dilation, causal=causal),
            sa.sparse_pattern(n, window, dilation, causal=causal),
        ),
    ]:
        assert (got - dense(q, k, v, mask)).abs().max() < 1e-10


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 24),
    stride=st.integers(1, 9),
    data=st.data(),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_fixed_pattern_equals_dense(n, stride, data, causal, seed):
    summary = data.draw(st.integers(1, stride))
    q, k, v = qkv(torch.Generator().manual_seed(seed), n, b=1, h=2, d=3)
    got = sa.fixed_attention(q, k, v, stride=stride, summary=summary, causal=causal)
    assert (got - dense(q, k, v, sa.fixed_pattern(n, stride, summary, causal=causal))).abs().max() < 1e-10


def test_full_window_and_unit_dilation_are_dense_attention(gen):
    n = 9
    q, k, v = qkv(gen, n)
    for causal in (False, True):
        full = torch.ones(n, n, dtype=torch.bool)
        ref = dense(q, k, v, full.tril() if causal else full)
        assert (sa.local_attention(q, k, v, window=n - 1, causal=causal) - ref).abs().max() < 1e-10
        assert (sa.atrous_attention(q, k, v, dilation=1, causal=causal) - ref).abs().max() < 1e-10


@pytest.mark.parametrize("name", ["local", "atrous", "sparse", "fixed"])
@pytest.mark.parametrize("causal", [False, True])
def test_gradients_equal_dense_masked(gen, name, causal):
    n = 10
    fns = {
        "local": (
            lambda *x: sa.local_attention(*x, window=2, causal=causal),
            sa.local_pattern(n, 2, causal=causal),
        ),
        "atrous": (
            lambda *x: sa.atrous_attention(*x, dilation=3, causal=causal),
            sa.atrous_pattern(n, 3, causal=causal),
        ),
        "sparse": (
            lambda *x: sa.sparse_attention(*x, window=1, dilation=3, causal=causal),
            sa.sparse_pattern(n, 1, 3, causal=causal),
        ),
        "fixed": (
            lambda *x: sa.fixed_attention(*x, stride=4, summary=1, causal=causal),
            sa.fixed_pattern(n, 4, 1, causal=causal),
        ),
    }
    fn, mask = fns[name]
    x = [t.requires_grad_() for t in qkv(gen, n, b=1, h=2)]
    w = torch.randn(1, 2, n, 4, generator=gen, dtype=F64)  # a random cotangent
    got = torch.autograd.grad((fn(*x) * w).sum(), x)
    ref = torch.autograd.grad((dense(*x, mask) * w).sum(), x)
    for g, r in zip(got, ref):
        assert torch.isfinite(g).all() and (g - r).abs().max() < 1e-10


@pytest.mark.parametrize("block", [1, 2, 3, 5, 40])
def test_any_block_size_gives_the_same_local_attention(gen, block):
    n = 13
    q, k, v = qkv(gen, n)
    for causal in (False, True):
        got = sa.local_attention(q, k, v, window=4, causal=causal, block=block)
        assert (got - dense(q, k, v, sa.local_pattern(n, 4, causal=causal))).abs().max() < 1e-10


def test_the_fused_cpu_kernel_is_used(gen):
    """SDPA falls back silently to its O(n²)-memory math kernel, e.g. for a 3-D mask (reference §5); with only
    the flash kernel allowed, a fallback would raise instead."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = qkv(gen, 19, d=8, dtype=torch.float32)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        sa.local_attention(q, k, v, window=4, causal=True)
        sa.local_attention(q, k, v, window=4, causal=False)
        sa.atrous_attention(q, k, v, dilation=4, causal=False)  # 19 = 4·5 − 1: the padded-key mask
        sa.atrous_attention(q, k, v, dilation=4, causal=True)


def test_sdpa_and_log_sum_exp_paths_agree_in_float32(gen):
    """local_attention runs SDPA on the blocks, sparse_attention merges matmul parts by their log-sum-exps;
    with a dilation beyond T the atrous part is empty and both compute Local. fp32: relative 1e-5."""
    n = 70
    q, k, v = qkv(gen, n, d=16, dtype=torch.float32)
    a = sa.local_attention(q, k, v, window=8, causal=True)
    b = sa.sparse_attention(q, k, v, window=8, dilation=n + 5, causal=True)
    ref = dense(q.double(), k.double(), v.double(), sa.local_pattern(n, 8, causal=True))
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert torch.allclose(a.double(), ref, rtol=1e-5, atol=1e-6)


def test_tensor_scale_is_a_per_row_scale(gen):
    n = 9
    q, k, v = qkv(gen, n, b=1, h=2)
    scale = torch.rand(1, 2, n, 1, generator=gen, dtype=F64) + 0.5  # e.g. a log-n scale per row
    got = sa.sparse_attention(q, k, v, window=1, dilation=3, causal=True, scale=scale)
    ref = dense(q * scale, k, v, sa.sparse_pattern(n, 1, 3, causal=True), scale=1.0)
    assert (got - ref).abs().max() < 1e-10
    got = sa.local_attention(q, k, v, window=2, causal=False, scale=0.3)
    assert (got - dense(q, k, v, sa.local_pattern(n, 2, causal=False), scale=0.3)).abs().max() < 1e-10


# ------------------------------------------------------------------------------------------ patterns
def brute(n, keep, causal=False):
    """A pattern from its definition, one (i, j) pair at a time; causal adds j ≤ i."""
    return torch.tensor([[bool(keep(i, j)) and (j <= i or not causal) for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("n", [1, 7, 12])
def test_patterns_equal_their_definitions(n):
    for c in (False, True):
        assert torch.equal(sa.local_pattern(n, 2, causal=c), brute(n, lambda i, j: abs(i - j) <= 2, c))
        assert torch.equal(sa.atrous_pattern(n, 3, causal=c), brute(n, lambda i, j: abs(i - j) % 3 == 0, c))
        fixed = brute(n, lambda i, j: i // 4 == j // 4 or j % 4 in (2, 3), c)  # [Child] fixed, l = 4, c = 2
        assert torch.equal(sa.fixed_pattern(n, 4, 2, causal=c), fixed)
    # openai/sparse_attention get_attn_mask: "local" keeps i − l < j ≤ i, "strided" j ≤ i, (i − j) mod l = 0
    assert torch.equal(sa.local_pattern(n, 3, causal=True), brute(n, lambda i, j: i - 4 < j <= i))
    assert torch.equal(sa.strided_pattern(n, 4), brute(n, lambda i, j: j <= i and (i - j) % 4 == 0))


def test_causal_patterns_are_lower_triangular_and_bidirectional_ones_symmetric():
    n = 17
    for causal in (False, True):
        masks = [
            sa.local_pattern(n, 3, causal=causal),
            sa.atrous_pattern(n, 4, causal=causal),
            sa.sparse_pattern(n, 3, 4, causal=causal),
        ]
        for m in masks:
            assert torch.equal(m, m.tril()) if causal else torch.equal(m, m.T)
            assert m.diagonal().all()  # every query sees itself: no empty row
    for m in (sa.fixed_pattern(n, 4, 1, causal=True), sa.strided_pattern(n, 4)):
        assert torch.equal(m, m.tril())


def test_density_counts():
    """Closed-form pair counts: Local keeps Σ over distances d ≤ w of (n − d) pairs (both signs unless
    causal), Atrous the distances that are multiples of k; density ≈ (2w + 1)/n and ≈ 1/k for n ≫ w, k."""
    n, w, k = 200, 7, 9
    pairs = lambda ds, causal: sum((n - d) * (1 if d == 0 or causal else 2) for d in ds)  # noqa: E731
    for causal in (False, True):
        assert sa.local_pattern(n, w, causal=causal).sum() == pairs(range(w + 1), causal)
        assert sa.atrous_pattern(n, k, causal=causal).sum() == pairs(range(0, n, k), causal)
    assert sa.local_pattern(n, w, causal=False).float().mean() == pytest.approx((2 * w + 1) / n, rel=0.05)
    assert sa.atrous_pattern(n, k, causal=False).float().mean() == pytest.approx(1 / k, rel=0.1)
    assert sa.sparse_pattern(n, w, k, causal=False).sum() == pairs(
        set(range(w + 1)) | set(range(0, n, k)), False
    )
    # fixed, causal: the own block's causal part plus c summary keys of every earlier block
    l, c = 8, 3
    own = n // l * l * (l + 1) // 2
    summary = sum(i // l * c for i in range(n))
    assert sa.fixed_pattern(n, l, c, causal=True).sum() == own + summary


# ------------------------------------------------------------------------------------- two layers reach
def dependence(layers, n, gen):
    """(n, n) bool: output i depends on input j, read off the autograd Jacobian of the stacked layers."""
    x0 = torch.randn(1, 1, n, 3, generator=gen, dtype=F64)

    def f(x):
        for layer in layers:
            x = layer(x, x, x)
        return x

    jac = torch.autograd.functional.jacobian(f, x0)  # (1, 1, n, 3, 1, 1, n, 3)
    return jac[0, 0, :, :, 0, 0].abs().sum((1, 3)) > 0  # (n, n)


def test_two_factorised_layers_reach_every_earlier_input(gen):
    """[Child]: with l ≈ √n, a local layer (i − l < j ≤ i) then a strided layer lets every output see
    every earlier input — and nothing later — though neither layer alone does; the merged head twice too."""
    n = 25
    l = 5  # √n
    local = lambda *x: sa.local_attention(*x, window=l - 1, causal=True)  # noqa: E731
    strided = lambda *x: sa.atrous_attention(*x, dilation=l, causal=True)  # noqa: E731
    lower = torch.ones(n, n, dtype=torch.bool).tril()
    assert torch.equal(dependence([local, strided], n, gen), lower)
    assert not dependence([local], n, gen).equal(lower) and not dependence([strided], n, gen).equal(lower)
    merged = lambda *x: sa.strided_attention(*x, stride=l)  # noqa: E731
    assert torch.equal(dependence([merged, merged], n, gen), lower)
    fixed = lambda *x: sa.fixed_attention(*x, stride=l, summary=1, causal=True)  # noqa: E731
    assert torch.equal(dependence([fixed, fixed], n, gen), lower)


def test_local_then_atrous_reach_everything_bidirectionally(gen):
    """[6853]: Local then Atrous ("第二层的输出理论上可以跟任意的输入向量相关"). 2w + 1 ≥ k closes the holes
    between atrous keys; the ends of the sequence need w ≥ k − 1 (i = 0 reaches 15 ± w at n = 20, k = 5)."""
    n, w, k = 20, 4, 5
    local = lambda *x: sa.local_attention(*x, window=w, causal=False)  # noqa: E731
    atrous = lambda *x: sa.atrous_attention(*x, dilation=k, causal=False)  # noqa: E731
    assert dependence([local, atrous], n, gen).all()
    assert not dependence([local], n, gen).all() and not dependence([atrous], n, gen).all()


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "call",
    [
        lambda x: sa.local_attention(x, x, x, window=-1, causal=True),
        lambda x: sa.local_attention(x, x, x, window=2.0, causal=True),
        lambda x: sa.local_attention(x, x, x, window=True, causal=True),
        lambda x: sa.atrous_attention(x, x, x, dilation=0, causal=False),
        lambda x: sa.sparse_attention(x, x, x, window=2, dilation=0, causal=False),
        lambda x: sa.strided_attention(x, x, x, stride=0),
        lambda x: sa.fixed_attention(x, x, x, stride=4, summary=0, causal=True),
        lambda x: sa.fixed_attention(x, x, x, stride=4, summary=5, causal=True),
        lambda x: sa.local_attention(x, x[:, :, :3], x, window=2, causal=True),  # not self-attention
        lambda x: sa.local_attention(x[0], x[0], x[0], window=2, causal=True),  # 3-D
        lambda x: sa.atrous_attention(*[x[:, :, :0]] * 3, dilation=2, causal=True),  # T = 0
        lambda x: sa.sparse_attention(x, x, x, window=2, dilation=2, causal=True, scale=torch.ones(5, 1)),
        lambda x: sa.local_pattern(5, -2, causal=True),
        lambda x: sa.local_attention(x, x, x, window=2, causal=True, block=0),
    ],
)
def test_bad_input_is_a_kexue_error(call):
    with pytest.raises(KexueError):
        call(torch.zeros(1, 2, 6, 4))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_inputs_device(gen):
    q, k, v = qkv(gen, 37, d=8)
    for fn in (
        lambda *x: sa.local_attention(*x, window=5, causal=True),
        lambda *x: sa.sparse_attention(*x, window=3, dilation=6, causal=False),
        lambda *x: sa.fixed_attention(*x, stride=6, summary=2, causal=True),
    ):
        got = fn(q.cuda(), k.cuda(), v.cuda())
        assert got.device.type == "cuda" and (got.cpu() - fn(q, k, v)).abs().max() < 1e-10


@pytest.mark.parametrize("causal", [True, False])
def test_local_attention_block_groups_change_nothing(monkeypatch, causal):
    """SDPA over one block group at a time (GROUP_BYTES) = one call over all blocks, values and gradients."""
    g = torch.Generator().manual_seed(7)
    q, k, v = (
        torch.randn(2, 3, 53, 8, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(3)
    )
    results = []
    for group_bytes in (1, 2**12, 2**40):  # one block per call, a few blocks, everything at once
        monkeypatch.setattr(sa, "GROUP_BYTES", group_bytes)
        out = sa.local_attention(q, k, v, window=6, causal=causal)
        grads = torch.autograd.grad(out.square().sum(), (q, k, v))
        results.append((out, *grads))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
