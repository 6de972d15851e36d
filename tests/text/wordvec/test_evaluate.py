"""Evaluation: analogies against brute force on a hand-built vocabulary, similarity, coverage, readers."""

from __future__ import annotations

import numpy as np
import pytest

from kexue.errors import DataError
from kexue.text.wordvec.evaluate import (
    analogy,
    evaluate_all,
    find_eval_sets,
    read_analogies,
    read_word_pairs,
    similarity,
)
from kexue.text.wordvec.vectors import WordVectors

# man : king :: woman : queen, built so that "woman" (a question word) is nearest to king − man + woman and
# "queen" second: the answer is right only if the question words are excluded.
WORDS = ("man", "woman", "king", "queen", "apple")
VECS = np.array(
    [[1, 0, 0, 0], [0.8, 0.6, 0, 0], [1, 0, 0.5, 0], [0.6, 0.5, 0.5, 0.5], [0.1, 0.1, 0, 1]], dtype=np.float32
)


def brute(vectors: WordVectors, a: str, b: str, c: str, mul: bool, eps: float = 1e-3) -> str:
    unit, idx = vectors.unit(), vectors.index()
    best, arg = -np.inf, None
    for x, vx in zip(vectors.words, unit):
        if x in (a, b, c):
            continue
        cos = {w: float(vx @ unit[idx[w]]) for w in (a, b, c)}
        if mul:
            score = (cos[b] + 1) / 2 * (cos[c] + 1) / 2 / ((cos[a] + 1) / 2 + eps)
        else:
            score = cos[b] - cos[a] + cos[c]
        if score > best:
            best, arg = score, x
    return arg


def test_analogy_equals_brute_force_and_excludes_question_words():
    v = WordVectors(WORDS, VECS)
    unit = v.unit()
    q = unit[2] - unit[0] + unit[1]  # king − man + woman
    assert np.argsort(-(unit @ q))[:2].tolist() == [1, 3]  # without exclusion the answer would be "woman"
    questions = [
        ("s", "man", "king", "woman", "queen"),
        ("s", "woman", "queen", "man", "king"),
        ("s", "king", "man", "queen", "woman"),
        ("s", "man", "woman", "apple", "queen"),
    ]
    got = analogy(v, questions)
    for kind, mul in (("add", False), ("mul", True)):
        right = sum(brute(v, a, b, c, mul) == d for _, a, b, c, d in questions)
        assert got[kind] == right / len(questions), kind
    assert got["add"] >= 0.25 and got["coverage"] == 1.0
    assert brute(v, "man", "king", "woman", mul=False) == "queen"


def test_unknown_words_lower_coverage_not_an_error():
    v = WordVectors(WORDS, VECS)
    questions = [("s", "Man", "King", "Woman", "Queen"), ("s", "man", "king", "woman", "empress")]
    got = analogy(v, questions)  # lower-cased by default
    assert got["found"] == 1 and got["coverage"] == 0.5 and got["add"] == 1.0 and got["add_all"] == 0.5
    none = analogy(v, [("s", "x", "y", "z", "w")])
    assert none["coverage"] == 0 and np.isnan(none["add"])
    pairs = [
        ("man", "king", 5.0),  # cos 0.894
        ("man", "woman", 4.0),  # cos 0.8
        ("king", "apple", 3.0),  # cos 0.089
        ("woman", "apple", 1.0),  # cos 0.139
        ("man", "zebra", 2.0),  # out of vocabulary
    ]
    sim = similarity(v, pairs)
    assert sim["found"] == 4 and sim["coverage"] == 0.8
    assert sim["spearman"] == pytest.approx(0.8)  # ranks (4, 3, 2, 1) vs (4, 3, 1, 2): 1 − 6·2/(4·15)
    assert np.isnan(similarity(v, [("x", "y", 1.0)])["spearman"])


def test_readers_and_malformed_files(tmp_path):
    (tmp_path / "ws.tsv").write_text("# comment\nlove\tsex\t6.77\n\ntiger\tcat\t7.35\n")
    assert read_word_pairs(tmp_path / "ws.tsv") == [("love", "sex", 6.77), ("tiger", "cat", 7.35)]
    (tmp_path / "q.txt").write_bytes(b": capital\r\nAthens Greece Baghdad Iraq\r\n: b\r\na b c d\r\n")
    assert read_analogies(tmp_path / "q.txt") == [
        ("capital", "Athens", "Greece", "Baghdad", "Iraq"),
        ("b", "a", "b", "c", "d"),
    ]
    (tmp_path / "bad.tsv").write_text("love sex\n")
    with pytest.raises(DataError, match=r"bad\.tsv:1"):
        read_word_pairs(tmp_path / "bad.tsv")
    (tmp_path / "bad.txt").write_text(": s\na b c\n")
    with pytest.raises(DataError, match=r"bad\.txt:2"):
        read_analogies(tmp_path / "bad.txt")
    with pytest.raises(DataError, match="no evaluation set"):
        find_eval_sets(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        find_eval_sets(tmp_path / "missing")


def test_real_evaluation_sets(shared_data):
    root = shared_data / "wordvec-eval"
    sets = find_eval_sets(root)
    assert set(sets) == {"ws353", "google", "ws240", "ws297", "ca8_morphological", "ca8_semantic"}
    assert len(read_word_pairs(sets["ws353"][1])) == 353
    assert len(read_analogies(sets["google"][1])) == 19544  # [MYZ13]'s Google set
    assert len(read_word_pairs(sets["ws240"][1])) == 240  # the 240 pairs (one lacks a final newline)
    assert len(read_word_pairs(sets["ws297"][1])) == 297
    ca8 = read_analogies(sets["ca8_semantic"][1])
    assert all(len(q) == 5 and "\r" not in q[4] for q in ca8)
    v = WordVectors(("科学", "空间", "love", "sex"), np.eye(4, dtype=np.float32))
    results = evaluate_all(v, root, only=("ws240", "ca8_semantic", "ws353"))
    assert set(results) == {"ws240", "ca8_semantic", "ws353"}
    assert results["ws353"]["found"] == 1 and results["ca8_semantic"]["coverage"] == 0.0
