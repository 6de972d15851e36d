"""Viterbi decoding of B/M/E/S character tags — [3924] (cws-4) and [4245] (cws-7), batched in torch.

Tags: S = 0 (single-character word), B = 1 (begin), M = 2 (middle), E = 3 (end). [4245] decodes with
uniform transition probabilities on the allowed pairs {be, bm, eb, es, me, mm, sb, ss} and starts in b or
s; we also end in e or s, so every output is a segmentation. With uniform weights the transitions only
forbid, so the decoded path maximises Σ_t log p(tag_t | x) over valid tag sequences.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

S, B, M, E = 0, 1, 2, 3
TAGS = "sbme"
ALLOWED = ("be", "bm", "eb", "es", "me", "mm", "sb", "ss")  # [4245] `zy`


def transitions(dtype=torch.float32) -> Tensor:
    """(4, 4) log transition weights: 0 on the allowed pairs (from → to), −inf elsewhere."""
    t = torch.full((4, 4), -torch.inf, dtype=dtype)
    for pair in ALLOWED:
        t[TAGS.index(pair[0]), TAGS.index(pair[1])] = 0.0
    return t


def viterbi(logp: Tensor, lengths: Tensor) -> Tensor:
    """Best valid tag path per sequence.

    logp: (N, T, 4) log-probabilities of S/B/M/E; lengths: (N,) ≥ 1. Returns (N, T) int64 tags (positions
    past a sequence's length are S)."""
    N, T, _ = logp.shape
    trans = transitions(logp.dtype).to(logp.device)
    start = torch.tensor([0.0, 0.0, -torch.inf, -torch.inf], dtype=logp.dtype, device=logp.device)
    score = logp[:, 0] + start  # (N, 4): starts in S or B
    back = torch.zeros(N, T, 4, dtype=torch.long, device=logp.device)
    keep = torch.arange(4, device=logp.device).expand(N, 4)
    for t in range(1, T):
        cand = score[:, :, None] + trans  # (N, from, to)
        best, arg = cand.max(dim=1)  # (N, 4)
        live = (t < lengths)[:, None]
        score = torch.where(live, best + logp[:, t], score)
        back[:, t] = torch.where(live, arg, keep)  # finished sequences carry their state
    end = torch.tensor([0.0, -torch.inf, -torch.inf, 0.0], dtype=logp.dtype, device=logp.device)
    tag = (score + end).argmax(dim=1)  # ends in S or E
    out = torch.empty(N, T, dtype=torch.long, device=logp.device)
    for t in range(T - 1, -1, -1):
        out[:, t] = tag
        tag = back[:, t].gather(1, tag[:, None]).squeeze(1)
    return torch.where(torch.arange(T, device=logp.device) < lengths[:, None], out, S)


def valid(tags: tuple[int, ...]) -> bool:
    """Whether a tag sequence is a segmentation (starts in S/B, allowed pairs, ends in S/E)."""
    if not tags or tags[0] not in (S, B) or tags[-1] not in (S, E):
        return False
    return all(TAGS[a] + TAGS[b] in ALLOWED for a, b in itertools.pairwise(tags))


def brute_force(logp: Tensor) -> tuple[int, ...]:
    """The best valid path of one (T, 4) sequence by enumerating all 4^T tag sequences (tests only)."""
    T = logp.shape[0]
    best, arg = -float("inf"), None
    for tags in itertools.product(range(4), repeat=T):
        if valid(tags):
            s = float(sum(logp[t, k] for t, k in enumerate(tags)))
            if s > best:
                best, arg = s, tags
    return arg


def tags_to_starts(tags: Tensor) -> Tensor:
    """Word starts (S or B) from tags."""
    return (tags == S) | (tags == B)
