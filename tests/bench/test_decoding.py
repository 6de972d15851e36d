"""kexue bench decoding: on a tiny configuration the JSON has its fields and types, the cached and uncached
decoders agree, and the threads are pinned and restored."""

from __future__ import annotations

import json
import math

import torch

from kexue.bench import decoding as bench


def test_benchmark_json_fields():
    result = bench.run(
        layers=1, d_model=16, heads=2, vocab=64, batch=2, prompt_len=3, new_tokens=6, beam_size=2,
        beam_batch=1,
        beam_new_tokens=4, repeats=1, threads=1, peer=False,
    )  # fmt: skip
    json.dumps(result)  # plain JSON
    methods = {r["method"] for r in result["rows"]}
    assert methods == {"greedy cached", "greedy uncached", "beam cached", "beam uncached"}
    for r in result["rows"]:
        assert set(r) == {"method", "seconds", "tokens_per_s"}
        assert isinstance(r["seconds"], float) and r["seconds"] > 0
        n = 4 if r["method"].startswith("beam") else 12  # generated tokens of the batch
        assert math.isclose(r["tokens_per_s"], n / r["seconds"])
    assert isinstance(result["cache_speedup"], float) and result["cache_speedup"] > 0
    assert result["cached_equals_full"] is True and result["hf_equals_kexue"] is None
    assert result["goal_met"] == (result["cache_speedup"] >= bench.GOAL_SPEEDUP)
    assert result["config"]["threads"] == 1 and torch.get_num_threads() == 1


def test_hf_peer_has_the_same_weights():
    """The peer model in the benchmark computes kexue's logits (names mapped back, Conv1D transposed)."""
    import pytest

    pytest.importorskip("transformers")
    from kexue.models.gpt2 import GPT2Config

    model = bench.random_gpt2(
        GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=2, n_head=2), 0, "cpu"
    )
    hf = bench.hf_twin(model)
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=1e-5, rtol=1e-5)
