"""Maximum-probability segmentation over a word-frequency dictionary: DAG of dictionary words + DP.

[3908] 【中文分词系列】1. 基于AC自动机的快速分词 — a sentence is a random concatenation of words, so the
segmentation maximises

    Σ_i log p(w_i),   p(w) = f(w) / Σ_v f(v),                                          [3908], [4245] eq. 1

over all paths of the DAG whose edges are dictionary words (jieba's method: right-to-left DP). A single atom
that is not a word gets the floor log-probability `log(unknown_freq / F)` (Su uses −10 for unknown spans).

Speed: nothing runs per character in Python. Dictionary words are found with per-length polynomial hashes
of the atom codes (mod 2⁶⁴) and `searchsorted`, advancing only positions whose prefix is a dictionary
prefix; the DP runs over all blocks of a chunk at once, one numpy step per *distance to the block end*
(route[i] depends only on route[i + k], k ≥ 1); the best path is read forward the same way. Hash
collisions between two different atom sequences of the same length have probability ≈ V·n / 2⁶⁴.
Ties prefer the longer first word, which makes the output idempotent: a word of the best path is also
the best path of its own span (optimal substructure), so re-segmenting segmented text changes nothing.
"""

from __future__ import annotations

import math

import numpy as np

from kexue.text.segment.atoms import Atoms, atomize, render, words_codes
from kexue.text.segment.dictionary import Dictionary

_P = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the rolling hash (golden-ratio constant)
CHUNK_CHARS = 1 << 17  # characters per vectorised chunk (memory: chunk × max_len float64)


def hash_step(h: np.ndarray, code: np.ndarray) -> np.ndarray:
    """h·P + code + 1 (mod 2⁶⁴): the hash of a sequence extended by one atom code."""
    with np.errstate(over="ignore"):
        return h * _P + (code.astype(np.uint64) + np.uint64(1))


class MaxProb:
    """The DAG/DP segmenter of one dictionary. `max_len`: longest word considered, in atoms."""

    def __init__(self, dictionary: Dictionary, *, max_len: int = 16, unknown_freq: float | None = None):
        words = dictionary.words
        freq = np.array([dictionary.freq[w] for w in words], dtype=np.float64)
        codes = words_codes(words)
        lens = np.array([len(c) for c in codes])
        keep = lens <= max_len
        total = freq.sum()
        self.max_len = int(min(max_len, lens.max(initial=1)))
        # unknown atoms: half the rarest word's frequency unless given (below every dictionary word)
        floor = 0.5 * freq.min() if unknown_freq is None else unknown_freq
        self.unknown_logp = math.log(floor / total)
        self.word_hash: list[np.ndarray] = []  # [k-1]: sorted hashes of words of k atoms
        self.word_logp: list[np.ndarray] = []
        self.prefix_hash: list[np.ndarray] = []  # [k-1]: sorted hashes of k-atom prefixes of longer words
        logp = np.log(freq / total)
        flat = np.concatenate([c for c, k in zip(codes, keep) if k]) if keep.any() else np.zeros(0, int)
        owner_len = lens[keep]
        offsets = np.r_[0, np.cumsum(owner_len)[:-1]]
        h = np.zeros(len(owner_len), dtype=np.uint64)
        for k in range(1, self.max_len + 1):
            alive = owner_len >= k
            h[alive] = hash_step(h[alive], flat[offsets[alive] + k - 1])
            ends = owner_len == k
            hk, lk = h[ends], logp[keep][ends]
            # a word listed twice in atom form ("1月", "2月" → (NUM, 月)) keeps the sum of frequencies
            u, inv = np.unique(hk, return_inverse=True)
            summed = np.zeros(len(u))
            np.add.at(summed, inv, np.exp(lk))
            self.word_hash.append(u)
            self.word_logp.append(np.log(summed))
            self.prefix_hash.append(np.unique(h[owner_len > k]))

    # ------------------------------------------------------------------------------------------ DAG
    def edges(self, atoms: Atoms) -> np.ndarray:
        """(m, K) log-probabilities of the edges i → i+k (−inf: no word); k = 1 is always an edge."""
        m, K = len(atoms), self.max_len
        code, block = atoms.code, atoms.block
        logp = np.full((m, K), -np.inf)
        h = np.zeros(m, dtype=np.uint64)
        active = np.arange(m)
        for k in range(1, K + 1):
            idx = active[active + k - 1 < m]
            idx = idx[block[idx + k - 1] == block[idx]]  # words never cross whitespace
            if not len(idx):
                break
            h[idx] = hash_step(h[idx], code[idx + k - 1])
            hit, val = _lookup(self.word_hash[k - 1], h[idx], self.word_logp[k - 1])
            logp[idx[hit], k - 1] = val
            active = idx[_lookup(self.prefix_hash[k - 1], h[idx])[0]]
        first = logp[:, 0]
        first[~np.isfinite(first)] = self.unknown_logp
        return logp

    # ------------------------------------------------------------------------------------------- DP
    def best_path(self, atoms: Atoms, logp: np.ndarray | None = None) -> np.ndarray:
        """(m,) bool token starts of the max-probability path of every block."""
        m, K = len(atoms), self.max_len
        if m == 0:
            return np.zeros(0, dtype=bool)
        logp = self.edges(atoms) if logp is None else logp
        block = atoms.block
        first = np.r_[True, block[1:] != block[:-1]]
        block_end = np.r_[np.flatnonzero(first)[1:], m]  # exclusive end of each block
        d = block_end[np.cumsum(first) - 1] - np.arange(m)  # distance to the block end, 1..
        route = np.zeros(m + 1)  # route[i] = best Σ log p from i to its block end   [3908]
        step = np.ones(m, dtype=np.int64)
        order = np.argsort(d, kind="stable")
        bounds = np.searchsorted(d[order], np.arange(1, d.max() + 2))
        ks = np.arange(1, K + 1)
        for dist in range(1, d.max() + 1):
            i = order[bounds[dist - 1] : bounds[dist]]  # all atoms `dist` before their block end
            kk = min(dist, K)
            nxt = route[i[:, None] + ks[:kk]]  # (b, kk)
            if dist <= K:
                nxt[:, dist - 1] = 0.0  # the edge that reaches the block end
            cand = logp[i, :kk] + nxt
            best = kk - 1 - np.argmax(cand[:, ::-1], axis=1)  # ties → the longer word
            route[i] = cand[np.arange(len(i)), best]
            step[i] = best + 1
        return _follow(step, first, block)

    def segment(self, text: str) -> str:
        """Segment text (lines separated by "\\n"); returns the same lines, words separated by spaces."""
        return "\n".join(self.render_chunk(c) for c in _chunks(text))

    def render_chunk(self, text: str) -> str:
        atoms = atomize(text)
        return render(atoms, self.best_path(atoms))

    def lcut(self, sentence: str) -> list[str]:
        return [w for w in self.segment(sentence).replace("\n", " ").split(" ") if w]


def _lookup(table: np.ndarray, keys: np.ndarray, values: np.ndarray | None = None):
    """Membership of `keys` in the sorted `table`, and the values of the hits."""
    if not len(table):
        return np.zeros(len(keys), dtype=bool), None
    pos = np.minimum(np.searchsorted(table, keys), len(table) - 1)
    hit = table[pos] == keys
    return hit, (values[pos[hit]] if values is not None else None)


def _follow(step: np.ndarray, first: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Token starts: walk i → i + step[i] from every block start, all blocks at once."""
    m = len(step)
    start = np.zeros(m, dtype=bool)
    frontier = np.flatnonzero(first)
    while len(frontier):
        start[frontier] = True
        nxt = frontier + step[frontier]
        ok = nxt < m
        frontier, nxt = frontier[ok], nxt[ok]
        frontier = nxt[block[nxt] == block[frontier]]
    return start


def _chunks(text: str, size: int = CHUNK_CHARS):
    """Pieces of at most ~`size` characters cut at newlines (a longer line is its own piece)."""
    if len(text) <= size:
        yield text
        return
    lines = text.split("\n")
    buf: list[str] = []
    n = 0
    for line in lines:
        if buf and n + len(line) > size:
            yield "\n".join(buf)
            buf, n = [], 0
        buf.append(line)
        n += len(line) + 1
    yield "\n".join(buf)
