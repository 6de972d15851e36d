"""Truncated SVD reconstruction and the eigenvalue weighting  [HMT11], [LGD15] eq. 6."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from kexue.text.wordvec.svd import arpack_svd, normalize_rows, randomized_svd, svd_vectors


def test_exact_rank_d_matrix_is_reconstructed():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((60, 4)) @ rng.standard_normal((4, 50))  # rank 4
    u, s, vt = randomized_svd(sp.csr_matrix(m), 4, generator=np.random.default_rng(1))
    np.testing.assert_allclose((u * s) @ vt, m, atol=1e-3)
    np.testing.assert_allclose(u.T @ u, np.eye(4), atol=1e-4)
    np.testing.assert_allclose(s, np.linalg.svd(m, compute_uv=False)[:4], rtol=1e-4)


def test_truncation_matches_the_exact_svd():
    rng = np.random.default_rng(0)
    m = sp.random(80, 70, density=0.2, random_state=1, data_rvs=lambda n: rng.random(n)).tocsr()
    exact = np.linalg.svd(m.toarray(), compute_uv=False)[:5]
    _, s, _ = randomized_svd(m, 5, generator=np.random.default_rng(2), power_iters=6, oversample=20)
    np.testing.assert_allclose(s, exact, rtol=1e-3)
    _, s_arpack, _ = arpack_svd(m, 5)
    np.testing.assert_allclose(s_arpack, exact, rtol=1e-8)
    # Eckart–Young: the rank-5 error is the tail of the spectrum
    u, s, vt = randomized_svd(m, 5, generator=np.random.default_rng(2), power_iters=6, oversample=20)
    err = np.linalg.norm(m.toarray() - (u * s) @ vt)
    tail = np.sqrt((np.linalg.svd(m.toarray(), compute_uv=False)[5:] ** 2).sum())
    assert err == pytest.approx(tail, rel=1e-3)


def test_eigenvalue_weighting_and_w_plus_c():
    u = np.linalg.qr(np.random.default_rng(0).standard_normal((6, 3)))[0]
    s = np.array([4.0, 2.0, 1.0])
    vt = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 3)))[0].T
    for p in (0.0, 0.5, 1.0):
        w = svd_vectors(u, s, vt, p=p)
        np.testing.assert_allclose(w, normalize_rows(u * s**p), atol=1e-6)  # W = U Σ^p, rows normalised
        np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1, atol=1e-6)
    wc = svd_vectors(u, s, vt, p=0.5, add_contexts=True)
    np.testing.assert_allclose(wc, normalize_rows(u * s**0.5 + vt.T * s**0.5), atol=1e-6)


def test_bad_dimension_is_refused():
    with pytest.raises(ValueError, match="dim"):
        randomized_svd(sp.eye(4, format="csr"), 5, generator=np.random.default_rng(0))
