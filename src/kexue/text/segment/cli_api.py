"""What `kexue segment` calls: streaming segmentation and training of a model directory.

Streaming contract (`segment_stream`): the input is read as bytes, line by line (lines end in "\\n"); each
line is decoded as UTF-8 with `surrogateescape`, so bytes that are not UTF-8 pass through unchanged as
one-character tokens; each input line gives exactly one output line (words separated by one space; the
input's whitespace, CR included, is dropped); a last line without "\\n" gives a last line without "\\n".
Lines are segmented in batches of ~64k characters (the segmenters are vectorised over a batch), and each
batch is written as soon as it is done.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, replace
from pathlib import Path

from kexue.text.segment.dictionary import read_dictionary, write_dictionary
from kexue.text.segment.em import estimate_frequencies
from kexue.text.segment.maxprob import MaxProb
from kexue.text.segment.tagger import Tagger, TaggerConfig, train_tagger
from kexue.train.checkpoint import build_directory_atomic

BATCH_CHARS = 1 << 16


def segment_stream(dict_path: Path, model_dir: Path | None, infile, outfile) -> dict:
    """Segment `infile` (binary or text file object) into `outfile` line by line.

    model_dir=None: max-probability segmentation with the dictionary's frequencies (1 each if none);
    otherwise the neural tagger saved there by `train_segmenter` (the dictionary is then not needed, but
    it is still read and checked). Returns {"lines", "chars", "seconds", "chars_per_s", "method"}."""
    dictionary = read_dictionary(dict_path)
    seg = Tagger.load(model_dir) if model_dir is not None else MaxProb(dictionary)
    src = getattr(infile, "buffer", infile)
    dst = getattr(outfile, "buffer", outfile)
    t0 = time.perf_counter()
    lines = chars = 0
    buf: list[str] = []
    size = 0
    ended = True  # whether the last line read ended in a newline

    def flush(final: bool) -> None:
        nonlocal buf, size
        if not buf:
            return
        out = seg.segment("\n".join(buf))
        tail = "\n" if (not final or ended) else ""
        _write(dst, out + tail)
        buf, size = [], 0

    for raw in src:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        ended = raw.endswith(b"\n")
        line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
        buf.append(line)
        size += len(line)
        lines += 1
        chars += len(line)
        if size >= BATCH_CHARS:
            flush(False)
    flush(True)
    if hasattr(dst, "flush"):
        dst.flush()
    seconds = time.perf_counter() - t0
    return {
        "lines": lines,
        "chars": chars,
        "seconds": seconds,
        "chars_per_s": chars / seconds if seconds > 0 else float("nan"),
        "method": "tagger" if model_dir is not None else "maxprob",
    }


def _write(dst, text: str) -> None:
    data = text.encode("utf-8", "surrogateescape")
    try:
        dst.write(data)
    except TypeError:  # a text stream without .buffer
        dst.write(data.decode("utf-8", "surrogateescape"))


def read_corpus(path: Path) -> str:
    """Raw text for EM (UTF-8; undecodable bytes replaced), whitespace inside lines removed."""
    from kexue.errors import DataError

    try:
        text = Path(path).read_bytes().decode("utf-8", "replace")
    except OSError as e:
        raise DataError(f"{path}: cannot read the corpus ({e.strerror}); check --corpus") from None
    return re.sub(r"[^\S\n]+", "", text)


def train_segmenter(
    dict_path: Path,
    corpus: Path | None,
    out: Path,
    *,
    seed: int = 0,
    steps: int | None = None,
    em_rounds: int = 3,
    config: TaggerConfig | None = None,
    say=None,
) -> dict:
    """Frequencies by EM (when a corpus is given and the list has none), then the [4245] tagger.

    Writes `out/` atomically (a temporary sibling renamed into place): tagger.safetensors, tagger.json
    (config and vocabulary), dictionary.txt (the frequencies used) and train.json (what was done).
    Returns the contents of train.json."""
    dictionary = read_dictionary(dict_path)
    cfg = config or TaggerConfig()
    if steps is not None:
        cfg = replace(cfg, steps=steps)
    info: dict = {"dictionary": str(dict_path), "words": len(dictionary), "seed": seed}
    t0 = time.perf_counter()
    if corpus is not None and not dictionary.has_freqs:
        em: dict = {}
        dictionary = estimate_frequencies(dictionary, read_corpus(corpus), rounds=em_rounds, stats=em)
        info |= {"corpus": str(corpus), "em": em, "em_seconds": time.perf_counter() - t0}
    stats: dict = {}
    tagger = train_tagger(dictionary, cfg, seed=seed, stats=stats, say=say)
    info |= {"tagger": asdict(cfg), "train": stats}

    def build(work: Path) -> None:
        tagger.save(work)
        write_dictionary(dictionary, work / "dictionary.txt")
        (work / "train.json").write_text(json.dumps(info, indent=2))

    build_directory_atomic(out, build)
    return info
