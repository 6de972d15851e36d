"""The bert4keras-style Tokenizer over HF `tokenizers`: the same tokens and ids as transformers'
BertTokenizerFast on the same vocabulary; decode(encode(text)) gives the text back as bert4keras writes it
(Chinese without spaces, English with them, emoji kept when in the vocabulary); maxlen truncation follows
bert4keras's rule (the longer segment loses its last token first, the first segment on a tie, [CLS]/[SEP]
kept)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tokenizers", reason="the tokenizer wraps the `tokenizers` library")

from kexue.errors import KexueError
from kexue.text.tokenizer import Tokenizer, truncate_sequences

CHINESE = "我爱自然语言处理科学空间苏剑林的博客"
VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHINESE, "nlp", "hello", "world", "##s", "un", "##believ",
    "##able", "caf", "##e", "😀", "🎉", ",", "!", ".", "'", "it", "s", "3", "##.", "14", "，", "。", "bert",
    "##4", "##keras",
]  # fmt: skip


@pytest.fixture(scope="module")
def vocab_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tok(vocab_path):
    return Tokenizer(vocab_path)


TEXTS = [
    "我爱自然语言处理",
    "Hello Worlds! 😀",
    "我爱NLP，科学空间😀🎉",  # "😀🎉" is one word: no "##🎉" piece, so [UNK] (WordPiece)
    "unbelievable Café, 苏剑林的博客。",
    "bert4keras",
    "it's 3.14",
    "  多余的   空格  ",
]


@pytest.mark.parametrize("text", TEXTS)
def test_parity_tokens_and_ids_with_bert_tokenizer_fast(tok, vocab_path, text):
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertTokenizerFast(str(vocab_path), do_lower_case=True)
    assert tok.tokenize(text)[1:-1] == hf.tokenize(text)
    ids, segments = tok.encode(text)
    assert ids == hf(text)["input_ids"] and segments == hf(text)["token_type_ids"]
    pair = tok.encode(text, "我爱NLP")
    ref = hf(text, "我爱NLP")
    assert pair == (ref["input_ids"], ref["token_type_ids"])


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ("我爱自然语言处理", "我爱自然语言处理"),  # Chinese: no spaces
        ("Hello Worlds! 😀", "hello worlds! 😀"),  # English: spaces, lower-cased; emoji in the vocab kept
        ("我爱 NLP，科学空间 😀 🎉", "我爱nlp，科学空间😀 🎉"),  # words after CJK glued (bert4keras)
        (
            "unbelievable Café, 苏剑林的博客。",
            "unbelievable cafe, 苏剑林的博客。",
        ),  # accents stripped (lower case)
        ("bert4keras", "bert4keras"),  # ## pieces glued
        ("it's 3.14", "it's 3.14"),  # bert4keras's clean-ups: "' s" → "'s", "3. 14" → "3.14"
    ],
)
def test_decode_round_trip(tok, text, decoded):
    ids, _ = tok.encode(text)
    assert ids[0] == tok.token_to_id("[CLS]") and ids[-1] == tok.token_to_id("[SEP]")
    assert tok.decode(ids) == decoded


def test_unknown_characters_become_unk(tok):
    ids, _ = tok.encode("我爱🐍")
    assert tok.ids_to_tokens(ids) == ["[CLS]", "我", "爱", "[UNK]", "[SEP]"]
    assert tok.decode(ids) == "我爱"  # [xxx] tokens are dropped, as bert4keras does


def test_truncation_by_hand(tok):
    """maxlen 8 for 6 + 4 characters: [CLS] a1..a6 [SEP] b1..b4 [SEP] is 13 long; a loses a6, a5, then
    (a 4 = b 4, a first on a tie) a4, then b4, a3 ... until 8: [CLS] a1 a2 [SEP] b1 b2 b3 [SEP]."""
    ids, seg = tok.encode("我爱自然语言", "科学空间", maxlen=8)
    assert tok.ids_to_tokens(ids) == ["[CLS]", "我", "爱", "[SEP]", "科", "学", "空", "[SEP]"]
    assert seg == [0, 0, 0, 0, 1, 1, 1, 1]
    ids, seg = tok.encode("我爱自然语言处理", maxlen=5)
    assert tok.ids_to_tokens(ids) == ["[CLS]", "我", "爱", "自", "[SEP]"]


@settings(max_examples=60, deadline=None)
@given(la=st.integers(0, 12), lb=st.integers(0, 12), maxlen=st.integers(3, 30), second=st.booleans())
def test_truncation_keeps_specials_and_balances_the_segments(tok, la, lb, maxlen, second):
    """bert4keras's rule in closed form: the total is min(maxlen, full); each segment keeps a prefix; a
    segment
    that lost tokens is not shorter than the other minus 1 (the first) or than the other (the second)."""
    a, b = CHINESE[:la], CHINESE[:lb] if second else None
    ids, seg = tok.encode(a, b, maxlen=maxlen)
    full, _ = tok.encode(a, b)
    assert len(ids) == min(maxlen, len(full))
    toks = tok.ids_to_tokens(ids)
    n0 = seg.count(0)
    assert toks[0] == "[CLS]" and toks[n0 - 1] == "[SEP]" and toks[-1] == "[SEP]"
    ka = "".join(toks[1 : n0 - 1])
    assert a.startswith(ka)
    if b is None:
        return
    kb = "".join(toks[n0:-1])
    assert b.startswith(kb) and seg == [0] * n0 + [1] * (len(ids) - n0)
    if len(ka) < la:
        assert len(ka) >= len(kb) - 1
    if len(kb) < lb:
        assert len(kb) >= len(ka)


def test_truncate_sequences_pops_the_first_longest():
    a, b = [1, 2, 3, 9], [4, 5, 6, 9]
    truncate_sequences(6, -2, a, b)
    assert (a, b) == ([1, 2, 9], [4, 5, 9])


def test_errors(tmp_path, tok):
    with pytest.raises(KexueError, match="does not exist"):
        Tokenizer(tmp_path / "none.txt")
    (tmp_path / "v.txt").write_text("a\nb\n")
    with pytest.raises(KexueError, match="special tokens"):
        Tokenizer(tmp_path / "v.txt")
    with pytest.raises(KexueError, match="maxlen"):
        tok.encode("我爱", "你", maxlen=2)
