"""BERT / RoBERTa (and, with `rope=True`, RoFormer) encoders with an MLM head, for the applications
encoder | lm | unilm of bert4keras [6915].

[6915] 自己实现了一个bert4keras, kexue.fm/archives/6915 (and the repository bojone/bert4keras, `models.py`);
[BERT] Devlin et al., NAACL 2019; [RoBERTa] Liu et al., arXiv 1907.11692; [UniLM] Dong et al., NeurIPS 2019;
[4765] attention; [7947] hierarchical positions; [8265] RoPE (RoFormer).

The network is BERT's post-LN Transformer encoder, written to load Hugging Face checkpoints exactly
(`kexue.models.checkpoint` maps the names):

    E = LN(token[x] + position[p] + segment[s])  (then a projection when embedding_size ≠ hidden_size)
    for each layer:  h = LN(h + Attn(h) W^O);  h = LN(h + W_2 act(W_1 h))       ([BERT] = [Vaswani] post-LN)
    MLM logits = LN(act(h W_t)) E_tokenᵀ + b                                     (decoder tied to the tokens)

Applications (bert4keras `application=`, reference/transformer.md §1.7), as a bool attention mask
(True = may attend) combined with the key padding mask:
    encoder  every query sees every real key (bidirectional)
    lm       query i sees keys j ≤ i                                     (`kexue.nn.attention.causal_mask`)
    unilm    with s = cumsum(segment_ids), i sees j iff s_j ≤ s_i: source bidirectional, target causal
                                                                          (`kexue.nn.attention.unilm_mask`)
Positions: learned absolute rows (BERT; RoBERTa counts from pad_id + 1 over real tokens, as HF does),
optionally extended to n² positions by [7947]'s hierarchical decomposition (`hierarchical_alpha`), or RoPE on
q and k (RoFormer, interleaved layout, `kexue.nn.rope.apply_rope`).

`step(tokens, state)` is the KV-cached step of `kexue.nn.decoding` for lm / unilm: the first call encodes the
prompt (unilm: as the source, segment 0, bidirectional; lm: causally), later calls append target tokens
(segment 1 for unilm), which see the whole past and themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.errors import KexueError
from kexue.nn.attention import attention, causal_mask, unilm_mask
from kexue.nn.positions import LearnedPositions, hierarchical_embedding
from kexue.nn.rope import apply_rope

APPLICATIONS = ("encoder", "lm", "unilm")
Cache = tuple[Tensor, Tensor]  # (k, v) of one layer, each (B, H, T_past, D): keys after RoPE


def activation(name: str):
    """The feed-forward nonlinearity named by an HF config's `hidden_act` / `activation_function`."""
    if name == "gelu":  # erf form, BERT's
        return F.gelu
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):  # tanh approximation, GPT-2's
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    if name in ("silu", "swish"):
        return F.silu
    raise KexueError(
        f"activation {name!r} is not supported; use gelu, gelu_new, gelu_pytorch_tanh, relu or silu "
        "(hidden_act / activation_function in config.json)"
    )


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int  # rows of the token embedding (vocab.txt lines)
    hidden_size: int = 768  # d_model
    num_layers: int = 12
    heads: int = 12
    intermediate_size: int = 3072  # width of the feed-forward layer
    max_position: int = 512  # rows of the learned position table (unused with rope)
    type_vocab_size: int = 2  # segment ids 0 … type_vocab_size − 1 (RoBERTa: 1)
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1  # hidden_dropout_prob (training only)
    attention_dropout: float = 0.1  # attention_probs_dropout_prob (training only)
    pad_token_id: int = 0
    position_offset: int | None = None  # RoBERTa: positions start at pad_id + 1 over real tokens; BERT: None
    embedding_size: int | None = None  # RoFormer/ALBERT-style factorised embedding, projected to hidden_size
    rope: bool = False  # RoFormer: rotate q, k by position [8265] instead of a learned position table
    rotary_value: bool = False  # RoFormer option: rotate v as well
    tie_word_embeddings: bool = True  # MLM decoder = token embedding matrix (HF default)
    application: str = "encoder"  # "encoder" | "lm" | "unilm" (bert4keras)
    with_mlm: bool = False  # add the MLM head (forward returns logits); lm / unilm need it
    with_pool: bool = False  # add BERT's pooler: tanh(W h_[CLS]) (`pooled`)
    hierarchical_alpha: float | None = None  # [7947] α: extend the position table to n² rows

    def __post_init__(self) -> None:
        if self.application not in APPLICATIONS:
            raise KexueError(f"application must be one of {APPLICATIONS}, got {self.application!r}")
        if self.hidden_size % self.heads:
            raise KexueError(f"hidden_size {self.hidden_size} is not divisible by {self.heads} heads")
        if self.rope and self.hierarchical_alpha is not None:
            raise KexueError("hierarchical positions extend a learned table; RoFormer (RoPE) has none")
        activation(self.hidden_act)  # fail at construction on an unknown name

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.heads


# ----------------------------------------------------------------------------------------------- layers
class SelfAttention(nn.Module):
    """Multi-head self-attention [4765] eq. 6–8 with optional RoPE [8265] and a KV cache; 4-D q, k, v."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        d = cfg.hidden_size
        self.heads, self.rope, self.rotary_value = cfg.heads, cfg.rope, cfg.rotary_value
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))  # W^Q, W^K, W^V, W^O
        self.dropout = cfg.attention_dropout

    def _split(self, x: Tensor) -> Tensor:
        B, T, d = x.shape
        return x.view(B, T, self.heads, d // self.heads).transpose(1, 2)  # (B, H, T, D)

    def forward(
        self, x: Tensor, mask: Tensor | None, positions: Tensor, cache: Cache | None = None
    ) -> tuple[Tensor, Cache]:
        """x (B, T, d), mask bool broadcastable to (B, H, T, T_past + T), positions (B, 1, T) or (T,)."""
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))  # (B, H, T, D)
        if self.rope:  # [8265] eq. 13, interleaved pairs (HF RoFormer's layout)
            q, k = apply_rope(q, positions), apply_rope(k, positions)
            if self.rotary_value:
                v = apply_rope(v, positions)
        if cache is not None:
            k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)  # (B, H, T_past + T, D)
        p = self.dropout if self.training else 0.0
        out = attention(q, k, v, mask=mask, dropout_p=p)  # (B, H, T, D) [4765] eq. 4
        B, _, T, _ = out.shape
        return self.o(out.transpose(1, 2).reshape(B, T, -1)), (k, v)  # Concat(heads) W^O: (B, T, d)


class BertLayer(nn.Module):
    """One post-LN encoder layer [BERT]: h = LN(h + Attn(h)); h = LN(h + FFN(h))."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        d, eps = cfg.hidden_size, cfg.layer_norm_eps
        self.attn = SelfAttention(cfg)
        self.norm1 = nn.LayerNorm(d, eps=eps)
        self.ffn_in = nn.Linear(d, cfg.intermediate_size)  # W_1
        self.ffn_out = nn.Linear(cfg.intermediate_size, d)  # W_2
        self.norm2 = nn.LayerNorm(d, eps=eps)
        self.act, self.drop = activation(cfg.hidden_act), nn.Dropout(cfg.dropout)

    def forward(self, h: Tensor, mask: Tensor | None, positions: Tensor, cache: Cache | None = None):
        a, cache = self.attn(h, mask, positions, cache)
        h = self.norm1(h + self.drop(a))
        h = self.norm2(h + self.drop(self.ffn_out(self.act(self.ffn_in(h)))))
        return h, cache


class Embeddings(nn.Module):
    """LN(token + position + segment) [BERT], with [7947]'s hierarchical extension of the position table."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        e = cfg.embedding_size or cfg.hidden_size
        self.token = nn.Embedding(cfg.vocab_size, e)
        self.position = None if cfg.rope else LearnedPositions(cfg.max_position, e)
        self.segment = nn.Embedding(cfg.type_vocab_size, e)
        self.norm = nn.LayerNorm(e, eps=cfg.layer_norm_eps)
        self.project = nn.Linear(e, cfg.hidden_size) if e != cfg.hidden_size else None
        self.alpha, self.drop = cfg.hierarchical_alpha, nn.Dropout(cfg.dropout)

    def forward(self, token_ids: Tensor, segment_ids: Tensor, positions: Tensor) -> Tensor:
        x = self.token(token_ids) + self.segment(segment_ids)  # (B, T, e)
        if self.position is not None:
            if self.alpha is None:
                x = x + self.position(positions)
            else:  # q_{(i−1)n+j} = α u_i + (1 − α) u_j  [7947]
                x = x + hierarchical_embedding(self.position.weight, positions, self.alpha)
        x = self.drop(self.norm(x))
        return x if self.project is None else self.project(x)  # (B, T, d)


class MLMHead(nn.Module):
    """BERT's masked-LM head: logits = LN(act(h W_t + b_t)) E_tokenᵀ + b (decoder tied unless configured)."""

    def __init__(self, cfg: BertConfig, token: nn.Embedding):
        super().__init__()
        e = cfg.embedding_size or cfg.hidden_size
        self.dense = nn.Linear(cfg.hidden_size, e)
        self.norm = nn.LayerNorm(e, eps=cfg.layer_norm_eps)
        self.act = activation(cfg.hidden_act)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        # tied: the embedding is read at call time (not registered twice in the state dict)
        self.decoder = None if cfg.tie_word_embeddings else nn.Linear(e, cfg.vocab_size, bias=False)
        self._token = [token]  # a list hides it from the module tree

    def forward(self, h: Tensor) -> Tensor:
        x = self.norm(self.act(self.dense(h)))  # (B, T, e)
        w = self._token[0].weight if self.decoder is None else self.decoder.weight  # (V, e)
        return F.linear(x, w, self.bias)  # (B, T, V)


# ------------------------------------------------------------------------------------------------ model
class Bert(nn.Module):
    """BERT / RoBERTa / RoFormer encoder (module docstring). `forward(token_ids, segment_ids, padding)`
    returns MLM logits (B, T, V) when `with_mlm`, else the last hidden states (B, T, d)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        if cfg.application != "encoder" and not cfg.with_mlm:
            raise KexueError(f"application={cfg.application!r} predicts tokens: build it with with_mlm=True")
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_layers))
        self.mlm = MLMHead(cfg, self.embeddings.token) if cfg.with_mlm else None
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size) if cfg.with_pool else None

    # ---- masks and positions
    def _positions(self, real: Tensor, past: Tensor | None) -> Tensor:
        """(B, T) positions of the new tokens: real tokens count from 0 (RoBERTa: from pad_id + 1) after
        the real tokens already seen (`past`, (B,) counts), left padding included; pads get 0 (pad_id)."""
        start = 0 if past is None else past[:, None]
        count = real.long().cumsum(-1) + start  # (B, T) 1-based index among real tokens
        if self.cfg.position_offset is None:
            return (count - 1).clamp_min(0) * real  # BERT / RoFormer: 0-based
        return count * real + self.cfg.pad_token_id  # RoBERTa: pad_id + 1, pad_id + 2, …; pads → pad_id

    def _mask(self, key_real: Tensor, segment_ids: Tensor, past: int) -> Tensor:
        """Bool (B, 1, T, past + T): the application's pattern ∧ real keys."""
        T = segment_ids.shape[1]
        keys = key_real[:, None, None, :]  # (B, 1, 1, Tk)
        app = self.cfg.application
        if app == "lm" or (app == "unilm" and past > 0):  # new target tokens see the past and themselves
            return keys & causal_mask(T, past + T, offset=past, device=key_real.device)
        if app == "unilm":  # s_j ≤ s_i [UniLM] (bert4keras `compute_attention_bias`)
            return keys & unilm_mask(segment_ids)
        return keys.expand(-1, -1, T, -1)  # encoder: bidirectional

    # ---- forward
    def encode(
        self,
        token_ids: Tensor,
        segment_ids: Tensor | None = None,
        *,
        padding: Tensor | None = None,
        caches: list[Cache] | None = None,
        past_real: Tensor | None = None,
    ) -> tuple[Tensor, list[Cache]]:
        """Hidden states (B, T, d) and each layer's (k, v). token_ids, segment_ids (B, T) integers;
        padding (B, T) bool, True at real tokens (default all real); with `caches`, `past_real` (B, P) bool
        marks the real keys of the past."""
        if token_ids.dim() != 2:
            raise KexueError(f"Bert needs (B, T) token ids, got shape {tuple(token_ids.shape)}")
        seg = torch.zeros_like(token_ids) if segment_ids is None else segment_ids.to(token_ids.device)
        real = torch.ones_like(token_ids, dtype=torch.bool) if padding is None else padding.bool()
        P = 0 if caches is None else caches[0][0].shape[2]
        key_real = real if past_real is None else torch.cat((past_real, real), dim=1)  # (B, P + T)
        pos = self._positions(real, None if past_real is None else past_real.long().sum(-1))  # (B, T)
        h = self.embeddings(token_ids, seg, pos)  # (B, T, d)
        mask, rope_pos = self._mask(key_real, seg, P), pos[:, None, :]  # (B, 1, T, P + T), (B, 1, T)
        new = []
        for i, layer in enumerate(self.layers):
            h, kv = layer(h, mask, rope_pos, None if caches is None else caches[i])
            new.append(kv)
        return h, new

    def forward(self, token_ids: Tensor, segment_ids: Tensor | None = None, *, padding: Tensor | None = None):
        h, _ = self.encode(token_ids, segment_ids, padding=padding)
        return h if self.mlm is None else self.mlm(h)  # (B, T, d) or (B, T, V)

    def pooled(self, h: Tensor) -> Tensor:
        """BERT's pooler on the [CLS] state: tanh(W h_0 + b), (B, d)."""
        if self.pooler is None:
            raise KexueError("this model has no pooler: build it with with_pool=True")
        return torch.tanh(self.pooler(h[:, 0]))

    # ---- decoding
    def step(self, tokens: Tensor, state: dict | None) -> tuple[Tensor, dict]:
        """`kexue.nn.decoding` step for lm / unilm: tokens (B, t) → (next-token logits (B, V), state).

        The initial state may be None or {"padding": (B, T) bool} for a left-padded prompt. The state holds
        each layer's (k, v) and "real" (B, T_seen) bool, all batch-first (reorderable by `select_state`).
        """
        if self.cfg.application == "encoder":
            raise KexueError(
                "step needs application='lm' or 'unilm' (an encoder does not predict a next token)"
            )
        first = state is None or "cache" not in state
        if first:
            padding = None if state is None else state.get("padding")
            seg = torch.zeros_like(tokens)  # unilm: the prompt is the source (segment 0)
            h, cache = self.encode(tokens, seg, padding=padding)
            real = torch.ones_like(tokens, dtype=torch.bool) if padding is None else padding.bool()
        else:
            seg = torch.full_like(tokens, 1 if self.cfg.application == "unilm" else 0)  # target: segment 1
            real = torch.ones_like(tokens, dtype=torch.bool)
            h, cache = self.encode(tokens, seg, caches=state["cache"], past_real=state["real"])
            real = torch.cat((state["real"], real), dim=1)
        logits = self.mlm(h[:, -1:])[:, 0]  # (B, V)
        return logits, {"cache": cache, "real": real}


def bert_config(hf: dict, *, roberta: bool = False, **options) -> BertConfig:
    """A `BertConfig` from an HF BERT / RoBERTa config.json dict; `options` set the kexue-only fields."""
    pad = hf.get("pad_token_id", 1 if roberta else 0)
    pad = (1 if roberta else 0) if pad is None else pad
    return BertConfig(
        vocab_size=hf["vocab_size"],
        hidden_size=hf.get("hidden_size", 768),
        num_layers=hf.get("num_hidden_layers", 12),
        heads=hf.get("num_attention_heads", 12),
        intermediate_size=hf.get("intermediate_size", 3072),
        max_position=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2),
        hidden_act=hf.get("hidden_act", "gelu"),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        pad_token_id=pad,
        position_offset=pad + 1 if roberta else None,
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        **options,
    )


def init_weights(model: nn.Module, *, std: float = 0.02, generator: torch.Generator | None = None) -> None:
    """BERT's initialisation: Linear and Embedding weights N(0, std²), biases 0, LayerNorm gains 1."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, std, generator=generator)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, LearnedPositions):
            nn.init.normal_(m.weight, 0.0, std, generator=generator)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
