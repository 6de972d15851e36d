"""SGNS: on a tiny corpus W·Cᵀ approaches PMI_0.75 − log k  [LG14] eq. 8; seeded runs repeat exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kexue.errors import DataError
from kexue.text.wordvec.cooccurrence import cooccurrence
from kexue.text.wordvec.corpus import build_corpus
from kexue.text.wordvec.sgns import SGNSConfig, shifted_pmi_agreement, train_sgns


def markov_corpus(n_words: int = 20, n_tokens: int = 20_000, seed: int = 0):
    """A first-order Markov chain over `n_words` words with sparse random transitions (one document)."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(n_words, 0.3), size=n_words)  # (V, V) rows: next-word distributions
    x = np.empty(n_tokens, dtype=np.int64)
    x[0] = 0
    u = rng.random(n_tokens)
    cdf = p.cumsum(1)
    for t in range(1, n_tokens):  # test data only; the library never loops over tokens
        x[t] = min(np.searchsorted(cdf[x[t - 1]], u[t]), n_words - 1)
    return build_corpus([" ".join(f"w{i}" for i in x)], min_count=1, tokenize=str.split)


@pytest.fixture(scope="module")
def tiny():
    return markov_corpus()


def test_inner_products_approach_shifted_pmi(tiny):
    cfg = SGNSConfig(
        dim=tiny.vocab_size, window=2, negatives=5, epochs=8, lr=0.25, batch_size=256, sample=0.0
    )
    w, c = train_sgns(tiny, cfg, generator=torch.Generator().manual_seed(0))
    counts = cooccurrence(tiny, 2)  # the expectation of the sampled windows SGNS trained on
    agree = shifted_pmi_agreement(w, c, counts, k=5, min_pairs=30)
    assert agree["pairs"] > 100
    assert agree["pearson"] > 0.9, agree
    assert abs(agree["mean_diff"]) < 0.5, agree


def test_seeded_training_repeats_and_reports(tiny):
    cfg = SGNSConfig(dim=8, window=2, epochs=1, sample=1e-3)
    stats: dict = {}
    w1, c1 = train_sgns(tiny, cfg, generator=torch.Generator().manual_seed(3), stats=stats)
    w2, c2 = train_sgns(tiny, cfg, generator=torch.Generator().manual_seed(3))
    assert torch.equal(w1, w2) and torch.equal(c1, c2)
    assert w1.shape == (tiny.vocab_size, 8) and torch.isfinite(w1).all()
    assert stats["tokens_per_s"] > 0 and stats["pairs"] > 0 and np.isfinite(stats["loss"])


def test_corpus_shorter_than_window_is_refused():
    corpus = build_corpus(["a b c"], min_count=1, tokenize=str.split)
    with pytest.raises(DataError, match="smaller than the window"):
        train_sgns(corpus, SGNSConfig(dim=2, window=5), generator=torch.Generator().manual_seed(0))
