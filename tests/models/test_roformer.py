"""RoFormer: HF RoFormerForMaskedLM's logits equal kexue's (RoPE in the interleaved layout, embedding
projection, rotary values); the rotation makes attention scores depend on relative positions only; a
checkpoint whose stored sinusoid table is not RoPE's is refused."""

from __future__ import annotations

import pytest
import torch

from kexue.errors import KexueError
from kexue.models import build_transformer_model
from kexue.models.bert import BertConfig, SelfAttention
from kexue.models.roformer import RoFormer

transformers = pytest.importorskip("transformers", reason="HF parity needs transformers (a dev extra)")

V, B, T = 60, 3, 12


def tiny_roformer(gen, **kw):
    cfg = transformers.RoFormerConfig(
        vocab_size=V,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=16,
        **kw,
    )
    hf = transformers.RoFormerForMaskedLM(cfg)
    with (
        torch.no_grad()
    ):  # weights far from the N(0, 0.02²) init (the sinusoid table is a buffer-like weight)
        for name, p in hf.named_parameters():
            if "embed_positions" not in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return hf.eval()


@pytest.mark.parametrize(
    "kw",
    [{}, {"embedding_size": 16}, {"rotary_value": True}],
    ids=["plain", "embedding_size", "rotary_value"],
)
def test_parity_roformer_mlm(gen, tmp_path, kw):
    hf = tiny_roformer(gen, **kw)
    hf.save_pretrained(tmp_path)
    model = build_transformer_model(tmp_path, tmp_path, model="roformer", with_mlm=True)
    ids = torch.randint(5, V, (B, T), generator=gen)
    seg = (torch.arange(T) >= 7).long().expand(B, T)
    real = torch.ones(B, T, dtype=torch.bool)
    real[1, 9:], real[2, 5:] = False, False
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=seg, attention_mask=real.long(), output_hidden_states=True)
        h, _ = model.encode(ids, seg, padding=real)
        logits = model(ids, seg, padding=real)
    assert ref.logits.abs().max() > 1
    torch.testing.assert_close(h[real], ref.hidden_states[-1][real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[real], ref.logits[real], atol=1e-5, rtol=1e-5)
    # RoPE needs no table: a RoFormer runs past max_position_embeddings
    assert torch.isfinite(model(torch.randint(5, V, (1, 40), generator=gen))).all()


def test_rope_attention_depends_on_relative_positions_only(gen):
    """[8265]: ⟨R_m q, R_n k⟩ depends on n − m, so shifting every position by 5 leaves a RoFormer attention
    layer's output unchanged, while the same layer without RoPE (or with permuted positions) differs."""
    cfg = BertConfig(vocab_size=V, hidden_size=16, heads=2, rope=True, attention_dropout=0.0)
    attn = SelfAttention(cfg).double().eval()
    x = torch.randn(2, 7, 16, generator=gen, dtype=torch.float64)
    pos = torch.arange(7)
    with torch.no_grad():
        out, _ = attn(x, None, pos)
        shifted, _ = attn(x, None, pos + 5)
        scrambled, _ = attn(x, None, pos.flip(0))
    torch.testing.assert_close(out, shifted, atol=1e-12, rtol=0)
    assert not torch.allclose(out, scrambled)


def test_left_padding_keeps_positions_and_outputs(gen):
    """Pads before a sequence are invisible and do not shift its positions (they count real tokens)."""
    cfg = BertConfig(
        vocab_size=V,
        hidden_size=16,
        num_layers=2,
        heads=2,
        intermediate_size=24,
        dropout=0.0,
        attention_dropout=0.0,
    )
    model = RoFormer(cfg).double().eval()
    assert model.cfg.rope and model.embeddings.position is None
    ids = torch.randint(5, V, (1, 8), generator=gen)
    pad = torch.ones(1, 13, dtype=torch.bool)
    pad[0, :5] = False
    with torch.no_grad():
        a = model(ids)
        b = model(torch.cat((torch.zeros(1, 5, dtype=torch.long), ids), 1), padding=pad)[:, 5:]
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_wrong_sinusoid_table_is_refused(gen, tmp_path):
    hf = tiny_roformer(gen)
    with torch.no_grad():
        hf.roformer.encoder.embed_positions.weight.mul_(2.0)
    torch.save(hf.state_dict(), tmp_path / "w.bin")
    with pytest.raises(KexueError, match="embed_positions"):
        build_transformer_model(hf.config.to_dict(), tmp_path / "w.bin", model="roformer", with_mlm=True)


def test_roformer_has_no_hierarchical_positions(gen, tmp_path):
    with pytest.raises(KexueError, match="RoPE"):
        build_transformer_model(
            tiny_roformer(gen).config.to_dict(), model="roformer", hierarchical_position=0.4
        )
