"""UniLM title generation: one BERT-style Transformer with the seq2seq mask, from scratch [6933, 6915].

[6933] 从语言模型到Seq2Seq：Transformer如戏，全靠Mask (kexue.fm/archives/6933); [6915] bert4keras
(`application='unilm'`, example task_seq2seq_autotitle_csl.py); [UniLM] Dong et al., NeurIPS 2019.
- Input: [CLS] source [SEP] title [SEP] with segment ids 0 … 0 1 … 1 (here START = [CLS], END = [SEP]).
- Mask (reference/transformer.md §1.7): s = cumsum(segment_ids); query i sees key j iff s_j ≤ s_i — the
  source attends bidirectionally, the title causally and to the whole source (`unilm_mask` of kexue.nn).
- Loss: cross-entropy of token i + 1 from position i, counted only where segment_ids[i + 1] = 1 (bert4keras
  `CrossEntropy`: y_mask = segment_ids[:, 1:]) and not padding: the source is never a target.
- The network is BERT's: token + segment + learned position embeddings → LayerNorm → N post-LN layers of
  multi-head self-attention and a GELU FFN → an MLM head (dense, GELU, LayerNorm, the tied embedding, bias).

Decoding (`kexue.nn.decoding`): `start(src)` gives the prompt [CLS] source [SEP] (right-padded, segment 0)
and `step(tokens, state)` feeds it once, then one title token at a time (segment 1) against a KV cache. The
state: "layers" per layer (k, v) (B, H, T, D); "real" (B, T_keys) which keys are real (prompt padding is not);
"pos" (B,) the position of the next token (positions count real tokens, so a padded prompt continues right
after its own [SEP], exactly as the unpadded sequence would).

A user's pretrained BERT: `from_pretrained_bert` hands a checkpoint to
`kexue.models.builder.build_transformer_model(..., application="unilm")`; the whole fine-tuning path (BERT
folder, WordPiece tokenizer, loss, decoding, run files) is `kexue.text.titles.bert_unilm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.errors import KexueError
from kexue.nn.attention import MultiHeadAttention, unilm_mask
from kexue.nn.positions import LearnedPositions
from kexue.text.titles.data import END, PAD, START


@dataclass(frozen=True)
class UniLMConfig:
    """BERT-base is (768, 12, 12, 3072, 512); the defaults are a CPU-sized model trained from scratch."""

    vocab_size: int  # |V| + 4 (ids 0–3: PAD, UNK, START = [CLS], END = [SEP])
    d_model: int = 256  # hidden size
    heads: int = 4  # attention heads (head dim d_model / heads)
    layers: int = 4  # Transformer layers
    d_ff: int = 1024  # FFN inner width (BERT: 4 × d_model)
    max_len: int = 512  # learned positions (BERT's max_position_embeddings)
    dropout: float = 0.1  # on embeddings and sublayer outputs (BERT's hidden_dropout_prob)
    layer_norm_eps: float = 1e-12  # BERT's

    def __post_init__(self) -> None:
        if self.d_model % self.heads or self.vocab_size <= END:
            raise KexueError(
                f"UniLMConfig needs heads dividing d_model and vocab_size > {END}, got "
                f"d_model={self.d_model}, heads={self.heads}, vocab_size={self.vocab_size}"
            )


def target_mask(segments: Tensor, real: Tensor) -> Tensor:
    """(B, L − 1) bool: position i predicts token i + 1, a target iff segments[i + 1] = 1 and it is real
    ([6915] seq2seq loss: y_mask = segment_ids[:, 1:])."""
    return (segments[:, 1:] == 1) & real[:, 1:]


def seq2seq_loss(logits: Tensor, tokens: Tensor, segments: Tensor, real: Tensor) -> dict[str, Tensor]:
    """Mean CE of tokens[:, 1:] from logits[:, :-1] at `target_mask` only ([6933]: only the title is
    predicted). logits (B, L, V), or already (N, V) at the target positions; tokens, segments, real (B, L)."""
    keep = target_mask(segments, real)
    pred = logits if logits.dim() == 2 else logits[:, :-1][keep]  # (N, V) title tokens and the final END
    target = tokens[:, 1:][keep]  # (N,)
    ce = F.cross_entropy(pred.to(torch.promote_types(pred.dtype, torch.float32)), target)  # AMP: fp32
    return {"loss": ce, "token_acc": (pred.argmax(-1) == target).float().mean().detach()}


def target_positions(tokens: Tensor, segments: Tensor) -> Tensor:
    """`target_mask` for the character vocabulary, where a token is real iff it is not PAD."""
    return target_mask(segments, tokens != PAD)


def unilm_loss(logits: Tensor, tokens: Tensor, segments: Tensor) -> dict[str, Tensor]:
    """`seq2seq_loss` for the character vocabulary (padding = PAD); logits (B, T, V) or (N, V)."""
    return seq2seq_loss(logits, tokens, segments, tokens != PAD)


def join_source_title(src: Tensor, tgt: Tensor) -> tuple[Tensor, Tensor]:
    """(src (B, S) right-padded ids, tgt (B, T) = [START, y…, END, PAD…]) → right-padded
    (tokens, segments) (B, L) of [START] source [END] y… [END] with segments 0…0 1…1 (padding: 0)."""
    rows, segs = [], []
    for s, t in zip(src.tolist(), tgt.tolist()):
        s, t = [i for i in s if i != PAD], [i for i in t if i != PAD][1:]  # drop the title's START
        rows.append([START, *s, END, *t])
        segs.append([0] * (len(s) + 2) + [1] * len(t))
    L = max(len(r) for r in rows)
    tokens = torch.tensor([r + [PAD] * (L - len(r)) for r in rows], dtype=torch.long, device=src.device)
    segments = torch.tensor([g + [0] * (L - len(g)) for g in segs], dtype=torch.long, device=src.device)
    return tokens, segments  # (B, L) each


class BertLayer(nn.Module):
    """Post-LN Transformer layer as in BERT: LN(x + Drop(MHA(x))), then LN(x + Drop(W₂ GELU(W₁x)))."""

    def __init__(self, c: UniLMConfig) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(c.d_model, c.heads)
        self.norm1 = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.ff1, self.ff2 = nn.Linear(c.d_model, c.d_ff), nn.Linear(c.d_ff, c.d_model)
        self.norm2 = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.drop = nn.Dropout(c.dropout)

    def forward(
        self, x: Tensor, mask: Tensor, *, causal: bool = False, cache: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, T, d), mask bool broadcastable to (B, H, T, T_keys) → (x, (k, v) of all keys)."""
        a, kv = self.attn(x, mask=mask, causal=causal, cache=cache)
        x = self.norm1(x + self.drop(a))
        x = self.norm2(x + self.drop(self.ff2(F.gelu(self.ff1(x)))))
        return x, kv


class UniLM(nn.Module):
    """`forward(tokens, segments) -> logits (B, T, V)`, `loss((src, tgt))`, `start`/`step` for decoding."""

    def __init__(self, config: UniLMConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        c = self.config = config
        self.tok = nn.Embedding(c.vocab_size, c.d_model)
        self.seg = nn.Embedding(2, c.d_model)  # BERT's token_type embeddings
        self.pos = LearnedPositions(c.max_len, c.d_model, generator=generator)
        self.emb_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.drop = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(BertLayer(c) for _ in range(c.layers))
        self.head = nn.Linear(c.d_model, c.d_model)  # MLM head transform
        self.head_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))  # output bias; weights tied to `tok`
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """BERT's initialiser: weights N(0, 0.02²), biases 0, LayerNorm (1, 0), from `generator`."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if "norm" in name:
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif p.dim() > 1:
                    p.normal_(0.0, 0.02, generator=generator)
                else:
                    p.zero_()

    def _embed(self, tokens: Tensor, segments: Tensor, positions: Tensor) -> Tensor:
        x = self.tok(tokens) + self.seg(segments) + self.pos(positions)  # (B, T, d)
        return self.drop(self.emb_norm(x))

    def _logits(self, h: Tensor) -> Tensor:
        h = self.head_norm(F.gelu(self.head(h)))
        return h @ self.tok.weight.T + self.bias  # (..., V) tied to the token embedding (BERT's MLM head)

    def hidden(self, tokens: Tensor, segments: Tensor) -> Tensor:
        """tokens, segments (B, T) right-padded → the last layer (B, T, d) under the UniLM mask."""
        real = tokens != PAD
        mask = unilm_mask(segments) & real[:, None, None, :]  # (B, 1, T, T): seq2seq mask ∧ real keys
        positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
        x = self._embed(tokens, segments, positions)
        for layer in self.layers:
            x, _ = layer(x, mask)
        return x

    def forward(self, tokens: Tensor, segments: Tensor) -> Tensor:
        """tokens, segments (B, T) right-padded → logits (B, T, V)."""
        return self._logits(self.hidden(tokens, segments))

    def loss(self, batch: Sequence[Tensor]) -> dict[str, Tensor]:
        """batch (src (B, S), tgt (B, T) = [START, y…, END, PAD…]), as for `LSTMSeq2Seq.loss`; the output
        layer runs at the target positions only (the source is never predicted)."""
        tokens, segments = join_source_title(batch[0], batch[1])
        keep = target_positions(tokens, segments)
        h = self.hidden(tokens, segments)[:, :-1][keep]  # (N, d)
        return unilm_loss(self._logits(h), tokens, segments)

    # ------------------------------------------------------------------------------------------ decoding
    def start(self, src: Tensor) -> tuple[Tensor, None]:
        """(prompt (B, S + 2) = [START] source [END], right-padded; state None) for the decoders."""
        rows = [[START, *[i for i in s if i != PAD], END] for s in src.tolist()]
        L = max(len(r) for r in rows)
        prompt = torch.tensor([r + [PAD] * (L - len(r)) for r in rows], dtype=torch.long, device=src.device)
        return prompt, None

    def step(self, tokens: Tensor, state: dict[str, Any] | None) -> tuple[Tensor, dict[str, Any]]:
        """First call: the prompt (B, S) (segment 0, bidirectional); later: title tokens (B, t) (segment 1,
        causal) against the cache → (logits of the next token (B, V), state)."""
        real = tokens != PAD  # (B, t)
        if state is None:  # the prompt: positions 0…S−1, padding only at the right end
            positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
            segments, keys, caches = torch.zeros_like(tokens), real, [None] * len(self.layers)
            last = real.sum(1) - 1  # (B,) each row's [SEP]
        else:
            positions = state["pos"][:, None] + torch.arange(tokens.shape[1], device=tokens.device)  # (B, t)
            segments, caches = torch.ones_like(tokens), state["layers"]
            keys = torch.cat((state["real"], real), dim=1)  # (B, T_past + t)
            last = torch.full_like(tokens[:, 0], tokens.shape[1] - 1)
        x = self._embed(tokens, segments, positions)
        new = []
        for layer, cache in zip(self.layers, caches):  # a title token sees all keys before it: causal
            x, kv = layer(x, keys[:, None, None, :], causal=state is not None, cache=cache)
            new.append(kv)
        h = x[torch.arange(x.shape[0], device=x.device), last]  # (B, d) the last real position
        pos = (state["pos"] if state is not None else torch.zeros_like(last)) + real.sum(1)
        return self._logits(h), {"layers": tuple(new), "real": keys, "pos": pos}


def from_pretrained_bert(
    config: str | Path, checkpoint: str | Path | None = None, *, model: str = "bert", **kwargs: Any
) -> nn.Module:
    """System (b) from a user's pretrained BERT ([6933]'s setting): the `Bert` (application "unilm", MLM
    head) of `kexue.models.builder.build_transformer_model(config, checkpoint, model=model, …)`. Its tokenizer
    is the BERT vocabulary's (`kexue.text.tokenizer`), not `CharVocab`; the title loss, decoding and run
    files of a whole BERT folder are `kexue.text.titles.bert_unilm` (`from_bert_folder`)."""
    try:
        from kexue.models.builder import build_transformer_model
    except ImportError:
        raise KexueError(
            "a pretrained BERT needs kexue.models.builder, which this installation lacks; train from scratch "
            "(kexue titles train --model unilm) or update kexue"
        ) from None
    kwargs.setdefault("with_mlm", True)
    return build_transformer_model(config, checkpoint, model=model, application="unilm", **kwargs)
