"""Viterbi over S/B/M/E equals brute force over all valid tag sequences."""

from __future__ import annotations

import torch

from kexue.text.segment.viterbi import brute_force, valid, viterbi


def test_viterbi_equals_brute_force(gen):
    for T in range(1, 7):
        logp = torch.log_softmax(torch.randn(8, T, 4, generator=gen, dtype=torch.float64), -1)
        got = viterbi(logp, torch.full((8,), T))
        for n in range(8):
            assert tuple(got[n].tolist()) == brute_force(logp[n])


def test_lengths_and_validity(gen):
    logp = torch.log_softmax(torch.randn(5, 6, 4, generator=gen, dtype=torch.float64), -1)
    lengths = torch.tensor([1, 2, 3, 5, 6])
    got = viterbi(logp, lengths)
    for n, L in enumerate(lengths.tolist()):
        assert valid(tuple(got[n, :L].tolist()))
        assert tuple(got[n, :L].tolist()) == brute_force(logp[n, :L])
