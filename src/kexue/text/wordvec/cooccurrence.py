"""Word–context co-occurrence counts #(w, c) with word2vec's dynamic window, vectorised and chunked.

word2vec draws, for each centre token, a window b ~ U{1..L} and pairs it with the tokens at distance
d ≤ b on both sides ([MSC13]'s code; [LGD15] Sec. 3.1 "dynamic context window"). In expectation a pair at
distance d is counted with weight

    P(b ≥ d) = (L − d + 1)/L,                                                  [LGD15] Sec. 3.1

which is what hyperwords counts. Two modes:
  "weighted" (default) — each pair at distance d adds (L − d + 1)/L: deterministic, the expectation of
                         word2vec's sampling; the matrix is symmetric (#(w, c) = #(c, w)).
  "sampled"            — b is drawn per centre token from the generator, as word2vec does; each pair
                         at distance d ≤ b adds 1 (the matrix is then not symmetric).

No Python loop runs over tokens: for each chunk of `chunk_tokens` centre positions and each distance
d = 1..L, the pairs (ids[i], ids[i + d]) are one slice, and scipy.sparse sums duplicates. Memory is the
accumulated (V, V) sparse matrix plus O(chunk_tokens · L) for a chunk. Windows stop at document ends.

Sources: [LGD15] Levy, Goldberg & Dagan, TACL 2015, Sec. 3.1; [MSC13] Mikolov et al., NeurIPS 2013.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from kexue.errors import DataError
from kexue.text.wordvec.corpus import Corpus


def window_weights(window: int) -> np.ndarray:
    """(L,) weight of a pair at distance d = 1..L: (L − d + 1)/L  [LGD15] Sec. 3.1."""
    d = np.arange(1, window + 1)
    return (window - d + 1) / window


def _doc_end(offsets: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """For each token position, the end (exclusive) of its document."""
    return offsets[np.searchsorted(offsets, positions, side="right")]


def check_window(corpus: Corpus, window: int) -> None:
    """Raise a DataError for a window < 1 or a corpus with no document longer than the window."""
    if window < 1:
        raise DataError(f"window must be ≥ 1, got {window}; pass e.g. --window 5")
    longest = int(np.diff(corpus.offsets).max(initial=0))
    if longest <= window:
        raise DataError(
            f"the corpus is smaller than the window: its longest document has {longest} in-vocabulary "
            f"tokens and window = {window} needs more than {window}; give more text, a smaller --window or "
            "a lower --min-count"
        )


def cooccurrence(
    corpus: Corpus,
    window: int = 5,
    *,
    dynamic: str = "weighted",
    generator: np.random.Generator | None = None,
    chunk_tokens: int = 1 << 21,
    stats: dict | None = None,
) -> sp.csr_matrix:
    """The (V, V) float64 matrix #(w, c): row = centre word w, column = context word c.

    dynamic: "weighted" (pairs at distance d weigh (L − d + 1)/L) or "sampled" (word2vec's per-token
    b ~ U{1..L}, drawn from `generator`). `stats`, if given, receives tokens, seconds and tokens_per_s.
    """
    check_window(corpus, window)
    if dynamic not in ("weighted", "sampled"):
        raise ValueError(f"dynamic must be 'weighted' or 'sampled', got {dynamic!r}")
    if dynamic == "sampled" and generator is None:
        raise ValueError("dynamic='sampled' draws windows: pass generator=np.random.default_rng(seed)")
    t0 = time.perf_counter()
    ids, offsets, V = corpus.ids, corpus.offsets, corpus.vocab_size
    N, weights = len(ids), window_weights(window)
    # word2vec's b ~ U{1..L} per token, drawn once for the whole stream (1 byte a token)
    b = generator.integers(1, window + 1, size=N, dtype=np.int8) if dynamic == "sampled" else None
    total = sp.csr_matrix((V, V), dtype=np.float64)
    for s in range(0, N, chunk_tokens):
        i = np.arange(s, min(s + chunk_tokens, N))  # (n,) centre positions of this chunk
        end = _doc_end(offsets, i)  # (n,) windows stop at the document's end
        rows, cols, vals = [], [], []
        for d in range(1, window + 1):
            ok = i + d < end  # the right neighbour at distance d exists in the same document
            left, right = i[ok], i[ok] + d
            if b is None:  # forward pairs only; the transpose adds the other direction at the end
                rows.append(ids[left])
                cols.append(ids[right])
                vals.append(np.full(len(left), weights[d - 1]))  # (L − d + 1)/L  [LGD15] Sec. 3.1
                continue
            see_r, see_l = b[left] >= d, b[right] >= d  # centre `left` reaches right; `right` reaches left
            rows += [ids[left[see_r]], ids[right[see_l]]]
            cols += [ids[right[see_r]], ids[left[see_l]]]
            vals.append(np.ones(int(see_r.sum()) + int(see_l.sum())))
        r, c = np.concatenate(rows), np.concatenate(cols)
        total = total + sp.csr_matrix((np.concatenate(vals), (r, c)), shape=(V, V))  # sums duplicates
    if dynamic == "weighted":
        total = total + total.T.tocsr()  # #(w, c) = #(c, w): both directions of each pair
    total.sum_duplicates()
    if stats is not None:
        seconds = time.perf_counter() - t0
        stats.update(tokens=N, seconds=seconds, tokens_per_s=N / max(seconds, 1e-9))
    return total
