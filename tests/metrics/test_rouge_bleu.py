"""Character ROUGE / BLEU as bert4keras's CSL example: equal to the `rouge` and `nltk` packages themselves."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kexue.metrics.rouge_bleu import (
    bleu,
    bleu_tokens,
    corpus_scores,
    rouge_l,
    rouge_n,
    rouge_sentences,
    spaced,
    title_scores,
)

ALPHABET = "abcde. AB中文题"  # repeats, ".", spaces and upper case: the quirks of both packages


def _random_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    word = lambda lo: "".join(rng.choice(ALPHABET) for _ in range(rng.randint(lo, 14)))  # noqa: E731
    return [(word(0), word(1)) for _ in range(n)]


def test_equals_rouge_and_nltk_on_random_strings():
    rouge = pytest.importorskip("rouge")
    bleu_score = pytest.importorskip("nltk.translate.bleu_score")
    multiset, sets = rouge.Rouge(exclusive=False), rouge.Rouge(exclusive=True)  # rouge 1.0.0 / ≥ 1.0.1
    smooth = bleu_score.SmoothingFunction().method1
    checked = 0
    for hyp, ref in _random_pairs(300):
        h, r = spaced(hyp), spaced(ref)  # the example's ' '.join(text).lower()
        if not h.strip() or not rouge_sentences(hyp) or not rouge_sentences(ref):
            continue  # the example skips the first; `rouge` raises on the others (we return 0, tested below)
        a, b = multiset.get_scores(hyps=h, refs=r)[0], sets.get_scores(hyps=h, refs=r)[0]
        ours = title_scores(hyp, ref)
        assert ours["rouge_1"] == a["rouge-1"]["f"] and ours["rouge_2"] == a["rouge-2"]["f"], (hyp, ref)
        assert ours["rouge_l"] == b["rouge-l"]["f"], (
            hyp,
            ref,
        )  # 1.0.0 forces sets in ROUGE-L (1.0.1 does not)
        assert rouge_n(hyp, ref, 1, distinct_ngrams=True) == b["rouge-1"]["f"]
        assert rouge_n(hyp, ref, 2, distinct_ngrams=True) == b["rouge-2"]["f"]
        expect = bleu_score.sentence_bleu([r.split(" ")], h.split(" "), smoothing_function=smooth)
        assert ours["bleu"] == expect, (hyp, ref)
        checked += 1
    assert checked > 200


def test_hand_computed():
    # "abc" vs "abd": 2 of 3 unigrams, 1 of 2 bigrams, no trigram, no 4-gram (denominator max(1, 0) = 1)
    f = 2 * ((2 / 3) * (2 / 3)) / (2 / 3 + 2 / 3 + 1e-8)
    assert rouge_n("abc", "abd", 1) == pytest.approx(f, abs=1e-15)
    assert rouge_l("abc", "abd") == pytest.approx(f, abs=1e-15)  # LCS "ab"
    expect = math.exp(0.25 * (math.log(2 / 3) + math.log(1 / 2) + math.log(0.1 / 1) + math.log(0.1 / 1)))
    assert bleu("abc", "abd") == pytest.approx(expect, rel=1e-15)  # BP = 1: equal lengths
    # rouge 1.0.0 counts n-grams with multiplicity: "aa" vs "a" → P = 1/2, R = 1; ≥ 1.0.1 uses sets → 1
    assert rouge_n("aa", "a", 1) == pytest.approx(2 * 0.5 / (1.5 + 1e-8), abs=1e-15)
    assert rouge_n("aa", "a", 1, distinct_ngrams=True) == pytest.approx(2 / (2 + 1e-8), abs=1e-15)
    # a shorter prediction pays the brevity penalty e^{1 − r/c}: "ab" vs "abcd" (c = 2, r = 4)
    p = [1.0, 1.0, 0.1, 0.1]  # unigram 2/2, bigram 1/1, trigram and 4-gram smoothed 0.1 / max(1, 0)
    assert bleu("ab", "abcd") == pytest.approx(
        math.exp(1 - 4 / 2) * math.exp(sum(0.25 * math.log(x) for x in p))
    )


def test_the_examples_quirks():
    assert rouge_sentences("A.b c") == [["a"], ["b", "c"]]  # lower-cased, "." splits and vanishes
    assert bleu_tokens("a b") == ["a", "", "", "b"]  # a space character: two empty tokens
    assert title_scores(" ", "abc") == {"rouge_1": 0.0, "rouge_2": 0.0, "rouge_l": 0.0, "bleu": 0.0}
    assert rouge_n("...", "abc", 1) == 0.0 and rouge_l("abc", "..") == 0.0  # `rouge` would raise here


@given(st.text(alphabet="ab. 中", max_size=12), st.text(alphabet="ab. 中", max_size=12))
def test_scores_are_bounded_and_never_raise(hyp, ref):
    for v in title_scores(hyp, ref).values():
        assert 0.0 <= v <= 1.0


@given(st.text(alphabet="abcdef中文标题", min_size=4, max_size=20))
def test_identical_titles_score_one(title):
    s = title_scores(title, title)
    assert s["bleu"] == pytest.approx(1.0) and s["rouge_2"] == pytest.approx(1.0, abs=1e-7)
    assert s["rouge_1"] == pytest.approx(1.0, abs=1e-7) and s["rouge_l"] == pytest.approx(1.0, abs=1e-7)


def test_corpus_average_and_errors():
    pairs = _random_pairs(20, seed=1)
    got = corpus_scores([h for h, _ in pairs], [r for _, r in pairs])
    each = [title_scores(h, r) for h, r in pairs]
    for k, v in got.items():
        assert v == pytest.approx(sum(e[k] for e in each) / len(pairs), abs=1e-15)
    with pytest.raises(ValueError, match="as many"):
        corpus_scores(["a"], [])
