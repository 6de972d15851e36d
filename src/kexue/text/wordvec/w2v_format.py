"""The word2vec text format: a header "V D", then V lines "word x_1 … x_D" (space-separated, UTF-8).

It is the format of word2vec's `-binary 0` output and of gensim's `KeyedVectors.save_word2vec_format`
(binary=False), so gensim's `KeyedVectors.load_word2vec_format(path)` reads what `write_word2vec` writes.
Writes are atomic (kexue.train.checkpoint.write_text_atomic), so a crash never leaves half a file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from kexue.errors import DataError
from kexue.text.wordvec.vectors import WordVectors
from kexue.train.checkpoint import write_text_atomic


def write_word2vec(vectors: WordVectors, path: Path, *, digits: int = 6) -> Path:
    """Write `vectors` to `path` (word2vec text format) atomically, floats to `digits` significant digits."""
    path = Path(path)
    bad = next((w for w in vectors.words if not w or any(ch.isspace() for ch in w)), None)
    if bad is not None:
        raise DataError(f"word {bad!r} is empty or has whitespace; the word2vec format cannot hold it")
    buf = io.StringIO()
    np.savetxt(buf, np.asarray(vectors.vectors, dtype=np.float32), fmt=f"%.{digits}g", delimiter=" ")
    rows = buf.getvalue().splitlines()
    header = f"{len(vectors.words)} {vectors.dim}\n"
    write_text_atomic(header + "".join(f"{w} {r}\n" for w, r in zip(vectors.words, rows)), path)
    return path


def read_word2vec(path: Path) -> WordVectors:
    """Read a word2vec text file; a malformed file raises DataError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"vector file {path} does not exist; train one with `kexue wordvec train`")
    with path.open(encoding="utf-8", errors="strict") as f:
        try:
            header = f.readline().split()
            if len(header) != 2:
                raise DataError(f"{path}:1: the header should be 'V D' (two integers), got {header!r}")
            try:
                n, dim = int(header[0]), int(header[1])
            except ValueError:
                raise DataError(
                    f"{path}:1: the header should be 'V D' (two integers), got {header!r}"
                ) from None
            words, rows = [], []
            for lineno, line in enumerate(f, start=2):
                parts = line.rstrip("\r\n").rstrip(" ").split(" ")
                if parts == [""]:
                    continue
                if len(parts) != dim + 1:
                    raise DataError(
                        f"{path}:{lineno}: expected a word and {dim} numbers, got {len(parts)} fields; "
                        "the file is truncated or not in word2vec text format"
                    )
                words.append(parts[0])
                rows.append(parts[1:])
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e.reason}); is it the binary word2vec format?") from e
    if len(words) != n:
        raise DataError(
            f"{path}: the header promises {n} words but the file has {len(words)}; it is truncated"
        )
    try:
        array = np.array(rows, dtype=np.float32).reshape(n, dim)
    except ValueError as e:
        raise DataError(f"{path}: a vector entry is not a number ({e}); the file is malformed") from e
    return WordVectors(tuple(words), array)
