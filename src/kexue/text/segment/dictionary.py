"""Word lists: one word per line, an optional frequency, an optional tag (jieba's dict.txt layout).

    word                 a word without a frequency (the SIGHAN training word lists)
    word 123             with a frequency (non-negative number)
    word 123 n           jieba's dict.txt: the third field (part of speech) is ignored

Fields are separated by whitespace; blank lines are skipped; a leading BOM is ignored; a word listed twice
has its frequencies added. A list where no line has a frequency gets frequency 1 for every word (the
uniform dictionary; `kexue.text.segment.em` estimates real ones from raw text). Anything else — a
non-numeric or negative frequency, more than three fields, bytes that are not UTF-8, a mix of lines with
and without frequencies — is a `DataError` naming the file and line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from kexue.errors import DataError


@dataclass(frozen=True)
class Dictionary:
    """word → frequency (> 0); `has_freqs` says whether the frequencies came from the file."""

    freq: dict[str, float]
    has_freqs: bool = True
    source: str = field(default="", compare=False)

    def __len__(self) -> int:
        return len(self.freq)

    def __contains__(self, word: str) -> bool:
        return word in self.freq

    @property
    def words(self) -> list[str]:
        return list(self.freq)

    def with_freqs(self, freq: dict[str, float]) -> Dictionary:
        return Dictionary(dict(freq), True, self.source)


def parse_dictionary(lines, source: str = "<dictionary>") -> Dictionary:
    """Parse dictionary lines (str or bytes); `source` names the file in error messages."""
    freq: dict[str, float] = {}
    with_f = without_f = 0
    for i, raw in enumerate(lines, 1):
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{source}:{i}: not UTF-8 ({e.reason}); save the word list as UTF-8"
                ) from None
        if i == 1:
            raw = raw.removeprefix("\ufeff")
        fields = raw.split()
        if not fields:
            continue
        if len(fields) > 3:
            raise DataError(
                f"{source}:{i}: {len(fields)} fields in {raw.strip()[:40]!r}; "
                "expected 'word [frequency [tag]]' (a word cannot contain spaces)"
            )
        f = 1.0
        if len(fields) >= 2:
            try:
                f = float(fields[1])
            except ValueError:
                f = math.nan
            if not (math.isfinite(f) and f >= 0):
                raise DataError(
                    f"{source}:{i}: frequency {fields[1]!r} of {fields[0]!r} is not a non-negative number; "
                    "write 'word' or 'word frequency'"
                )
            with_f += 1
        else:
            without_f += 1
        if with_f and without_f:
            raise DataError(
                f"{source}:{i}: some lines have a frequency and some do not; give every word one or none"
            )
        freq[fields[0]] = freq.get(fields[0], 0.0) + f
    if not freq:
        raise DataError(f"{source}: the word list is empty; give one word per line")
    if with_f:  # a listed word with frequency 0 is kept, with the smallest positive frequency
        floor = min((v for v in freq.values() if v > 0), default=1.0)
        freq = {w: (v if v > 0 else floor) for w, v in freq.items()}
    return Dictionary(freq, bool(with_f), source)


def read_dictionary(path: str | Path) -> Dictionary:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the word list ({e.strerror}); check --dict") from None
    return parse_dictionary(data.splitlines(), str(path))


def write_dictionary(dictionary: Dictionary, path: str | Path) -> None:
    """`word frequency` per line (readable by `read_dictionary` and by jieba)."""
    lines = (f"{w} {f:.6g}\n" for w, f in dictionary.freq.items())
    Path(path).write_text("".join(lines), encoding="utf-8")
