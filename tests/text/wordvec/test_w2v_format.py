"""The word2vec text format: round trip, gensim can load it, malformed files are clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.errors import DataError
from kexue.text.wordvec.vectors import WordVectors
from kexue.text.wordvec.w2v_format import read_word2vec, write_word2vec


def small(n: int = 5, d: int = 3) -> WordVectors:
    rng = np.random.default_rng(0)
    return WordVectors(("the", "科学", "zoë", "a1", "x")[:n], rng.standard_normal((n, d)).astype(np.float32))


def test_round_trip_is_exact_at_float32(tmp_path):
    v = small()
    path = write_word2vec(v, tmp_path / "sub" / "v.txt", digits=9)
    back = read_word2vec(path)
    assert back.words == v.words
    np.testing.assert_array_equal(back.vectors, v.vectors)  # 9 significant digits round-trip float32
    assert [p.name for p in path.parent.iterdir()] == ["v.txt"]  # no temporary file left behind


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.text(alphabet="abcé字0", min_size=1, max_size=6), min_size=1, max_size=6, unique=True),
    st.integers(1, 4),
)
def test_round_trip_property(tmp_path_factory, words, d):
    v = WordVectors(tuple(words), np.arange(len(words) * d, dtype=np.float32).reshape(len(words), d) / 7)
    back = read_word2vec(write_word2vec(v, tmp_path_factory.mktemp("rt") / "v.txt"))
    assert back.words == v.words
    np.testing.assert_allclose(back.vectors, v.vectors, rtol=1e-5)


def test_gensim_loads_it(tmp_path):
    keyed = pytest.importorskip("gensim.models", reason="gensim (the bench extra) is not installed")
    v = small()
    path = write_word2vec(v, tmp_path / "v.txt")
    kv = keyed.KeyedVectors.load_word2vec_format(str(path), binary=False)
    assert list(kv.index_to_key) == list(v.words)
    np.testing.assert_allclose(kv["科学"], v.vectors[1], rtol=1e-5)
    kv.save_word2vec_format(str(tmp_path / "g.txt"), binary=False)  # and we read what gensim writes
    np.testing.assert_allclose(read_word2vec(tmp_path / "g.txt").vectors, v.vectors, rtol=1e-5)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "header"),
        ("2 x\n", "header"),
        ("2 3\na 1 2 3\n", "truncated"),
        ("1 3\na 1 2\n", "expected a word and 3 numbers"),
        ("1 2\na 1 z\n", "not a number"),
    ],
)
def test_malformed_files_are_clear_errors(tmp_path, text, match):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        read_word2vec(path)


def test_unwritable_words_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="whitespace"):
        write_word2vec(WordVectors(("a b",), np.zeros((1, 2), np.float32)), tmp_path / "v.txt")
    with pytest.raises(DataError, match="does not exist"):
        read_word2vec(tmp_path / "none.txt")
    (tmp_path / "bin.txt").write_bytes(b"1 2\n\xff\xfe 1 2\n")
    with pytest.raises(DataError, match="UTF-8"):
        read_word2vec(tmp_path / "bin.txt")
    with pytest.raises(DataError, match="duplicates"):
        WordVectors(("a", "a"), np.zeros((2, 2), np.float32))
