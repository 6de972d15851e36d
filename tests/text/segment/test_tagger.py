"""The [4245] tagger: pseudo-sentence labels, the UNK ≠ PAD fix, save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kexue.errors import CheckpointError
from kexue.text.segment import Dictionary, Tagger, TaggerConfig, train_tagger
from kexue.text.segment.tagger import PAD, UNK, Vocabulary, _lexicon, sample_batch
from kexue.text.segment.viterbi import B, E, M, S

D = Dictionary({"中华": 3.0, "文化": 2.0, "的": 5.0, "人民共和国": 1.0})


def test_pseudo_sentences_are_labelled_words():
    lex, _ = _lexicon(D)
    cfg = TaggerConfig(batch=64, maxlen=20, unk_rate=0.0)
    x, y = sample_batch(lex, np.random.default_rng(0), cfg)
    assert x.shape == y.shape == (64, 20)
    assert ((x == PAD) == (y == -100)).all()
    for tags in y:
        n = int((tags != -100).sum())
        assert (tags[n:] == -100).all()
        t = "".join("sbme"[k] for k in tags[:n])
        words = t.replace("s", "s|").replace("e", "e|").split("|")[:-1]
        for w in words:  # every word is S or B M* E, and of a dictionary length
            assert w == "s" or (w[0] == "b" and w[-1] == "e" and set(w[1:-1]) <= {"m"})
            assert len(w) in (1, 2, 5)
    assert {S, B, M, E} >= set(np.unique(y[y != -100]).tolist())


def test_unknown_atoms_are_not_padding():
    vocab = Vocabulary(np.array([ord("中"), ord("华")]))
    ids = vocab.ids(np.array([ord("中"), ord("㐀"), ord("华")]))
    assert ids.tolist() == [2, UNK, 3] and UNK != PAD


def test_save_load_round_trip(tmp_path):
    cfg = TaggerConfig(steps=2, batch=8, emb=8, hidden=8)
    t = train_tagger(D, cfg, seed=0)
    t.save(tmp_path)
    u = Tagger.load(tmp_path)
    x = torch.tensor([[2, 3, UNK, 4]])
    assert torch.equal(t.model(x), u.model(x))
    assert t.segment("中华人民共和国的文化") == u.segment("中华人民共和国的文化")
    assert train_tagger(D, cfg, seed=0).segment("中华的文化") == t.segment("中华的文化")  # seeded


def test_load_rejects_a_bad_directory(tmp_path):
    with pytest.raises(CheckpointError, match="segment train"):
        Tagger.load(tmp_path)
