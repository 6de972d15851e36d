"""`kexue bench decoding`: autoregressive decoding of a GPT-2 with the KV cache against full recomputation.

[6915] bert4keras's AutoRegressiveDecoder feeds the whole sequence to the model at every step (no cache, one
sequence at a time); its users asked for a cache above all (reference/transformer.md §3, bert4keras #217:
"only a cache brings a speed-up"). This benchmark measures what kexue's cache buys on the same decoder
(`kexue.nn.decoding`) and checks that it changes nothing:

  greedy cached      `greedy(model.step, …)`: the prompt once, then one token per step against the cache
  greedy uncached    `greedy(full_recompute(…), …)`: the whole sequence through the network at every step
                     (the LM head on the last position only: the difference is the Transformer's work)
  beam cached / beam uncached   the same for `beam_search` (beam 4, a smaller batch and length)
  hf generate cache / hf generate no cache   transformers' GPT2LMHeadModel.generate (greedy, use_cache
                     on / off) on the same weights, when transformers is importable (the peer; optional)

Model: a GPT-2 of `layers` blocks, width d, random weights from a seeded generator (GPT-2's N(0, 0.02²);
token embeddings N(0, 0.1²), so that the logits' top-2 gaps stay far above float32 round-off and both
computation orders pick the same argmax), float32, eval mode; no end id: every row runs the full length.
Timing: threads pinned (`torch.set_num_threads`, restored afterwards); a 2-token warm-up call per method,
then `repeats` rounds calling every method in turn; the median per method. Timings on a shared machine are
inflated by its load.

Result: "rows" (method, seconds, tokens_per_s: generated tokens of the whole batch per second),
"cache_speedup" (greedy uncached seconds / greedy cached seconds; goal ≥ 2), "beam_cache_speedup",
"cached_equals_full" (true only if the cached and uncached token outputs are identical, greedy and beam),
"hf_equals_kexue" (greedy tokens equal HF's; None without transformers), "goal_met", and the configuration.
Quick: 128 new tokens (beam: 32); full: 512 (beam: 64). Uncached work grows as the square of the length: on
two CPU cores one uncached greedy run at full length takes minutes.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from kexue.errors import KexueError
from kexue.models.bert import init_weights
from kexue.models.gpt2 import GPT2, GPT2Config
from kexue.nn.decoding import beam_search, full_recompute, greedy

GOAL_SPEEDUP = 2.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    cases: dict[str, Callable[[int], Tensor]], device: torch.device, repeats: int, length: dict[str, int]
):
    """(median seconds per case, the last output of each): case(n) decodes n new tokens. A short warm-up call
    each (2 tokens: the kernels, not the whole uncached run again), then `repeats` rounds at full length."""
    for fn in cases.values():
        fn(2)
    outputs = {}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            _sync(device)
            t0 = time.perf_counter()
            outputs[name] = fn(length[name])
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}, outputs


def random_gpt2(cfg: GPT2Config, seed: int, device: torch.device) -> GPT2:
    g = torch.Generator().manual_seed(seed)
    model = GPT2(cfg)
    init_weights(model, std=0.02, generator=g)
    torch.nn.init.normal_(model.token.weight, 0.0, 0.1, generator=g)  # wider logits: no near-ties (docstring)
    return model.to(device).eval()


def hf_twin(model: GPT2):
    """transformers' GPT2LMHeadModel holding `model`'s weights (names mapped back, Conv1D transposed)."""
    import transformers

    from kexue.models.checkpoint import kexue_name

    c = model.cfg
    hf_cfg = transformers.GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.n_positions, n_embd=c.n_embd, n_layer=c.n_layer,
        n_head=c.n_head,
        n_inner=c.n_inner, activation_function=c.activation_function, layer_norm_epsilon=c.layer_norm_epsilon,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None, pad_token_id=0,
    )  # fmt: skip
    hf = transformers.GPT2LMHeadModel(hf_cfg)
    ours = model.state_dict()
    state = {}
    for key in hf.state_dict():
        name = kexue_name(key, "gpt2")
        if name is not None and name[0] in ours:
            state[key] = ours[name[0]].t() if name[1] else ours[name[0]]
    missing, _ = hf.load_state_dict(state, strict=False)
    if [k for k in missing if k != "lm_head.weight"]:  # the tied head is the token matrix
        raise KexueError(f"bench decoding: could not map kexue weights onto HF GPT-2 (missing {missing})")
    return hf.to(next(model.parameters()).device).eval()


def run(
    *,
    quick: bool = False,
    device: torch.device | str | None = None,
    data_dir: str | None = None,
    layers: int = 4,
    d_model: int = 256,
    heads: int = 4,
    vocab: int = 4096,
    batch: int = 8,
    prompt_len: int = 32,
    new_tokens: int | None = None,
    beam_size: int = 4,
    beam_batch: int = 2,
    beam_new_tokens: int | None = None,
    repeats: int = 3,
    threads: int | None = None,
    seed: int = 0,
    peer: bool = True,
) -> dict:
    """Time cached against uncached decoding (module docstring). No data is read (`data_dir` is unused)."""
    del data_dir
    device = torch.device(device or "cpu")
    new = new_tokens or (128 if quick else 512)
    beam_new = beam_new_tokens or (32 if quick else 64)
    if min(new, beam_new, repeats, batch, beam_batch, prompt_len, beam_size) < 1:
        raise KexueError("bench decoding: lengths, batch sizes, beam size and repeats must be ≥ 1")
    threads = threads or os.cpu_count() or 1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = GPT2Config(
            vocab_size=vocab, n_positions=prompt_len + max(new, beam_new), n_embd=d_model, n_layer=layers,
            n_head=heads, dropout=0.0, attention_dropout=0.0,
        )  # fmt: skip
        model = random_gpt2(cfg, seed, device)
        g = torch.Generator().manual_seed(seed + 1)
        prompt = torch.randint(0, vocab, (batch, prompt_len), generator=g).to(device)
        beam_prompt = prompt[:beam_batch]
        uncached = full_recompute(
            lambda seq: model.logits(model.encode(seq)[0][:, -1:])
        )  # head on the last only
        cases = {
            "greedy cached": lambda n: greedy(model.step, prompt, max_new=n),
            "greedy uncached": lambda n: greedy(uncached, prompt, max_new=n),
            "beam cached": lambda n: beam_search(model.step, beam_prompt, beam_size=beam_size, max_new=n)[0],
            "beam uncached": lambda n: beam_search(uncached, beam_prompt, beam_size=beam_size, max_new=n)[0],
        }
        hf = _peer(model) if peer else None
        if hf is not None:
            for name, cache in (("hf generate cache", True), ("hf generate no cache", False)):
                cases[name] = (
                    lambda n, c=cache: hf.generate(
                        prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1,
                        use_cache=c, pad_token_id=0,
                    )[:, prompt_len:]
                )  # fmt: skip
        length = {name: beam_new if name.startswith("beam") else new for name in cases}
        with torch.inference_mode():
            seconds, out = median_seconds(cases, device, repeats, length)
    finally:
        torch.set_num_threads(before)
    counts = {name: (beam_batch * beam_new if name.startswith("beam") else batch * new) for name in cases}
    rows = [{"method": name, "seconds": s, "tokens_per_s": counts[name] / s} for name, s in seconds.items()]
    equal = torch.equal(out["greedy cached"], out["greedy uncached"]) and torch.equal(
        out["beam cached"], out["beam uncached"]
    )
    speedup = seconds["greedy uncached"] / seconds["greedy cached"]
    return {
        "rows": rows,
        "cache_speedup": speedup,
        "beam_cache_speedup": seconds["beam uncached"] / seconds["beam cached"],
        "cached_equals_full": bool(equal),
        "hf_equals_kexue": None
        if hf is None
        else bool(torch.equal(out["hf generate cache"], out["greedy cached"])),
        "goal_met": bool(equal and speedup >= GOAL_SPEEDUP),
        "config": {
            "layers": layers,
            "d_model": d_model,
            "heads": heads,
            "vocab": vocab,
            "batch": batch,
            "prompt_len": prompt_len,
            "new_tokens": new,
            "beam_size": beam_size,
            "beam_batch": beam_batch,
            "beam_new_tokens": beam_new,
            "repeats": repeats,
            "threads": threads,
            "seed": seed,
            "device": str(device),
            "dtype": "float32",
        },
    }


def _peer(model: GPT2):
    try:
        import transformers  # noqa: F401
    except ImportError:
        return None
    return hf_twin(model)
