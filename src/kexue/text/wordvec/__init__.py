"""Word vectors: word2vec as an SVD (post 4233), against SGNS — [LG14], [LGD15].

Modules, in the order data flows:
  corpus        Gutenberg stripping, tokenising, vocabulary with min-count, subsampling
  cooccurrence  #(w, c) with word2vec's dynamic window, chunked and vectorised
  pmi           PPMI / SPPMI with context-distribution smoothing α and shift log k
  svd           randomized truncated SVD, eigenvalue weight p, w + c
  sgns          skip-gram with negative sampling in PyTorch; W·Cᵀ against shifted PMI
  vectors       the (words, vectors) table; w2v_format reads and writes word2vec text files
  evaluate      WordSim-353 / WordSim-240/297 (Spearman), Google / CA8 analogies (3CosAdd, 3CosMul)
  api           train_vectors, evaluate_vectors (what `kexue wordvec train|eval` calls)
"""

from kexue.text.wordvec.api import evaluate_vectors, svd_factors, train_vectors
from kexue.text.wordvec.cooccurrence import cooccurrence
from kexue.text.wordvec.corpus import (
    Corpus,
    build_corpus,
    load_corpus,
    strip_gutenberg,
    subsample,
    tokenize_english,
    tokenize_segmented,
)
from kexue.text.wordvec.evaluate import analogy, evaluate_all, read_analogies, read_word_pairs, similarity
from kexue.text.wordvec.pmi import pmi_entries, sppmi
from kexue.text.wordvec.sgns import SGNSConfig, shifted_pmi_agreement, train_sgns
from kexue.text.wordvec.svd import randomized_svd, svd_vectors
from kexue.text.wordvec.vectors import WordVectors
from kexue.text.wordvec.w2v_format import read_word2vec, write_word2vec

__all__ = [
    "Corpus",
    "SGNSConfig",
    "WordVectors",
    "analogy",
    "build_corpus",
    "cooccurrence",
    "evaluate_all",
    "evaluate_vectors",
    "load_corpus",
    "pmi_entries",
    "randomized_svd",
    "read_analogies",
    "read_word2vec",
    "read_word_pairs",
    "shifted_pmi_agreement",
    "similarity",
    "sppmi",
    "strip_gutenberg",
    "subsample",
    "svd_factors",
    "svd_vectors",
    "tokenize_english",
    "tokenize_segmented",
    "train_sgns",
    "train_vectors",
    "write_word2vec",
]
