"""Title-generation data: CSL and LCSTS readers, the character vocabulary of [5861], padded batches.

[5861] 玩转Keras之seq2seq自动生成标题 (kexue.fm/archives/5861) and its code bojone/seq2seq `seq2seq.py`:
character level; characters seen ≥ min_count times in the training text (Su: 32 on 800k news articles);
four extra ids "分别代表mask、unk、start、end": 0 padding (masked), 1 unknown, 2 start, 3 end — the post
insists that unknown ≠ padding ("把未登录词区分一下比较好"). The UniLM model reuses start / end as BERT's
[CLS] / [SEP] (bert4keras: [CLS] source [SEP] title [SEP]).

Formats, exactly as the public files come (../shared/data/README.md):
- CSL (ydli-ai/CSL `benchmark/ts/{dev,test}.tsv`): `to title<TAB>abstract<TAB>title`, one pair per line.
- LCSTS (CLUEbenchmark/CLGE `lcsts/{train,val,test}.tsv`): `summary<TAB>text`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from kexue.errors import DataError

PAD, UNK, START, END = 0, 1, 2, 3  # [5861]: mask, unk, start, end
SPECIALS = 4
UNK_CHAR = "\ufffd"  # how an unknown id prints in a decoded title
CORPORA = {"csl": ("dev", "test"), "lcsts": ("train", "val", "test")}


class Pair(NamedTuple):
    source: str  # the document: a CSL abstract or an LCSTS text
    title: str  # its reference title / summary


# ------------------------------------------------------------------------------------------ readers
def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path} does not exist; point --data-dir at the folder holding csl/ and lcsts/")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it as UTF-8 text ({e}); re-download the file") from None
    return text.splitlines()


def read_csl(path: str | Path) -> list[Pair]:
    """CSL pairs from `to title<TAB>abstract<TAB>title` lines (blank lines skipped)."""
    path, pairs = Path(path), []
    for i, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 3 or not cols[1].strip() or not cols[2].strip():
            raise DataError(
                f"{path}:{i}: expected 'to title<TAB>abstract<TAB>title' with both texts non-empty, got "
                f"{len(cols)} column(s); is this a CSL benchmark/ts file?"
            )
        pairs.append(Pair(cols[1].strip(), cols[2].strip()))
    if not pairs:
        raise DataError(f"{path}: no pairs found; is this a CSL benchmark/ts file?")
    return pairs


def read_lcsts(path: str | Path) -> list[Pair]:
    """LCSTS pairs from `summary<TAB>text` lines (blank lines skipped)."""
    path, pairs = Path(path), []
    for i, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 2 or not cols[0].strip() or not cols[1].strip():
            raise DataError(
                f"{path}:{i}: expected 'summary<TAB>text' with both non-empty, got {len(cols)} column(s); "
                "is this a CLGE lcsts file?"
            )
        pairs.append(Pair(cols[1].strip(), cols[0].strip()))
    if not pairs:
        raise DataError(f"{path}: no pairs found; is this a CLGE lcsts file?")
    return pairs


def load_pairs(data_dir: str | Path, corpus: str, split: str) -> list[Pair]:
    """`data_dir/<corpus>/<split>.tsv` (or `data_dir/<split>.tsv`): corpus "csl" or "lcsts"."""
    if corpus not in CORPORA or split not in CORPORA[corpus]:
        known = "; ".join(f"{c}: {', '.join(s)}" for c, s in CORPORA.items())
        raise DataError(f"unknown corpus/split {corpus}/{split}; available: {known}")
    data_dir = Path(data_dir)
    path = data_dir / corpus / f"{split}.tsv"
    if not path.is_file() and (data_dir / f"{split}.tsv").is_file():
        path = data_dir / f"{split}.tsv"
    return (read_csl if corpus == "csl" else read_lcsts)(path)


# ------------------------------------------------------------------------------------------ vocabulary
@dataclass(frozen=True)
class CharVocab:
    """Characters ↔ ids ≥ 4 (0–3: PAD, UNK, START, END), in order of descending count, then code point."""

    chars: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise DataError("a character vocabulary must list distinct single characters")
        object.__setattr__(self, "_index", {c: i + SPECIALS for i, c in enumerate(self.chars)})

    def __len__(self) -> int:
        """The number of ids, specials included (the model's |V| + 4)."""
        return len(self.chars) + SPECIALS

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> CharVocab:
        """Characters seen ≥ min_count times in `texts` (sources and titles of the training pairs)."""
        if min_count < 1:
            raise ValueError(f"min_count must be ≥ 1, got {min_count}")
        counts = Counter(ch for t in texts for ch in t)
        kept = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
        return cls(tuple(kept))

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """Ids of the first `max_len` characters (unknown characters → UNK)."""
        return [self._index.get(ch, UNK) for ch in text[:max_len]]

    def decode(self, ids: Iterable[int]) -> str:
        """Characters up to the first END; PAD and START are skipped, UNK prints as U+FFFD."""
        out = []
        for i in ids:
            if i == END:
                break
            if i >= SPECIALS:
                out.append(self.chars[i - SPECIALS])
            elif i == UNK:
                out.append(UNK_CHAR)
        return "".join(out)


# ------------------------------------------------------------------------------------------ batches
def pad_ids(rows: Sequence[Sequence[int]], length: int | None = None) -> Tensor:
    """Right-padded (N, L) long tensor of id lists (L = the longest row, or `length`)."""
    L = max((len(r) for r in rows), default=0) if length is None else length
    out = torch.full((len(rows), max(L, 1)), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r[:L], dtype=torch.long)
    return out  # (N, L)


def encode_pairs(
    pairs: Sequence[Pair], vocab: CharVocab, *, max_source: int, max_title: int
) -> tuple[Tensor, Tensor]:
    """(sources (N, S), titles (N, T)): source ids truncated to max_source; titles [START, y…, END]
    with y truncated to max_title characters [5861]; both right-padded with PAD."""
    src = [vocab.encode(p.source, max_source) for p in pairs]
    if any(not s for s in src):
        raise DataError("a pair has an empty source text; drop it before training")
    tgt = [[START, *vocab.encode(p.title, max_title), END] for p in pairs]
    return pad_ids(src), pad_ids(tgt)


def trim(ids: Tensor) -> Tensor:
    """Right-padded ids (B, L) without the columns that are padding in every row (at least one column)."""
    n = int((ids != PAD).sum(1).max()) if ids.numel() else 0
    return ids[:, : max(n, 1)]
