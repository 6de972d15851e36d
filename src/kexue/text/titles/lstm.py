"""The seq2seq title generator of [5861]: character BiLSTM encoder, LSTM decoder, attention, copy prior.

[5861] 玩转Keras之seq2seq自动生成标题, kexue.fm/archives/5861, and its code bojone/seq2seq `seq2seq.py`:
- one Embedding shared by encoder and decoder ("encoder和decoder的Embedding层可以共享参数");
- encoder: 2 × Bidirectional LSTM(z/2); decoder: 2 × LSTM(z), teacher forcing on Y[:-1] → Y[1:], started
  from zero states (the decoder sees the article only through attention);
- `Interact` layer: multiplicative attention a = softmax(q W kᵀ / 10) over the unpadded encoder outputs,
  concatenated with the decoder state q and a masked max-pool of the encoder ("通读全文" + "精读局部");
  then Dense(512, ReLU) → Dense(|V|) = y;
- copy prior (section 先验知识): χ ∈ {0,1}^|V| marks the characters of the article,
      ŷ = s ⊗ χ + t                                                            (eq. 3)
  with s = e^{log_scale} (bojone `ScaleShift`, both initialised to 0), and
      y ← (y + ŷ) / 2,   p = softmax(y)                                         (eq. 4)
- masked token cross-entropy; beam search decoding (eq. 1) — here with the cached `step` the post wished for
  ("理论上…只需要传入到LSTM的下一步迭代中去"): O(n) instead of re-running the model every step.

Decoding interface (`kexue.nn.decoding`): `encode(src) -> state`, `step(tokens (B, t), state) ->
(logits (B, V), state)`; the state is a dict of batch-first tensors: memory (B, S, H), mask (B, S), pooled
(B, H), chi (B, V), and the decoder LSTM's h, c stored as (B, layers, H).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.errors import KexueError
from kexue.text.titles.data import PAD, START, trim


@dataclass(frozen=True)
class LSTMSeq2SeqConfig:
    vocab_size: int  # |V| + 4 (ids 0–3: PAD, UNK, START, END)
    embed_dim: int = 128  # seq2seq.py char_size = 128
    hidden: int = 128  # z_dim: encoder directions z/2 each, decoder z (seq2seq.py z_dim = 128)
    encoder_layers: int = 2  # 2 × BiLSTM [5861]
    decoder_layers: int = 2  # 2 × LSTM [5861]
    ffn_dim: int = 512  # Dense(512, relu) before the output layer
    copy_prior: bool = True  # mix the prior ŷ = s⊗χ + t into the logits [5861] eq. 3–4
    attention_divisor: float = 10.0  # `Interact`: a = qWkᵀ / 10

    def __post_init__(self) -> None:
        if self.vocab_size <= START or self.hidden % 2 or min(self.embed_dim, self.hidden, self.ffn_dim) < 1:
            raise KexueError(
                f"LSTMSeq2SeqConfig needs vocab_size > {START}, an even hidden size and positive widths, got "
                f"vocab_size={self.vocab_size}, hidden={self.hidden}"
            )


def source_bag(src: Tensor, vocab_size: int) -> Tensor:
    """χ (B, V) float: 1 where the character occurs in the (unpadded) source [5861] `to_one_hot`."""
    chi = torch.zeros(src.shape[0], vocab_size, device=src.device)
    chi.scatter_(1, src, 1.0)  # every id present, PAD included …
    chi[:, PAD] = 0.0  # … then PAD removed: padding is a mask, not a character
    return chi  # (B, V)


def copy_prior_logits(y: Tensor, chi: Tensor, log_scale: Tensor, shift: Tensor) -> Tensor:
    """(y + ŷ) / 2 with ŷ = e^{log_scale} ⊗ χ + t [5861] eq. 3–4; y (B, T, V), χ (B, V)."""
    y_hat = log_scale.exp() * chi[:, None, :] + shift  # (B, 1, V) eq. 3
    return (y + y_hat) / 2  # eq. 4 (softmax is applied by the loss / the decoder)


class LSTMSeq2Seq(nn.Module):
    """`forward(src, tgt_in) -> logits (B, T, V)`, `loss((src, tgt))`; `encode`/`step`/`start` decode."""

    def __init__(self, config: LSTMSeq2SeqConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        c = self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)  # shared by encoder and decoder
        self.encoder = nn.ModuleList(  # per layer: the forward and the backward LSTM of a BiLSTM
            nn.ModuleList(
                nn.LSTM(c.embed_dim if i == 0 else c.hidden, c.hidden // 2, batch_first=True) for _ in "fb"
            )
            for i in range(c.encoder_layers)
        )
        self.decoder = nn.LSTM(c.embed_dim, c.hidden, c.decoder_layers, batch_first=True)
        self.attn = nn.Linear(c.hidden, c.hidden, bias=False)  # `Interact` kernel W
        self.ffn = nn.Linear(3 * c.hidden, c.ffn_dim)  # on [attention o, decoder q, max-pool]
        self.out = nn.Linear(c.ffn_dim, c.vocab_size)
        self.log_scale = nn.Parameter(torch.zeros(c.vocab_size)) if c.copy_prior else None  # log s
        self.shift = nn.Parameter(torch.zeros(c.vocab_size)) if c.copy_prior else None  # t
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default scales (N(0, 1) embedding, U(±1/√fan_in) elsewhere), drawn from `generator`;
        the prior's log s and t start at 0 as in bojone's `ScaleShift`."""
        with torch.no_grad():
            for mod in self.modules():
                if isinstance(mod, nn.Embedding):
                    mod.weight.normal_(0.0, 1.0, generator=generator)
                elif isinstance(mod, (nn.LSTM, nn.Linear)):
                    fan = mod.hidden_size if isinstance(mod, nn.LSTM) else mod.in_features
                    for p in mod.parameters():
                        p.uniform_(-(fan**-0.5), fan**-0.5, generator=generator)
            if self.log_scale is not None:
                self.log_scale.zero_()
                self.shift.zero_()

    # ------------------------------------------------------------------------------------------ encoder
    def encode(self, src: Tensor) -> dict[str, Tensor]:
        """src (B, S) right-padded ids (PAD = 0, ≥ 1 real id per row) → the decoder's initial state."""
        if src.dim() != 2 or bool((src[:, 0] == PAD).any()):
            raise KexueError(
                f"encode needs (B, S) right-padded source ids, each row non-empty; got {tuple(src.shape)}"
            )
        mask = src != PAD  # (B, S)
        memory = self._bilstm(self.embed(src), mask)  # (B, S, H)
        pooled = memory.masked_fill(~mask[..., None], -math.inf).amax(1)  # (B, H) masked max-pool
        B, L, H = src.shape[0], self.config.decoder_layers, self.config.hidden
        zeros = memory.new_zeros(B, L, H)  # the decoder starts from zero states (seq2seq.py)
        chi = source_bag(src, self.config.vocab_size).to(memory.dtype)
        return {"memory": memory, "mask": mask, "pooled": pooled, "chi": chi, "h": zeros, "c": zeros}

    def _bilstm(self, x: Tensor, mask: Tensor) -> Tensor:
        """Stacked BiLSTM over right-padded x (B, S, E), exact for every length without packing: the
        forward pass never reaches the padding before a real step, and the backward pass runs forward over
        each row's real characters reversed in place (index n−1−t for t < n; padding stays behind)."""
        t = torch.arange(x.shape[1], device=x.device)  # (S,)
        n = mask.sum(1, keepdim=True)  # (B, 1) lengths
        rev = torch.where(t < n, n - 1 - t, t)  # (B, S) an involution: reversing twice is the identity
        for fwd, bwd in self.encoder:
            back = bwd(x.gather(1, rev[..., None].expand_as(x)))[0]  # (B, S, H/2) on reversed rows
            back = back.gather(1, rev[..., None].expand_as(back))  # (B, S, H/2) back in reading order
            x = torch.cat((fwd(x)[0], back), -1)  # (B, S, H)
        return x

    # ------------------------------------------------------------------------------------------ decoder
    def _readout(self, q: Tensor, state: dict[str, Tensor]) -> Tensor:
        """`Interact` + Dense layers (+ the copy prior): decoder outputs q (B, T, H) → logits (B, T, V)."""
        memory, mask = state["memory"], state["mask"]
        a = self.attn(q) @ memory.transpose(1, 2) / self.config.attention_divisor  # (B, T, S)
        a = a.masked_fill(~mask[:, None, :], -math.inf).softmax(-1)
        o = a @ memory  # (B, T, H)
        pooled = state["pooled"][:, None, :].expand_as(q)  # (B, T, H)
        y = self.out(F.relu(self.ffn(torch.cat((o, q, pooled), -1))))  # (B, T, V)
        if self.config.copy_prior:
            y = copy_prior_logits(y, state["chi"], self.log_scale, self.shift)
        return y

    def _decode(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        hc = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())  # (L, B, H)
        q, (h, c) = self.decoder(self.embed(tokens), hc)  # (B, T, H)
        return self._readout(q, state), {**state, "h": h.transpose(0, 1), "c": c.transpose(0, 1)}

    def step(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Feed title tokens (B, t) after `state` (from `encode`, then `step`) → (logits (B, V), state)."""
        if not isinstance(state, dict) or "memory" not in state:
            raise KexueError("LSTMSeq2Seq.step needs the state returned by encode(src) on its first call")
        logits, state = self._decode(tokens, state)
        return logits[:, -1], state

    def start(self, src: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(prompt (B, 1) of START, initial state) for `kexue.nn.decoding`'s greedy / beam_search."""
        return torch.full((src.shape[0], 1), START, dtype=torch.long, device=src.device), self.encode(src)

    # ------------------------------------------------------------------------------------------ training
    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """src (B, S), tgt_in (B, T) = [START, y…] (teacher forcing) → logits (B, T, V)."""
        return self._decode(tgt_in, self.encode(src))[0]

    def loss(self, batch: Sequence[Tensor]) -> dict[str, Tensor]:
        """batch (src (B, S), tgt (B, T) = [START, y…, END, PAD…]): mean CE of tgt[:, 1:] over non-PAD."""
        src, tgt = trim(batch[0]), trim(batch[1])  # data sets pad to their longest row, a batch need not
        logits = self(src, tgt[:, :-1])  # (B, T−1, V)
        target, keep = tgt[:, 1:], tgt[:, 1:] != PAD
        ce = F.cross_entropy(logits[keep], target[keep])
        acc = (logits[keep].argmax(-1) == target[keep]).float().mean()
        return {"loss": ce, "token_acc": acc.detach()}
