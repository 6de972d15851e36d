"""The 2017 Transformer [4765]: KV-cached steps = the full forward (every position scheme, LM and
seq2seq, left padding), causality, encoder padding invariance, the paper's layer structure, learning."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from kexue.errors import KexueError
from kexue.nn.positions import sinusoidal_positions
from kexue.nn.transformer import (
    Seq2SeqTransformer,
    TransformerConfig,
    TransformerLM,
    real_positions,
    set_attention,
)

f64 = torch.float64
V = 11
TINY = TransformerConfig(vocab_size=V, d_model=16, heads=2, layers=2, d_ff=24, dropout=0.0, max_len=12)
POSITIONS = ["sinusoidal", "learned", "hierarchical", "rope", "none"]


def make(cls, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(replace(TINY, **kw)).double().eval()


def tokens(gen, b, t, lo=1):
    return torch.randint(lo, V, (b, t), generator=gen)


def stepwise(model, seq, state, first):
    """Logits of every position after the first `first` tokens, fed one at a time through the cache."""
    logits, state = model.step(seq[:, :first], state)
    outs = [logits]
    for i in range(first, seq.shape[1]):
        logits, state = model.step(seq[:, i : i + 1], state)
        outs.append(logits)
    return torch.stack(outs[:-1], 1), state  # (B, T − first, V): predictions at positions first−1 … T−2


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("pad_id", [None, 0])
def test_lm_cached_steps_equal_the_full_forward(gen, positions, norm_first, pad_id):
    model = make(TransformerLM, positions=positions, norm_first=norm_first, pad_id=pad_id)
    seq = tokens(gen, 3, 8)
    if pad_id is not None:  # left padding of 2 and 1 tokens
        seq[0, :2] = 0
        seq[1, :1] = 0
    full = model(seq)  # (B, T, V)
    steps, state = stepwise(model, seq, None, 3)
    torch.testing.assert_close(steps, full[:, 2:-1], atol=1e-12, rtol=0)
    assert state["layers"][0][0].shape == (3, 2, 8, 8)  # (B, H, T, D): batch first for decoders
    assert torch.equal(state["pos"], (seq != 0).sum(1) if pad_id is not None else torch.full((3,), 8))


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("knobs", [dict(), dict(scale="log_n", window=2, norm_first=True)])
def test_seq2seq_cached_steps_equal_the_full_forward(gen, positions, knobs):
    model = make(Seq2SeqTransformer, positions=positions, pad_id=0, **knobs)
    src, tgt = tokens(gen, 3, 6), tokens(gen, 3, 7)
    src[0, 4:] = 0  # right-padded source
    full = model(src, tgt)  # (B, T, V)
    state = model.encode(src)
    steps, state = stepwise(model, torch.cat([tgt, tgt[:, :1]], 1), state, 1)
    torch.testing.assert_close(steps, full, atol=1e-12, rtol=0)
    assert state["layers"][0][2].shape == (3, 2, 6, 8)  # the encoder output's keys, kept in the cache


@pytest.mark.parametrize("positions", POSITIONS)
def test_left_padding_decodes_each_row_as_if_alone(gen, positions):
    """Positions count real tokens, padding is masked as keys: a padded row = the row on its own."""
    model = make(TransformerLM, positions=positions, pad_id=0)
    seq = tokens(gen, 2, 6)
    padded = torch.cat([torch.zeros(2, 3, dtype=torch.long), seq], 1)  # 3 pads in front
    padded[1, :3] = tokens(gen, 1, 3)  # row 1 is longer: no padding
    alone = model(seq[:1])
    torch.testing.assert_close(model(padded)[:1, 3:], alone, atol=1e-12, rtol=0)
    logits, _ = model.step(padded, None)
    torch.testing.assert_close(logits[0], alone[0, -1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("positions", POSITIONS)
def test_future_tokens_do_not_change_past_logits(gen, positions):
    lm = make(TransformerLM, positions=positions)
    s2s = make(Seq2SeqTransformer, positions=positions)
    src, seq = tokens(gen, 2, 5), tokens(gen, 2, 7)
    other = seq.clone()
    other[:, 4:] = tokens(gen, 2, 3)
    torch.testing.assert_close(lm(other)[:, :4], lm(seq)[:, :4], atol=1e-13, rtol=0)
    assert not torch.allclose(lm(other)[:, 4:], lm(seq)[:, 4:])
    torch.testing.assert_close(s2s(src, other)[:, :4], s2s(src, seq)[:, :4], atol=1e-13, rtol=0)


@pytest.mark.parametrize("positions", POSITIONS)
def test_encoder_padding_changes_nothing_real(gen, positions):
    """Appending pads (any content behind a False in src_mask) leaves every real output unchanged."""
    model = make(Seq2SeqTransformer, positions=positions)
    src, tgt = tokens(gen, 2, 5), tokens(gen, 2, 4)
    base = model(src, tgt)
    longer = torch.cat([src, tokens(gen, 2, 3)], 1)  # 3 junk tokens, masked out
    mask = torch.arange(8) < 5
    torch.testing.assert_close(model(longer, tgt, mask.expand(2, 8)), base, atol=1e-12, rtol=0)
    memory = model.encode(longer, mask.expand(2, 8))["memory"]
    torch.testing.assert_close(memory[:, :5], model.encode(src)["memory"], atol=1e-12, rtol=0)


def test_layers_follow_the_paper(gen):
    """Post-LN: every layer's output is LayerNorm'ed (zero mean, unit variance per position, [Vaswani]
    §3.1); the input is E[token]·√d_model + PE(p) ([Vaswani] §3.4–3.5); the head shares E."""
    model = make(Seq2SeqTransformer)
    src = tokens(gen, 2, 5)
    h = model.encode(src)["memory"]  # the last encoder layer's output, gains 1 and biases 0 at init
    torch.testing.assert_close(h.mean(-1), torch.zeros(2, 5, dtype=f64), atol=1e-12, rtol=0)
    torch.testing.assert_close(h.var(-1, unbiased=False), torch.ones(2, 5, dtype=f64), atol=1e-4, rtol=0)
    emb = model.decoder.embed
    x = emb(src, real_positions(torch.ones_like(src, dtype=torch.bool)))
    want = emb.tok.weight[src] * math.sqrt(16) + sinusoidal_positions(5, 16, dtype=f64)
    torch.testing.assert_close(x, want, atol=1e-12, rtol=0)
    assert model.head.weight is model.decoder.embed.tok.weight
    untied = make(Seq2SeqTransformer, tie_embeddings=False)
    assert untied.head.weight is not untied.decoder.embed.tok.weight


def test_hierarchical_equals_learned_inside_the_table_and_extends_beyond(gen):
    """[7947]: the hierarchical table equals the learned one for positions < max_len; it runs to max_len²."""
    learned = make(TransformerLM, positions="learned", max_len=6)
    hier = make(TransformerLM, positions="hierarchical", max_len=6)
    hier.load_state_dict(learned.state_dict(), strict=False)
    hier.decoder.embed.positions.base.weight.data.copy_(learned.decoder.embed.positions.weight)
    seq = tokens(gen, 2, 6)
    torch.testing.assert_close(hier(seq), learned(seq), atol=0, rtol=0)
    long = tokens(gen, 1, 30)
    assert hier(long).shape == (1, 30, V)
    with pytest.raises(KexueError, match="covers positions"):
        learned(long)


def test_set_attention_flips_scale_and_window_at_inference(gen):
    model = make(TransformerLM, positions="rope")
    seq = tokens(gen, 2, 7)
    base = model(seq)
    set_attention(model, window=6)  # as wide as the sequence: nothing changes
    torch.testing.assert_close(model(seq), base, atol=1e-13, rtol=0)
    set_attention(model, window=1)
    assert model.decoder.layers[1].self_attn.window == 1
    assert not torch.allclose(model(seq), base)
    set_attention(model, window=None, scale="log_n")
    assert (
        model.decoder.layers[0].self_attn.scale == "log_n"
        and model.decoder.layers[0].self_attn.window is None
    )
    assert not torch.allclose(model(seq), base)
    set_attention(model, scale="standard")
    torch.testing.assert_close(model(seq), base, atol=0, rtol=0)


def test_a_tiny_model_learns_a_batch_by_heart(gen):
    """Eight random copy pairs: teacher-forced loss falls below 0.05 and the token accuracy reaches 1."""
    torch.manual_seed(0)
    model = Seq2SeqTransformer(replace(TINY, pad_id=0))
    src = tokens(gen, 8, 6, lo=3)
    tgt = torch.cat([torch.ones(8, 1, dtype=torch.long), src, torch.full((8, 1), 2)], 1)  # BOS y EOS
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.loss((src, tgt))["loss"].item()
    for _ in range(80):
        out = model.loss((src, tgt))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    out = model.loss((src, tgt))
    assert first > 1.5 and out["loss"].item() < 0.05 and out["token_acc"].item() == 1.0


def test_lm_loss_shifts_and_ignores_padding(gen):
    model = make(TransformerLM, pad_id=0)
    seq = tokens(gen, 2, 6)
    seq[1, 4:] = 0
    logits = model(seq[:, :-1])
    keep = seq[:, 1:] != 0
    want = torch.nn.functional.cross_entropy(logits[keep], seq[:, 1:][keep])
    torch.testing.assert_close(model.loss(seq)["loss"], want, atol=1e-13, rtol=0)
    targets = seq[:, 1:].clone()
    targets[0, :2] = -100  # (inputs, targets) with ignored entries
    keep = keep & (targets >= 0)
    want = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(model.loss((seq[:, :-1], targets))["loss"], want, atol=1e-13, rtol=0)


def test_errors_are_clear(gen):
    with pytest.raises(KexueError, match="positions must be one of"):
        TransformerConfig(positions="alibi")
    with pytest.raises(KexueError, match="not divisible"):
        TransformerConfig(d_model=10, heads=3)
    with pytest.raises(KexueError, match="even head dim"):
        TransformerConfig(d_model=6, heads=2, positions="rope")
    model = make(Seq2SeqTransformer)
    with pytest.raises(KexueError, match="encode"):
        model.step(tokens(gen, 2, 1), None)
    with pytest.raises(KexueError, match="src_mask"):
        model(tokens(gen, 2, 5), tokens(gen, 2, 3), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(KexueError, match=r"\(B, T\) token ids"):
        model(tokens(gen, 2, 5), tokens(gen, 2, 3)[0])


@pytest.mark.parametrize("positions", ["sinusoidal", "rope"])
def test_decoders_through_the_cache_equal_full_recomputation(gen, positions):
    """kexue.nn.decoding over `step`: greedy and beam search (which reorders the state with
    index_select) give the tokens and scores of the uncached full forward."""
    from kexue.nn.decoding import beam_search, full_recompute, greedy

    lm = make(TransformerLM, positions=positions)
    prompt = tokens(gen, 3, 4)
    kw = dict(max_new=6, end_ids=2)
    assert torch.equal(greedy(lm.step, prompt, **kw), greedy(full_recompute(lm), prompt, **kw))
    cached, lp = beam_search(lm.step, prompt, beam_size=3, **kw)
    full, lp_full = beam_search(full_recompute(lm), prompt, beam_size=3, **kw)
    assert torch.equal(cached, full)
    torch.testing.assert_close(lp, lp_full, atol=1e-10, rtol=0)
    s2s = make(Seq2SeqTransformer, positions=positions, pad_id=0)
    src = tokens(gen, 3, 5)
    src[1, 3:] = 0
    bos = torch.ones(3, 1, dtype=torch.long)
    out, _ = beam_search(s2s.step, bos, beam_size=3, state=s2s.encode(src), **kw)
    for b in range(3):  # each row alone, without padding, gives the same beam
        alone = src[b : b + 1, : int((src[b] != 0).sum())]
        row, _ = beam_search(s2s.step, bos[:1], beam_size=3, state=s2s.encode(alone), **kw)
        assert torch.equal(out[b, : row.shape[1]], row[0])
