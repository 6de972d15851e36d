"""CSL / LCSTS readers, the [5861] character vocabulary and padded batches."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kexue.errors import DataError
from kexue.text.titles.data import (
    END,
    PAD,
    SPECIALS,
    START,
    UNK,
    CharVocab,
    Pair,
    encode_pairs,
    load_pairs,
    pad_ids,
    read_csl,
    read_lcsts,
    trim,
)


def test_csl_and_lcsts_on_tiny_files(tmp_path):
    (tmp_path / "csl").mkdir()
    (tmp_path / "csl" / "dev.tsv").write_text(
        "to title\t摘要一。\t标题一\n\nto title\t第二篇\t题二\n", encoding="utf-8"
    )
    assert load_pairs(tmp_path, "csl", "dev") == [Pair("摘要一。", "标题一"), Pair("第二篇", "题二")]
    (tmp_path / "val.tsv").write_text(
        "摘要\t正文很长\n", encoding="utf-8"
    )  # a folder holding the split itself
    assert load_pairs(tmp_path, "lcsts", "val") == [Pair("正文很长", "摘要")]


@pytest.mark.parametrize(
    ("reader", "line", "match"),
    [
        (read_csl, "to title\tonly two", r"bad\.tsv:2: expected 'to title<TAB>abstract<TAB>title'"),
        (read_csl, "to title\t\ttitle", "both texts non-empty"),
        (read_lcsts, "a\tb\tc", r"bad\.tsv:2: expected 'summary<TAB>text'"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, reader, line, match):
    good = "to title\tx\ty" if reader is read_csl else "y\tx"
    path = tmp_path / "bad.tsv"
    path.write_text(f"{good}\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=match):
        reader(path)


def test_missing_and_unknown(tmp_path):
    with pytest.raises(DataError, match="does not exist; point --data-dir"):
        load_pairs(tmp_path, "csl", "test")
    with pytest.raises(DataError, match="unknown corpus/split csl/train"):
        load_pairs(tmp_path, "csl", "train")  # CSL's train split is not public
    (tmp_path / "empty.tsv").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no pairs"):
        read_lcsts(tmp_path / "empty.tsv")


def test_vocabulary_specials_order_and_min_count():
    v = CharVocab.build(["abca", "cb", "d"], min_count=2)  # a 2, b 2, c 2, d 1
    assert (PAD, UNK, START, END) == (0, 1, 2, 3) and SPECIALS == 4 and UNK != PAD  # [5861]'s four ids
    assert v.chars == ("a", "b", "c") and len(v) == 3 + 4
    assert v.encode("abcdx") == [4, 5, 6, UNK, UNK] and v.encode("abc", 2) == [4, 5]
    assert v.decode([START, 4, UNK, 6, END, 5]) == "a\ufffdc"  # stops at END, UNK printed as U+FFFD
    with pytest.raises(ValueError, match="min_count"):
        CharVocab.build(["a"], min_count=0)


@given(st.text(alphabet="天地玄黄宇宙洪荒abc", max_size=30))
def test_encode_decode_round_trip(text):
    v = CharVocab(tuple("天地玄黄宇宙洪荒abc"))
    assert v.decode(v.encode(text)) == text


def test_encode_pairs_and_trim():
    v = CharVocab(tuple("甲乙丙丁"))
    src, tgt = encode_pairs([Pair("甲乙丙", "丁"), Pair("乙", "甲乙丙丁")], v, max_source=2, max_title=3)
    assert src.tolist() == [[4, 5], [5, PAD]]  # truncated to 2, right-padded
    assert tgt.tolist() == [[START, 7, END, PAD, PAD], [START, 4, 5, 6, END]]
    assert trim(pad_ids([[4], [5]], length=6)).shape == (2, 1)
    assert torch.equal(trim(src), src)


def test_real_files(shared_data):
    if not (shared_data / "csl" / "dev.tsv").is_file() or not (shared_data / "lcsts" / "train.tsv").is_file():
        pytest.skip(f"{shared_data}/csl or lcsts is absent (the shared title data)")
    sizes = {("csl", "dev"): 1000, ("csl", "test"): 1000, ("lcsts", "train"): 8666, ("lcsts", "test"): 1000}
    for (corpus, split), n in sizes.items():
        pairs = load_pairs(shared_data, corpus, split)
        assert len(pairs) == n and all(p.source and p.title for p in pairs)
    dev = load_pairs(shared_data, "csl", "dev")
    assert len(dev[0].title) < len(dev[0].source)  # (abstract, title), not the reverse
