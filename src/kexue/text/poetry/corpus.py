"""Five-character couplets from the Complete Tang Poems (全唐诗) — the corpus of [5332].

[5332] 基于CNN和VAE的作诗机器人：随机成诗, kexue.fm/archives/5332; its code is bojone/vae `vae_shi.py`.
The post keeps only five-character verse (五言诗) and generates one couplet (一句) of 10 characters; the
code finds poems whose first couplet is `.{5}，.{5}。`, splits them at "。" and keeps the pieces of
5 + 1 + 5 characters, dropping the middle mark. Here the same idea, stated exactly:

1. Files: `poet.tang.<k>.json` in numeric order of k (the chinese-poetry layout: JSON lists of
   {author, paragraphs[], title, id}, TRADITIONAL characters), from the folder given or its `tang-poems/`.
2. Each paragraph is converted to simplified Chinese with OpenCC `t2s`.
3. A paragraph is *regular* when it is one or more 12-character units: 5 syllables, a middle mark
   (，,？?！!；;), 5 syllables, an end mark (。．.？?！!；;). A syllable is any character that is not
   punctuation, a bracket or whitespace, so a lost character "□" still fills a place here.
4. A poem is a five-character poem when it has paragraphs and ALL of them are regular. One seven-character
   line, a mixed metre, or an editorial note such as "（一作…）" or "[爽]" excludes the whole poem.
5. Each unit of a five-character poem is a couplet candidate: its 10 syllables with the marks dropped.
   It is kept when all 10 are CJK Unified Ideographs of the basic block U+4E00–U+9FFF: this drops the "□"
   placeholders of lost characters and the rare characters of Extension A/B (e.g. 䍦, 𦈡).
6. The vocabulary is every character occurring ≥ min_count times among the kept couplets; couplets with
   any character outside it are then dropped (so every couplet is fully in the vocabulary).

On the full corpus (57,607 poems): 27,461 five-character poems; 144,915 couplets from rule 5 (140,337
distinct) over 7,078 characters; with min_count 5, 4,994 characters and 141,435 couplets (136,892 distinct).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from kexue.errors import DataError, KexueError

LINE_CHARS = 5  # five-character verse (五言), vae_shi.py n = 5
COUPLET_CHARS = 2 * LINE_CHARS  # one couplet: two lines, 10 characters [5332]
MIDDLE_MARKS = "，,？?！!；;"  # between the two lines
END_MARKS = "。．.？?！!；;"  # after the second line
_NOT_SYLLABLE = re.escape("，,。．.？?！!；;：:、·…—-~～（）()《》〈〉「」『』“”‘’\"'[]{}〖〗【】<>/|=○●")
_SYL = rf"[^\s{_NOT_SYLLABLE}]"
_UNIT = (
    rf"({_SYL}{{{LINE_CHARS}}})[{re.escape(MIDDLE_MARKS)}]({_SYL}{{{LINE_CHARS}}})[{re.escape(END_MARKS)}]"
)
UNIT = re.compile(_UNIT)
REGULAR = re.compile(rf"(?:{_UNIT})+")
IDEOGRAPHS = re.compile(rf"[\u4e00-\u9fff]{{{COUPLET_CHARS}}}")  # CJK Unified Ideographs, basic block
_FILE = re.compile(r"^poet\.tang\.(\d+)\.json$")


# ------------------------------------------------------------------------------------------ reading
def tang_poem_files(folder: str | Path) -> list[Path]:
    """The `poet.tang.<k>.json` files of `folder` (or of `folder/tang-poems`), in numeric order of k."""
    folder = Path(folder)
    for where in (folder, folder / "tang-poems"):
        if where.is_dir():
            found = [(int(m.group(1)), p) for p in where.iterdir() if (m := _FILE.match(p.name))]
            if found:
                return [p for _, p in sorted(found)]
    raise DataError(
        f"{folder}: no poet.tang.<k>.json files here or in {folder / 'tang-poems'}; point --data-dir at "
        "the chinese-poetry 全唐诗 folder (or the data folder holding tang-poems/)"
    )


def to_simplified(texts: Sequence[str]) -> list[str]:
    """Traditional → simplified with OpenCC `t2s`, one call for the whole batch (texts hold no NUL)."""
    try:
        import opencc
    except ImportError:
        raise KexueError("the poetry corpus needs OpenCC: pip install opencc") from None
    converter = opencc.OpenCC("t2s")
    joined = converter.convert("\0".join(texts)).split("\0")
    if len(joined) == len(texts):
        return joined
    return [converter.convert(t) for t in texts]  # a text changed the separators: convert one by one


def read_poems(path: str | Path) -> list[list[str]]:
    """One file's poems as lists of paragraphs, converted to simplified Chinese."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read it as UTF-8 JSON ({e}); re-download the file") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of poems, got {type(data).__name__}")
    paragraphs, sizes = [], []
    for i, poem in enumerate(data):
        paras = poem.get("paragraphs") if isinstance(poem, dict) else None
        if not isinstance(paras, list) or not all(isinstance(p, str) for p in paras):
            raise DataError(f"{path}: poem {i} has no 'paragraphs' list of strings")
        paragraphs += [p.replace("\0", "") for p in paras]
        sizes.append(len(paras))
    flat, out, at = to_simplified(paragraphs), [], 0
    for n in sizes:
        out.append(flat[at : at + n])
        at += n
    return out


def read_tang_poems(folder: str | Path, *, max_files: int | None = None) -> list[list[str]]:
    """Every poem (its paragraphs, simplified) of the first `max_files` files (None: all)."""
    files = tang_poem_files(folder)[:max_files]
    return [poem for path in files for poem in read_poems(path)]


# ------------------------------------------------------------------------------------------ couplets
def poem_couplets(paragraphs: Sequence[str]) -> list[str]:
    """One poem's 10-character couplets by rules 3–5 of the module docstring ([]: not five-character)."""
    paras = [p.strip() for p in paragraphs]
    if not paras or not all(REGULAR.fullmatch(p) for p in paras):
        return []
    units = (a + b for p in paras for a, b in UNIT.findall(p))
    return [u for u in units if IDEOGRAPHS.fullmatch(u)]


def extract_couplets(poems: Iterable[Sequence[str]]) -> list[str]:
    """Couplets of all poems, in corpus order (duplicates kept, as [5332]'s code keeps them)."""
    return [c for poem in poems for c in poem_couplets(poem)]


# ------------------------------------------------------------------------------------------ vocabulary
@dataclass(frozen=True)
class Vocabulary:
    """Characters ↔ ids; ids follow descending count, ties by code point (deterministic)."""

    chars: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.chars:
            raise DataError("the vocabulary is empty: no character occurs often enough (lower min_count)")
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise DataError("a vocabulary must list distinct single characters")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.chars)})

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, char: object) -> bool:
        return char in self._index

    @classmethod
    def build(cls, couplets: Iterable[str], min_count: int = 1) -> Vocabulary:
        if min_count < 1:
            raise ValueError(f"min_count must be ≥ 1, got {min_count}")
        counts = Counter(ch for c in couplets for ch in c)
        kept = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
        return cls(tuple(kept))

    def encode(self, couplets: Sequence[str]) -> Tensor:
        """Couplets → ids (N, 10). A couplet is 10 characters, or "xxxxx，xxxxx。" with its marks."""
        rows = []
        for c in couplets:
            text = strip_marks(c)
            missing = [ch for ch in text if ch not in self._index]
            if missing:
                raise ValueError(f"couplet {c!r}: character {missing[0]!r} is not in the vocabulary")
            rows.append([self._index[ch] for ch in text])
        return torch.tensor(rows, dtype=torch.long).view(len(rows), COUPLET_CHARS)  # (N, 10)

    def decode(self, ids: Tensor) -> list[str]:
        """ids (N, 10) → couplets as 10-character strings."""
        if ids.dim() != 2 or ids.shape[1] != COUPLET_CHARS:
            raise ValueError(f"ids must have shape (N, {COUPLET_CHARS}), got {tuple(ids.shape)}")
        return ["".join(self.chars[i] for i in row) for row in ids.tolist()]


def strip_marks(couplet: str) -> str:
    """ "xxxxx，xxxxx。" or "xxxxxxxxxx" → the 10 characters; anything else is a ValueError."""
    m = re.fullmatch(
        rf"(\S{{{LINE_CHARS}}})[{re.escape(MIDDLE_MARKS)}]?(\S{{{LINE_CHARS}}})[{re.escape(END_MARKS)}]?",
        couplet.strip(),
    )
    if m is None:
        raise ValueError(
            f"{couplet!r} is not a five-character couplet: give 10 characters or 'xxxxx，xxxxx。'"
        )
    return m.group(1) + m.group(2)


def format_couplet(text: str) -> str:
    """10 characters → "xxxxx，xxxxx。" (the post's way of printing them)."""
    return f"{text[:LINE_CHARS]}，{text[LINE_CHARS:]}。"


# ------------------------------------------------------------------------------------------ corpus
def load_couplets(
    folder: str | Path, *, min_count: int = 5, max_files: int | None = None
) -> tuple[list[str], Vocabulary]:
    """(couplets, vocabulary) of the Tang poems in `folder`, by rules 1–6 of the module docstring."""
    couplets = extract_couplets(read_tang_poems(folder, max_files=max_files))
    if not couplets:
        raise DataError(f"{folder}: no five-character couplets found; is this the 全唐诗 JSON folder?")
    vocab = Vocabulary.build(couplets, min_count)
    kept = [c for c in couplets if all(ch in vocab for ch in c)]
    return kept, vocab


def split_couplets(
    couplets: Sequence[str], test_size: int, *, generator: torch.Generator | None = None
) -> tuple[list[str], list[str]]:
    """(train, test): distinct couplets shuffled by `generator`, the last `test_size` held out.

    Duplicates are merged first, so no held-out couplet also sits in the training set."""
    distinct = list(dict.fromkeys(couplets))
    if not 0 <= test_size < len(distinct):
        raise ValueError(f"test_size must lie in [0, {len(distinct)}) distinct couplets, got {test_size}")
    order = torch.randperm(len(distinct), generator=generator).tolist()
    cut = len(distinct) - test_size
    return [distinct[i] for i in order[:cut]], [distinct[i] for i in order[cut:]]
