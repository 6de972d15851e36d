"""[5861]'s LSTM seq2seq: the copy prior by hand, exact BiLSTM on padded rows, cached step = recompute."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from kexue.errors import CheckpointError, KexueError
from kexue.nn.decoding import beam_search, greedy
from kexue.text.titles.api import generate, load_titles, save_titles
from kexue.text.titles.data import END, PAD, START, CharVocab, pad_ids
from kexue.text.titles.lstm import LSTMSeq2Seq, LSTMSeq2SeqConfig, copy_prior_logits, source_bag

V = 12


def tiny(copy_prior: bool = True, seed: int = 0, layers: int = 2) -> LSTMSeq2Seq:
    cfg = LSTMSeq2SeqConfig(
        V,
        embed_dim=6,
        hidden=8,
        encoder_layers=layers,
        decoder_layers=layers,
        ffn_dim=10,
        copy_prior=copy_prior,
    )
    m = LSTMSeq2Seq(cfg, generator=torch.Generator().manual_seed(seed)).double().eval()
    if copy_prior:  # move the prior off its zero initialisation so that it matters
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            m.log_scale.copy_(torch.randn(V, generator=g, dtype=torch.float64))
            m.shift.copy_(torch.randn(V, generator=g, dtype=torch.float64))
    return m


SRC = torch.tensor([[4, 5, 6, 4, 9, 7], [8, 5, PAD, PAD, PAD, PAD], [11, 10, 4, PAD, PAD, PAD]])
TGT_IN = torch.tensor([[START, 5, 6, 7], [START, 8, 8, 5], [START, 11, 4, 9]])


def test_source_bag_is_the_set_of_input_characters():
    chi = source_bag(SRC, V)
    expect = torch.zeros(3, V)
    for b, row in enumerate(SRC.tolist()):
        for i in row:
            if i != PAD:
                expect[b, i] = 1.0  # χ_i = 1 iff character i occurs in the article [5861] eq. 3
    assert torch.equal(chi, expect) and chi[:, PAD].sum() == 0 and chi[0, 4] == 1.0  # repeats count once


def test_output_is_the_posts_mixture(gen):
    with_prior, plain = tiny(True), tiny(False)
    assert plain.load_state_dict(with_prior.state_dict(), strict=False).unexpected_keys == [
        "log_scale",
        "shift",
    ]
    y = plain(SRC, TGT_IN)  # the logits y of the same network without the prior
    y_hat = with_prior.log_scale.exp() * source_bag(SRC, V).double()[:, None] + with_prior.shift  # eq. 3
    mixed = with_prior(SRC, TGT_IN)
    assert torch.allclose(mixed, (y + y_hat) / 2, atol=1e-13, rtol=0)  # eq. 4
    assert torch.allclose(
        copy_prior_logits(y, source_bag(SRC, V).double(), with_prior.log_scale, with_prior.shift), mixed
    )
    # averaging logits = a normalised geometric mean of the network's and the prior's distributions
    geo = (F.softmax(y, -1) * F.softmax(y_hat.expand_as(y), -1)).sqrt()
    assert torch.allclose(F.softmax(mixed, -1), geo / geo.sum(-1, keepdim=True), atol=1e-13, rtol=0)


@pytest.mark.parametrize("layers", [1, 2])
def test_bilstm_on_padded_rows_equals_packed_lstm(layers):
    m = tiny(layers=layers)
    ref = nn.LSTM(6, 4, layers, batch_first=True, bidirectional=True).double()
    with torch.no_grad():  # copy our per-direction LSTMs into torch's bidirectional one
        for i, (fwd, bwd) in enumerate(m.encoder):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l{i}").copy_(getattr(fwd, f"{name}_l0"))
                getattr(ref, f"{name}_l{i}_reverse").copy_(getattr(bwd, f"{name}_l0"))
    mask = SRC != PAD
    x = m.embed(SRC)
    packed = pack_padded_sequence(x, mask.sum(1), batch_first=True, enforce_sorted=False)
    expect = pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=SRC.shape[1])[0]
    got = m._bilstm(x, mask)
    assert torch.allclose(got[mask], expect[mask], atol=1e-13, rtol=0)


def test_padding_does_not_change_a_row():
    m = tiny()
    alone = m(SRC[1:2, :2], TGT_IN[1:2])
    assert torch.allclose(m(SRC, TGT_IN)[1:2], alone, atol=1e-13, rtol=0)


@pytest.mark.parametrize("copy_prior", [True, False])
def test_cached_step_equals_full_recompute(copy_prior):
    m = tiny(copy_prior)
    full = m(SRC, TGT_IN)  # (B, T, V) teacher-forced
    prompt, state = m.start(SRC)
    logits, state = m.step(prompt, state)
    steps = [logits]
    for t in range(1, TGT_IN.shape[1]):
        logits, state = m.step(TGT_IN[:, t : t + 1], state)
        steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-12, rtol=0)
    two, _ = m.step(TGT_IN[:, 1:3], m.step(prompt, m.encode(SRC))[1])  # several tokens at once
    assert torch.allclose(two, full[:, 2], atol=1e-12, rtol=0)


def test_beam_of_one_is_greedy():
    m = tiny()
    prompt, state = m.start(SRC)
    g = greedy(m.step, prompt, state=state, max_new=6, end_ids=END, pad_id=PAD)
    b, _ = beam_search(m.step, prompt, state=m.encode(SRC), beam_size=1, max_new=6, end_ids=END, pad_id=PAD)
    assert torch.equal(g, b)


def test_loss_is_masked_token_cross_entropy():
    m = tiny()
    tgt = torch.tensor([[START, 5, 6, END, PAD], [START, 8, END, PAD, PAD], [START, 11, 4, 9, END]])
    logits = m(SRC, tgt[:, :-1]).detach()
    terms = [
        -logits[b, t].log_softmax(-1)[tgt[b, t + 1]] for b in range(3) for t in range(4) if tgt[b, t + 1]
    ]
    assert m.loss((SRC, tgt))["loss"].detach().item() == pytest.approx(
        float(sum(terms) / len(terms)), rel=1e-12
    )
    m.loss((SRC, tgt))["loss"].backward()
    assert m.log_scale.grad.abs().sum() > 0 and m.shift.grad.abs().sum() > 0  # the prior is trained


def test_bad_inputs():
    m = tiny()
    with pytest.raises(KexueError, match="right-padded source ids"):
        m.encode(torch.tensor([[PAD, 4]]))
    with pytest.raises(KexueError, match="state returned by encode"):
        m.step(TGT_IN, None)
    with pytest.raises(KexueError, match="even hidden size"):
        LSTMSeq2SeqConfig(V, hidden=7)


def test_save_load_generate_round_trip(tmp_path):
    vocab = CharVocab(tuple("天地玄黄宇宙洪荒"))  # 8 characters + 4 specials = V
    m = tiny().float()
    texts = ["天地玄黄", "宇宙洪荒天", "", "地"]
    before = generate(m, vocab, texts, max_title=5, beam_size=2)
    save_titles(m, vocab, tmp_path / "run", {"note": 1}, max_title=5)
    loaded, v2, meta = load_titles(tmp_path / "run")
    assert v2 == vocab and meta["model"] == "lstm-copy" and before[2] == ""
    assert generate(loaded, v2, texts, max_title=5, beam_size=2) == before
    assert all(len(t) <= 5 for t in before)
    (tmp_path / "run" / "titles.json").write_text("{}")
    with pytest.raises(CheckpointError, match="is not a kexue-titles v1 file"):
        load_titles(tmp_path / "run")
    assert pad_ids([[4]], 3).tolist() == [[4, PAD, PAD]]
