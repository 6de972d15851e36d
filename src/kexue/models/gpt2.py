"""GPT-2 with a KV cache: a pre-LN causal Transformer language model whose `step` drives
`kexue.nn.decoding` (greedy, beam search, sampling) with batching and caching.

[GPT2] Radford et al., "Language Models are Unsupervised Multitask Learners", 2019 (openai/gpt-2 `model.py`);
[6915] bert4keras builds GPT/GPT-2 with application "lm" but decodes without a cache (reference/transformer.md
§3: a cache is what its users asked for); [4765] attention.

    h_0 = wte[x] + wpe[p]
    for each block:  h = h + Attn(LN_1 h) W^O;  h = h + W_2 gelu_tanh(W_1 LN_2 h)        ([GPT2] §2.3 pre-LN)
    logits = LN_f(h) wteᵀ                                                              (tied output layer)

Attention is causal (query i sees keys j ≤ i) and, with a left-padded batch, also masked to real keys; the
positions of real tokens count from 0 over real tokens (HF `generate`'s cumsum(mask) − 1), so a padded row
gives the same logits as the row alone. The cache holds each block's (k, v), (B, H, T_seen, D).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kexue.errors import KexueError
from kexue.models.bert import activation
from kexue.nn.attention import attention
from kexue.nn.positions import LearnedPositions, hierarchical_embedding

Cache = tuple[Tensor, Tensor]  # (k, v), each (B, H, T_past, D)


@dataclass(frozen=True)
class GPT2Config:
    vocab_size: int = 50257
    n_positions: int = 1024  # rows of the learned position table wpe
    n_embd: int = 768  # d_model
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # feed-forward width; None = 4·n_embd [GPT2]
    activation_function: str = "gelu_new"  # tanh-approximated GELU
    layer_norm_epsilon: float = 1e-5
    dropout: float = 0.1  # resid_pdrop = embd_pdrop (training only)
    attention_dropout: float = 0.1  # attn_pdrop (training only)
    scale_attn_by_inverse_layer_idx: bool = False  # HF option: scores of block i also × 1/(i + 1)
    tie_word_embeddings: bool = True  # output layer = wte
    hierarchical_alpha: float | None = None  # [7947] α: extend wpe to n_positions² rows

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise KexueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        activation(self.activation_function)


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention with a fused q, k, v projection (GPT-2's c_attn) and a KV cache."""

    def __init__(self, cfg: GPT2Config, layer: int):
        super().__init__()
        d = cfg.n_embd
        self.heads, self.dropout = cfg.n_head, cfg.attention_dropout
        self.qkv = nn.Linear(d, 3 * d)  # [W^Q W^K W^V] (HF Conv1D c_attn, transposed)
        self.o = nn.Linear(d, d)  # W^O (c_proj)
        head_dim = d // cfg.n_head
        inv_layer = 1.0 / (layer + 1) if cfg.scale_attn_by_inverse_layer_idx else 1.0
        self.scale = head_dim**-0.5 * inv_layer  # 1/√D [4765]

    def forward(self, x: Tensor, mask: Tensor | None, causal: bool, cache: Cache | None):
        """x (B, T, d); mask None or bool (B, 1, 1, T_past + T) real keys; causal: j ≤ i + T_past."""
        B, T, d = x.shape
        q, k, v = (
            self.qkv(x).view(B, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        )  # (B, H, T, D)
        if cache is not None:
            k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)  # (B, H, T_past + T, D)
        p = self.dropout if self.training else 0.0
        out = attention(q, k, v, mask=mask, causal=causal, scale=self.scale, dropout_p=p)  # (B, H, T, D)
        return self.o(out.transpose(1, 2).reshape(B, T, d)), (k, v)  # (B, T, d)


class Block(nn.Module):
    """Pre-LN block [GPT2] §2.3: h + Attn(LN h), then h + MLP(LN h)."""

    def __init__(self, cfg: GPT2Config, layer: int):
        super().__init__()
        d, eps = cfg.n_embd, cfg.layer_norm_epsilon
        inner = cfg.n_inner or 4 * d
        self.norm1, self.attn = nn.LayerNorm(d, eps=eps), CausalSelfAttention(cfg, layer)
        self.norm2 = nn.LayerNorm(d, eps=eps)
        self.ffn_in, self.ffn_out = nn.Linear(d, inner), nn.Linear(inner, d)  # c_fc, c_proj
        self.act, self.drop = activation(cfg.activation_function), nn.Dropout(cfg.dropout)

    def forward(self, h: Tensor, mask: Tensor | None, causal: bool, cache: Cache | None):
        a, cache = self.attn(self.norm1(h), mask, causal, cache)
        h = h + self.drop(a)
        return h + self.drop(self.ffn_out(self.act(self.ffn_in(self.norm2(h))))), cache


class GPT2(nn.Module):
    """GPT-2 language model. `forward(token_ids, padding=None) -> logits (B, T, V)`; `step` for decoding."""

    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.cfg = cfg
        self.token = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # wte
        self.position = LearnedPositions(cfg.n_positions, cfg.n_embd)  # wpe
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.head = None if cfg.tie_word_embeddings else nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def encode(
        self,
        token_ids: Tensor,
        *,
        padding: Tensor | None = None,
        caches: list[Cache] | None = None,
        past_real: Tensor | None = None,
    ) -> tuple[Tensor, list[Cache]]:
        """LN_f(h) (B, T, d) and each block's (k, v). token_ids (B, T); padding (B, T) bool, True at real
        tokens (default all); with `caches`, `past_real` (B, P) bool marks the real keys of the past."""
        if token_ids.dim() != 2:
            raise KexueError(f"GPT2 needs (B, T) token ids, got shape {tuple(token_ids.shape)}")
        T = token_ids.shape[1]
        real = torch.ones_like(token_ids, dtype=torch.bool) if padding is None else padding.bool()
        seen = 0 if past_real is None else past_real.long().sum(-1, keepdim=True)  # (B, 1) real tokens so far
        pos = ((real.long().cumsum(-1) + seen - 1).clamp_min(0)) * real  # (B, T) 0-based over real tokens
        if self.cfg.hierarchical_alpha is None:
            h = self.token(token_ids) + self.position(pos)  # (B, T, d)
        else:  # [7947]
            h = self.token(token_ids) + hierarchical_embedding(
                self.position.weight, pos, self.cfg.hierarchical_alpha
            )
        h = self.drop(h)
        mask = None  # keys: real ones only (left padding); causal: j ≤ i + P, applied by `attention`
        if padding is not None or past_real is not None:
            key_real = real if past_real is None else torch.cat((past_real, real), dim=1)  # (B, P + T)
            mask = key_real[:, None, None, :]  # (B, 1, 1, P + T)
        causal = T > 1  # one new token sees every past key: no causal mask to build
        new = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, mask, causal, None if caches is None else caches[i])
            new.append(kv)
        return self.norm_f(h), new

    def logits(self, h: Tensor) -> Tensor:
        """(B, T, d) → (B, T, V): h wteᵀ (tied) or the separate head."""
        w = self.token.weight if self.head is None else self.head.weight  # (V, d)
        return h @ w.T

    def forward(self, token_ids: Tensor, *, padding: Tensor | None = None) -> Tensor:
        return self.logits(self.encode(token_ids, padding=padding)[0])  # (B, T, V)

    def step(self, tokens: Tensor, state: dict | None) -> tuple[Tensor, dict]:
        """`kexue.nn.decoding` step: tokens (B, t) not yet fed → (next-token logits (B, V), state).

        The initial state may be None or {"padding": (B, T) bool} for a left-padded prompt. The state holds
        each block's (k, v) and "real" (B, T_seen) bool: batch-first, so `select_state` reorders it.
        """
        if state is None or "cache" not in state:
            padding = None if state is None else state.get("padding")
            h, cache = self.encode(tokens, padding=padding)
            real = torch.ones_like(tokens, dtype=torch.bool) if padding is None else padding.bool()
        else:
            h, cache = self.encode(tokens, caches=state["cache"], past_real=state["real"])
            real = torch.cat((state["real"], torch.ones_like(tokens, dtype=torch.bool)), dim=1)
        return self.logits(h[:, -1]), {"cache": cache, "real": real}  # (B, V)


def gpt2_config(hf: dict, **options) -> GPT2Config:
    """A `GPT2Config` from an HF GPT-2 config.json dict; `options` set the kexue-only fields."""
    if hf.get("reorder_and_upcast_attn") or hf.get("add_cross_attention"):
        raise KexueError(
            "GPT-2 configs with reorder_and_upcast_attn or add_cross_attention are not supported"
        )
    if hf.get("scale_attn_weights", True) is False:
        raise KexueError("GPT-2 with scale_attn_weights=false is not supported (scores are always / √D)")
    return GPT2Config(
        vocab_size=hf["vocab_size"],
        n_positions=hf.get("n_positions", 1024),
        n_embd=hf.get("n_embd", 768),
        n_layer=hf.get("n_layer", 12),
        n_head=hf.get("n_head", 12),
        n_inner=hf.get("n_inner"),
        activation_function=hf.get("activation_function", "gelu_new"),
        layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-5),
        dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1),
        scale_attn_by_inverse_layer_idx=hf.get("scale_attn_by_inverse_layer_idx", False),
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        **options,
    )
