"""PPMI and shifted PPMI with context-distribution smoothing, kept sparse.

With #(w, c) the co-occurrence counts, #(w) = Σ_c #(w, c), #(c) = Σ_w #(w, c) and the smoothed context
distribution P_α(c) = #(c)^α / Σ_c' #(c')^α,

    PMI_α(w, c) = log[ #(w, c) · Σ_c' #(c')^α / (#(w) · #(c)^α) ]            [LGD15] eq. 3 (cds, α = 0.75)
    SPPMI_k(w, c) = max(PMI_α(w, c) − log k, 0)                               [LG14] Sec. 5.1

k = 1 is plain PPMI. [LG14] Sec. 3.1: SGNS with k negatives drawn from P_α is optimal at w·c = PMI_α − log k,
so SGNS implicitly factorises the shifted PMI matrix; clipping at 0 keeps it sparse (only pairs seen
together, and seen more than chance, survive). Entries with #(w, c) = 0 have PMI = −∞ and stay 0.

Sources: [LG14] Levy & Goldberg, "Neural Word Embedding as Implicit Matrix Factorization", NeurIPS 2014;
[LGD15] Levy, Goldberg & Dagan, TACL 2015, Sec. 3.3.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def pmi_entries(counts: sp.csr_matrix, alpha: float = 0.75) -> sp.csr_matrix:
    """PMI_α on the nonzero entries of `counts` (same sparsity pattern, float64)  [LGD15] eq. 3."""
    counts = sp.csr_matrix(counts, dtype=np.float64)
    counts.sum_duplicates()
    n_w = np.asarray(counts.sum(axis=1)).ravel()  # (V,) #(w)
    n_c = np.asarray(counts.sum(axis=0)).ravel()  # (V,) #(c)
    n_c_alpha = n_c**alpha  # #(c)^α
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))  # (nnz,) w of each entry
    cols = counts.indices  # (nnz,) c of each entry
    data = np.log(counts.data) + np.log(n_c_alpha.sum()) - np.log(n_w[rows]) - np.log(n_c_alpha[cols])
    return sp.csr_matrix((data, counts.indices.copy(), counts.indptr.copy()), shape=counts.shape)


def sppmi(counts: sp.csr_matrix, *, alpha: float = 0.75, k: float = 1.0) -> sp.csr_matrix:
    """max(PMI_α − log k, 0) as a sparse (V, V) float64 matrix; k = 1 is PPMI  [LG14] Sec. 5.1."""
    if k < 1:
        raise ValueError(f"the shift k (number of negatives) must be ≥ 1, got {k}")
    m = pmi_entries(counts, alpha)
    m.data -= np.log(k)
    m.data[m.data < 0] = 0.0  # clip: negative and −∞ PMI carry no weight
    m.eliminate_zeros()
    return m
