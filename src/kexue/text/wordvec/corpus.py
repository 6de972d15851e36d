"""The corpus pipeline: raw text → tokens → a frequency-sorted vocabulary → one int32 id array.

English (the Project Gutenberg books of `shared/data/gutenberg`): strip the Gutenberg header and licence,
lowercase, keep runs of letters and digits (hyperwords' cleaning, [LGD15] Sec. 3; "don't" → "don", "t").
Chinese: the text is already segmented into whitespace-separated words (kexue's segmenter, or any other,
writes it); `tokenize_segmented` splits it. Any `Callable[[str], list[str]]` is a tokeniser, so a segmenter
can be passed straight in later.

Words below `min_count` are removed *before* windowing, as word2vec and gensim do, so a window reaches
across them. Subsampling ([MSC13] Sec. 2.3, in the form of [LGD15] Sec. 3.2) drops each occurrence of a
word of corpus frequency f > t with probability 1 − √(t/f); hyperwords' "dirty" variant — the dropped
tokens leave the stream, so windows widen — is the one implemented.

Memory is bounded by one document's tokens (the token strings never exist for the whole corpus): each
document is tokenised, counted and turned into ids against a growing index, and only int32 ids are kept.

Sources: [LGD15] Levy, Goldberg & Dagan, "Improving Distributional Similarity with Lessons Learned from
Word Embeddings", TACL 2015 (and its hyperwords code); [MSC13] Mikolov et al., "Distributed Representations
of Words and Phrases and their Compositionality", NeurIPS 2013.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kexue.errors import DataError

Tokenizer = Callable[[str], list[str]]

# The first line of the licence-free text is after a START marker; the text ends at the first END marker.
_START = re.compile(
    r"^\*{3} ?START OF (?:THIS|THE) PROJECT GUTENBERG.*$"  # the 2000s header
    r"|^\*END\*THE SMALL PRINT!.*$",  # the 1990s "small print" header (e.g. James, A Little Tour)
    re.MULTILINE | re.IGNORECASE,
)
_END = re.compile(
    r"^\*{3} ?END OF (?:THIS|THE) PROJECT GUTENBERG.*$|^End of (?:the )?Project Gutenberg.*$",
    re.MULTILINE | re.IGNORECASE,
)
_WORD = re.compile(r"[^\W_]+")  # letters and digits, any script; punctuation and "_" split words


def strip_gutenberg(text: str) -> str:
    """The book without the Project Gutenberg header and licence footer (unchanged if it has none)."""
    start = _START.search(text)
    if start is not None:
        text = text[start.end() :]
    end = _END.search(text)
    return text[: end.start()] if end is not None else text


def tokenize_english(text: str) -> list[str]:
    """Lowercased runs of letters and digits ([LGD15]'s cleaning)."""
    return _WORD.findall(text.lower())


def tokenize_segmented(text: str) -> list[str]:
    """Already-segmented text (words separated by whitespace, e.g. Chinese after segmentation)."""
    return text.lower().split()


@dataclass(frozen=True)
class Corpus:
    """A tokenised corpus over a fixed vocabulary.

    words:   (V,) the vocabulary, most frequent first (ties by first occurrence)
    counts:  (V,) int64 occurrences of each word in the full corpus (before any subsampling)
    ids:     (N,) int32 the in-vocabulary tokens of all documents, concatenated
    offsets: (n_docs + 1,) int64 document boundaries in `ids`; windows never cross them
    """

    words: tuple[str, ...]
    counts: np.ndarray
    ids: np.ndarray
    offsets: np.ndarray

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    @property
    def num_tokens(self) -> int:
        return len(self.ids)

    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def documents(self) -> Iterable[np.ndarray]:
        """Each document's id array (views into `ids`)."""
        return (self.ids[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:]))


def build_corpus(
    texts: Iterable[str], *, min_count: int = 5, tokenize: Tokenizer = tokenize_english, where: str = "corpus"
) -> Corpus:
    """Tokenise each text (one document each), keep words with count ≥ `min_count`, map tokens to ids.

    One pass: ids index a growing table of every word seen; at the end the table is cut to the
    vocabulary and re-indexed by descending count with one vectorised lookup. `where` names the source in
    error messages.
    """
    if min_count < 1:
        raise DataError(f"min_count must be ≥ 1, got {min_count} ({where}); pass e.g. --min-count 5")
    seen: dict[str, int] = {}
    counts: Counter[str] = Counter()
    docs: list[np.ndarray] = []
    for text in texts:
        tokens = tokenize(text)
        if not tokens:
            continue
        counts.update(tokens)  # C loop
        for w in dict.fromkeys(tokens):  # the document's new words get the next ids (unique words only)
            if w not in seen:
                seen[w] = len(seen)
        docs.append(np.fromiter(map(seen.__getitem__, tokens), dtype=np.int64, count=len(tokens)))
    if not docs:
        raise DataError(f"{where} has no tokens; give a folder of UTF-8 .txt files with text in them")
    table = np.fromiter(seen.keys(), dtype=object, count=len(seen))  # old id → word
    n = np.fromiter((counts[w] for w in table), dtype=np.int64, count=len(table))  # per distinct word
    keep = np.flatnonzero(n >= min_count)
    if len(keep) == 0:
        raise DataError(
            f"{where}: no word occurs ≥ min_count = {min_count} times ({int(n.sum())} tokens); "
            "lower --min-count or give a larger corpus"
        )
    keep = keep[np.argsort(-n[keep], kind="stable")]  # most frequent first, ties by first occurrence
    new_id = np.full(len(table), -1, dtype=np.int64)
    new_id[keep] = np.arange(len(keep))
    mapped = [new_id[d] for d in docs]  # vectorised remap, OOV → −1
    mapped = [d[d >= 0].astype(np.int32) for d in mapped]  # word2vec drops OOV before windowing
    lengths = np.array([len(d) for d in mapped], dtype=np.int64)
    return Corpus(
        words=tuple(table[keep].tolist()),
        counts=n[keep],
        ids=np.concatenate(mapped),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
    )


def corpus_files(path: Path) -> list[Path]:
    """The .txt files of a corpus folder, sorted (or the file itself)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"corpus {path} does not exist; give a folder of .txt files or one .txt file")
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise DataError(f"corpus folder {path} has no .txt files; put UTF-8 text files in it")
    return files


def read_texts(files: Iterable[Path], *, gutenberg: bool = True) -> Iterable[str]:
    """The files' text, one string per file, without Gutenberg boilerplate when `gutenberg`."""
    for f in files:
        try:
            text = Path(f).read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise DataError(f"cannot read corpus file {f}: {e.strerror}; check the path") from e
        yield strip_gutenberg(text) if gutenberg else text


def load_corpus(
    path: Path,
    *,
    min_count: int = 5,
    tokenize: Tokenizer = tokenize_english,
    gutenberg: bool = True,
    max_files: int | None = None,
) -> Corpus:
    """Read a folder of .txt files (or one file) into a `Corpus`; `max_files` takes the first files only."""
    files = corpus_files(path)[:max_files]
    return build_corpus(
        read_texts(files, gutenberg=gutenberg), min_count=min_count, tokenize=tokenize, where=str(path)
    )


def keep_probabilities(counts: np.ndarray, t: float) -> np.ndarray:
    """(V,) probability of keeping an occurrence: min(1, √(t/f)), f = count/N  [LGD15] Sec. 3.2."""
    f = counts / counts.sum()
    return np.minimum(1.0, np.sqrt(t / np.maximum(f, 1e-300)))


def subsample(corpus: Corpus, t: float, *, generator: np.random.Generator) -> Corpus:
    """Drop occurrences of frequent words ("dirty" subsampling: the stream closes up). t ≤ 0: no-op."""
    if t <= 0:
        return corpus
    keep = generator.random(corpus.num_tokens) < keep_probabilities(corpus.counts, t)[corpus.ids]  # (N,)
    before = np.concatenate([[0], np.cumsum(keep)])  # kept tokens before each position
    return Corpus(corpus.words, corpus.counts, corpus.ids[keep], before[corpus.offsets])


def tokens_of(corpus: Corpus, *, chunk: int = 10_000) -> list[list[str]]:
    """The in-vocabulary token stream as lists of words of ≤ `chunk` tokens per document piece (for gensim,
    whose sentences are capped at 10,000 words)."""
    words = np.asarray(corpus.words, dtype=object)
    out = []
    for doc in corpus.documents():
        for s in range(0, len(doc), chunk):
            out.append(words[doc[s : s + chunk]].tolist())
    return out
