"""GPT-2: logits equal HF GPT2LMHeadModel's on a tiny random checkpoint (with left padding too); the KV-cached
step gives the full forward's logits token by token; a left-padded batch decodes like each row alone; greedy
decoding with the cache equals HF generate's and the uncached decoder's tokens."""

from __future__ import annotations

import pytest
import torch

from kexue.models import GPT2, GPT2Config, build_transformer_model
from kexue.nn.decoding import beam_search, full_recompute, greedy

transformers = pytest.importorskip("transformers", reason="HF parity needs transformers (a dev extra)")

V = 50


def tiny_gpt2(gen, **kw):
    cfg = transformers.GPT2Config(
        vocab_size=V,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=40,
        bos_token_id=None,
        eos_token_id=None,
        **kw,
    )
    hf = transformers.GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return hf.eval()


@pytest.fixture
def pair(gen, tmp_path):
    hf = tiny_gpt2(gen)
    hf.save_pretrained(tmp_path)
    return hf, build_transformer_model(tmp_path, tmp_path, model="gpt2", application="lm")


def test_parity_gpt2_logits(gen, pair):
    hf, model = pair
    ids = torch.randint(0, V, (3, 11), generator=gen)
    with torch.no_grad():
        ref = hf(ids).logits
        out = model(ids)
    assert ref.abs().max() > 1
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_parity_gpt2_left_padding(gen, pair):
    """HF with an attention mask and position_ids = cumsum(mask) − 1 (what its generate uses) = kexue's
    rule."""
    hf, model = pair
    ids = torch.randint(0, V, (3, 9), generator=gen)
    real = torch.ones(3, 9, dtype=torch.bool)
    real[1, :3], real[2, :6] = False, False
    pos = (real.long().cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        ref = hf(ids, attention_mask=real.long(), position_ids=pos).logits
        out = model(ids, padding=real)
    torch.testing.assert_close(out[real], ref[real], atol=1e-5, rtol=1e-5)


def test_parity_gpt2_untied_head_and_inverse_layer_scale(gen, tmp_path):
    hf = tiny_gpt2(
        gen, tie_word_embeddings=False, scale_attn_by_inverse_layer_idx=True, activation_function="relu"
    )
    hf.save_pretrained(tmp_path)
    model = build_transformer_model(tmp_path, tmp_path, model="gpt2", application="lm")
    assert model.head is not None
    ids = torch.randint(0, V, (2, 7), generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, atol=1e-5, rtol=1e-5)


def test_parity_gpt2_cached_steps_equal_full_forward_and_hf(gen, pair):
    hf, model = pair
    seq = torch.randint(0, V, (2, 12), generator=gen)
    with torch.no_grad():
        full = model(seq)
        logits, state = model.step(seq[:, :4], None)
        steps = [logits]
        for t in range(4, 11):
            logits, state = model.step(seq[:, t : t + 1], state)
            steps.append(logits)
        ref = hf(seq).logits
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 3:11], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.stack(steps, 1), ref[:, 3:11], atol=1e-5, rtol=1e-5)
    assert state["cache"][0][0].shape == (2, 4, 11, 8)  # (B, H, T_seen, D)


def test_parity_gpt2_greedy_equals_hf_generate(gen, pair):
    hf, model = pair
    prompt = torch.randint(0, V, (2, 5), generator=gen)
    with torch.no_grad():
        ours = greedy(model.step, prompt, max_new=20)
        uncached = greedy(full_recompute(model), prompt, max_new=20)
        ref = hf.generate(prompt, max_new_tokens=20, do_sample=False, num_beams=1, pad_token_id=0)
    assert torch.equal(ours, ref[:, 5:])
    assert torch.equal(ours, uncached)


def test_left_padded_batch_decodes_like_each_row(gen):
    model = (
        GPT2(
            GPT2Config(
                vocab_size=V,
                n_embd=16,
                n_layer=2,
                n_head=2,
                n_positions=64,
                dropout=0.0,
                attention_dropout=0.0,
            )
        )
        .double()
        .eval()
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    a, b = torch.randint(0, V, (1, 6), generator=gen), torch.randint(0, V, (1, 2), generator=gen)
    prompt = torch.cat((a, torch.cat((torch.zeros(1, 4, dtype=torch.long), b), 1)))
    pad = torch.ones(2, 6, dtype=torch.bool)
    pad[1, :4] = False
    with torch.no_grad():
        both = greedy(model.step, prompt, max_new=10, state={"padding": pad})
        beams, _ = beam_search(model.step, prompt, beam_size=3, max_new=6, state={"padding": pad})
        for row, p in ((0, a), (1, b)):
            assert torch.equal(both[row], greedy(model.step, p, max_new=10)[0])
            alone, _ = beam_search(full_recompute(model), p, beam_size=3, max_new=6)
            assert torch.equal(beams[row], alone[0])


def test_gpt2_is_lm_only(gen, pair, tmp_path):
    from kexue.errors import KexueError

    with pytest.raises(KexueError, match="lm"):
        build_transformer_model(tmp_path, model="gpt2", application="unilm")
