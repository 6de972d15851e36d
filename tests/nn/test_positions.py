"""Absolute positions: the sinusoidal table = [4765] eq. 9 written out, learned rows = the table, and the
hierarchical decomposition of [7947] = the post's 1-based formula, exact on the first n positions."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.errors import KexueError
from kexue.nn.positions import (
    HierarchicalPositions,
    LearnedPositions,
    expand_learned_positions,
    hierarchical_embedding,
    sinusoidal_embedding,
    sinusoidal_positions,
)

F64 = torch.float64


# ------------------------------------------------------------------------------------------------------------
# Sinusoidal [4765]


@pytest.mark.parametrize("dim", [8, 7, 1])
def test_sinusoidal_table_is_the_papers_formula(dim):
    """PE_{2i}(p) = sin(p/10000^{2i/d}), PE_{2i+1}(p) = cos(p/10000^{2i/d}), element by element."""
    n = 11
    pe = sinusoidal_positions(n, dim, dtype=F64)
    ref = torch.empty(n, dim, dtype=F64)
    for p, k in itertools.product(range(n), range(dim)):
        i = k // 2
        ang = p / 10000 ** (2 * i / dim)
        ref[p, k] = math.sin(ang) if k % 2 == 0 else math.cos(ang)  # sin at even, cos at odd indices
    assert pe.shape == (n, dim)
    assert torch.allclose(pe, ref, rtol=0, atol=1e-14)


def test_sinusoidal_shift_is_a_fixed_rotation(gen):
    """[4765]: PE(p + k) is a linear map of PE(p) that depends on k only (sin/cos addition formulas)."""
    d, k = 16, 5
    pe = sinusoidal_positions(40, d, dtype=F64)
    inv = 10000 ** (-torch.arange(0, d, 2, dtype=F64) / d)  # (d/2,)
    c, s = (k * inv).cos(), (k * inv).sin()
    # pair (sin a, cos a) ↦ (sin(a + b), cos(a + b)) = (sin a cos b + cos a sin b, cos a cos b − sin a sin b)
    sa, ca = pe[:-k, 0::2], pe[:-k, 1::2]
    shifted = torch.stack((sa * c + ca * s, ca * c - sa * s), -1).flatten(-2)  # (n − k, d)
    assert torch.allclose(shifted, pe[k:], rtol=0, atol=1e-12)


def test_sinusoidal_float32_uses_float64_angles():
    """At p ≈ 10⁶ the float32 table still matches the float64 formula to float32 rounding."""
    p = torch.tensor([999_983, 1_000_000])
    pe32 = sinusoidal_embedding(p, 32)
    assert pe32.dtype == torch.float32
    assert torch.allclose(pe32.double(), sinusoidal_embedding(p, 32, dtype=F64), rtol=0, atol=1e-6)


def test_sinusoidal_embedding_at_arbitrary_positions_equals_table_rows():
    table = sinusoidal_positions(20, 6, dtype=F64)
    pos = torch.tensor([[3, 0], [19, 7]])
    assert torch.equal(sinusoidal_embedding(pos, 6, dtype=F64), table[pos])
    assert sinusoidal_positions(0, 6).shape == (0, 6)


def test_sinusoidal_bad_input():
    with pytest.raises(KexueError, match="dim"):
        sinusoidal_positions(4, 0)
    with pytest.raises(KexueError, match="n ≥ 0"):
        sinusoidal_positions(-1, 4)


# ------------------------------------------------------------------------------------------------------------
# Learned


def test_learned_positions_are_rows_of_the_table(gen):
    lp = LearnedPositions(10, 4, generator=gen, dtype=F64)
    pos = torch.tensor([[0, 9, 3], [1, 1, 2]])
    out = lp(pos)
    assert out.shape == (2, 3, 4)
    assert torch.equal(out, lp.weight[pos])
    again = LearnedPositions(10, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert torch.equal(again.weight, lp.weight)  # randomness comes from the generator only
    assert (
        abs(float(LearnedPositions(400, 50, generator=gen).weight.detach().std()) - 0.02) < 2e-3
    )  # BERT's 0.02


def test_learned_positions_bad_input(gen):
    lp = LearnedPositions(10, 4, generator=gen)
    with pytest.raises(KexueError, match=r"0 … 9"):
        lp(torch.tensor([10]))
    with pytest.raises(KexueError, match=r"0 … 9"):
        lp(torch.tensor([-1]))
    with pytest.raises(KexueError, match="integer"):
        lp(torch.tensor([1.0]))
    with pytest.raises(KexueError, match="max_len"):
        LearnedPositions(0, 4)
    with pytest.raises(KexueError, match="init"):
        LearnedPositions(3, 4, init=torch.zeros(4, 3))


# ------------------------------------------------------------------------------------------------------------
# Hierarchical [7947]


def post_formula(p: torch.Tensor, alpha: float) -> torch.Tensor:
    """[7947] eq. 1–2 verbatim, 1-based: q_{(i−1)n+j} = α·u_i + (1−α)·u_j, u_i = (p_i − α·p_1)/(1 − α)."""
    n = p.shape[0]
    P = {i: p[i - 1] for i in range(1, n + 1)}  # p_1 … p_n
    u = {i: (P[i] - alpha * P[1]) / (1 - alpha) for i in range(1, n + 1)}
    q = {}
    for i, j in itertools.product(range(1, n + 1), range(1, n + 1)):
        q[(i - 1) * n + j] = alpha * u[i] + (1 - alpha) * u[j]
    return torch.stack([q[k] for k in range(1, n * n + 1)])  # (n², D), row k − 1 is q_k


def code_form(w: torch.Tensor, alpha: float) -> torch.Tensor:
    """0-based form (reference/transformer.md §1.5): E = (W − αW[0])/(1 − α), αE[pos//n] + (1−α)E[pos%n]."""
    n = w.shape[0]
    e = (w - alpha * w[0]) / (1 - alpha)
    pos = torch.arange(n * n)
    return alpha * e[pos // n] + (1 - alpha) * e[pos % n]


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_hierarchical_first_n_positions_are_the_table_bitwise(gen, dtype):
    lp = LearnedPositions(7, 5, generator=gen, dtype=dtype)
    hp = HierarchicalPositions(lp)
    assert torch.equal(hp(torch.arange(7)), lp.weight)  # bitwise: a model trained at n is unchanged
    assert hp(torch.arange(49)).shape == (49, 5) and hp.max_len == 49


@pytest.mark.parametrize("alpha", [0.4, 0.1, 0.7])
def test_hierarchical_equals_post_formula_and_code_form(gen, alpha):
    p = torch.randn(6, 3, generator=gen, dtype=F64)
    ours = HierarchicalPositions(p, alpha)(torch.arange(36))
    assert torch.allclose(ours, post_formula(p, alpha), rtol=0, atol=1e-12)
    assert torch.allclose(ours, code_form(p, alpha), rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 6),
    dim=st.integers(1, 4),
    alpha=st.floats(0.02, 0.98).filter(lambda a: abs(a - 0.5) > 1e-3),
    seed=st.integers(0, 2**16),
    shape=st.lists(st.integers(1, 3), min_size=0, max_size=2),
)
def test_hierarchical_property(n, dim, alpha, seed, shape):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(n, dim, generator=g, dtype=F64)
    pos = torch.randint(0, n * n, shape, generator=g)
    out = hierarchical_embedding(p, pos, alpha)
    assert out.shape == (*shape, dim)
    assert torch.allclose(out, post_formula(p, alpha)[pos], rtol=0, atol=1e-10)
    small = pos.clamp(max=n - 1)
    assert torch.equal(hierarchical_embedding(p, small, alpha), p[small])


@pytest.mark.parametrize("alpha", [0.4, 0.2, 0.6])
def test_hierarchical_rows_pairwise_distinct(gen, alpha):
    n = 8
    q = HierarchicalPositions(torch.randn(n, 4, generator=gen, dtype=F64), alpha)(torch.arange(n * n))
    dist = torch.cdist(q, q) + torch.eye(n * n, dtype=F64) * 1e9
    assert float(dist.min()) > 1e-3


def test_alpha_half_collides_and_is_rejected(gen):
    """α = 0.5 in the post's formula gives q_{(i,j)} = q_{(j,i)}: n(n − 1)/2 collisions, so it is refused."""
    n = 5
    p = torch.randn(n, 4, generator=gen, dtype=F64)
    q = post_formula(p, 0.5)
    close = torch.cdist(q, q) < 1e-12
    collisions = int((close.sum() - n * n) // 2)
    assert collisions == n * (n - 1) // 2
    i, j = 1, 3  # 0-based block i, offset j and the swapped pair
    assert torch.allclose(q[i * n + j], q[j * n + i], rtol=0, atol=1e-12)
    with pytest.raises(KexueError, match=r"0\.5"):
        HierarchicalPositions(p, 0.5)
    with pytest.raises(KexueError, match=r"0\.5"):
        hierarchical_embedding(p, torch.arange(3), 0.5)
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(KexueError, match="0 < α < 1"):
            HierarchicalPositions(p, bad)


def test_hierarchical_gradients_reach_the_table(gen):
    """The parameters stay p_1 … p_n: the gradient through the extension = autograd of the post's formula."""
    lp = LearnedPositions(4, 3, generator=gen, dtype=F64)
    hp = HierarchicalPositions(lp)
    assert [t is lp.weight for t in hp.parameters()] == [True]
    w = torch.randn(16, 3, generator=gen, dtype=F64)
    (hp(torch.arange(16)) * w).sum().backward()
    ref = lp.weight.detach().clone().requires_grad_(True)
    (post_formula(ref, 0.4) * w).sum().backward()
    assert torch.allclose(lp.weight.grad, ref.grad, rtol=0, atol=1e-12)


def test_hierarchical_table_kinds(gen):
    t = torch.randn(3, 2, generator=gen)
    as_buffer = HierarchicalPositions(t)
    assert list(as_buffer.parameters()) == [] and "table" in as_buffer.state_dict()
    assert as_buffer.to(F64)(torch.arange(9)).dtype == F64
    param = torch.nn.Parameter(t.clone())
    as_param = HierarchicalPositions(param)
    assert next(as_param.parameters()) is param


def test_hierarchical_bad_input(gen):
    hp = HierarchicalPositions(torch.randn(4, 2, generator=gen))
    with pytest.raises(KexueError, match=r"0 … 15"):
        hp(torch.tensor([16]))
    with pytest.raises(KexueError, match="integer"):
        hp(torch.tensor([0.5]))
    with pytest.raises(KexueError, match=r"\(n, D\)"):
        HierarchicalPositions(torch.randn(4))
    with pytest.raises(KexueError, match="tensor or LearnedPositions"):
        HierarchicalPositions([[0.0]])


def test_expand_learned_positions(gen):
    lp = LearnedPositions(5, 3, generator=gen, dtype=F64)
    big = expand_learned_positions(lp, 20)
    assert big.max_len == 20 and big.weight.dtype == F64
    assert torch.equal(big.weight[:5], lp.weight.detach())
    assert torch.equal(big.weight, HierarchicalPositions(lp)(torch.arange(20)).detach())
    with torch.no_grad():
        big.weight[0] += 1  # an independent copy: fine-tuning it leaves the original alone
    assert not torch.equal(big.weight[0], lp.weight[0])
    with pytest.raises(KexueError, match="max_len"):
        expand_learned_positions(lp, 26)
    with pytest.raises(KexueError, match="max_len"):
        expand_learned_positions(lp, 4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_positions_on_cuda_match_cpu(gen):
    p = torch.randn(6, 4, generator=gen, dtype=F64)
    pos = torch.arange(36)
    hp = HierarchicalPositions(p.cuda())
    assert torch.allclose(hp(pos.cuda()).cpu(), HierarchicalPositions(p)(pos), rtol=0, atol=1e-12)
    sp = sinusoidal_positions(9, 8, dtype=F64, device="cuda")
    assert sp.device.type == "cuda"
    assert torch.allclose(sp.cpu(), sinusoidal_positions(9, 8, dtype=F64), rtol=0, atol=1e-12)
