"""Autoregressive decoding over a step function: greedy search, beam search, random sampling (top-k, top-p).

[5861] 玩转Keras之seq2seq自动生成标题, kexue.fm/archives/5861, section "beam search": a decoder models
    p(Y|X) = p(Y_1|X) p(Y_2|X, Y_1) p(Y_3|X, Y_1, Y_2) …                                            (eq. 1)
  greedy search keeps the most probable Y_t at every step; beam search keeps the top_k partial sequences by
  total probability at every step and stops at <end>; greedy is beam search with top_k = 1.
[6915] bert4keras (`AutoRegressiveDecoder`): beam search and random sampling with topk / topp, `minlen` and
  one end id, one sequence at a time, no cache, no length normalisation.
[NS] Holtzman et al., "The Curious Case of Neural Text Degeneration", ICLR 2020 (top-p / nucleus sampling);
  [TK] Fan et al., ACL 2018 (top-k sampling); [GNMT] Wu et al., arXiv 1609.08144 (length normalisation).

What this module adds to [6915], as users asked (reference/transformer.md §3): a cache and a batch.
- The model is a **step function** `step(tokens (B, t), state) -> (logits (B, V), state)`. `tokens` are the
  tokens not yet fed: the whole prompt on the first call, then the one token just chosen. `state` is the
  caller's initial `state` (None, or e.g. an encoder memory) on the first call and afterwards whatever the
  previous call returned: a pytree (tuples, lists, dicts, nested) whose tensor leaves are batch-first, so a
  decoder reorders it with `index_select(0, ·)` (`select_state`). `full_recompute` turns a plain
  `logits_fn(tokens (B, T)) -> (B, T, V)` into an uncached step, the reference a KV cache must equal.
- Every row of the batch decodes independently. A row that emits an end id is finished: its later
  columns hold `pad_id`, and it is dropped from the batch fed to `step` (finished rows cost nothing).
  The output keeps the end id; it has as many columns as the longest row needed (≤ max_new). Tokens come
  back as int64; the last chosen token is never fed, so `step` runs at most max_new times per row.
- `min_new` forbids every end id while fewer than `min_new` tokens have been generated (the convention of
  HF's min_new_tokens; bert4keras' `minlen` counts the end token too, i.e. minlen = min_new + 1).

Beam search ranks complete hypotheses by log p(Y|X) / |Y|^α with α = `length_penalty` (|Y| counts the end
token). α = 0, the default, is [5861]/[6915]'s plain total log-probability, which prefers short outputs;
α = 1 is the per-token mean. Pruning to `beam_size` is always by the total log-probability.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from kexue.errors import KexueError

Step = Callable[[Tensor, Any], tuple[Tensor, Any]]  # (tokens (B, t), state) -> (logits (B, V), state)


# ----------------------------------------------------------------------------------------- the step interface
def select_state(state: Any, index: Tensor) -> Any:
    """The state of rows `index` (1-D long): `index_select(0, index)` on every tensor leaf of the pytree.

    Tuples (named ones too), lists and dicts are rebuilt with the same structure; None, Python numbers,
    strings and 0-d tensors are shared by the whole batch and pass unchanged (e.g. a position offset).
    """
    if isinstance(state, Tensor):
        return state.index_select(0, index.to(state.device)) if state.dim() else state
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    if isinstance(state, tuple):
        items = [select_state(s, index) for s in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    if isinstance(state, list):
        return [select_state(s, index) for s in state]
    if isinstance(state, dict):
        return {key: select_state(s, index) for key, s in state.items()}
    raise KexueError(
        f"decoding: cannot reorder a state leaf of type {type(state).__name__}; build the step's state from "
        "batch-first tensors in tuples, lists or dicts"
    )


def full_recompute(logits_fn: Callable[[Tensor], Tensor]) -> Step:
    """The uncached step of `logits_fn(tokens (B, T)) -> (B, T, V)`: the state is every token fed so far.

    Each call runs the model over the whole sequence and keeps the last position's logits, O(T²) work over
    a decode; a cached step must give the same logits (x-transformers' "KV cache = no cache" test).
    """

    def step(tokens: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        seq = tokens if state is None else torch.cat((state, tokens), dim=1)  # (B, T)
        return logits_fn(seq)[:, -1], seq  # (B, V), (B, T)

    return step


# ---------------------------------------------------------------------------------------------- filters
def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Logits (..., V) with everything below the k-th largest of its row set to −∞ [TK].

    Ties with the k-th value are kept (so a row may keep more than k); k ≥ V keeps everything.
    """
    _check_top_k(k)
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, -math.inf)


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Logits (..., V) reduced to the nucleus [NS]: the smallest set of most probable tokens whose total
    probability is ≥ p (HF `generate` semantics); the most probable token is always kept. p ∈ (0, 1].

    Among tokens tied at the boundary, the one first in vocabulary order is kept (stable sort).
    """
    _check_top_p(p)
    if p == 1.0:
        return logits  # everything; skips the cumulative sum's rounding at the tail
    sorted_logits, order = logits.sort(dim=-1, descending=True, stable=True)  # (..., V)
    prob = sorted_logits.softmax(dim=-1)
    above = prob.cumsum(dim=-1) - prob  # probability of the tokens ranked strictly higher
    drop_sorted = above >= p  # the set already reached p without this token; rank 0 has above = 0 < p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, -math.inf)


# ------------------------------------------------------------------------------------------------ checks
def _check_common(prompt: Tensor, max_new: int, min_new: int) -> Tensor:
    """The prompt as int64 token ids (what the decoders feed back and return), after the shared checks."""
    bad_dtype = prompt.is_floating_point() or prompt.is_complex() or prompt.dtype == torch.bool
    if prompt.dim() != 2 or prompt.shape[1] < 1 or bad_dtype:
        raise KexueError(
            f"decoding: prompt must be integer token ids of shape (B, T) with T ≥ 1, got {prompt.dtype} "
            f"{tuple(prompt.shape)} (start from a BOS/start id when there is no prompt)"
        )
    if max_new < 1:
        raise KexueError(f"decoding: max_new must be ≥ 1, got {max_new}")
    if not 0 <= min_new <= max_new:
        raise KexueError(f"decoding: min_new must lie in [0, max_new = {max_new}], got {min_new}")
    return prompt.long()


def _check_top_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise KexueError(f"top_k must be an integer ≥ 1, got {k!r} (use None to switch top-k off)")


def _check_top_p(p: float) -> None:
    if not 0.0 < p <= 1.0:  # also rejects NaN
        raise KexueError(f"top_p must lie in (0, 1], got {p!r} (use None or 1.0 to switch top-p off)")


def _end_tensor(end_ids: int | Iterable[int], device: torch.device) -> Tensor:
    ids = [end_ids] if isinstance(end_ids, int) else list(end_ids)
    return torch.tensor(ids, dtype=torch.long, device=device)  # (E,)


def _check_logits(logits: Tensor, rows: int, end: Tensor, first: bool) -> None:
    if logits.dim() != 2 or logits.shape[0] != rows:
        raise KexueError(
            f"decoding: step must return logits of shape (B, V) = ({rows}, V) for the {rows} rows it was "
            f"fed, got {tuple(logits.shape)}"
        )
    if first and end.numel() and not bool(((end >= 0) & (end < logits.shape[1])).all()):
        raise KexueError(f"decoding: end_ids {end.tolist()} must lie in [0, V = {logits.shape[1]})")


def _ban(logits: Tensor, end: Tensor) -> Tensor:
    """No end id yet: min_new tokens have not been generated."""
    return logits.index_fill(-1, end, -math.inf) if end.numel() else logits


def _score_dtype(logits: Tensor) -> torch.dtype:
    return torch.promote_types(logits.dtype, torch.float32)  # log-probs of half-precision models in fp32


# -------------------------------------------------------------------------------------- greedy and sampling
def _row_by_row(
    step: Step,
    prompt: Tensor,
    choose: Callable[[Tensor], Tensor],
    *,
    max_new: int,
    end_ids: int | Iterable[int],
    min_new: int,
    pad_id: int,
    state: Any,
) -> Tensor:
    """The loop shared by greedy and sampling: one token per live row per step, `choose(logits) -> ids`."""
    end = _end_tensor(end_ids, prompt.device)
    out = prompt.new_full((prompt.shape[0], max_new), pad_id)  # (B, max_new)
    rows = torch.arange(prompt.shape[0], device=prompt.device)  # where each live row sits in the batch
    tokens = prompt
    for n in range(1, max_new + 1):  # n = index of the token being chosen, 1-based
        logits, state = step(tokens, state)  # (R, V)
        _check_logits(logits, rows.numel(), end, n == 1)
        new = choose(_ban(logits, end) if n <= min_new else logits)  # (R,)
        out[rows, n - 1] = new
        live = ~torch.isin(new, end)
        n_live = int(live.sum())  # the one host sync per step
        if n_live == 0 or n == max_new:
            break
        if n_live < rows.numel():
            keep = live.nonzero().squeeze(1)  # finished rows leave the batch fed to step
            rows, new, state = rows[keep], new[keep], select_state(state, keep)
        tokens = new[:, None]  # (R, 1)
    return out[:, :n]


def greedy(
    step: Step,
    prompt: Tensor,
    *,
    max_new: int,
    end_ids: int | Iterable[int] = (),
    min_new: int = 0,
    pad_id: int = 0,
    state: Any = None,
) -> Tensor:
    """Greedy search [5861]: the most probable next token at every step (ties: the lowest id).

    prompt (B, T) token ids; returns the generated tokens (B, L), L ≤ max_new, end id included, then pad_id.
    """
    prompt = _check_common(prompt, max_new, min_new)
    return _row_by_row(
        step,
        prompt,
        lambda logits: logits.argmax(dim=-1),
        max_new=max_new,
        end_ids=end_ids,
        min_new=min_new,
        pad_id=pad_id,
        state=state,
    )


def sample(
    step: Step,
    prompt: Tensor,
    *,
    generator: torch.Generator | None,
    max_new: int,
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
    end_ids: int | Iterable[int] = (),
    min_new: int = 0,
    pad_id: int = 0,
    state: Any = None,
) -> Tensor:
    """Random sampling [6915] from softmax(logits / temperature), cut to the top-k [TK], then to the nucleus
    top-p [NS] of what is left (HF order), and renormalised. Draws come only from `generator` (on the
    logits' device). For n samples per prompt, repeat the prompt: `prompt.repeat_interleave(n, 0)`.

    prompt (B, T) token ids; returns the sampled tokens (B, L), L ≤ max_new, end id included, then pad_id.
    """
    prompt = _check_common(prompt, max_new, min_new)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise KexueError(f"sample: temperature must be a positive finite number, got {temperature!r}")
    if top_k is not None:
        _check_top_k(top_k)
    if top_p is not None:
        _check_top_p(top_p)

    def choose(logits: Tensor) -> Tensor:
        logits = logits.to(_score_dtype(logits)) / temperature  # (R, V)
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        if top_p is not None:
            logits = top_p_filter(logits, top_p)
        return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)  # (R,)

    return _row_by_row(
        step, prompt, choose, max_new=max_new, end_ids=end_ids, min_new=min_new, pad_id=pad_id, state=state
    )


# ------------------------------------------------------------------------------------------------ beam search
def beam_search(
    step: Step,
    prompt: Tensor,
    *,
    beam_size: int,
    max_new: int,
    end_ids: int | Iterable[int] = (),
    min_new: int = 0,
    pad_id: int = 0,
    state: Any = None,
    length_penalty: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Beam search [5861]: keep the `beam_size` most probable partial sequences at every step.

    Per step and per batch item: 1) extend every beam by every token, score = total log-probability;
    2) of the top `beam_size` extensions, those ending in an end id (all of them at step max_new) are
    complete hypotheses, and the best by log p / |Y|^length_penalty is kept; 3) the top `beam_size`
    extensions that do not end stay alive (so the beam stays full, as in HF); 4) the item stops once no
    alive beam can beat the best complete hypothesis (log-probabilities only fall, so the bound is exact).
    beam_size = 1 is greedy search; a beam_size ≥ the number of sequences enumerates them all.

    prompt (B, T) token ids. The prompt is fed once per item and the state expanded to B·beam_size rows
    afterwards (`select_state`). Returns (tokens (B, L) of the best hypothesis, end id included, then
    pad_id; its log-probability (B,) float64, the model's log p(Y|X) summed over the generated tokens).
    """
    prompt = _check_common(prompt, max_new, min_new)
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise KexueError(f"beam_search: beam_size must be an integer ≥ 1, got {beam_size!r}")
    if not math.isfinite(length_penalty):
        raise KexueError(f"beam_search: length_penalty must be finite, got {length_penalty!r}")
    B, dev = prompt.shape[0], prompt.device
    end = _end_tensor(end_ids, dev)
    best = torch.full((B,), -math.inf, dtype=torch.float64, device=dev)  # normalised score of the best
    best_logp = torch.full((B,), -math.inf, dtype=torch.float64, device=dev)
    best_len = torch.zeros(B, dtype=torch.long, device=dev)
    best_tokens = prompt.new_full((B, max_new), pad_id)  # (B, max_new)
    items = torch.arange(B, device=dev)  # batch index of each live item
    beams = prompt.new_empty((B, 1, 0))  # (B', K', n − 1) tokens of the alive beams
    scores: Tensor | None = None  # (B', K') their total log-probabilities
    tokens = prompt
    for n in range(1, max_new + 1):
        logits, state = step(tokens, state)  # (B'·K', V)
        _check_logits(logits, items.numel() * beams.shape[1], end, n == 1)
        logp = logits.to(_score_dtype(logits)).log_softmax(dim=-1)
        logp = _ban(logp, end) if n <= min_new else logp  # banned, not renormalised: the scores stay log p
        V, K_prev = logp.shape[1], beams.shape[1]
        total = logp.view(-1, K_prev, V) if scores is None else scores[..., None] + logp.view(-1, K_prev, V)
        cand = total.flatten(1)  # (B', K'·V) [5861] eq. 1 in logs
        k = min(beam_size, cand.shape[1])
        # 1–2) complete hypotheses among the top-k extensions
        top, idx = cand.topk(k, dim=1)  # (B', k)
        ended = torch.isin(idx % V, end) | (n == max_new)
        norm = torch.where(ended, top / n**length_penalty, -math.inf).to(torch.float64)
        val, j = norm.max(dim=1)  # (B',)
        better = (val > best[items]).nonzero().squeeze(1)
        if better.numel():
            jj = idx[better, j[better]]  # flat index parent·V + token
            seq = torch.cat((beams[better, jj // V], (jj % V)[:, None]), dim=1)  # (m, n)
            at = items[better]
            best[at], best_logp[at], best_len[at] = val[better], top[better, j[better]].double(), n
            best_tokens[at, :n] = seq
        if n == max_new:
            break
        # 3) the top-k extensions that do not end stay alive
        ends_col = torch.isin(torch.arange(V, device=dev), end).repeat(K_prev)  # (K'·V,)
        scores, idx = cand.masked_fill(ends_col, -math.inf).topk(k, dim=1)  # (B', k)
        parent, tok = idx // V, idx % V
        # 4) best future score of an alive beam: log p only falls, and |Y| ∈ (n, max_new]
        bound = torch.maximum(scores / n**length_penalty, scores / max_new**length_penalty).amax(dim=1)
        keep = (best[items] < bound.double()).nonzero().squeeze(1)  # items still searching
        if keep.numel() == 0:
            break
        rows = (keep[:, None] * K_prev + parent[keep]).flatten()  # rows of the state to continue, (B''·k,)
        state = select_state(state, rows)
        beams = torch.cat((beams[keep[:, None], parent[keep]], tok[keep, :, None]), dim=2)  # (B'', k, n)
        scores, items = scores[keep], items[keep]
        tokens = tok[keep].reshape(-1, 1)  # (B''·k, 1)
    return best_tokens[:, : int(best_len.max())], best_logp
