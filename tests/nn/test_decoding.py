"""Decoders over a step function, checked against exact references on a toy order-2 language model: beam
search = brute-force enumeration of every complete sequence (fp64 log-probs), beam_size 1 = greedy = argmax
by hand, a batch = each prompt alone, the cached step = full recomputation, the state reordered with the
beams, sampling inside the top-k / top-p set with the renormalised frequencies."""

from __future__ import annotations

import itertools
import math
from collections import namedtuple

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.errors import KexueError
from kexue.nn.decoding import (
    beam_search,
    full_recompute,
    greedy,
    sample,
    select_state,
    top_k_filter,
    top_p_filter,
)

F64 = torch.float64
V = 4  # toy vocabulary


# ---------------------------------------------------------------------------------------------- toy model
def table(gen, v=V, end_bias=0.0, end=()):
    """Logits W[a, b] (V,) of the token after the pair (a, b): an order-2 Markov language model."""
    w = 2 * torch.randn(v, v, v, generator=gen, dtype=F64)
    w[..., list(end)] += end_bias
    return w


def logits_fn(w, bias=None):
    """The uncached model: tokens (B, T) -> logits (B, T, V); position 0 reads the pair (0, x_0)."""

    def f(seq):
        prev = F.pad(seq[:, :-1], (1, 0), value=0)  # (B, T) the token before each position
        out = w[prev, seq]  # (B, T, V)
        return out if bias is None else out + bias[:, None]

    return f


def cached_step(w, fed=None):
    """The same model with a cache: the state keeps the last token fed (all the model needs) plus leaves of
    every kind select_state must handle; the logits read the cached token, so a wrong reorder shows. The
    token history in the state is appended to `fed`, to check it against the returned sequences."""

    def step(tokens, state):
        if state is None:
            state = {"last": torch.zeros_like(tokens[:, 0]), "bias": None, "log": [tokens[:, :0]], "n": 0}
        prev = state["last"] if tokens.shape[1] == 1 else tokens[:, -2]  # (B,)
        logits = w[prev, tokens[:, -1]]  # (B, V)
        if state["bias"] is not None:  # an "encoder memory" handed in by the caller
            logits = logits + state["bias"]
        history = torch.cat((state["log"][0], tokens), 1)  # (B, t)
        assert history.shape[1] == state["n"] + tokens.shape[1]  # the int leaf stays in step
        if fed is not None:
            fed.update(tuple(r) for r in history.tolist())
        return logits, {"last": tokens[:, -1], "bias": state["bias"], "log": [history], "n": history.shape[1]}

    return step


def brute_force(f, prompt, *, max_new, end, min_new=0, alpha=0.0):
    """argmax over every complete sequence y of log p(y | prompt)/|y|^α: y ends in an end id after more than
    min_new tokens, or reaches max_new tokens; no end id before its last token. prompt (T,)."""
    best = (-math.inf, None, None)
    for n in range(1, max_new + 1):
        ys = torch.tensor(list(itertools.product(range(V), repeat=n)), dtype=torch.long)  # (N, n)
        is_end = torch.isin(ys, torch.tensor(end, dtype=torch.long))
        stops = is_end[:, -1] & (n > min_new) | ~is_end[:, -1] & (n == max_new)  # an end, or the cap
        ys = ys[~is_end[:, :-1].any(1) & stops]
        if not len(ys):
            continue
        seq = torch.cat((prompt.expand(len(ys), -1), ys), 1)  # (N, T + n)
        logp = f(seq).log_softmax(-1)[:, len(prompt) - 1 : -1]  # (N, n, V) predictions of the y tokens
        lp = logp.gather(2, ys[..., None]).squeeze(2).sum(1)  # (N,)
        i = int((lp / n**alpha).argmax())
        if lp[i] / n**alpha > best[0]:
            best = (float(lp[i] / n**alpha), ys[i], float(lp[i]))
    return best[1], best[2]


def log_prob(f, prompt, y):
    """log p(y | prompt) under the uncached model; prompt (T,), y (n,)."""
    logp = f(torch.cat((prompt, y))[None]).log_softmax(-1)[0, len(prompt) - 1 : -1]  # (n, V)
    return float(logp.gather(1, y[:, None]).sum())


def strip(row, end, pad):
    """The generated tokens of one output row up to and including its first end id."""
    out = []
    for t in row.tolist():
        out.append(t)
        if t in end:
            break
    return torch.tensor(out, dtype=torch.long)


# ------------------------------------------------------------------------------------------- beam search
@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**20),
    end=st.sampled_from([(1,), (1, 3), ()]),
    min_new=st.integers(0, 2),
    alpha=st.sampled_from([0.0, 1.0]),
)
def test_exhaustive_beam_equals_brute_force(seed, end, min_new, alpha):
    """A beam wider than every candidate keeps them all, so it returns the exact argmax."""
    gen = torch.Generator().manual_seed(seed)
    w, max_new = table(gen, end_bias=1.0, end=end), 3
    prompt = torch.randint(V, (1, 2), generator=gen)
    tokens, lp = beam_search(
        cached_step(w), prompt, beam_size=V**max_new, max_new=max_new, end_ids=end, min_new=min_new,
        length_penalty=alpha,
    )  # fmt: skip
    y, lp_ref = brute_force(logits_fn(w), prompt[0], max_new=max_new, end=end, min_new=min_new, alpha=alpha)
    assert torch.equal(tokens[0], y)
    assert abs(float(lp[0]) - lp_ref) < 1e-10


def test_beam_log_prob_is_that_of_the_returned_tokens(gen):
    w = table(gen, end_bias=1.0, end=(2,))
    prompt = torch.randint(V, (5, 3), generator=gen)
    tokens, lp = beam_search(cached_step(w), prompt, beam_size=3, max_new=6, end_ids=2)
    assert lp.dtype == F64 and tokens.shape[1] <= 6
    for b in range(5):
        y = strip(tokens[b], (2,), 0)
        assert abs(float(lp[b]) - log_prob(logits_fn(w), prompt[b], y)) < 1e-10
        assert torch.all(tokens[b, len(y) :] == 0)  # padded after the end id


def test_beam_size_one_is_greedy(gen):
    """[5861]: greedy search is beam search with top_k = 1. This holds because a complete hypothesis counts
    only when it ranks in the top beam_size extensions (an end id greedy passed over is not kept)."""
    for _ in range(10):
        w = table(gen)
        prompt = torch.randint(V, (6, 2), generator=gen)
        tokens, lp = beam_search(cached_step(w), prompt, beam_size=1, max_new=7, end_ids=(0, 3), pad_id=-1)
        assert torch.equal(tokens, greedy(cached_step(w), prompt, max_new=7, end_ids=(0, 3), pad_id=-1))
        for b in range(6):
            assert abs(float(lp[b]) - log_prob(logits_fn(w), prompt[b], strip(tokens[b], (0, 3), -1))) < 1e-10


def test_wider_beam_never_scores_worse_than_greedy(gen):
    w = table(gen, end_bias=0.5, end=(1,))
    prompt = torch.randint(V, (6, 2), generator=gen)
    _, lp1 = beam_search(cached_step(w), prompt, beam_size=1, max_new=5, end_ids=1)
    _, lp_all = beam_search(cached_step(w), prompt, beam_size=V**5, max_new=5, end_ids=1)
    assert torch.all(lp_all >= lp1 - 1e-12)


# ----------------------------------------------------------------------------------------------- greedy
def test_greedy_takes_the_argmax_at_every_step(gen):
    w, end = table(gen, end_bias=1.0, end=(2, 3)), (2, 3)
    prompt = torch.randint(V, (6, 2), generator=gen)
    out = greedy(cached_step(w), prompt, max_new=8, end_ids=end, pad_id=-1)
    f = logits_fn(w)
    for b in range(6):
        seq = prompt[b].tolist()
        for _ in range(8):  # the loop the decoder replaces
            seq.append(int(f(torch.tensor([seq]))[0, -1].argmax()))
            if seq[-1] in end:
                break
        gen_b = seq[2:]
        assert out[b, : len(gen_b)].tolist() == gen_b and torch.all(out[b, len(gen_b) :] == -1)
    assert out.shape[1] == max(len(strip(r, end, -1)) for r in out)  # as long as the longest row needs


def test_min_new_forbids_the_end_before_it(gen):
    w = table(gen, end_bias=30.0, end=(1, 2))  # the model wants to stop at once
    prompt = torch.randint(V, (3, 2), generator=gen)
    for min_new in (0, 1, 3):
        out = greedy(cached_step(w), prompt, max_new=6, end_ids=(1, 2), min_new=min_new)
        assert out.shape[1] == min_new + 1
        assert not torch.isin(out[:, :min_new], torch.tensor([1, 2])).any()
        assert torch.isin(out[:, min_new], torch.tensor([1, 2])).all()
        beam, _ = beam_search(cached_step(w), prompt, beam_size=2, max_new=6, end_ids=(1, 2), min_new=min_new)
        assert not torch.isin(beam[:, :min_new], torch.tensor([1, 2])).any()
        drawn = sample(cached_step(w), prompt, generator=gen, max_new=6, end_ids=(1, 2), min_new=min_new)
        assert not torch.isin(drawn[:, :min_new], torch.tensor([1, 2])).any()
    out = greedy(
        cached_step(w), prompt, max_new=4, end_ids=(1, 2), min_new=4
    )  # min_new = max_new: never ends
    assert out.shape == (3, 4) and not torch.isin(out, torch.tensor([1, 2])).any()


def test_without_end_ids_every_row_runs_to_max_new(gen):
    w = table(gen)
    prompt = torch.randint(V, (2, 1), generator=gen, dtype=torch.int32)  # any integer dtype; int64 back
    out = greedy(cached_step(w), prompt, max_new=5)
    assert out.shape == (2, 5) and out.dtype == torch.long
    out, _ = beam_search(cached_step(w), prompt, beam_size=3, max_new=5)
    assert out.shape == (2, 5) and out.dtype == torch.long


# --------------------------------------------------------------------------------- batch, cache and state
def test_a_batch_decodes_each_prompt_as_if_alone(gen):
    w, end = table(gen, end_bias=1.0, end=(3,)), (3,)
    prompt = torch.randint(V, (5, 3), generator=gen)
    out = greedy(cached_step(w), prompt, max_new=7, end_ids=end)
    beams, lp = beam_search(cached_step(w), prompt, beam_size=2, max_new=7, end_ids=end)
    for b in range(5):
        alone = greedy(cached_step(w), prompt[b : b + 1], max_new=7, end_ids=end)
        assert torch.equal(out[b, : alone.shape[1]], alone[0]) and torch.all(out[b, alone.shape[1] :] == 0)
        one, lp_one = beam_search(cached_step(w), prompt[b : b + 1], beam_size=2, max_new=7, end_ids=end)
        assert torch.equal(beams[b, : one.shape[1]], one[0]) and float(lp[b]) == float(lp_one[0])


def test_cached_step_equals_full_recompute(gen):
    w = table(gen, end_bias=1.0, end=(0,))
    cached, uncached = cached_step(w), full_recompute(logits_fn(w))
    tokens = torch.randint(V, (3, 4), generator=gen)
    s1 = s2 = None
    for t in (tokens[:, :2], tokens[:, 2:3], tokens[:, 3:4]):  # a prompt, then one token at a time
        (l1, s1), (l2, s2) = cached(t, s1), uncached(t, s2)
        assert torch.equal(l1, l2)
    assert torch.equal(s2, tokens)  # the uncached state is every token fed
    prompt = torch.randint(V, (4, 2), generator=gen)
    kw = dict(max_new=6, end_ids=0)
    assert torch.equal(greedy(cached, prompt, **kw), greedy(uncached, prompt, **kw))
    b1, b2 = beam_search(cached, prompt, beam_size=3, **kw), beam_search(uncached, prompt, beam_size=3, **kw)
    assert torch.equal(b1[0], b2[0]) and torch.equal(b1[1], b2[1])
    d1 = sample(cached, prompt, generator=torch.Generator().manual_seed(1), top_k=3, **kw)
    d2 = sample(uncached, prompt, generator=torch.Generator().manual_seed(1), top_k=3, **kw)
    assert torch.equal(d1, d2)


def test_the_state_follows_the_returned_sequences(gen):
    """The token history kept in the state is reordered with the beams / dropped with finished rows: the
    context of every returned token (prompt + the tokens before it) is a history the model was fed."""
    w, end = table(gen, end_bias=0.5, end=(1,)), (1,)
    prompt = torch.randint(V, (4, 2), generator=gen)
    runs = {
        "greedy": lambda step: greedy(step, prompt, max_new=6, end_ids=end),
        "beam": lambda step: beam_search(step, prompt, beam_size=3, max_new=6, end_ids=end)[0],
        "sample": lambda step: sample(step, prompt, generator=gen, max_new=6, end_ids=end),
    }
    for run in runs.values():
        fed: set[tuple[int, ...]] = set()
        out = run(cached_step(w, fed))
        for b in range(4):
            y = strip(out[b], end, 0).tolist()
            for i in range(len(y)):
                assert tuple(prompt[b].tolist() + y[:i]) in fed


def test_an_initial_state_is_used_as_the_encoder_memory(gen):
    """`state` lets an encoder–decoder start from its memory: here a per-row logit bias."""
    w, end = table(gen, end_bias=1.0, end=(2,)), (2,)
    prompt = torch.zeros(3, 1, dtype=torch.long)  # a start token
    bias = 3 * torch.randn(3, V, generator=gen, dtype=F64)
    state = {"last": torch.zeros(3, dtype=torch.long), "bias": bias, "log": [prompt[:, :0]], "n": 0}
    out = greedy(cached_step(w), prompt, max_new=6, end_ids=end, state=state)
    beam, lp = beam_search(cached_step(w), prompt, beam_size=V**5, max_new=5, end_ids=end, state=state)
    for b in range(3):
        f = logits_fn(w, bias[b : b + 1])
        ref = greedy(full_recompute(f), prompt[b : b + 1], max_new=6, end_ids=end)
        assert torch.equal(out[b, : ref.shape[1]], ref[0])
        y, lp_ref = brute_force(f, prompt[b], max_new=5, end=end)
        assert torch.equal(beam[b, : len(y)], y) and abs(float(lp[b]) - lp_ref) < 1e-10


def test_select_state_reorders_every_tensor_leaf():
    Cache = namedtuple("Cache", "k v")
    x = torch.arange(12.0).view(3, 4)
    state = (Cache(x, x + 1), [{"a": x[:, 0], "none": None}], 7, torch.tensor(5.0), "tag")
    idx = torch.tensor([2, 2, 0])
    out = select_state(state, idx)
    assert isinstance(out[0], Cache) and torch.equal(out[0].k, x[idx]) and torch.equal(out[0].v, x[idx] + 1)
    assert torch.equal(out[1][0]["a"], x[idx, 0]) and out[1][0]["none"] is None
    assert out[2] == 7 and float(out[3]) == 5.0 and out[4] == "tag"  # batch-free leaves are shared
    with pytest.raises(KexueError, match="cannot reorder"):
        select_state({"bad": object()}, idx)


# -------------------------------------------------------------------------------------------------- sampling
def const_step(logits):
    """A model whose next-token logits are always `logits` (V,)."""
    return lambda tokens, state: (logits.expand(tokens.shape[0], -1), state)


def nucleus(prob, p):
    """Brute force: the most probable tokens, one by one, until their mass reaches p."""
    keep, mass = [], 0.0
    for i in sorted(range(len(prob)), key=lambda i: -float(prob[i])):
        keep.append(i)
        mass += float(prob[i])
        if mass >= p:
            break
    return keep


@pytest.mark.parametrize(
    "top_k, top_p, temperature",
    [(None, None, 1.0), (3, None, 1.0), (None, 0.6, 1.0), (4, 0.7, 0.5), (None, None, 2.0)],
)
def test_sampling_matches_the_renormalised_distribution(gen, top_k, top_p, temperature):
    logits = torch.tensor([0.3, 2.0, -1.0, 1.2, 0.9, -0.4], dtype=F64)
    prob = (logits / temperature).softmax(0)  # [6915]: temperature scales the logits before the softmax
    allowed = sorted(range(6), key=lambda i: -float(prob[i]))[: top_k or 6]
    p_k = torch.zeros(6, dtype=F64)
    p_k[allowed] = prob[allowed] / prob[allowed].sum()  # top-k renormalised
    allowed = nucleus(p_k, top_p) if top_p is not None else allowed
    target = torch.zeros(6, dtype=F64)
    target[allowed] = p_k[allowed] / p_k[allowed].sum()
    N = 20000
    draws = sample(
        const_step(logits), torch.zeros(N, 1, dtype=torch.long), generator=gen, max_new=1, top_k=top_k,
        top_p=top_p, temperature=temperature,
    )[:, 0]  # fmt: skip
    assert set(draws.unique().tolist()) <= set(allowed)  # never outside the kept set
    freq = torch.bincount(draws, minlength=6).double() / N
    sd = (target * (1 - target) / N).sqrt()
    assert torch.all((freq - target).abs() <= 5 * sd + 1e-12)  # 5σ per cell, fixed seed


def test_every_sampled_token_is_in_the_top_k_of_its_context(gen):
    w = table(gen, end_bias=0.5, end=(3,))
    prompt = torch.randint(V, (64, 2), generator=gen)
    out = sample(cached_step(w), prompt, generator=gen, max_new=6, top_k=2, end_ids=3, pad_id=-1)
    f = logits_fn(w)
    for b in range(64):
        y = strip(out[b], (3,), -1)
        logits = f(torch.cat((prompt[b], y))[None])[0, 1:-1]  # (n, V) the logits each token was drawn from
        top2 = logits.topk(2, dim=-1).indices  # (n, 2)
        assert (top2 == y[:, None]).any(1).all()


def test_sampling_is_reproducible_from_the_generator(gen):
    w = table(gen, end_bias=0.5, end=(3,))
    prompt = torch.randint(V, (8, 2), generator=gen)
    kw = dict(max_new=6, top_p=0.9, end_ids=3)
    a = sample(cached_step(w), prompt, generator=torch.Generator().manual_seed(3), **kw)
    b = sample(cached_step(w), prompt, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------------- filters
rows = st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=9)


@settings(max_examples=60, deadline=None)
@given(row=rows, k=st.integers(1, 12))
def test_top_k_filter_keeps_the_k_largest(row, k):
    logits = torch.tensor(row, dtype=F64)
    kept = top_k_filter(logits[None], k)[0] > -math.inf
    assert int(kept.sum()) >= min(k, len(row))  # ties with the k-th value are kept
    if (~kept).any():
        assert logits[kept].min() > logits[~kept].max()  # all kept beat all dropped
        assert int(kept.sum()) == min(k, len(row)) or logits[kept].min() == logits.topk(k).values[-1]
    assert torch.equal(top_k_filter(logits, k)[kept], logits[kept])  # kept logits untouched


@settings(max_examples=60, deadline=None)
@given(row=rows, p=st.floats(0.01, 1.0))
def test_top_p_filter_keeps_the_smallest_set_reaching_p(row, p):
    logits = torch.tensor(row, dtype=F64)
    kept = top_p_filter(logits[None], p)[0] > -math.inf
    prob = logits.softmax(0)
    assert kept[logits.argmax()]  # the most probable token is always there
    assert float(prob[kept].sum()) >= p - 1e-12  # mass ≥ p …
    assert float(prob[kept].sum() - prob[kept].min()) < p + 1e-12  # … and no smaller nucleus reaches it
    if (~kept).any():
        assert prob[kept].min() >= prob[~kept].max()


# ---------------------------------------------------------------------------------------------------- errors
def test_invalid_arguments_are_kexue_errors(gen):
    step, prompt = cached_step(table(gen)), torch.zeros(2, 1, dtype=torch.long)
    bad = [
        lambda: beam_search(step, prompt, beam_size=0, max_new=3),
        lambda: beam_search(step, prompt, beam_size=2, max_new=3, length_penalty=math.nan),
        lambda: sample(step, prompt, generator=gen, max_new=3, top_p=0.0),
        lambda: sample(step, prompt, generator=gen, max_new=3, top_p=1.5),
        lambda: sample(step, prompt, generator=gen, max_new=3, top_k=0),
        lambda: sample(step, prompt, generator=gen, max_new=3, temperature=0.0),
        lambda: top_k_filter(torch.zeros(3), 0),
        lambda: top_p_filter(torch.zeros(3), -0.1),
        lambda: greedy(step, prompt, max_new=0),
        lambda: greedy(step, prompt, max_new=2, min_new=3),
        lambda: greedy(step, prompt[:, 0], max_new=2),  # 1-D prompt
        lambda: greedy(step, prompt[:, :0], max_new=2),  # empty prompt
        lambda: greedy(step, prompt.double(), max_new=2),
        lambda: greedy(step, prompt.bool(), max_new=2),
        lambda: greedy(step, prompt, max_new=2, end_ids=V),  # end id outside the vocabulary
        lambda: greedy(lambda t, s: (torch.zeros(3, V), s), prompt, max_new=2),  # logits for 3 rows, fed 2
    ]
    for call in bad:
        with pytest.raises(KexueError):
            call()


# ------------------------------------------------------------------------------------------------ on a GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_decoders_on_cuda_match_cpu(gen):
    w, end = table(gen, end_bias=1.0, end=(1,)), (1,)
    prompt = torch.randint(V, (5, 2), generator=gen)
    cpu_g = greedy(cached_step(w), prompt, max_new=6, end_ids=end)
    cuda_g = greedy(cached_step(w.cuda()), prompt.cuda(), max_new=6, end_ids=end)
    assert torch.equal(cuda_g.cpu(), cpu_g)
    tb, lb = beam_search(cached_step(w), prompt, beam_size=3, max_new=6, end_ids=end)
    tc, lc = beam_search(cached_step(w.cuda()), prompt.cuda(), beam_size=3, max_new=6, end_ids=end)
    assert torch.equal(tc.cpu(), tb) and torch.allclose(lc.cpu(), lb, rtol=0, atol=1e-10)
    g = torch.Generator(device="cuda").manual_seed(0)
    out = sample(
        cached_step(w.cuda()), prompt.cuda(), generator=g, max_new=6, top_k=2, top_p=0.9, end_ids=end
    )
    assert out.device.type == "cuda" and out.shape[0] == 5


# ----------------------------------------------------------------------------------- on the real Transformer
def _tiny(cls, positions="sinusoidal"):
    """A tiny fp64 model with N(0, 0.5²) weights (untied: tied untrained models just repeat their input)."""
    from kexue.nn.transformer import TransformerConfig

    cfg = TransformerConfig(
        vocab_size=7, d_model=16, heads=2, layers=2, d_ff=32, dropout=0.0, tie_embeddings=False,
        positions=positions,
    )  # fmt: skip
    model, g = cls(cfg).double().eval(), torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=F64))
    return model


def _ragged_end(decode):
    """An end id with which the rows of `decode(end_ids)` finish at different steps, so that finished rows
    really leave the batch (random models loop, so most ids end every row at once or never)."""
    for end in range(7):
        lengths = {len(strip(r, (end,), -1)) for r in decode((end,))}
        if len(lengths) > 1:
            return (end,)
    raise AssertionError("no end id gives rows of different lengths; change the model seed")


@pytest.mark.parametrize("positions", ["sinusoidal", "rope"])
def test_transformer_lm_cached_decoding_equals_full_recompute(positions):
    from kexue.nn.transformer import TransformerLM

    model = _tiny(TransformerLM, positions)
    prompt = torch.randint(7, (4, 4), generator=torch.Generator().manual_seed(1))
    uncached = full_recompute(model)
    beam = dict(beam_size=3, max_new=8, min_new=1, length_penalty=1.0)
    with torch.no_grad():
        end = _ragged_end(lambda e: greedy(model.step, prompt, max_new=8, end_ids=e))
        assert torch.equal(
            greedy(model.step, prompt, max_new=8, end_ids=end),
            greedy(uncached, prompt, max_new=8, end_ids=end),
        )
        end = _ragged_end(lambda e: beam_search(model.step, prompt, end_ids=e, **beam)[0])
        (t1, lp1), (t2, lp2) = (beam_search(s, prompt, end_ids=end, **beam) for s in (model.step, uncached))
        assert torch.equal(t1, t2) and torch.allclose(lp1, lp2, rtol=0, atol=1e-10)
        d1, d2 = (
            sample(s, prompt, generator=torch.Generator().manual_seed(2), max_new=8, end_ids=end, top_k=4)
            for s in (model.step, uncached)
        )
        assert torch.equal(d1, d2)


def test_seq2seq_decodes_from_its_encoder_state():
    """encode(src) is the initial state; reordered with the beams and dropped with finished rows it must
    give what each source decoded alone by full recomputation gives."""
    from kexue.nn.transformer import Seq2SeqTransformer

    model = _tiny(Seq2SeqTransformer)
    src = torch.randint(7, (4, 5), generator=torch.Generator().manual_seed(1))
    bos = torch.zeros(4, 1, dtype=torch.long)
    beam = dict(beam_size=3, max_new=8, min_new=1, length_penalty=1.0)
    with torch.no_grad():
        end = _ragged_end(lambda e: greedy(model.step, bos, max_new=8, end_ids=e, state=model.encode(src)))
        out = greedy(model.step, bos, max_new=8, end_ids=end, state=model.encode(src))
        end_b = _ragged_end(
            lambda e: beam_search(model.step, bos, end_ids=e, state=model.encode(src), **beam)[0]
        )
        beams, lp = beam_search(model.step, bos, end_ids=end_b, state=model.encode(src), **beam)
        for b in range(4):
            alone = full_recompute(lambda y, b=b: model(src[b : b + 1].expand(len(y), -1), y))
            ref = greedy(alone, bos[b : b + 1], max_new=8, end_ids=end)
            assert torch.equal(out[b, : ref.shape[1]], ref[0])
            ref_t, ref_lp = beam_search(alone, bos[b : b + 1], end_ids=end_b, **beam)
            assert torch.equal(beams[b, : ref_t.shape[1]], ref_t[0]) and abs(float(lp[b] - ref_lp[0])) < 1e-10
