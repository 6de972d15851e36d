"""The two entry points of `kexue wordvec`: train a word2vec-format file, evaluate one.

    train_vectors(corpus, method="svd"|"sgns", dim, window, min_count, seed, out) → stats
    evaluate_vectors(path, eval_dir) → every evaluation set found, with coverage

The SVD defaults are the recipe of [LGD15] that did best on the Gutenberg corpus in the `word2vec-svd`
reproduction: subsampling t = 1e-4, context-distribution smoothing α = 0.75, no shift (k = 1, PPMI — [LGD15]
Sec. 6: shifting does not help SVD), eigenvalue weight p = 0.5, and w + c.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kexue.errors import DataError
from kexue.text.wordvec.corpus import Corpus, Tokenizer, load_corpus, subsample, tokenize_english
from kexue.text.wordvec.vectors import WordVectors


def svd_factors(
    corpus: Corpus,
    *,
    dim: int,
    window: int = 5,
    sample: float = 1e-4,
    alpha: float = 0.75,
    shift: float = 1.0,
    generator: np.random.Generator,
    stats: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subsample → #(w, c) → SPPMI_k → rank-`dim` SVD: (U (V, d), s (d,), Vt (d, V))  [LGD15] Sec. 3."""
    from kexue.text.wordvec.cooccurrence import cooccurrence
    from kexue.text.wordvec.pmi import sppmi
    from kexue.text.wordvec.svd import randomized_svd

    if not 1 <= dim < corpus.vocab_size:
        raise DataError(
            f"dim = {dim} needs a vocabulary larger than it, the corpus has {corpus.vocab_size} words; "
            "lower --dim or --min-count, or give more text"
        )
    t0 = time.perf_counter()
    counted: dict = {}
    counts = cooccurrence(subsample(corpus, sample, generator=generator), window, stats=counted)
    m = sppmi(counts, alpha=alpha, k=shift)
    u, s, vt = randomized_svd(m, dim, generator=generator)
    if stats is not None:
        stats.update(
            seconds=time.perf_counter() - t0,
            cooccurrence_seconds=counted["seconds"],
            cooccurrence_tokens_per_s=counted["tokens_per_s"],
            nnz=int(m.nnz),
        )
    return u, s, vt


def train_vectors(
    corpus: Path,
    *,
    method: str = "svd",
    dim: int = 300,
    window: int = 5,
    min_count: int = 10,
    seed: int = 0,
    out: Path,
    tokenize: Tokenizer = tokenize_english,
    gutenberg: bool = True,
    sample: float = 1e-4,
    alpha: float = 0.75,
    shift: float = 1.0,
    p: float = 0.5,
    add_contexts: bool = True,
    epochs: int = 5,
    negatives: int = 5,
    max_files: int | None = None,
) -> dict:
    """Train word vectors on a folder of .txt files and write them to `out` (word2vec text, atomically).

    method "svd": SPPMI_shift-SVD with weight `p` and w + c (`add_contexts`); "sgns": kexue's SGNS with
    `epochs` and `negatives` (the vectors written are W, as word2vec and gensim write). `tokenize` is the
    hook for other languages (e.g. `tokenize_segmented` for segmented Chinese); `gutenberg` strips the
    Project Gutenberg header and licence. Returns the run's statistics (seconds = training time, after
    reading the corpus; tokens_per_s of the training).
    """
    from kexue.text.wordvec.w2v_format import write_word2vec

    if method not in ("svd", "sgns"):
        raise DataError(f"method must be 'svd' or 'sgns', got {method!r}")
    t0 = time.perf_counter()
    data = load_corpus(
        Path(corpus), min_count=min_count, tokenize=tokenize, gutenberg=gutenberg, max_files=max_files
    )
    read_seconds = time.perf_counter() - t0
    stats: dict = {}
    if method == "svd":
        from kexue.text.wordvec.svd import svd_vectors

        u, s, vt = svd_factors(
            data,
            dim=dim,
            window=window,
            sample=sample,
            alpha=alpha,
            shift=shift,
            generator=np.random.default_rng(seed),
            stats=stats,
        )
        t1 = time.perf_counter()
        vectors = svd_vectors(u, s, vt, p=p, add_contexts=add_contexts)
        stats["seconds"] += time.perf_counter() - t1
        stats["tokens_per_s"] = data.num_tokens / stats["seconds"]
    else:
        import torch

        from kexue.text.wordvec.sgns import SGNSConfig, train_sgns

        cfg = SGNSConfig(dim=dim, window=window, negatives=negatives, epochs=epochs, sample=sample)
        w, _ = train_sgns(data, cfg, generator=torch.Generator().manual_seed(seed), stats=stats)
        vectors = w.numpy()
    path = write_word2vec(WordVectors(data.words, vectors), Path(out))
    return {
        "method": method,
        "out": str(path),
        "words": data.vocab_size,
        "tokens": data.num_tokens,
        "documents": len(data.offsets) - 1,
        "dim": dim,
        "window": window,
        "min_count": min_count,
        "read_seconds": read_seconds,
        **stats,
    }


def evaluate_vectors(path: Path, eval_dir: Path) -> dict:
    """Evaluate a word2vec text file on every set under `eval_dir` (WS353, Google, CA8, WordSim-240/297).

    Returns {"vectors", "words", "dim", "results": {set: {...metrics, "coverage"}}}; words missing from the
    vocabulary lower the coverage, they are not an error.
    """
    from kexue.text.wordvec.evaluate import evaluate_all
    from kexue.text.wordvec.w2v_format import read_word2vec

    vectors = read_word2vec(Path(path))
    return {
        "vectors": str(path),
        "words": len(vectors.words),
        "dim": vectors.dim,
        "results": evaluate_all(vectors, Path(eval_dir)),
    }
