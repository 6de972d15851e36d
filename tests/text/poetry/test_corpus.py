"""The Tang-poem couplet corpus: OpenCC conversion, the five-character rule, vocabulary, split, errors."""

from __future__ import annotations

import json

import pytest
import torch

from kexue.errors import DataError
from kexue.text.poetry.corpus import (
    Vocabulary,
    extract_couplets,
    format_couplet,
    load_couplets,
    poem_couplets,
    read_poems,
    split_couplets,
    strip_marks,
    tang_poem_files,
    to_simplified,
)


@pytest.fixture(scope="module")
def first_file(shared_data_dir):
    return read_poems(tang_poem_files(shared_data_dir)[0])  # poet.tang.0.json


@pytest.fixture(scope="module")
def shared_data_dir(shared_data):
    if not (shared_data / "tang-poems").is_dir():
        pytest.skip(f"{shared_data / 'tang-poems'} is absent (the Tang poems of the shared data folder)")
    return shared_data


def write_poems(folder, poems, name="poet.tang.0.json"):
    folder.mkdir(parents=True, exist_ok=True)
    data = [{"author": "x", "paragraphs": p, "title": "t", "id": str(i)} for i, p in enumerate(poems)]
    (folder / name).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


# ------------------------------------------------------------------------------------------ real poems
def test_real_files_are_found_in_numeric_order(shared_data_dir):
    files = tang_poem_files(shared_data_dir)  # the data folder: its tang-poems/ is used
    assert [f.name for f in files[:3]] == ["poet.tang.0.json", "poet.tang.1000.json", "poet.tang.2000.json"]
    assert files == tang_poem_files(shared_data_dir / "tang-poems")


def test_real_five_character_poem_converted(first_file):
    # poet.tang.0.json poem 0, 太宗皇帝《帝京篇十首 一》: "秦川雄帝宅，函谷壯皇居。…" in the file
    assert first_file[0][0] == "秦川雄帝宅，函谷壮皇居。"  # 壯 → 壮 by OpenCC t2s
    assert poem_couplets(first_file[0]) == [
        "秦川雄帝宅函谷壮皇居",
        "绮殿千寻起离宫百雉余",  # 綺 離 餘 → 绮 离 余
        "连甍遥接汉飞观迥凌虚",
        "云日隐层阙风烟出绮疎",
    ]


def test_real_seven_character_and_mixed_poems_give_nothing(first_file):
    assert first_file[83][0] == "暧暧去尘昏灞岸，飞飞轻盖指河梁。"  # 《餞中書侍郎來濟》: seven characters
    assert poem_couplets(first_file[83]) == []
    assert first_file[129][0] == "暇景属三春，高台聊四望。"  # 《春臺望》: five, then seven characters
    assert poem_couplets(first_file[129]) == []


def test_real_lost_character_drops_only_its_couplet(first_file):
    poem = first_file[107]  # 《守歲》: "綬吐芽猶嫩，冰□已鏤津。" has a lost character
    assert "绶吐芽犹嫩，冰□已镂津。" in poem
    out = poem_couplets(poem)
    assert len(out) == len(poem) - 1 and all("□" not in c for c in out)
    assert out[0] == "今宵冬律尽来朝丽景新"


def test_real_corpus_subset(shared_data_dir):
    couplets, vocab = load_couplets(shared_data_dir, min_count=2, max_files=1)
    assert len(couplets) > 1000 and all(len(c) == 10 for c in couplets)
    assert all(ch in vocab for c in couplets[:500] for ch in c)
    assert "长" in vocab and "長" not in vocab  # simplified only


# ------------------------------------------------------------------------------------------ the rule
def test_to_simplified():
    assert to_simplified(["長安一片月，萬戶擣衣聲。", "舉頭望明月"]) == [
        "长安一片月，万户捣衣声。",
        "举头望明月",
    ]


@pytest.mark.parametrize(
    ("paragraphs", "expected"),
    [
        (
            ["白日依山尽，黄河入海流。", "欲穷千里目，更上一层楼。"],
            ["白日依山尽黄河入海流", "欲穷千里目更上一层楼"],
        ),
        (
            ["白日依山尽,黄河入海流.", "欲穷千里目；更上一层楼！"],
            ["白日依山尽黄河入海流", "欲穷千里目更上一层楼"],
        ),
        (["何如肆辙迹？万里赏瑶池。"], ["何如肆辙迹万里赏瑶池"]),  # a question in the first line
        (
            ["白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"],
            ["白日依山尽黄河入海流", "欲穷千里目更上一层楼"],
        ),
        ([" 白日依山尽，黄河入海流。\n"], ["白日依山尽黄河入海流"]),  # surrounding whitespace
        (["朝辞白帝彩云间，千里江陵一日还。"], []),  # seven characters
        (["白日依山尽，黄河入海流。", "朝辞白帝彩云间，千里江陵一日还。"], []),  # mixed metre
        (["白日依山尽，黄河入海流（一作「奔」）。"], []),  # an editorial note
        (["[白]日依山尽，黄河入海流。"], []),  # an editorial bracket
        (["白日依山尽，黄河入海流"], []),  # no end mark
        (["白日依山尽黄河入海流。"], []),  # no middle mark
        (["白日依山，黄河入海流。"], []),  # four characters
        (["白日依山尽，黄河入海□。", "欲穷千里目，更上一层楼。"], ["欲穷千里目更上一层楼"]),  # lost char
        (["白日依山尽，黄河入海䍦。"], []),  # Extension A: rare
        (["白日依山尽，黄河入海𦈡。"], []),  # Extension B: rare
        (["ABCDE，黄河入海流。"], []),  # not CJK
        ([], []),
    ],
)
def test_couplet_rule(paragraphs, expected):
    assert poem_couplets(paragraphs) == expected


def test_hand_made_folder(tmp_path):
    write_poems(
        tmp_path / "tang-poems",
        [
            ["國破山河在，城春草木深。", "感時花濺淚，恨別鳥驚心。"],
            ["朝辭白帝彩雲間，千里江陵一日還。"],
            ["國破山河在，城春草木深。"],
        ],
    )
    write_poems(tmp_path / "tang-poems", [["牀前明月光，疑是地上霜。"]], name="poet.tang.1000.json")
    (tmp_path / "tang-poems" / "notes.json").write_text("not a poem file")  # ignored: not poet.tang.*
    couplets, vocab = load_couplets(tmp_path, min_count=1)
    assert couplets == [
        "国破山河在城春草木深",
        "感时花溅泪恨别鸟惊心",
        "国破山河在城春草木深",
        "床前明月光疑是地上霜",
    ]
    assert set(vocab.chars[:10]) == set("国破山河在城春草木深")  # count 2 before count 1
    couplets2, vocab2 = load_couplets(tmp_path, min_count=2)  # only the repeated couplet survives
    assert couplets2 == ["国破山河在城春草木深"] * 2 and len(vocab2) == 10
    assert load_couplets(tmp_path, min_count=1, max_files=1)[0] == couplets[:3]


# ------------------------------------------------------------------------------------------ errors
def test_missing_or_empty_corpus(tmp_path):
    with pytest.raises(DataError, match=r"no poet\.tang"):
        load_couplets(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no poet\.tang"):
        load_couplets(tmp_path / "empty")
    write_poems(tmp_path / "zero", [])
    with pytest.raises(DataError, match="no five-character couplets"):
        load_couplets(tmp_path / "zero")
    write_poems(tmp_path / "seven", [["朝辭白帝彩雲間，千里江陵一日還。"]])
    with pytest.raises(DataError, match="no five-character couplets"):
        load_couplets(tmp_path / "seven")


def test_corrupt_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "poet.tang.0.json").write_text("[{", encoding="utf-8")
    with pytest.raises(DataError, match=r"poet\.tang\.0\.json: cannot read"):
        load_couplets(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "poet.tang.0.json").write_text('[{"title": "x"}]', encoding="utf-8")
    with pytest.raises(DataError, match="poem 0 has no 'paragraphs'"):
        load_couplets(tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "poet.tang.0.json").write_text('{"paragraphs": []}', encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON list"):
        load_couplets(tmp_path / "c")


# ------------------------------------------------------------------------------------------ vocabulary
def test_vocabulary_order_and_round_trip():
    vocab = Vocabulary.build(["白日依山尽黄河入海流", "白日照山尽黄河东海流"], min_count=1)
    assert vocab.chars[:8] == ("尽", "山", "日", "河", "流", "海", "白", "黄")  # count 2, then code point
    ids = vocab.encode(["白日依山尽，黄河入海流。", "白日照山尽黄河东海流"])
    assert ids.shape == (2, 10) and ids.dtype == torch.long
    assert vocab.decode(ids) == ["白日依山尽黄河入海流", "白日照山尽黄河东海流"]
    assert Vocabulary.build(["白日依山尽黄河入海流", "白日照山尽黄河东海流"], 2).chars == vocab.chars[:8]


def test_vocabulary_errors():
    vocab = Vocabulary.build(["白日依山尽黄河入海流"])
    with pytest.raises(ValueError, match="'月' is not in the vocabulary"):
        vocab.encode(["白日依山月黄河入海流"])
    with pytest.raises(ValueError, match="not a five-character couplet"):
        vocab.encode(["白日依山尽黄河入海"])
    with pytest.raises(ValueError, match="shape"):
        vocab.decode(torch.zeros(2, 9, dtype=torch.long))
    with pytest.raises(DataError, match="vocabulary is empty"):
        Vocabulary.build(["白日依山尽黄河入海流"], min_count=2)
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build([], min_count=0)


def test_marks():
    assert strip_marks("白日依山尽，黄河入海流。") == "白日依山尽黄河入海流"
    assert format_couplet("白日依山尽黄河入海流") == "白日依山尽，黄河入海流。"
    with pytest.raises(ValueError):
        strip_marks("朝辞白帝彩云间，千里江陵一日还。")


def test_split_is_disjoint_deduplicated_and_seeded():
    couplets = [f"{i:05d}{i:05d}" for i in range(20)] * 2
    train, test = split_couplets(couplets, 5, generator=torch.Generator().manual_seed(3))
    assert len(train) == 15 and len(test) == 5 and not set(train) & set(test)
    assert sorted(train + test) == sorted(set(couplets))
    again = split_couplets(couplets, 5, generator=torch.Generator().manual_seed(3))
    assert again == (train, test)
    with pytest.raises(ValueError, match="test_size"):
        split_couplets(couplets, 20)


def test_extract_keeps_order_and_duplicates():
    poems = [["白日依山尽，黄河入海流。"], ["朝辞白帝彩云间，千里江陵一日还。"], ["白日依山尽，黄河入海流。"]]
    assert extract_couplets(poems) == ["白日依山尽黄河入海流"] * 2
