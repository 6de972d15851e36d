"""Truncated SVD of an (S)PPMI matrix, eigenvalue weighting and w + c.

    M ≈ U_d Σ_d V_dᵀ,   W = U_d Σ_d^p,   C = V_d Σ_d^p                        [LGD15] Sec. 3.3, eq. 6
    vectors = W (or W + C), rows L2-normalised                                  [LGD15] Sec. 3.3

p = 1 is the "correct" factorisation W·Cᵀ = M; [LGD15] find p ∈ {0, 0.5} better for similarity. w + c adds
the context vectors, which for a symmetric M adds a second-order similarity term ([LGD15] Sec. 3.3).

The post ([4233]) is the structural half of the story: an embedding is a one-hot dense layer, summing
context vectors is a bag of words times that layer, so CBOW is an N → n → N network like the autoencoder
of the co-occurrence matrix, i.e. a truncated SVD; this module is that SVD.

The SVD is Halko, Martinsson & Tropp's randomized range finder ([HMT11] Alg. 4.4, q power iterations with
re-normalisation), then an exact SVD of the small projected matrix, as scikit-learn implements it; the
randomness comes from a numpy Generator passed in. `scipy.sparse.linalg.svds` (ARPACK) is the exact
alternative (solver="arpack").

Sources: [4233] kexue.fm/archives/4233; [LGD15] Levy, Goldberg & Dagan, TACL 2015; [HMT11] Halko et al.,
"Finding Structure with Randomness", SIAM Review 2011.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def randomized_svd(
    m: sp.spmatrix | np.ndarray,
    dim: int,
    *,
    generator: np.random.Generator,
    oversample: int = 10,
    power_iters: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U (V, d), s (d,) descending, Vt (d, V') of the rank-`dim` truncated SVD of `m` (float32)  [HMT11].

    scikit-learn's implementation of [HMT11] Alg. 4.4 + 5.1 (range finder with `power_iters` normalised
    power iterations, then an exact SVD of the projected matrix); its seed is drawn from `generator`.
    """
    from sklearn.utils.extmath import randomized_svd as sklearn_randomized_svd

    n_rows, n_cols = m.shape
    if not 1 <= dim <= min(n_rows, n_cols):
        raise ValueError(f"dim must be in 1..{min(n_rows, n_cols)} for a {n_rows}×{n_cols} matrix, got {dim}")
    u, s, vt = sklearn_randomized_svd(
        m.astype(np.float32),
        dim,
        n_oversamples=oversample,
        n_iter=power_iters,
        random_state=int(generator.integers(2**31 - 1)),
    )
    return u, s, vt


def arpack_svd(m: sp.spmatrix, dim: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same truncated SVD by ARPACK (scipy.sparse.linalg.svds), singular values descending."""
    from scipy.sparse.linalg import svds

    v0 = np.random.default_rng(seed).standard_normal(min(m.shape))
    u, s, vt = svds(m.astype(np.float64), k=dim, v0=v0)
    order = np.argsort(-s)
    return u[:, order], s[order], vt[order]


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def svd_vectors(
    u: np.ndarray, s: np.ndarray, vt: np.ndarray, *, p: float = 0.5, add_contexts: bool = False
) -> np.ndarray:
    """(V, d) word vectors W = U Σ^p (+ C = V Σ^p when `add_contexts`), rows normalised  [LGD15] eq. 6."""
    sp_ = s.astype(np.float64) ** p  # Σ^p
    w = u * sp_  # (V, d)
    if add_contexts:
        w = w + vt.T * sp_  # W + C, C = V Σ^p; needs a square M (contexts = words)
    return normalize_rows(w).astype(np.float32)
