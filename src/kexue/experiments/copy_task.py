"""The periodic copy task, a tiny causal LM for it, and its training loop: the shared bench of the
`length-extrapolation` and `hierarchical-position` reproductions (reference/transformer.md §2.4 pilot, §4).

A sequence repeats a pattern of P distinct tokens (P uniform in [min_period, max_period], the tokens drawn
without replacement from a vocabulary of V): x_s = pattern[s mod P]; with `segment` = S a fresh pattern (and
P) starts every S tokens and r = s mod S replaces s. The first repeat, at r = P, reveals P — before it, the
next token may be a repeat or a new token — so token s is *determined* by the past iff r > P, and only
those tokens are scored (the prediction at input t is of x_{t+1}); the first period and its repeat are
left out of the loss and of the accuracy, and a perfect model scores 100%. Distinct tokens make the
solution unambiguous: find the most recent occurrence of the current token and copy its successor (an
induction head), i.e. attend to relative distance P − 1. Length extrapolation asks whether that still works
when T grows far beyond the training length.

Model: `kexue.nn.transformer.TransformerLM` (pre-LN, no dropout) with RoPE [8265] or a learned table; the
attention knobs (scale, log-n base and clamp, window) are plain attributes changed after training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kexue.errors import KexueError
from kexue.nn import transformer
from kexue.nn.positions import LearnedPositions
from kexue.nn.transformer import TransformerConfig, TransformerLM


@dataclass(frozen=True)
class CopyTask:
    vocab: int = 32  # V: token ids 0 … V − 1 (chance accuracy 1/V)
    min_period: int = 8  # P is uniform in [min_period, max_period] (reference §2.4 pilot: 8–24)
    max_period: int = 24
    segment: int | None = None  # None: one pattern for the whole sequence; else a fresh pattern (and P)
    # every `segment` tokens, so the answer always lies within the last `segment` positions

    def __post_init__(self) -> None:
        if not 1 <= self.min_period <= self.max_period <= self.vocab:
            raise KexueError(
                f"CopyTask needs 1 ≤ min_period ≤ max_period ≤ vocab (distinct tokens per period), got "
                f"periods {self.min_period}…{self.max_period} with vocab {self.vocab}"
            )
        if self.segment is not None and self.segment <= self.max_period:
            raise KexueError(
                f"CopyTask.segment must exceed max_period (a segment holds a full period and a copy), got "
                f"segment={self.segment}, max_period={self.max_period}"
            )

    @property
    def chance(self) -> float:
        return 1.0 / self.vocab


def periodic_batch(
    task: CopyTask, batch: int, length: int, *, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(tokens (B, length), known (B, length) bool): x_s = pattern[r mod P] with r = s − (segment start);
    known[b, s] iff token s is determined by the past: r > P (the token at r = P may be the first repeat
    or a new token — P is revealed only by that repeat).

    Drawn on the CPU from `generator` (the same numbers on any device); move to the model's device after.
    """
    seg = task.segment or length  # one segment = the whole sequence
    n_seg = -(-length // seg)  # ⌈T / seg⌉
    P = torch.randint(task.min_period, task.max_period + 1, (batch, n_seg), generator=generator)  # (B, S)
    pattern = torch.rand(batch, n_seg, task.vocab, generator=generator).argsort(-1)  # (B, S, V) permutations
    s = torch.arange(length)  # (T,)
    which, r = s // seg, s % seg  # (T,) segment index and offset inside it
    p = P[:, which]  # (B, T) the period of each token's segment
    tokens = pattern[:, which].gather(-1, (r % p)[..., None]).squeeze(-1)  # (B, T): pattern[b, seg, r mod P]
    return tokens, r > p  # the repeat at r = P reveals P; from r = P + 1 on, x_s = x_{s−P}


def lm_batch(tokens: Tensor, known: Tensor) -> tuple[Tensor, Tensor]:
    """(inputs, targets) for `TransformerLM.loss`: the prediction at input t (of token t + 1) is scored iff
    token t + 1 is known; other targets are −1 (ignored)."""
    return tokens[:, :-1], tokens[:, 1:].masked_fill(~known[:, 1:], -1)


# ------------------------------------------------------------------------------------------------ model
@dataclass(frozen=True)
class ModelSpec:
    d_model: int = 64  # reference §2.4 pilot: 2 layers, d = 64, 4 heads (~100k parameters)
    heads: int = 4
    layers: int = 2
    d_ff: int = 256
    train_length: int = 64  # n: training length = rows of a learned table


def tiny_lm(task: CopyTask, spec: ModelSpec, *, positions: str, seed: int, device) -> TransformerLM:
    """A pre-LN TransformerLM without dropout, its weights drawn from `seed` (global RNG state untouched)."""
    cfg = TransformerConfig(
        vocab_size=task.vocab,
        d_model=spec.d_model,
        heads=spec.heads,
        layers=spec.layers,
        d_ff=spec.d_ff,
        dropout=0.0,
        positions=positions,  # "rope" [8265] or "learned" (max_len = n rows)
        max_len=spec.train_length,
        norm_first=True,  # pre-LN: trains at lr 3e-3 without warm-up
        tie_embeddings=False,  # tied, the residual copy of the current token (never the next) slows learning
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TransformerLM(cfg)
    return model.to(device)


def set_attention(
    model: nn.Module,
    *,
    scale: str = "standard",
    log_n_base: int = 512,
    log_n_min: int = 1,
    window: int | None = None,
) -> nn.Module:
    """Set every MultiHeadAttention's scale ("standard" 1/√d or "log_n": log_{base}(max(n, min))/√d with n
    the keys a row sees [8823]) and window (causal: keys at distance ≤ window, i.e. window + 1 keys)."""
    transformer.set_attention(model, scale=scale, window=window, log_n_base=log_n_base, log_n_min=log_n_min)
    return model


# --------------------------------------------------------------------------------------- train / measure
@dataclass(frozen=True)
class TrainSpec:
    steps: int = 500  # Adam steps: loss < 0.1 by ~150 (RoPE) or ~350 (learned table); the pilot used 1000
    batch_size: int = 32
    lr: float = 3e-3  # Adam, constant
    clip: float = 1.0  # global gradient-norm clip


def train(
    model: TransformerLM,
    task: CopyTask,
    length: int,
    spec: TrainSpec,
    *,
    seed: int,
    on_step: Callable[[int], None] | None = None,
) -> list[float]:
    """Adam on the next-token loss over scored positions of fresh batches of `length` inputs; returns the
    loss per step. The data order comes from `seed`; `on_step(step)` runs after each update (evaluations)."""
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    model.train()
    losses = []
    for step in range(1, spec.steps + 1):
        tokens, known = periodic_batch(task, spec.batch_size, length + 1, generator=g)
        inputs, targets = lm_batch(tokens.to(device), known.to(device))  # (B, length) each
        loss = model.loss((inputs, targets))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), spec.clip)
        opt.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step)
    model.eval()
    return losses


@torch.no_grad()
def accuracy(
    model: nn.Module,
    task: CopyTask,
    length: int,
    *,
    sequences: int,
    seed: int,
    batch_size: int = 16,
    beyond: int = 0,
) -> float:
    """Next-token accuracy over scored positions of `sequences` fresh sequences of `length` inputs; with
    `beyond` = b only the predictions of tokens at positions ≥ b count (e.g. those beyond a table of b rows).

    The sequences depend only on (seed, length), so every variant is scored on the same ones.
    """
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed * 100_003 + length)
    was_training = model.training
    model.eval()
    right = total = 0
    for start in range(0, sequences, batch_size):
        tokens, known = periodic_batch(task, min(batch_size, sequences - start), length + 1, generator=g)
        inputs, targets = lm_batch(tokens.to(device), known.to(device))  # (B, length) each
        keep = targets >= 0  # (B, length)
        keep[:, : max(beyond - 1, 0)] = False  # input t predicts token t + 1
        pred = model(inputs).argmax(-1)  # (B, length)
        right += int((pred == targets)[keep].sum())
        total += int(keep.sum())
    model.train(was_training)
    return right / total


# ------------------------------------------------------------------------- absolute positions beyond n
class ClampedPositions(nn.Module):
    """Positions ≥ n reuse the last trained row p_n (a baseline of [7947]'s setting: no new vectors)."""

    def __init__(self, table: LearnedPositions) -> None:
        super().__init__()
        self.table = table

    def forward(self, positions: Tensor) -> Tensor:
        return self.table(positions.clamp(max=self.table.max_len - 1))  # (..., D)


class RepeatedPositions(nn.Module):
    """Position p uses row p mod n: the trained table repeated (the α → 0 limit of [7947]'s form)."""

    def __init__(self, table: LearnedPositions) -> None:
        super().__init__()
        self.table = table

    def forward(self, positions: Tensor) -> Tensor:
        return self.table(positions % self.table.max_len)  # (..., D)


def table_of(model: TransformerLM) -> LearnedPositions:
    """The model's trained (n, D) learned table (whatever extension currently wraps it)."""
    pos = model.decoder.embed.positions
    for table in (pos, getattr(pos, "table", None), getattr(pos, "base", None)):
        if isinstance(table, LearnedPositions):
            return table
    raise KexueError(f"the model has no learned position table (positions module: {type(pos).__name__})")


@contextmanager
def positions_replaced(model: TransformerLM, module: nn.Module) -> Iterator[TransformerLM]:
    """Evaluate `model` with `module` as its absolute positions, then put the original back."""
    embed = model.decoder.embed
    old, embed.positions = embed.positions, module
    try:
        yield model
    finally:
        embed.positions = old
