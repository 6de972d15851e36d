"""The Transformer of "Attention Is All You Need": encoder–decoder and decoder-only LM, KV cache [4765].

[4765] 《Attention is All You Need》浅读, kexue.fm/archives/4765; [Vaswani] Vaswani et al., NeurIPS 2017
(§ numbers below are the paper's); [7947] hierarchical positions; [8265] RoPE; [8823] log-n scale.

- A layer is self-attention, (decoder only) attention over the encoder output, and the position-wise FFN
  max(0, xW₁ + b₁)W₂ + b₂ ([Vaswani] eq. 2: [4765] calls it a width-1 convolution), each wrapped as
  LayerNorm(x + Dropout(Sublayer(x))) ([Vaswani] §3.1, §5.4: post-LN, `norm_first=False`), or as
  x + Dropout(Sublayer(LayerNorm(x))) with a final LayerNorm (pre-LN, `norm_first=True`).
- Inputs: token embedding × √d_model ([Vaswani] §3.4) plus an absolute position table (sinusoidal [4765]
  eq. 9, learned, or learned + hierarchical [7947]), or RoPE on q, k of self-attention [8265], or nothing.
- The output projection shares the target embedding's weights ([Vaswani] §3.4) when `tie_embeddings`.

Decoding (`kexue.nn.decoding` interface): `step(tokens (B, t), state) -> (logits (B, V), state)` feeds the
tokens not yet fed; `state` is a dict of tensors, all batch-first, so a decoder can `index_select(0, …)` it:
    "layers": per layer (k, v) of self-attention, (B, H, T, D) — plus (k, v) of the encoder output
              (B, H, S, D) in a seq2seq decoder, computed at the first step and reused
    "pos":    (B,) the position of the next real token      "real": (B, T) bool, which fed tokens are real
    "memory", "src_mask": (B, S, d_model), (B, S) — seq2seq only, from `encode`
With `pad_id` set, tokens equal to it are padding: masked as keys and skipped by positions, so a left-padded
batch decodes as if each row were alone (positions count real tokens only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.errors import KexueError
from kexue.nn.attention import MultiHeadAttention
from kexue.nn.positions import HierarchicalPositions, LearnedPositions, sinusoidal_embedding

POSITIONS = ("sinusoidal", "learned", "hierarchical", "rope", "none")


@dataclass(frozen=True)
class TransformerConfig:
    """Defaults are the paper's base model ([Vaswani] Table 3, "base"); tiny tasks override them."""

    vocab_size: int = 37000  # target (or LM) vocabulary; [Vaswani] §5.1 shared BPE of ~37k for EN-DE
    src_vocab_size: int | None = None  # encoder vocabulary (None: same as vocab_size)
    d_model: int = 512  # model width [Vaswani] §3
    heads: int = 8  # h; head dim d_k = d_v = d_model/h = 64 [Vaswani] §3.2.2
    layers: int = 6  # N: layers in each of the encoder and the decoder [Vaswani] §3.1
    d_ff: int = 2048  # inner width of the FFN [Vaswani] §3.3
    dropout: float = 0.1  # P_drop on sublayer outputs and on embedding + position sums [Vaswani] §5.4
    attention_dropout: float = 0.0  # on attention probabilities (not in the paper; > 0 loses CPU flash SDPA)
    positions: str = "sinusoidal"  # sinusoidal [4765] | learned | hierarchical [7947] | rope [8265] | none
    max_len: int = 512  # rows of a learned table (hierarchical: valid up to max_len²)
    norm_first: bool = False  # False: the paper's post-LN; True: pre-LN + a final LayerNorm
    tie_embeddings: bool = True  # output projection = target embedding matrix [Vaswani] §3.4
    scale: str | float = "standard"  # attention scale: "standard" 1/√d_k, "log_n" [8823], or a float
    log_n_base: int = 512  # m of log_m n: where the log-n scale equals 1/√d_k (Su: 512; use the train length)
    log_n_min: int = 1  # clamp of the visible-key count n under log n (bert4keras 16)
    window: int | None = None  # self-attention sees only |i − j| ≤ window (None: everything)
    rope_base: float = 10000.0  # θ_i = base^(−2i/d) [8265]
    hierarchical_alpha: float = 0.4  # α of [7947] (Su's choice; 0.5 is forbidden)
    pad_id: int | None = None  # padding token: masked as a key, skipped by positions, not in the loss

    def __post_init__(self) -> None:
        if self.positions not in POSITIONS:
            raise KexueError(
                f"TransformerConfig.positions must be one of {POSITIONS}, got {self.positions!r}"
            )
        if self.d_model % self.heads:
            raise KexueError(f"d_model = {self.d_model} is not divisible by heads = {self.heads}")
        if self.positions == "rope" and (self.d_model // self.heads) % 2:
            raise KexueError(f"RoPE needs an even head dim, got d_model/heads = {self.d_model // self.heads}")


# ----------------------------------------------------------------------------------------------- inputs
class TokenEmbedding(nn.Module):
    """Token embedding × √d_model ([Vaswani] §3.4) plus absolute positions, then dropout (§5.4)."""

    def __init__(self, vocab: int, cfg: TransformerConfig) -> None:
        super().__init__()
        self.d_model, self.kind = cfg.d_model, cfg.positions
        self.tok = nn.Embedding(vocab, cfg.d_model)
        nn.init.normal_(self.tok.weight, 0.0, cfg.d_model**-0.5)  # ×√d gives unit-variance inputs
        self.positions: nn.Module | None = None  # a plain attribute: swap in a longer table at inference
        if cfg.positions in ("learned", "hierarchical"):
            self.positions = LearnedPositions(cfg.max_len, cfg.d_model)
            if cfg.positions == "hierarchical":  # = the table below max_len, defined up to max_len² [7947]
                self.positions = HierarchicalPositions(self.positions, cfg.hierarchical_alpha)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """tokens, positions (B, T) → (B, T, d_model)."""
        x = self.tok(tokens) * math.sqrt(self.d_model)  # (B, T, d)
        if self.kind == "sinusoidal":
            x = x + sinusoidal_embedding(positions, self.d_model, dtype=x.dtype)  # [4765] eq. 9
        elif self.positions is not None:
            x = x + self.positions(positions).to(x.dtype)
        return self.drop(x)


def real_positions(real: Tensor, start: Tensor | None = None) -> Tensor:
    """(B, T) positions that count real tokens only: start + (number of real tokens before each one).

    Padding gets the position of the last real token before it (or 0): it is never attended to, so this
    only keeps indices inside a position table. `start` (B,) continues from a cache.
    """
    pos = real.long().cumsum(-1) - 1  # (B, T): real tokens strictly before a real token
    return (pos if start is None else pos + start[:, None]).clamp(min=0)


# ----------------------------------------------------------------------------------------------- layers
class FeedForward(nn.Module):
    """FFN(x) = max(0, xW₁ + b₁)W₂ + b₂ [Vaswani] eq. 2."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.w1, self.w2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.relu(self.w1(x)))


class TransformerLayer(nn.Module):
    """One encoder layer (cross=False, causal=False), LM layer (cross=False) or decoder layer (cross=True)."""

    def __init__(self, cfg: TransformerConfig, *, cross: bool) -> None:
        super().__init__()
        kw = dict(
            dropout=cfg.attention_dropout, scale=cfg.scale, log_n_base=cfg.log_n_base, log_n_min=cfg.log_n_min
        )
        rope = cfg.positions == "rope"
        self.self_attn = MultiHeadAttention(
            cfg.d_model, cfg.heads, rope=rope, rope_base=cfg.rope_base, window=cfg.window, **kw
        )
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.heads, **kw) if cross else None
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff)
        n_sub = 3 if cross else 2
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.d_model) for _ in range(n_sub))
        self.drop, self.norm_first = nn.Dropout(cfg.dropout), cfg.norm_first

    def _sublayer(self, x: Tensor, i: int, f) -> tuple[Tensor, tuple]:
        """Post-LN: LN(x + Drop(f(x))) [Vaswani] §3.1; pre-LN: x + Drop(f(LN(x))). f returns (y, cache)."""
        if self.norm_first:
            y, c = f(self.norms[i](x))
            return x + self.drop(y), c
        y, c = f(x)
        return self.norms[i](x + self.drop(y)), c

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        causal: bool = False,
        positions: Tensor | None = None,
        cache: tuple[Tensor, ...] = (),
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """x (B, T, d) → (x, cache): cache = (k, v) of self-attention [+ (k, v) of the memory]."""
        self_cache = cache[:2] or None
        x, kv = self._sublayer(
            x, 0, lambda h: self.self_attn(h, mask=mask, causal=causal, positions=positions, cache=self_cache)
        )
        if self.cross_attn is not None:
            cross_cache = cache[2:4] or None
            x, ckv = self._sublayer(
                x, 1, lambda h: self.cross_attn(h, memory, mask=memory_mask, cache=cross_cache)
            )
            kv = kv + ckv
        x, _ = self._sublayer(x, len(self.norms) - 1, lambda h: (self.ffn(h), ()))
        return x, kv


class Stack(nn.Module):
    """Embedding + N layers (+ the final LayerNorm of pre-LN): the encoder, the decoder, or an LM body."""

    def __init__(self, vocab: int, cfg: TransformerConfig, *, cross: bool, causal: bool) -> None:
        super().__init__()
        self.embed = TokenEmbedding(vocab, cfg)
        self.layers = nn.ModuleList(TransformerLayer(cfg, cross=cross) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.d_model) if cfg.norm_first else nn.Identity()
        self.causal, self.pad_id = causal, cfg.pad_id

    def forward(
        self,
        tokens: Tensor,
        *,
        real: Tensor | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        state: dict | None = None,
    ) -> tuple[Tensor, dict]:
        """tokens (B, T) → (hidden (B, T, d), state); a `state` (module docstring) continues a prefix.

        real: (B, T) bool, True at real tokens (None: tokens != pad_id, or all real without a pad_id).
        """
        if tokens.dim() != 2:
            raise KexueError(f"a Transformer needs (B, T) token ids, got shape {tuple(tokens.shape)}")
        padded = real is not None or self.pad_id is not None  # else no key mask: SDPA's fast causal path
        if real is None:
            real = (
                tokens != self.pad_id
                if self.pad_id is not None
                else torch.ones_like(tokens, dtype=torch.bool)
            )
        past = state["real"] if state else real[:, :0]  # (B, T_past)
        caches = state["layers"] if state and state["layers"] else [()] * len(self.layers)
        positions = real_positions(real, state["pos"] if state else None)  # (B, T)
        keys = torch.cat((past, real), dim=1)  # (B, T_past + T)
        mask = keys[:, None, None, :] if padded else None  # (B, 1, 1, T_keys)
        if memory_mask is not None:
            memory_mask = memory_mask[:, None, None, :]  # (B, 1, 1, S)
        x = self.embed(tokens, positions)  # (B, T, d)
        new = []
        for layer, cache in zip(self.layers, caches):
            x, c = layer(
                x,
                memory,
                mask=mask,
                memory_mask=memory_mask,
                causal=self.causal,
                positions=positions,
                cache=cache,
            )
            new.append(c)
        start = state["pos"] if state else torch.zeros_like(tokens[:, 0])
        return self.norm(x), {"layers": tuple(new), "pos": start + real.long().sum(1), "real": keys}


def _tie(head: nn.Linear, embed: TokenEmbedding, tie: bool) -> None:
    if tie:
        head.weight = embed.tok.weight  # [Vaswani] §3.4: the pre-softmax map shares the embedding matrix


def _token_loss(logits: Tensor, targets: Tensor, pad_id: int | None) -> dict[str, Tensor]:
    """Mean cross-entropy over real targets (not pad_id, not negative), and the token accuracy."""
    keep = targets >= 0
    if pad_id is not None:
        keep = keep & (targets != pad_id)
    ce = F.cross_entropy(logits[keep], targets[keep])
    acc = (logits[keep].argmax(-1) == targets[keep]).float().mean()
    return {"loss": ce, "token_acc": acc.detach()}


# ----------------------------------------------------------------------------------------------- models
class TransformerLM(nn.Module):
    """Decoder-only causal LM: `forward(tokens) -> logits (B, T, V)`, `loss(batch)`, `step` for decoding."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.config = cfg
        self.decoder = Stack(cfg.vocab_size, cfg, cross=False, causal=True)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        _tie(self.head, self.decoder.embed, cfg.tie_embeddings)

    def forward(self, tokens: Tensor) -> Tensor:
        h, _ = self.decoder(tokens)  # (B, T, d)
        return self.head(h)  # (B, T, V)

    def step(self, tokens: Tensor, state: dict | None) -> tuple[Tensor, dict]:
        """Feed new tokens (B, t) after `state` (None: nothing fed yet) → (next logits (B, V), state)."""
        h, state = self.decoder(tokens, state=state)
        return self.head(h[:, -1]), state  # (B, V)

    def loss(self, batch: Tensor | Sequence[Tensor]) -> dict[str, Tensor]:
        """batch: tokens (B, T) — next-token loss on tokens[:, 1:] — or (inputs, targets) both (B, T),
        targets < 0 or = pad_id ignored."""
        if isinstance(batch, Tensor) or len(batch) == 1:
            tokens = batch if isinstance(batch, Tensor) else batch[0]
            inputs, targets = tokens[:, :-1], tokens[:, 1:]
        else:
            inputs, targets = batch[0], batch[1]
        return _token_loss(self(inputs), targets, self.config.pad_id)


class Seq2SeqTransformer(nn.Module):
    """The encoder–decoder of [Vaswani] Fig. 1: `forward(src, tgt_in, src_mask) -> logits (B, T, V)`,
    `encode(src, src_mask) -> state`, `step(tokens, state)`, `loss(batch)`.

    src_mask: (B, S) bool, True at real source tokens (None: src != pad_id, or all real without pad_id).
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Stack(cfg.src_vocab_size or cfg.vocab_size, cfg, cross=False, causal=False)
        self.decoder = Stack(cfg.vocab_size, cfg, cross=True, causal=True)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        _tie(self.head, self.decoder.embed, cfg.tie_embeddings)

    def _src_mask(self, src: Tensor, src_mask: Tensor | None) -> Tensor:
        if src_mask is None:
            pad = self.config.pad_id
            return src != pad if pad is not None else torch.ones_like(src, dtype=torch.bool)
        if src_mask.shape != src.shape or src_mask.dtype != torch.bool:
            raise KexueError(
                f"src_mask must be a bool tensor shaped like src {tuple(src.shape)}, got "
                f"{src_mask.dtype} {tuple(src_mask.shape)} (True = real token)"
            )
        return src_mask

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> dict:
        """src (B, S) → the decoder's initial state: memory (B, S, d), src_mask (B, S), empty caches."""
        src_mask = self._src_mask(src, src_mask)
        memory, _ = self.encoder(src, real=src_mask)  # (B, S, d)
        B = src.shape[0]
        empty = torch.zeros(B, 0, dtype=torch.bool, device=src.device)  # (B, 0): nothing fed yet
        pos = torch.zeros(B, dtype=torch.long, device=src.device)
        return {"memory": memory, "src_mask": src_mask, "layers": (), "pos": pos, "real": empty}

    def step(self, tokens: Tensor, state: dict | None) -> tuple[Tensor, dict]:
        """Feed target tokens (B, t) after `state` (from `encode`, then `step`) → (logits (B, V), state)."""
        if state is None or "memory" not in state:
            raise KexueError(
                "Seq2SeqTransformer.step needs the state returned by encode(src) on its first call"
            )
        memory, src_mask = state["memory"], state["src_mask"]
        h, new = self.decoder(tokens, memory=memory, memory_mask=src_mask, state=state)
        return self.head(h[:, -1]), {"memory": memory, "src_mask": src_mask, **new}  # (B, V)

    def forward(self, src: Tensor, tgt_in: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """src (B, S), tgt_in (B, T) (teacher forcing) → logits (B, T, V)."""
        src_mask = self._src_mask(src, src_mask)
        memory, _ = self.encoder(src, real=src_mask)  # (B, S, d)
        h, _ = self.decoder(tgt_in, memory=memory, memory_mask=src_mask)
        return self.head(h)

    def loss(self, batch: Sequence[Tensor]) -> dict[str, Tensor]:
        """batch: (src, tgt) with tgt = [BOS, y…, EOS, pad…] — inputs tgt[:, :-1], targets tgt[:, 1:] —
        or (src, tgt_in, tgt_out)."""
        src, *rest = batch
        tgt_in, tgt_out = (rest[0][:, :-1], rest[0][:, 1:]) if len(rest) == 1 else rest
        return _token_loss(self(src, tgt_in), tgt_out, self.config.pad_id)


def set_attention(
    model: nn.Module,
    *,
    scale: str | float | None = None,
    window: int | str | None = "keep",
    log_n_base: int | None = None,
    log_n_min: int | None = None,
) -> None:
    """Change the scale and/or window of every self-attention in `model` (e.g. at inference only).

    scale None and window "keep" leave the setting as it is; window None removes the window. log_n_base and
    log_n_min (None: keep) set m and the clamp of the log-n scale (cross-attention too).
    """
    for layer in model.modules():
        if isinstance(layer, TransformerLayer):
            for attn in (layer.self_attn, layer.cross_attn):
                if attn is None:
                    continue
                if scale is not None:
                    attn.scale = scale
                if log_n_base is not None:
                    attn.log_n_base = log_n_base
                if log_n_min is not None:
                    attn.log_n_min = log_n_min
            if window != "keep":
                layer.self_attn.window = window
