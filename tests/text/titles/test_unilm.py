"""UniLM [6933]: loss on title tokens only, the seq2seq mask's visibility, KV-cached step = full recompute."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from kexue.errors import KexueError
from kexue.nn.decoding import beam_search, greedy
from kexue.text.titles.data import END, PAD, START
from kexue.text.titles.unilm import UniLM, UniLMConfig, from_pretrained_bert, join_source_title, unilm_loss

V = 14
SRC = torch.tensor([[4, 5, 6, 7, 8], [9, 10, PAD, PAD, PAD], [11, 4, 12, PAD, PAD]])
TGT = torch.tensor([[START, 5, 6, END, PAD], [START, 13, 12, 11, END], [START, 4, END, PAD, PAD]])


def tiny(seed: int = 0) -> UniLM:
    cfg = UniLMConfig(V, d_model=16, heads=2, layers=2, d_ff=32, max_len=32)
    return UniLM(cfg, generator=torch.Generator().manual_seed(seed)).double().eval()


def test_join_source_title_layout():
    tokens, segments = join_source_title(SRC[1:2], TGT[1:2])
    assert tokens.tolist() == [[START, 9, 10, END, 13, 12, 11, END]]  # [CLS] source [SEP] title [SEP]
    assert segments.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]]
    tokens, segments = join_source_title(SRC, TGT)
    assert tokens.shape == segments.shape == (3, 10) and tokens[2, -1] == PAD and segments[2, -1] == 0


def test_loss_counts_only_title_tokens(gen):
    tokens, segments = join_source_title(SRC, TGT)
    logits = torch.randn(*tokens.shape, V, generator=gen, dtype=torch.float64)
    terms = [
        -logits[b, i].log_softmax(-1)[tokens[b, i + 1]]
        for b in range(3)
        for i in range(tokens.shape[1] - 1)
        if segments[b, i + 1] == 1 and tokens[b, i + 1] != PAD
    ]
    assert len(terms) == 3 + 4 + 2  # title characters + the final [SEP], per row
    loss = unilm_loss(logits, tokens, segments)["loss"]
    assert loss.item() == pytest.approx(float(sum(terms) / len(terms)), rel=1e-13)
    noisy = logits.clone()
    source_rows = torch.zeros_like(tokens, dtype=torch.bool)
    source_rows[:, :-1] = ~(
        (segments[:, 1:] == 1) & (tokens[:, 1:] != PAD)
    )  # positions that predict no title
    noisy[source_rows] += 100 * torch.randn(int(source_rows.sum()), V, generator=gen, dtype=torch.float64)
    assert unilm_loss(noisy, tokens, segments)["loss"].item() == pytest.approx(loss.item(), rel=1e-13)


def test_model_loss_equals_loss_on_full_logits():
    m = tiny()
    tokens, segments = join_source_title(SRC, TGT)
    full = unilm_loss(m(tokens, segments), tokens, segments)["loss"]
    assert m.loss((SRC, TGT))["loss"].item() == pytest.approx(full.item(), rel=1e-12)


def test_mask_source_bidirectional_title_causal():
    m = tiny()
    tokens, segments = join_source_title(SRC[:1], TGT[:1])  # [CLS] 4 5 6 7 8 [SEP] 5 6 [SEP]
    h = m.hidden(tokens, segments)
    later_title = tokens.clone()
    later_title[0, 8] = 9  # the second title character
    h2 = m.hidden(later_title, segments)
    assert torch.equal(h[0, :8], h2[0, :8]) and not torch.allclose(
        h[0, 8:], h2[0, 8:]
    )  # nothing sees the future
    last_source = tokens.clone()
    last_source[0, 5] = 12
    h3 = m.hidden(last_source, segments)
    assert not torch.allclose(h[0, 1], h3[0, 1])  # the first source character sees the last one


def test_cached_step_equals_full_recompute():
    m = tiny()
    prompt, state = m.start(SRC)  # right-padded [CLS] source [SEP]
    title = torch.tensor([[5, 6, 7], [13, 12, 11], [4, 9, 10]])
    logits, state = m.step(prompt, state)
    steps = [logits]
    for t in range(title.shape[1]):
        logits, state = m.step(title[:, t : t + 1], state)
        steps.append(logits)
    cached = torch.stack(steps, 1)  # (B, 4, V)
    for b in range(3):  # each row alone, unpadded, through the full UniLM forward
        src = SRC[b][SRC[b] != PAD]
        tokens = torch.cat((torch.tensor([START]), src, torch.tensor([END]), title[b]))[None]
        segments = torch.tensor([[0] * (len(src) + 2) + [1] * title.shape[1]])
        full = m(tokens, segments)[0, len(src) + 1 :]  # logits from [SEP] on: (4, V)
        assert torch.allclose(cached[b], full, atol=1e-12, rtol=0)
    _, s = m.step(prompt, None)
    several, _ = m.step(title[:, :2], s)  # two title tokens in one call (causal among themselves)
    assert torch.allclose(several, cached[:, 2], atol=1e-12, rtol=0)


def test_decoders_run_on_the_cached_step():
    m = tiny()
    prompt, _ = m.start(SRC)
    g = greedy(m.step, prompt, max_new=5, end_ids=END, pad_id=PAD)
    b, _ = beam_search(m.step, prompt, beam_size=1, max_new=5, end_ids=END, pad_id=PAD)
    assert torch.equal(g, b)


def test_pretrained_hook_and_config_errors():
    with pytest.raises(KexueError, match="divid"):
        UniLMConfig(V, d_model=10, heads=3)
    if importlib.util.find_spec("kexue.models") is None:
        with pytest.raises(KexueError, match=r"needs kexue\.models\.builder"):
            from_pretrained_bert("config.json", "model.safetensors")
