"""Max-probability segmentation: concatenation identity, idempotence, the DP against brute force."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.errors import KexueError
from kexue.text.segment import Dictionary, MaxProb, Segmenter, parse_dictionary

WORDS = {
    "结婚": 10,
    "的": 50,
    "和": 20,
    "和尚": 5,
    "尚未": 8,
    "未": 3,
    "尚": 2,
    "中华": 6,
    "文化": 6,
    "中华文化": 1,
    "2000年": 4,
    "年": 9,
    "——": 3,
}
MP = MaxProb(Dictionary({w: float(f) for w, f in WORDS.items()}))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_output_concatenates_to_the_input_minus_whitespace(s):
    out = MP.segment(s)
    assert out.count("\n") == s.count("\n")
    assert "".join(out.split()) == "".join(s.split())


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="结婚的和尚未中华文化年2000—a ．\n", max_size=30))
def test_idempotent_on_segmented_text(s):
    once = MP.segment(s)
    assert MP.segment(once) == once


def _brute(sentence: str) -> float:
    """The best Σ log p over every split of a Chinese-only sentence (2^(n-1) of them)."""
    total = sum(WORDS.values())
    unk = math.log(0.5 * min(WORDS.values()) / total)
    best = -math.inf
    for cuts in itertools.product((0, 1), repeat=len(sentence) - 1):
        words, w = [], sentence[0]
        for c, ch in zip(cuts, sentence[1:]):
            if c:
                words.append(w)
                w = ch
            else:
                w += ch
        words.append(w)
        if all(x in WORDS or len(x) == 1 for x in words):
            best = max(best, sum(math.log(WORDS[x] / total) if x in WORDS else unk for x in words))
    return best


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="结婚的和尚未中华文化年", min_size=1, max_size=10))
def test_dp_equals_brute_force(s):
    total = sum(WORDS.values())
    unk = math.log(0.5 * min(WORDS.values()) / total)
    got = sum(math.log(WORDS[w] / total) if w in WORDS else unk for w in MP.lcut(s))
    assert math.isclose(got, _brute(s), rel_tol=1e-9)


def test_the_posts_ambiguous_sentence():
    assert MP.lcut("结婚的和尚未结婚的") == ["结婚", "的", "和", "尚未", "结婚", "的"]  # [4245]


def test_digit_runs_and_full_width_are_atoms():
    assert MP.lcut("１９９８年和2000.5％") == ["１９９８年", "和", "2000.5％"]  # (NUM, 年) matches "2000年"
    assert MP.lcut("——") == ["——"]


def test_segmenter_add_word_and_empty_input():
    seg = Segmenter(parse_dictionary(["中华 5", "文化 5"]))
    assert seg.lcut("") == [] and seg.lcut("  \n ") == []
    assert seg.lcut("中华文化") == ["中华", "文化"]
    seg.add_word("中华文化")
    assert seg.lcut("中华文化") == ["中华文化"]
    seg.del_word("中华文化")
    assert list(seg.cut("中华文化")) == ["中华", "文化"]
    for word in ("中华", "文化"):
        seg.del_word(word)
    with pytest.raises(KexueError, match="dictionary is empty"):
        seg.lcut("中华文化")
