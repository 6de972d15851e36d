"""RoPE identities: relativity (the score depends on n − m only), R_m orthogonal with R_0 = I, the fast form
= the block-diagonal matrix = exp(mB) [8265, 9403]; 2-D relativity and recoverability [8397]; the general
form exp(mB) = P R_m(θ) Pᵀ [9403]; interleaved ↔ half-split by permuting W_q, W_k; the decay curve [8265]."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.errors import KexueError
from kexue.nn.rope import (
    apply_general_rope,
    apply_rope,
    apply_rope_2d,
    apply_rope_half_split,
    block_diagonalize,
    general_rope_matrix,
    half_split_to_interleaved,
    interleaved_to_half_split,
    interpolate_positions,
    ntk_base,
    orthogonal_rope_matrix,
    rope_2d_matrix,
    rope_decay_curve,
    rope_frequencies,
    rope_generator,
    rope_matrix,
)

F64 = torch.float64


def randn(*shape, gen, dtype=F64):
    return torch.randn(*shape, generator=gen, dtype=dtype)


def random_skew(d: int, gen) -> torch.Tensor:
    a = randn(d, d, gen=gen)
    return a - a.T  # (d, d), Bᵀ = −B


def eye(d: int) -> torch.Tensor:
    return torch.eye(d, dtype=F64)


# ------------------------------------------------------------------------------------------------------------
# 1-D RoPE [8265]


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 10**6), n=st.integers(0, 10**6), seed=st.integers(0, 2**16))
def test_relativity_fp64(m, n, seed):
    """⟨R_m q, R_n k⟩ = ⟨q, R_{n−m} k⟩ ([8265] eq. 12) up to 10⁶, float64 angles: ≤ 1e-10·‖q‖‖k‖."""
    g = torch.Generator().manual_seed(seed)
    q, k = randn(2, 32, gen=g)
    score = (apply_rope(q, torch.tensor(m)) * apply_rope(k, torch.tensor(n))).sum()
    rel = (q * apply_rope(k, torch.tensor(n - m))).sum()
    assert abs(float(score - rel)) <= 1e-10 * float(q.norm() * k.norm())


def test_relativity_fp32_with_fp64_angles(gen):
    """fp32 inputs, angles formed in fp64: within 1e-5 relative at offsets ≈ 10⁶. The same product in fp32
    angles (m·θ rounded to fp32 spacing 0.0625 near 10⁶) is off by more than 1e-3 — why angles are fp64."""
    d = 64
    q, k = randn(2, 200, d, gen=gen)  # 200 pairs
    m = torch.randint(10**6 - 1000, 10**6, (200,), generator=gen)
    n = m + torch.randint(-500, 500, (200,), generator=gen)
    exact = (q * apply_rope(k, n - m)).sum(-1)  # fp64, (200,)
    scale = q.norm(dim=-1) * k.norm(dim=-1)
    ours = (apply_rope(q.float(), m) * apply_rope(k.float(), n)).sum(-1).double()
    assert ours.dtype == F64 and apply_rope(q.float(), m).dtype == torch.float32
    assert float(((ours - exact).abs() / scale).max()) < 1e-5

    def rope_fp32_angles(x, pos):
        phi = pos.float()[:, None] * rope_frequencies(d).float()  # (200, d/2) in fp32: the pitfall
        x0, x1 = x.unflatten(-1, (d // 2, 2)).unbind(-1)
        return torch.stack((x0 * phi.cos() - x1 * phi.sin(), x0 * phi.sin() + x1 * phi.cos()), -1).flatten(-2)

    naive = (rope_fp32_angles(q.float(), m) * rope_fp32_angles(k.float(), n)).sum(-1).double()
    assert float(((naive - exact).abs() / scale).max()) > 1e-3


def test_rope_matrix_orthogonal_identity_and_relative(gen):
    d = 12
    pos = torch.tensor([0, 1, 7, -3, 250.5], dtype=F64)
    r = rope_matrix(pos, d)  # (5, d, d)
    assert torch.allclose(r[0], eye(d), rtol=0, atol=0)  # R_0 = I
    assert torch.allclose(r.transpose(-1, -2) @ r, eye(d).expand(5, d, d), rtol=0, atol=1e-14)
    m, n = pos[:, None], pos[None, :]
    lhs = r[:, None].transpose(-1, -2) @ r[None, :]  # R_mᵀ R_n, (5, 5, d, d)
    assert torch.allclose(lhs, rope_matrix(n - m, d), rtol=0, atol=1e-12)  # = R_{n−m}
    x = randn(5, d, gen=gen)
    assert torch.allclose(apply_rope(x, pos).norm(dim=-1), x.norm(dim=-1), rtol=1e-14, atol=0)


def test_fast_form_equals_matrix_form(gen):
    """[8265] eq. 13 (the ⊗ form) = R_m @ x of eq. 11, for (B, H, T, D), shared and per-batch positions."""
    x = randn(2, 3, 5, 8, gen=gen)
    shared = torch.arange(5) + 11
    per_batch = torch.tensor([[[0, 1, 2, 3, 4]], [[9, 10, 11, 12, 13]]])  # (B, 1, T): e.g. a cache offset
    for pos in (shared, per_batch):
        ref = (rope_matrix(pos, 8) @ x[..., None]).squeeze(-1)
        assert torch.allclose(apply_rope(x, pos), ref, rtol=0, atol=1e-14)


def test_rope_matrix_is_exp_of_its_generator():
    """R_m = exp(mB) with B = diag(J_{θ_i}) skew-symmetric [9403] eq. 6."""
    b = rope_generator(10)
    assert torch.equal(b.T, -b)
    for m in (0.0, 1.0, 5.0, -37.0):
        assert torch.allclose(general_rope_matrix(m, b), rope_matrix(m, 10), rtol=0, atol=1e-12)


def test_frequencies_are_the_posts_ladder():
    th = rope_frequencies(8)
    assert torch.allclose(th, torch.tensor([10000 ** (-2 * i / 8) for i in range(4)], dtype=F64), rtol=1e-15)


# ------------------------------------------------------------------------------------------------------------
# Layouts


def rotate_half_reference(x, pos, base=10000.0):
    """HF LLaMA's apply_rotary_pos_emb written out: x·cat(cos, cos) + rotate_half(x)·cat(sin, sin)."""
    d = x.shape[-1]
    inv = 1.0 / base ** (torch.arange(0, d, 2, dtype=F64) / d)
    emb = torch.cat((pos.to(F64)[:, None] * inv,) * 2, -1)  # (T, d)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * emb.cos() + torch.cat((-x2, x1), -1) * emb.sin()


def test_half_split_matches_llama_rotate_half(gen):
    x, pos = randn(2, 7, 8, gen=gen), torch.arange(7) * 3
    assert torch.allclose(apply_rope_half_split(x, pos), rotate_half_reference(x, pos), rtol=0, atol=1e-14)


def test_permuted_weights_give_identical_scores(gen):
    """Fused W_q, W_k of H heads (H·D, d_model): interleaved RoPE on x W_qᵀ = half-split RoPE on the
    permuted projection, score for score; half_split_to_interleaved undoes the permutation."""
    h, d, dm, t = 3, 8, 10, 6
    wq, wk, bq = randn(h * d, dm, gen=gen), randn(h * d, dm, gen=gen), randn(h * d, gen=gen)
    x, pos = randn(t, dm, gen=gen), torch.arange(t)

    def scores(wq, wk, bq, rope):
        q = (x @ wq.T + bq).view(t, h, d).transpose(0, 1)  # (H, T, D)
        k = (x @ wk.T).view(t, h, d).transpose(0, 1)
        return rope(q, pos) @ rope(k, pos).transpose(-1, -2)  # (H, T, T)

    ref = scores(wq, wk, bq, apply_rope)
    perm = [interleaved_to_half_split(w, head_dim=d) for w in (wq, wk, bq)]
    assert torch.allclose(scores(*perm, apply_rope_half_split), ref, rtol=0, atol=1e-12)
    assert not torch.allclose(scores(*perm, apply_rope), ref, rtol=0, atol=1e-3)  # the layouts differ
    for w, p in zip((wq, wk, bq), perm):
        assert torch.equal(half_split_to_interleaved(p, head_dim=d), w)
    wt = interleaved_to_half_split(wq.T, head_dim=d, dim=1)  # a weight stored (d_model, H·D)
    assert torch.equal(wt, perm[0].T)


# ------------------------------------------------------------------------------------------------------------
# 2-D RoPE [8397]


def test_rope_2d_fast_form_and_matrix(gen):
    d = 8
    v = randn(6, d, gen=gen)
    px, py = torch.tensor([0, 1, 2, 0, 5, 3]), torch.tensor([0, 0, 4, 2, 1, 3])
    ref = (rope_2d_matrix(px, py, d) @ v[..., None]).squeeze(-1)
    assert torch.allclose(apply_rope_2d(v, px, py), ref, rtol=0, atol=1e-14)
    # the documented split: the first half moves with x only, the second half with y only
    assert torch.allclose(apply_rope_2d(v, px, py)[:, :4], apply_rope(v[:, :4], px), rtol=0, atol=0)
    assert torch.allclose(apply_rope_2d(v, px, py)[:, 4:], apply_rope(v[:, 4:], py), rtol=0, atol=0)


@settings(max_examples=30, deadline=None)
@given(
    x1=st.integers(-1000, 1000),
    y1=st.integers(-1000, 1000),
    x2=st.integers(-1000, 1000),
    y2=st.integers(-1000, 1000),
    seed=st.integers(0, 2**16),
)
def test_rope_2d_relativity_in_both_axes(x1, y1, x2, y2, seed):
    """R_{x1,y1}ᵀ R_{x2,y2} = R_{x2−x1, y2−y1} [8397], and so the score depends on (Δx, Δy) only."""
    d = 8
    lhs = rope_2d_matrix(x1, y1, d).T @ rope_2d_matrix(x2, y2, d)
    assert torch.allclose(lhs, rope_2d_matrix(x2 - x1, y2 - y1, d), rtol=0, atol=1e-12)
    g = torch.Generator().manual_seed(seed)
    q, k = randn(2, d, gen=g)
    t = torch.tensor
    score = (apply_rope_2d(q, t(x1), t(y1)) * apply_rope_2d(k, t(x2), t(y2))).sum()
    rel = (q * apply_rope_2d(k, t(x2 - x1), t(y2 - y1))).sum()
    assert abs(float(score - rel)) <= 1e-10 * float(q.norm() * k.norm())


def test_rope_2d_positions_recoverable():
    """Invertibility [8397]: (x, y) read back from R_{x,y}, here from the slowest pair of each half
    (θ = 10000^{-1/2} = 0.01 at d = 8, so the angle is unambiguous for |x| < 100π)."""
    d = 8
    xs, ys = torch.meshgrid(torch.arange(-40, 41, 7), torch.arange(-300, 301, 50), indexing="ij")
    r = rope_2d_matrix(xs, ys, d)  # (X, Y, d, d)
    slow = float(rope_frequencies(d // 2)[-1])
    x_hat = torch.atan2(r[..., 3, 2], r[..., 2, 2]) / slow
    y_hat = torch.atan2(r[..., 7, 6], r[..., 6, 6]) / slow
    assert torch.allclose(x_hat, xs.to(F64), rtol=0, atol=1e-9)
    assert torch.allclose(y_hat, ys.to(F64), rtol=0, atol=1e-9)


def test_rope_2d_treats_both_axes_alike(gen):
    """With the same ladder in both halves, a step down scores like a step right for q = (a, a), k = (b, b);
    flattening (x, y) to x·w + y instead makes the step down a 1-D distance w [8397]."""
    a, b = randn(2, 4, gen=gen)
    q, k, zero, one, w = torch.cat((a, a)), torch.cat((b, b)), torch.tensor(0), torch.tensor(1), 16

    def score_2d(dx, dy):
        return float((apply_rope_2d(q, zero, zero) * apply_rope_2d(k, dx, dy)).sum())

    assert abs(score_2d(one, zero) - score_2d(zero, one)) < 1e-12
    flat_down = float((q * apply_rope(k, torch.tensor(w))).sum())
    flat_right = float((q * apply_rope(k, one)).sum())
    assert abs(flat_down - flat_right) > 1e-2


def test_rope_2d_is_exp_of_commuting_generators():
    """R_{x,y} = exp(xB₁ + yB₂) with B₁B₂ = B₂B₁ [8397]; non-commuting skew B₁, B₂ break relativity."""
    d = 8
    g = rope_generator(d // 2)
    z = torch.zeros_like(g)
    b1 = torch.cat((torch.cat((g, z), 1), torch.cat((z, z), 1)))  # acts on the first half
    b2 = torch.cat((torch.cat((z, z), 1), torch.cat((z, g), 1)))  # acts on the second half
    assert torch.allclose(b1 @ b2, b2 @ b1, rtol=0, atol=0)
    assert torch.allclose(
        general_rope_matrix(1.0, 3 * b1 + -5 * b2), rope_2d_matrix(3, -5, d), rtol=0, atol=1e-12
    )

    gen = torch.Generator().manual_seed(1)
    c1, c2 = random_skew(4, gen), random_skew(4, gen)

    def r(x, y):
        return torch.linalg.matrix_exp(x * c1 + y * c2)

    assert not torch.allclose(r(1, 2).T @ r(3, 1), r(2, -1), rtol=0, atol=1e-3)


# ------------------------------------------------------------------------------------------------------------
# The general form exp(mB) [9403]


@pytest.mark.parametrize("d", [2, 6, 8])
def test_general_form_is_orthogonal_and_relative(gen, d):
    b = random_skew(d, gen)
    m = torch.tensor([0.0, 1.0, 2.5, -4.0, 9.0], dtype=F64)
    r = general_rope_matrix(m, b)  # (5, d, d)
    assert torch.allclose(r[0], eye(d), rtol=0, atol=0)
    assert torch.allclose(r.transpose(-1, -2) @ r, eye(d).expand(5, d, d), rtol=0, atol=1e-12)
    lhs = r[:, None].transpose(-1, -2) @ r[None, :]  # R_mᵀ R_n
    assert torch.allclose(lhs, general_rope_matrix(m[None, :] - m[:, None], b), rtol=0, atol=1e-11)


@pytest.mark.parametrize("d", [2, 4, 8, 16])
def test_block_diagonalize_random_skew(gen, d):
    """B = PΛPᵀ with P orthogonal, and exp(mB) = P R_m(θ) Pᵀ [9403] eq. 9."""
    b = random_skew(d, gen)
    p, theta = block_diagonalize(b)
    assert p.shape == (d, d) and theta.shape == (d // 2,)
    assert bool((theta >= 0).all()) and bool((theta[:-1] >= theta[1:]).all())
    assert torch.allclose(p.T @ p, eye(d), rtol=0, atol=1e-12)
    assert torch.allclose(p @ rope_generator(d, theta=theta) @ p.T, b, rtol=0, atol=1e-12)
    for m in (1.0, 3.0, -7.5):
        rebuilt = p @ rope_matrix(m, d, theta=theta) @ p.T
        assert torch.allclose(general_rope_matrix(m, b), rebuilt, rtol=0, atol=1e-11)


def test_block_diagonalize_recovers_rope_and_handles_degenerate_spectra(gen):
    th = rope_frequencies(8)
    _, found = block_diagonalize(rope_generator(8))
    assert torch.allclose(found, th, rtol=1e-12, atol=0)
    q = torch.linalg.qr(randn(8, 8, gen=gen))[0]
    spectra = ([2.0, 2.0, 0.5, 0.5], [3.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0])
    for ladder in spectra:
        lam = torch.tensor(ladder, dtype=F64)
        b = q @ rope_generator(8, theta=lam) @ q.T  # repeated and zero angles
        p, theta = block_diagonalize(b)
        assert torch.allclose(theta, lam, rtol=0, atol=1e-12)
        assert torch.allclose(p.T @ p, eye(8), rtol=0, atol=1e-12)
        assert torch.allclose(p @ rope_generator(8, theta=theta) @ p.T, b, rtol=0, atol=1e-12)


def test_general_rope_absorbs_into_projections(gen):
    """[9403] eq. 10: qᵀ exp((n−m)B) k = (Pᵀq)ᵀ R_{n−m}(θ) (Pᵀk): general RoPE on (q, k) = block RoPE with
    angles θ on (Pᵀq, Pᵀk), i.e. on W_q, W_k premultiplied by Pᵀ. Scores use exp(mB) per position."""
    d, t = 6, 5
    b = random_skew(d, gen)
    p, theta = block_diagonalize(b)
    q, k, pos = randn(t, d, gen=gen), randn(t, d, gen=gen), torch.arange(t) * 2
    general = apply_general_rope(q, pos, b) @ apply_general_rope(k, pos, b).T  # (T, T)
    r = rope_matrix(pos, d, theta=theta)  # (T, d, d)
    qb, kb = (r @ (q @ p)[..., None]).squeeze(-1), (r @ (k @ p)[..., None]).squeeze(-1)
    assert torch.allclose(general, qb @ kb.T, rtol=0, atol=1e-11)


def test_orthogonal_power_is_relative_even_with_det_minus_one(gen):
    """[9403] §正交通解: R_n = Oⁿ for any orthogonal O, including det O = −1 (not an exp(B))."""
    o = torch.linalg.qr(randn(5, 5, gen=gen))[0]
    if torch.linalg.det(o) > 0:
        o = o @ torch.diag(torch.tensor([-1.0, 1, 1, 1, 1], dtype=F64))
    for m, n in ((0, 3), (2, 5), (4, -3), (-2, -6)):
        lhs = orthogonal_rope_matrix(m, o).T @ orthogonal_rope_matrix(n, o)
        assert torch.allclose(lhs, orthogonal_rope_matrix(n - m, o), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------------------
# Long-range decay [8265] and extrapolation knobs


def test_decay_curve_equals_posts_mathematica_sum():
    """f(r) = Σ_{j=0}^{d/2−1} |Σ_{i=0}^{j} e^{i r θ_i}| / (d/2), the post's Mathematica code, brute force."""
    d = 16
    curve = rope_decay_curve(d, 40)
    th = [10000 ** (-2 * i / d) for i in range(d // 2)]
    for r in (0, 1, 7, 40):
        ref = sum(
            abs(sum(complex(math.cos(r * th[i]), math.sin(r * th[i])) for i in range(j + 1)))
            for j in range(d // 2)
        )
        assert abs(float(curve[r]) - ref / (d // 2)) < 1e-12
    assert float(curve[0]) == (d // 2 + 1) / 2  # r = 0: mean of j = 1 … d/2, closed form


def test_decay_curve_decreases_on_average():
    """The post's figure (d = 128, r ≤ 256): means over consecutive windows of 32 strictly decrease."""
    c = rope_decay_curve(128, 256)
    windows = c[:256].view(8, 32).mean(-1)
    assert bool((windows[1:] < windows[:-1]).all())
    assert float(c[256]) < 0.25 * float(c[0])


def test_abel_summation_bound(gen):
    """[8265] eq. 14–16: (R_m q)ᵀ(R_n k) = Re Σ h_i e^{i(m−n)θ_i} = −Re Σ S_{i+1}(h_{i+1} − h_i), bounded by
    max|h_{i+1} − h_i|·Σ_j|S_j| — whose distance-dependent factor is rope_decay_curve·d/2."""
    d = 16
    q, k = randn(2, d, gen=gen)
    qc, kc = torch.view_as_complex(q.view(d // 2, 2)), torch.view_as_complex(k.view(d // 2, 2))
    h = torch.cat((qc * kc.conj(), torch.zeros(1, dtype=qc.dtype)))  # h_0 … h_{d/2}, h_{d/2} = 0
    curve = rope_decay_curve(d, 60)
    for m, n in ((5, 3), (0, 17), (60, 0)):
        e = torch.polar(torch.ones(d // 2, dtype=F64), (m - n) * rope_frequencies(d))
        direct = (h[:-1] * e).sum()
        assert (
            abs(
                float(direct.real)
                - float((apply_rope(q, torch.tensor(m)) * apply_rope(k, torch.tensor(n))).sum())
            )
            < 1e-12
        )
        s = e.cumsum(0)  # S_1 … S_{d/2}
        assert abs(complex(direct) - complex(-(s * (h[1:] - h[:-1])).sum())) < 1e-12  # Abel
        bound = float((h[1:] - h[:-1]).abs().max()) * float(curve[abs(m - n)]) * (d // 2)
        assert abs(complex(direct)) <= bound + 1e-12


def test_position_interpolation_divides_the_angles(gen):
    x, pos = randn(4, 8, gen=gen), torch.arange(4) * 100
    f = 4.0
    assert torch.allclose(
        apply_rope(x, interpolate_positions(pos, f)),
        (rope_matrix(pos, 8, theta=rope_frequencies(8) / f) @ x[..., None]).squeeze(-1),
        rtol=0,
        atol=1e-13,
    )


@pytest.mark.parametrize(("d", "f"), [(64, 8.0), (128, 2.0), (4, 3.0)])
def test_ntk_base_keeps_fastest_and_interpolates_slowest(d, f):
    old, new = rope_frequencies(d), rope_frequencies(d, ntk_base(10000.0, f, d))
    assert float(new[0]) == float(old[0]) == 1.0  # θ_0 untouched: extrapolated
    assert math.isclose(float(new[-1]), float(old[-1]) / f, rel_tol=1e-12)  # θ_{d/2−1}/f: interpolated


# ------------------------------------------------------------------------------------------------------------
# Bad input and devices


def test_bad_input(gen):
    with pytest.raises(KexueError, match="even"):
        apply_rope(randn(3, 5, gen=gen), torch.arange(3))
    with pytest.raises(KexueError, match="broadcast"):
        apply_rope(randn(2, 3, 4, gen=gen), torch.arange(5))
    with pytest.raises(KexueError, match="divisible by 4"):
        apply_rope_2d(randn(3, 6, gen=gen), torch.arange(3), torch.arange(3))
    with pytest.raises(KexueError, match="skew-symmetric"):
        general_rope_matrix(1.0, randn(4, 4, gen=gen))
    with pytest.raises(KexueError, match="square"):
        block_diagonalize(randn(4, 3, gen=gen))
    with pytest.raises(KexueError, match="even-order"):
        block_diagonalize(random_skew(3, gen))
    with pytest.raises(KexueError, match="orthogonal"):
        orthogonal_rope_matrix(2, randn(3, 3, gen=gen))
    with pytest.raises(KexueError, match="head_dim"):
        interleaved_to_half_split(randn(12, 4, gen=gen), head_dim=5)
    with pytest.raises(KexueError, match="theta"):
        rope_matrix(1.0, 8, theta=torch.ones(3))
    with pytest.raises(KexueError, match="f > 0"):
        interpolate_positions(torch.arange(3), 0.0)
    with pytest.raises(KexueError, match="ntk_base"):
        ntk_base(10000.0, 2.0, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rope_on_cuda_matches_cpu(gen):
    x = randn(2, 3, 5, 8, gen=gen, dtype=torch.float32)
    pos = torch.arange(5) + 999_990
    for fn, args in ((apply_rope, (pos,)), (apply_rope_half_split, (pos,)), (apply_rope_2d, (pos, pos - 7))):
        out = fn(x.cuda(), *(a.cuda() for a in args))
        assert out.device.type == "cuda" and out.dtype == torch.float32
        assert torch.allclose(out.cpu(), fn(x, *args), rtol=0, atol=1e-5)
    assert torch.allclose(
        apply_rope(x.cuda(), pos).cpu(), apply_rope(x, pos), rtol=0, atol=1e-5
    )  # CPU positions
    b = random_skew(4, gen).cuda()
    assert general_rope_matrix(torch.tensor([1.0, 2.0], device="cuda"), b).device.type == "cuda"
