"""BERT / RoBERTa: logits and hidden states equal HF transformers' on tiny random checkpoints (safetensors
and a torch .bin state dict); the lm / unilm masks have the content §1.7 of the reference gives them, shown
both on the mask and on the network (what a query may not see cannot change its output); the cached step =
full forward; hierarchical positions leave the first n positions bit-identical."""

from __future__ import annotations

import pytest
import torch

from kexue.errors import KexueError
from kexue.models import Bert, BertConfig, build_transformer_model
from kexue.nn.attention import unilm_mask

transformers = pytest.importorskip("transformers", reason="HF parity needs transformers (a dev extra)")

V, T, B = 60, 10, 3


def scramble(model, gen, std=0.3):
    """Weights far from HF's N(0, 0.02²) init, LayerNorm gains included, so that a mapping error shows."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(
                torch.randn(p.shape, generator=gen) * std + (1.0 if p.dim() == 1 and p.shape[0] == 32 else 0)
            )
    return model.eval()


def tiny_bert(gen, cls=None, **kw):
    cfg = transformers.BertConfig(
        vocab_size=V,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=16,
        **kw,
    )
    return scramble((cls or transformers.BertForMaskedLM)(cfg), gen)


def batch(gen, pad_id=0):
    ids = torch.randint(5, V, (B, T), generator=gen)
    seg = torch.zeros(B, T, dtype=torch.long)
    seg[:, 6:] = 1
    real = torch.ones(B, T, dtype=torch.bool)
    real[1, 7:], real[2, 4:] = False, False  # right padding
    ids[~real] = pad_id
    return ids, seg, real


def test_parity_bert_mlm_safetensors(gen, tmp_path):
    hf = tiny_bert(gen)
    hf.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    model = build_transformer_model(tmp_path / "config.json", tmp_path, model="bert", with_mlm=True)
    ids, seg, real = batch(gen)
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=seg, attention_mask=real.long(), output_hidden_states=True)
        h, _ = model.encode(ids, seg, padding=real)
        logits = model(ids, seg, padding=real)
    assert ref.logits.abs().max() > 1  # a test that could fail: the logits are not near 0
    # real positions only: HF gives pads positions 0 … T − 1, kexue counts positions over real tokens
    torch.testing.assert_close(h[real], ref.hidden_states[-1][real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[real], ref.logits[real], atol=1e-5, rtol=1e-5)


def test_parity_bert_encoder_and_pooler_from_bare_model(gen, tmp_path):
    """A bare BertModel checkpoint (no `bert.` prefix, pooler, no MLM head) loads as an encoder with a
    pooler."""
    hf = tiny_bert(gen, cls=transformers.BertModel)
    hf.save_pretrained(tmp_path)
    model = build_transformer_model(tmp_path, tmp_path, model="bert", with_pool=True)
    ids, seg, _ = batch(gen)
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=seg)
        h = model(ids, seg)
        torch.testing.assert_close(h, ref.last_hidden_state, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.pooled(h), ref.pooler_output, atol=1e-5, rtol=1e-5)


def test_parity_roberta_mlm_from_torch_bin(gen, tmp_path):
    """RoBERTa: positions start at pad_id + 1 over real tokens; weights from a weights_only torch state
    dict."""
    cfg = transformers.RobertaConfig(
        vocab_size=V,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=18,
        type_vocab_size=1,
        pad_token_id=1,
    )
    hf = scramble(transformers.RobertaForMaskedLM(cfg), gen)
    torch.save(hf.state_dict(), tmp_path / "weights.bin")
    model = build_transformer_model(cfg.to_dict(), tmp_path / "weights.bin", model="roberta", with_mlm=True)
    ids, _, real = batch(gen, pad_id=1)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=real.long(), output_hidden_states=True).logits
        logits = model(ids, padding=real)
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)  # pads too: same position rule as HF


def test_config_reads_hf_fields(gen, tmp_path):
    tiny_bert(gen, hidden_act="relu", layer_norm_eps=1e-7, type_vocab_size=3).save_pretrained(tmp_path)
    model = build_transformer_model(tmp_path, application="unilm")
    assert (model.cfg.hidden_act, model.cfg.layer_norm_eps, model.cfg.type_vocab_size) == ("relu", 1e-7, 3)
    assert model.cfg.with_mlm and not model.training  # lm / unilm imply the MLM head; eval mode


# ------------------------------------------------------------------------------------------------ masks
def small(application="encoder", **kw):
    cfg = BertConfig(
        vocab_size=V,
        hidden_size=16,
        num_layers=2,
        heads=2,
        intermediate_size=24,
        max_position=32,
        application=application,
        with_mlm=application != "encoder",
        dropout=0.0,
        attention_dropout=0.0,
        **kw,
    )
    return Bert(cfg).double().eval()


def test_unilm_mask_shape_and_content():
    seg = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    m = unilm_mask(seg)
    assert m.shape == (2, 1, 6, 6) and m.dtype == torch.bool
    for b in range(2):
        src = int((seg[b] == 0).sum())
        for i in range(6):
            for j in range(6):
                # source: sees the source only (bidirectional); target i: the source and targets j ≤ i
                want = j < src if i < src else (j < src or j <= i)
                assert bool(m[b, 0, i, j]) == want, (b, i, j)


def test_unilm_source_is_bidirectional_and_targets_do_not_see_later_targets(gen):
    model = small("unilm")
    ids = torch.randint(5, V, (1, 8), generator=gen)
    seg = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % V  # a later target token
    with torch.no_grad():
        out, out2 = model(ids, seg), model(changed, seg)
        src_changed = ids.clone()
        src_changed[0, 3] = (ids[0, 3] + 1) % V  # the last source token
        out3 = model(src_changed, seg)
    assert torch.equal(out[0, :6], out2[0, :6])  # source and earlier targets do not see target 6
    assert not torch.allclose(out[0, 6:], out2[0, 6:])
    assert not torch.allclose(
        out[0, 0], out3[0, 0]
    )  # source position 0 sees source position 3 (bidirectional)
    assert not torch.allclose(out[0, 7], out3[0, 7])  # and every target sees the source


def test_lm_application_is_causal(gen):
    model = small("lm")
    ids = torch.randint(5, V, (2, 7), generator=gen)
    with torch.no_grad():
        full = model(ids)
        for t in range(1, 7):
            torch.testing.assert_close(model(ids[:, :t]), full[:, :t], atol=1e-12, rtol=0)


def test_padding_is_invisible(gen):
    """An encoder's outputs at real positions do not depend on what the padded positions hold."""
    model = small()
    ids = torch.randint(5, V, (1, 9), generator=gen)
    real = torch.ones(1, 9, dtype=torch.bool)
    real[0, 6:] = False
    other = ids.clone()
    other[0, 6:] = 7
    with torch.no_grad():
        torch.testing.assert_close(model(ids, padding=real)[:, :6], model(other, padding=real)[:, :6])
        torch.testing.assert_close(model(ids, padding=real)[:, :6], model(ids[:, :6]), atol=1e-12, rtol=0)


@pytest.mark.parametrize("application", ["lm", "unilm"])
def test_cached_step_equals_full_forward(gen, application):
    """Step-by-step logits with the KV cache = the logits of one forward over the whole sequence, whose
    segment
    ids mark the prompt as source (0) and the fed tokens as target (1, unilm)."""
    model = small(application)
    prompt, cont = torch.randint(5, V, (2, 5), generator=gen), torch.randint(5, V, (2, 4), generator=gen)
    seq = torch.cat((prompt, cont), dim=1)
    seg = torch.cat((torch.zeros_like(prompt), torch.ones_like(cont) * (application == "unilm")), dim=1)
    with torch.no_grad():
        full = model(seq, seg)  # (2, 9, V)
        logits, state = model.step(prompt, None)
        got = [logits]
        for t in range(cont.shape[1]):
            logits, state = model.step(cont[:, t : t + 1], state)
            got.append(logits)
    torch.testing.assert_close(torch.stack(got, 1), full[:, 4:], atol=1e-10, rtol=0)


def test_cached_step_left_padded_prompt_equals_each_row_alone(gen):
    model = small("unilm")
    a, b = torch.randint(5, V, (1, 6), generator=gen), torch.randint(5, V, (1, 3), generator=gen)
    prompt = torch.cat(
        (a, torch.cat((torch.zeros(1, 3, dtype=torch.long), b), 1)), 0
    )  # (2, 6), row 1 left-padded
    pad = torch.ones(2, 6, dtype=torch.bool)
    pad[1, :3] = False
    nxt = torch.tensor([[7], [9]])
    with torch.no_grad():
        l1, s = model.step(prompt, {"padding": pad})
        l2, _ = model.step(nxt, s)
        for row, p in ((0, a), (1, b)):
            r1, rs = model.step(p, None)
            r2, _ = model.step(nxt[row : row + 1], rs)
            torch.testing.assert_close(l1[row], r1[0], atol=1e-10, rtol=0)
            torch.testing.assert_close(l2[row], r2[0], atol=1e-10, rtol=0)


# --------------------------------------------------------------------------------------- hierarchical
def test_hierarchical_positions_extend_the_table(gen, tmp_path):
    tiny_bert(gen).save_pretrained(tmp_path)
    plain = build_transformer_model(tmp_path, tmp_path, with_mlm=True)
    hier = build_transformer_model(tmp_path, tmp_path, with_mlm=True, hierarchical_position=True)
    assert hier.cfg.hierarchical_alpha == 0.4  # bert4keras / [7947]'s α
    ids = torch.randint(5, V, (2, 16), generator=gen)
    with torch.no_grad():
        assert torch.equal(plain(ids), hier(ids))  # q_j = p_j for j < n exactly [7947]
        long = torch.randint(5, V, (1, 16 * 16), generator=gen)
        assert torch.isfinite(hier(long)).all()  # n² positions
    with pytest.raises(KexueError):
        plain(long)  # a plain table stops at n


def test_bad_application_and_missing_mlm_head():
    with pytest.raises(KexueError, match="application"):
        small("seq2seq")
    with pytest.raises(KexueError, match="with_mlm"):
        Bert(BertConfig(vocab_size=V, hidden_size=16, heads=2, application="lm"))
