"""The corpus pipeline: Gutenberg stripping, tokenising, vocabulary, subsampling, clear errors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.errors import DataError
from kexue.text.wordvec.corpus import (
    build_corpus,
    keep_probabilities,
    load_corpus,
    strip_gutenberg,
    subsample,
    tokenize_english,
    tokenize_segmented,
    tokens_of,
)

MODERN = """The Project Gutenberg EBook of Emma, by Jane Austen\r
licence words here\r
*** START OF THIS PROJECT GUTENBERG EBOOK EMMA ***\r
Emma Woodhouse, handsome, clever, and rich.\r
End of the Project Gutenberg EBook of Emma, by Jane Austen\r
*** END OF THIS PROJECT GUTENBERG EBOOK EMMA ***\r
licence footer\r
"""
OLD = """Project Gutenberg Etext A Little Tour In France
small print words
*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*
We good Americans - I say it
End of Project Gutenberg Etext A Little Tour In France
"""


def test_gutenberg_header_and_footer_are_stripped():
    assert tokenize_english(strip_gutenberg(MODERN)) == [
        "emma",
        "woodhouse",
        "handsome",
        "clever",
        "and",
        "rich",
    ]
    assert tokenize_english(strip_gutenberg(OLD)) == ["we", "good", "americans", "i", "say", "it"]
    assert strip_gutenberg("no markers at all") == "no markers at all"


def test_tokenisers():
    assert tokenize_english("Don't STOP_me, Zoë: 42!") == ["don", "t", "stop", "me", "zoë", "42"]
    assert tokenize_segmented("我 爱 科学  空间\r\n不错") == ["我", "爱", "科学", "空间", "不错"]


def test_vocabulary_min_count_and_order():
    corpus = build_corpus(["b a b c", "a b d"], min_count=2, tokenize=str.split)
    assert corpus.words == ("b", "a")  # most frequent first
    assert corpus.counts.tolist() == [3, 2]
    assert corpus.ids.tolist() == [0, 1, 0, 1, 0]  # c and d dropped before windowing
    assert corpus.offsets.tolist() == [0, 3, 5]
    assert tokens_of(corpus) == [["b", "a", "b"], ["a", "b"]]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abc xyz\n.", max_size=40), max_size=6), st.integers(1, 3))
def test_build_corpus_matches_a_counter(texts, min_count):
    tokens = [tokenize_english(t) for t in texts]
    counts = Counter(w for doc in tokens for w in doc)
    kept = {w for w, n in counts.items() if n >= min_count}
    if not kept:
        with pytest.raises(DataError):
            build_corpus(texts, min_count=min_count)
        return
    corpus = build_corpus(texts, min_count=min_count)
    assert set(corpus.words) == kept
    assert [counts[w] for w in corpus.words] == corpus.counts.tolist()
    assert list(corpus.counts) == sorted(corpus.counts, reverse=True)
    words = np.array(corpus.words, dtype=object)
    assert [words[d].tolist() for d in corpus.documents() if len(d)] == [
        [w for w in doc if w in kept] for doc in tokens if any(w in kept for w in doc)
    ]


def test_empty_corpus_and_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no tokens"):
        build_corpus(["", "  ... ,,, "])
    with pytest.raises(DataError, match="min_count"):
        build_corpus(["a b"], min_count=5)
    with pytest.raises(DataError, match="does not exist"):
        load_corpus(tmp_path / "missing")
    with pytest.raises(DataError, match=r"no \.txt files"):
        load_corpus(tmp_path)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="no tokens"):
        load_corpus(tmp_path)


def test_subsampling_keeps_rare_words_and_thins_frequent_ones():
    corpus = build_corpus(["the " * 900 + "cat dog " * 50], min_count=1)
    keep = keep_probabilities(corpus.counts, 1e-2)  # f(the) = 0.9 → √(0.01/0.9); rare words f = 0.05 → 0.447
    assert keep[0] == pytest.approx(np.sqrt(0.01 / 0.9))
    thin = subsample(corpus, 1e-2, generator=np.random.default_rng(0))
    assert thin.offsets[-1] == thin.num_tokens < corpus.num_tokens
    share = np.bincount(thin.ids, minlength=3) / np.bincount(corpus.ids, minlength=3)
    assert share[0] == pytest.approx(keep[0], abs=0.05)
    assert subsample(corpus, 0.0, generator=np.random.default_rng(0)) is corpus
