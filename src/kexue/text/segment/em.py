"""Word frequencies from raw, unsegmented text for a word list that has none — hard (Viterbi) EM.

The max-probability model [3908] is a unigram model p(w) over the word list; its maximum-likelihood fit on
unsegmented text is the EM of a hidden segmentation. We use the hard-EM variant ("Viterbi training"):

    E) segment the raw text with the current p (the max-probability path, `MaxProb`)
    M) f(w) ← count of w on those paths + α   (α: add-α smoothing so every listed word stays possible)

starting from the uniform dictionary (f = 1, which favours the fewest words). A handful of rounds
converges; each is one vectorised segmentation of the corpus. Counts are per *atom form* (so "1月" and
"2月", both (NUM, 月), share one count, divided evenly between them).
"""

from __future__ import annotations

import numpy as np

from kexue.text.segment.atoms import atomize, words_codes
from kexue.text.segment.dictionary import Dictionary
from kexue.text.segment.maxprob import MaxProb, _chunks, hash_step


def _form_keys(codes: list[np.ndarray]) -> np.ndarray:
    """(V,) uint64 hash of each word's atom codes (with its length mixed in)."""
    keys = np.zeros(len(codes), dtype=np.uint64)
    lens = np.array([len(c) for c in codes])
    flat = np.concatenate(codes) if codes else np.zeros(0, np.int64)
    off = np.r_[0, np.cumsum(lens)[:-1]]
    for k in range(1, lens.max(initial=0) + 1):
        alive = lens >= k
        keys[alive] = hash_step(keys[alive], flat[off[alive] + k - 1])
    return hash_step(keys, lens)


def path_counts(mp: MaxProb, text: str) -> dict[int, int]:
    """form key → how often the max-probability path of `text` uses a word of that form."""
    counts: dict[int, int] = {}
    for chunk in _chunks(text):
        atoms = atomize(chunk)
        starts = np.flatnonzero(mp.best_path(atoms))
        lens = np.diff(np.r_[starts, len(atoms)])  # a token never crosses a block, so this is its length
        keys = np.zeros(len(starts), dtype=np.uint64)
        for k in range(1, lens.max(initial=0) + 1):
            alive = lens >= k
            keys[alive] = hash_step(keys[alive], atoms.code[starts[alive] + k - 1])
        u, c = np.unique(hash_step(keys, lens), return_counts=True)
        for key, n in zip(u.tolist(), c.tolist()):
            counts[key] = counts.get(key, 0) + n
    return counts


def estimate_frequencies(
    dictionary: Dictionary, corpus: str, *, rounds: int = 4, alpha: float = 0.5, stats: dict | None = None
) -> Dictionary:
    """The dictionary with frequencies fitted to `corpus` (raw text, any whitespace) by hard EM."""
    words = dictionary.words
    keys = _form_keys(words_codes(words))
    u, inv, mult = np.unique(keys, return_inverse=True, return_counts=True)
    current = Dictionary(dict.fromkeys(words, 1.0), True, dictionary.source)  # start uniform
    for r in range(rounds):
        counts = path_counts(MaxProb(current), corpus)  # E
        c = np.array([counts.get(int(k), 0) for k in u.tolist()], dtype=np.float64)
        f = (c[inv] + alpha) / mult[inv]  # M: shared forms split their count
        current = Dictionary(dict(zip(words, f.tolist())), True, dictionary.source)
        if stats is not None:
            stats.setdefault("used_words", []).append(int((c > 0).sum()))
            stats["rounds"] = r + 1
    return current
