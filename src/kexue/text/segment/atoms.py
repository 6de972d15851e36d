"""Text → atoms: the units every segmenter here works on, and atoms → segmented text. Vectorised (numpy).

An *atom* is one character, except that
- a maximal run of digits / Latin letters (half- or full-width) with the joiners . ． % ％ ‰ is ONE atom,
  coded NUM (only digits) or LATIN (letters) — reference/nlp.md §1.4: "treat runs of [0-9A-Za-z．％] as
  one token" (full-width forms cost jieba points, jieba #340, #769); a word list entry "2000年" becomes
  (NUM, 年) and so matches "1998年" too;
- a run of the same punctuation character ("——", "……") is one atom.
Whitespace (Python's `str.isspace`, which includes U+3000 and CR) is never part of an atom: it separates
*blocks*, and no word crosses a block boundary. Lone surrogates (invalid UTF-8 read with
`surrogateescape`) are ordinary unknown characters, so invalid bytes come back unchanged.

`render` writes a segmentation back: the input's non-whitespace characters in order, one space between
tokens, "\\n" kept, every other whitespace character dropped. Concatenating the output's tokens gives the
input minus its whitespace, by construction.
"""

from __future__ import annotations

import sys
import unicodedata
from dataclasses import dataclass

import numpy as np

NUM = 0x110000  # atom code of a digit run (above the last code point)
LATIN = 0x110001  # atom code of a run with a letter
CODES = 0x110002  # atom codes are < CODES

_WS = np.array([c for c in range(sys.maxunicode + 1) if chr(c).isspace()], dtype=np.int64)
_NEWLINE = 10


def _ranges(cp: np.ndarray, ranges) -> np.ndarray:
    out = np.zeros(cp.shape, dtype=bool)
    for lo, hi in ranges:
        out |= (cp >= ord(lo)) & (cp <= ord(hi))
    return out


_DIGITS = (("0", "9"), ("０", "９"))
_LETTERS = (("A", "Z"), ("a", "z"), ("Ａ", "Ｚ"), ("ａ", "ｚ"))
_JOINERS = np.array([ord(c) for c in ".．%％‰"], dtype=np.int64)
_PUNCT = np.array(
    [c for c in range(0x3100) if unicodedata.category(chr(c))[0] in "PS"]
    + [c for c in range(0xFE10, 0xFFEF) if unicodedata.category(chr(c))[0] in "PS"],
    dtype=np.int64,
)


@dataclass(frozen=True)
class Atoms:
    """A text cut into atoms. n characters, m atoms.

    cp:     (n,) int64 code points of the text
    start:  (m,) int64 character offset of each atom
    code:   (m,) int64 atom code (a code point, NUM or LATIN)
    block:  (m,) int64 block id, non-decreasing; words never cross blocks (whitespace between)
    punct:  (m,) bool  punctuation/symbol atoms (the tagger cuts around them, as [4245] pre-splits)
    """

    cp: np.ndarray
    start: np.ndarray
    code: np.ndarray
    block: np.ndarray
    punct: np.ndarray

    def __len__(self) -> int:
        return len(self.code)


def code_points(text: str) -> np.ndarray:
    """(n,) int64 code points; lone surrogates (from surrogateescape) are kept."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)


def atomize(text: str) -> Atoms:
    cp = code_points(text)
    n = len(cp)
    ws = np.isin(cp, _WS)
    digit, letter = _ranges(cp, _DIGITS), _ranges(cp, _LETTERS)
    run = digit | letter | np.isin(cp, _JOINERS)
    prev = np.r_[False, run[:-1]]
    run_id = np.cumsum(run & ~prev) - 1  # id of the run a run character belongs to
    if run.any():  # a run of joiners only ("..") is ordinary characters
        has_core = np.bincount(run_id[run], weights=(digit | letter)[run]) > 0
        has_letter = np.bincount(run_id[run], weights=letter[run]) > 0
        run &= has_core[np.maximum(run_id, 0)]
    punct_c = np.isin(cp, _PUNCT)
    prev_cp = np.r_[-1, cp[:-1]]
    same_punct = punct_c & (prev_cp == cp)  # "——": repeated punctuation joins the previous atom
    is_start = ~ws & ~(run & np.r_[False, run[:-1]]) & ~same_punct
    start = np.flatnonzero(is_start)
    code = cp[start].copy()
    in_run = run[start]
    if in_run.any():
        code[in_run] = np.where(has_letter[run_id[start[in_run]]], LATIN, NUM)
    block = np.cumsum(ws)[start] if n else np.zeros(0, np.int64)
    return Atoms(cp, start, code, block.astype(np.int64), punct_c[start] & ~in_run)


def render(atoms: Atoms, token_start: np.ndarray) -> str:
    """The text with one space before every token start (atom flags, (m,) bool) that is not first on
    its line; whitespace other than newlines dropped."""
    cp = atoms.cp
    if not len(cp):
        return ""
    newline = cp == _NEWLINE
    keep = ~np.isin(cp, _WS) | newline
    out = cp[keep]
    line = np.cumsum(newline)[atoms.start]  # line of each atom
    first = np.r_[True, line[1:] != line[:-1]]  # first atom of its line
    space_at = atoms.start[token_start & ~first]
    pos = (np.cumsum(keep) - 1)[space_at]  # index in `out` of the atom's first character
    out = np.insert(out, pos, 32)
    return out.astype(np.uint32).tobytes().decode("utf-32-le", "surrogatepass")


def words_codes(words: list[str]) -> list[np.ndarray]:
    """The atom codes of each word (words without whitespace), atomised in one vectorised pass."""
    if not words:
        return []
    atoms = atomize("\n".join(words))
    cuts = np.flatnonzero(np.diff(atoms.block)) + 1  # block b is word b (no whitespace inside words)
    return np.split(atoms.code, cuts)
