"""Co-occurrence counts against a naive per-token reference (weighted and sampled dynamic windows)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.errors import DataError
from kexue.text.wordvec.cooccurrence import cooccurrence, window_weights
from kexue.text.wordvec.corpus import Corpus, build_corpus


def naive(corpus: Corpus, window: int, b: np.ndarray | None = None) -> np.ndarray:
    """Dense #(w, c) by looping over every centre token and its window (word2vec's loop)."""
    m = np.zeros((corpus.vocab_size, corpus.vocab_size))
    for lo, hi in zip(corpus.offsets[:-1], corpus.offsets[1:]):
        for i in range(lo, hi):
            reach = window if b is None else b[i]
            for j in range(max(lo, i - reach), min(hi, i + reach + 1)):
                if j != i:
                    d = abs(i - j)
                    m[corpus.ids[i], corpus.ids[j]] += (window - d + 1) / window if b is None else 1.0
    return m


def test_weights_are_the_dynamic_window_expectation():
    assert window_weights(5).tolist() == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])  # (L − d + 1)/L


def test_hand_count():
    corpus = build_corpus(["a b a c"], min_count=1, tokenize=str.split)  # words: a, b, c
    m = cooccurrence(corpus, 2).toarray()
    # a–b: d=1 twice (0-1, 1-2) → 2; a–c: d=1 (2-3) → 1 and d=3 (0-3) is outside L=2; a–a: d=2 → ½ each way
    # b–c: d=2 (1-3) → ½
    assert m.tolist() == [[1.0, 2.0, 1.0], [2.0, 0.0, 0.5], [1.0, 0.5, 0.0]]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from("abcdef"), min_size=0, max_size=30), min_size=1, max_size=4),
    st.integers(1, 4),
    st.integers(1, 7),
)
def test_matches_naive_reference(docs, window, chunk):
    docs = [d for d in docs]
    if max(len(d) for d in docs) <= window:
        docs.append(list("abcdef"))
    corpus = build_corpus([" ".join(d) for d in docs], min_count=1, tokenize=str.split)
    dense = cooccurrence(corpus, window, chunk_tokens=chunk).toarray()
    np.testing.assert_allclose(dense, naive(corpus, window), atol=1e-12)
    gen_seed = 5
    sampled = cooccurrence(
        corpus, window, dynamic="sampled", generator=np.random.default_rng(gen_seed), chunk_tokens=chunk
    ).toarray()
    b = np.random.default_rng(gen_seed).integers(1, window + 1, size=corpus.num_tokens, dtype=np.int8)
    np.testing.assert_array_equal(sampled, naive(corpus, window, b))


def test_stats_and_errors():
    corpus = build_corpus(["a b c d e f g"], min_count=1, tokenize=str.split)
    stats: dict = {}
    cooccurrence(corpus, 2, stats=stats)
    assert stats["tokens"] == 7 and stats["tokens_per_s"] > 0
    with pytest.raises(DataError, match="smaller than the window"):
        cooccurrence(corpus, 7)
    with pytest.raises(DataError, match="window must be"):
        cooccurrence(corpus, 0)
    with pytest.raises(ValueError, match="generator"):
        cooccurrence(corpus, 2, dynamic="sampled")
