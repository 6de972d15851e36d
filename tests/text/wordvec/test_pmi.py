"""PMI / SPPMI against a hand count  [LGD15] eq. 3, [LG14] Sec. 5.1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.text.wordvec.cooccurrence import cooccurrence
from kexue.text.wordvec.corpus import build_corpus
from kexue.text.wordvec.pmi import pmi_entries, sppmi


def test_pmi_by_hand_on_a_tiny_corpus():
    # "a b a c", window 1: pairs a-b, b-a, a-b... counts #(a,b)=#(b,a)=2, #(a,c)=#(c,a)=1; total |D| = 6
    corpus = build_corpus(["a b a c"], min_count=1, tokenize=str.split)
    counts = cooccurrence(corpus, 1)
    assert counts.toarray().tolist() == [[0, 2, 1], [2, 0, 0], [1, 0, 0]]
    pmi = pmi_entries(counts, alpha=1.0).toarray()
    # #(a) = 3, #(b) = 2, #(c) = 1; PMI(a, b) = log(#(a,b)·|D| / (#(a)·#(b))) = log(2·6 / (3·2)) = log 2
    assert pmi[0, 1] == pytest.approx(math.log(2)) and pmi[1, 0] == pytest.approx(math.log(2))
    assert pmi[0, 2] == pytest.approx(math.log(1 * 6 / (3 * 1)))  # log 2
    # α = 0.75: Σ#(c)^α = 3^.75 + 2^.75 + 1; PMI_α(b, a) = log(2·Σ / (#(b)·#(a)^.75))
    z = 3**0.75 + 2**0.75 + 1
    assert pmi_entries(counts, 0.75).toarray()[1, 0] == pytest.approx(math.log(2 * z / (2 * 3**0.75)))
    ppmi = sppmi(counts, alpha=1.0, k=1).toarray()
    assert ppmi[0, 1] == pytest.approx(math.log(2)) and ppmi[0, 0] == 0  # unseen pairs stay 0
    shifted = sppmi(counts, alpha=1.0, k=2)  # log 2 − log 2 = 0: clipped away
    assert shifted.nnz == 0


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 20), min_size=5, max_size=5), min_size=5, max_size=5),
    st.sampled_from([1.0, 0.75]),
    st.sampled_from([1.0, 5.0]),
)
def test_sppmi_is_clipped_shifted_dense_pmi(table, alpha, k):
    c = np.array(table, dtype=float)
    if not (c.sum(1) > 0).all() or not (c.sum(0) > 0).all():
        return
    pc = c.sum(0) ** alpha
    with np.errstate(divide="ignore"):
        dense = np.log(c * pc.sum() / (c.sum(1, keepdims=True) * pc[None, :]))  # −∞ where c = 0
    expect = np.maximum(dense - np.log(k), 0)
    got = sppmi(sp.csr_matrix(c), alpha=alpha, k=k)
    np.testing.assert_allclose(got.toarray(), expect, atol=1e-12)
    assert (got.data > 0).all()  # stored entries are exactly the positive ones


def test_shift_below_one_is_refused():
    with pytest.raises(ValueError, match="k"):
        sppmi(sp.csr_matrix(np.ones((2, 2))), k=0.5)
