"""RoFormer: BERT with rotary position embedding (RoPE) in place of the learned position table [8265].

[8265] Transformer升级之路：2、博采众长的旋转式位置编码, kexue.fm/archives/8265; [RoFormer] Su et al.,
"RoFormer: Enhanced Transformer with Rotary Position Embedding", arXiv 2104.09864 (ZhuiyiTechnology/roformer,
HF `RoFormerModel`).

RoFormer's network is `kexue.models.bert.Bert` with two changes, both switched on by the config this module
builds:
- no position embedding row is added to the tokens; instead every layer rotates q and k by their position,
  f(q, m) = R_m q with θ_i = 10000^{−2i/D} over the head dimension D ([8265] eq. 13; `apply_rope`),
  interleaved pairs (q_0, q_1), (q_2, q_3), … — the layout of RoFormer, bert4keras and HF RoFormer; HF
  LLaMA's half-split layout would need W_q, W_k permuted, `kexue.nn.rope.interleaved_to_half_split`);
  with `rotary_value` the values are rotated too (an option of the HF port);
- the embedding width may be smaller than the hidden width (`embedding_size`, as in RoFormer-small / ELECTRA),
  with a linear projection after the embedding LayerNorm.
The sinusoidal table HF stores as `encoder.embed_positions.weight` is not a parameter: kexue computes the
angles in float64 on the fly (the loader checks the stored table against them).
"""

from __future__ import annotations

from dataclasses import replace

from kexue.models.bert import Bert, BertConfig, bert_config


def roformer_config(hf: dict, **options) -> BertConfig:
    """A RoPE `BertConfig` from an HF RoFormer config.json dict; `options` set the kexue-only fields."""
    cfg = bert_config(hf, rope=True, rotary_value=hf.get("rotary_value", False), **options)
    e = hf.get("embedding_size")
    return cfg if e in (None, cfg.hidden_size) else replace(cfg, embedding_size=e)


def RoFormer(cfg: BertConfig) -> Bert:
    """A RoFormer is a `Bert` whose config has rope=True (see the module docstring)."""
    return Bert(cfg if cfg.rope else replace(cfg, rope=True))
