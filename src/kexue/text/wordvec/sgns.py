"""Skip-gram with negative sampling (SGNS), batched in PyTorch, with word2vec's update rule.

For each (word w, context c) pair from a dynamic window and k negatives c_N ~ P_n(c) ∝ #(c)^0.75,
SGNS maximises

    ℓ(w, c) = log σ(w·c) + Σ_{i=1..k} log σ(−w·c_N,i)                             [MSC13] eq. 4

by SGD on the word table W and the context table C (word2vec's `syn0` / `syn1neg`), with the learning rate
decayed linearly to lr·1e-4 over training. Summed over the corpus the objective is maximised at

    w·c = PMI_α(w, c) − log k,  α = 0.75                                          [LG14] Sec. 3.1, eq. 8

(when the dimension allows it): SGNS implicitly factorises the shifted PMI matrix that `pmi.sppmi` builds
explicitly. `shifted_pmi_agreement` measures how close a trained W·Cᵀ comes.

Pairs are made as word2vec makes them (per-token window b ~ U{1..L}, after "dirty" subsampling redrawn
every epoch), one chunk of tokens at a time with tensor ops, shuffled within the chunk, then cut into
batches. Within a batch a row that occurs m times gets the mean of its m updates, not their sum: a frequent
word (or negative) can occur hundreds of times in a batch, and summing its updates at lr = 0.025 overshoots
and diverges, while word2vec applies them one after another. For the rare words, which are most rows, the
two agree. Randomness comes from a torch.Generator.

Sources: [MSC13] Mikolov et al., NeurIPS 2013; [LG14] Levy & Goldberg, NeurIPS 2014; word2vec.c
(initialisation W ~ U(−0.5/D, 0.5/D), C = 0, the linear learning-rate decay).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from kexue.errors import DataError
from kexue.text.wordvec.cooccurrence import check_window
from kexue.text.wordvec.corpus import Corpus, keep_probabilities


@dataclass(frozen=True)
class SGNSConfig:
    dim: int = 300  # D
    window: int = 5  # L, the maximum of the dynamic window
    negatives: int = 5  # k  [MSC13]; [LGD15] also use 15
    ns_exponent: float = 0.75  # P_n(c) ∝ #(c)^0.75  [MSC13] Sec. 2.2
    epochs: int = 5  # passes over the corpus (gensim's default)
    lr: float = 0.1  # start rate, decayed linearly to lr·1e-4 (word2vec's 0.025 is for unaveraged updates;
    # with duplicates averaged, 0.1 did best of {0.025, 0.1, 0.25} on one Gutenberg epoch)
    batch_size: int = 1024  # pairs per update
    sample: float = 1e-4  # subsampling threshold t (0: off)  [MSC13] Sec. 2.3
    chunk_tokens: int = 1 << 17  # centre tokens turned into pairs at once (bounds memory)

    def __post_init__(self) -> None:
        if self.dim < 1 or self.negatives < 1 or self.epochs < 1 or self.batch_size < 1:
            raise DataError(
                f"SGNS: dim, negatives, epochs and batch_size must be ≥ 1, got dim={self.dim}, "
                f"negatives={self.negatives}, epochs={self.epochs}, batch_size={self.batch_size}"
            )


def _pairs(ids: Tensor, end: Tensor, window: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(word, context) pairs of a chunk: centre i reaches i ± d for d ≤ b_i, b_i ~ U{1..L}  [MSC13] code.

    ids: (n + L,) the chunk's tokens and L look-ahead tokens; end: (n,) each centre's document end,
    relative to the chunk. Returns two (P,) int64 tensors.
    """
    n = len(end)
    i = torch.arange(n)
    b = torch.randint(1, window + 1, (len(ids),), generator=generator)  # (n + L,) per-token windows
    words, contexts = [], []
    for d in range(1, window + 1):
        ok = i + d < end  # the right neighbour exists in the same document
        left = i[ok]
        right = left + d
        see_r, see_l = b[left] >= d, b[right] >= d
        words += [ids[left[see_r]], ids[right[see_l]]]
        contexts += [ids[right[see_r]], ids[left[see_l]]]
    return torch.cat(words), torch.cat(contexts)


def _add_rows(table: Tensor, index: Tensor, update: Tensor) -> None:
    """table[index] += update, duplicates of a row averaged rather than summed (see the module notes)."""
    rows, inverse, count = torch.unique(index, return_inverse=True, return_counts=True)
    summed = torch.zeros(len(rows), table.shape[1]).index_add_(0, inverse, update)  # (R, D)
    table.index_add_(0, rows, summed / count[:, None])


def _step(W: Tensor, C: Tensor, w: Tensor, c: Tensor, neg: Tensor, lr: float) -> float:
    """One SGD step on ℓ for a batch; w, c: (B,), neg: (B, k). Returns the mean −ℓ."""
    vw, vc, vn = W[w], C[c], C[neg]  # (B, D), (B, D), (B, k, D)
    s_pos = torch.sigmoid((vw * vc).sum(-1))  # (B,) σ(w·c)
    s_neg = torch.sigmoid(torch.bmm(vn, vw[:, :, None]).squeeze(-1))  # (B, k) σ(w·c_N)
    g_pos, g_neg = 1 - s_pos, -s_neg  # ∂ℓ/∂(w·c), ∂ℓ/∂(w·c_N)  [MSC13] eq. 4
    dw = g_pos[:, None] * vc + torch.bmm(g_neg[:, None, :], vn).squeeze(1)  # (B, D) ∂ℓ/∂w
    dc = torch.cat([g_pos[:, None] * vw, (g_neg[..., None] * vw[:, None, :]).reshape(-1, W.shape[1])])
    _add_rows(C, torch.cat([c, neg.reshape(-1)]), lr * dc)  # contexts and negatives, (B(1 + k), D)
    _add_rows(W, w, lr * dw)
    loss = -(torch.log(s_pos + 1e-7).sum() + torch.log(1 - s_neg + 1e-7).sum()) / len(w)
    return float(loss)


def train_sgns(
    corpus: Corpus, cfg: SGNSConfig, *, generator: torch.Generator, stats: dict | None = None
) -> tuple[Tensor, Tensor]:
    """Train SGNS on `corpus`; returns W (V, D) and C (V, D), float32 on the CPU.

    `stats`, if given, receives pairs, tokens, seconds, tokens_per_s (corpus tokens × epochs / s) and the
    mean loss of the last epoch.
    """
    check_window(corpus, cfg.window)
    t0 = time.perf_counter()
    V, D, L, k = corpus.vocab_size, cfg.dim, cfg.window, cfg.negatives
    W = (torch.rand(V, D, generator=generator) - 0.5) / D  # word2vec.c initialisation
    C = torch.zeros(V, D)
    noise_cdf = torch.from_numpy(np.cumsum(corpus.counts.astype(np.float64) ** cfg.ns_exponent))
    noise_cdf = (noise_cdf / noise_cdf[-1]).float()  # (V,) P_n(c) ∝ #(c)^0.75
    keep_p = (
        torch.from_numpy(keep_probabilities(corpus.counts, cfg.sample)).float() if cfg.sample > 0 else None
    )
    ids_all = torch.from_numpy(corpus.ids.astype(np.int64))
    offsets = torch.from_numpy(corpus.offsets)
    total_steps = cfg.epochs * corpus.num_tokens  # tokens, for the linear decay of the learning rate
    done, pairs_seen, losses = 0, 0, []
    for _ in range(cfg.epochs):
        ids, offs = ids_all, offsets
        if keep_p is not None:  # "dirty" subsampling, redrawn each epoch  [MSC13] Sec. 2.3
            keep = torch.rand(len(ids_all), generator=generator) < keep_p[ids_all]
            ids = ids_all[keep]
            offs = torch.cat([torch.zeros(1, dtype=torch.long), keep.long().cumsum(0)])[offsets]
        losses = []
        scale = corpus.num_tokens / max(len(ids), 1)  # progress in corpus tokens per kept token
        for s in range(0, len(ids), cfg.chunk_tokens):
            e = min(s + cfg.chunk_tokens, len(ids))
            end = offs[torch.searchsorted(offs, torch.arange(s, e), right=True)] - s  # (n,) doc ends
            w_all, c_all = _pairs(ids[s : e + L], end, L, generator)
            perm = torch.randperm(len(w_all), generator=generator)
            w_all, c_all = w_all[perm], c_all[perm]
            lr = max(cfg.lr * (1 - done / total_steps), cfg.lr * 1e-4)  # linear decay  [word2vec.c]
            for j in range(0, len(w_all), cfg.batch_size):
                w, c = w_all[j : j + cfg.batch_size], c_all[j : j + cfg.batch_size]
                u = torch.rand(len(w) * k, generator=generator)
                neg = torch.searchsorted(noise_cdf, u).clamp_max(V - 1).view(len(w), k)  # (B, k)
                losses.append(_step(W, C, w, c, neg, lr))
            pairs_seen += len(w_all)
            done += (e - s) * scale
    if stats is not None:
        seconds = time.perf_counter() - t0
        stats.update(
            pairs=pairs_seen,
            tokens=corpus.num_tokens * cfg.epochs,
            seconds=seconds,
            tokens_per_s=corpus.num_tokens * cfg.epochs / max(seconds, 1e-9),
            loss=float(np.mean(losses)) if losses else float("nan"),
        )
    return W, C


def shifted_pmi_agreement(
    W: Tensor, C: Tensor, counts: sp.csr_matrix, *, k: int, alpha: float = 0.75, min_pairs: float = 20.0
) -> dict:
    """How close W·Cᵀ is to PMI_α − log k on pairs seen ≥ `min_pairs` times  [LG14] eq. 8.

    Returns the Pearson r, the mean difference (W·Cᵀ − (PMI − log k)) and its RMS over those pairs.
    """
    from kexue.text.wordvec.pmi import pmi_entries

    counts = sp.csr_matrix(counts, dtype=np.float64)
    counts.sum_duplicates()  # canonical, so PMI (same pattern) and counts list entries in one order
    pmi = pmi_entries(counts, alpha).tocoo()
    sel = counts.tocoo().data >= min_pairs
    r, c = pmi.row[sel], pmi.col[sel]
    target = pmi.data[sel] - np.log(k)  # (n,) shifted PMI
    dots = (W[torch.from_numpy(r)] * C[torch.from_numpy(c)]).sum(-1).double().numpy()  # (n,) w·c
    diff = dots - target
    return {
        "pairs": int(sel.sum()),
        "pearson": float(np.corrcoef(dots, target)[0, 1]) if sel.sum() > 1 else float("nan"),
        "mean_diff": float(diff.mean()) if len(diff) else float("nan"),
        "rms_diff": float(np.sqrt((diff**2).mean())) if len(diff) else float("nan"),
    }
