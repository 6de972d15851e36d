"""kexue bench attention: memory and slope measurements are right on known cases; the JSON has its fields."""

from __future__ import annotations

import json
import math

import pytest
import torch

from kexue.bench import attention as bench

CPU = torch.device("cpu")


def test_peak_bytes_counts_scratch_and_output_exactly():
    """A 4 MB temporary freed inside the call plus a 4 MB output: the peak is both at once, 8 MB."""
    n = 1_000_000  # float32 elements = 4,000,000 bytes

    def fn():
        tmp = torch.ones(n)
        return tmp * 2  # tmp is freed on return; the product is the output

    assert 8_000_000 <= bench.peak_bytes(fn, CPU) <= 8_000_000 + 4096
    assert bench.peak_bytes(lambda: torch.ones(n).sum(), CPU) <= 4_000_000 + 4096  # freed before the output


def test_local_attention_never_holds_an_n_by_n_buffer():
    """[6853]'s point, measured: local attention's peak stays far below one n×n float32 matrix; the band
    mask on dense attention (SDPA's math path with a mask) does not."""
    from kexue.nn.attention import attention, window_mask
    from kexue.nn.sparse_attention import local_attention

    n = 2048
    q = torch.randn(1, 1, n, 8, generator=torch.Generator().manual_seed(0))
    band = window_mask(n, n, 16, causal=True)
    local = bench.peak_bytes(lambda: local_attention(q, q, q, window=16, causal=True), CPU)
    masked = bench.peak_bytes(lambda: attention(q, q, q, mask=band), CPU)
    assert local < n * n * 4 / 4 < masked  # local: O(n·w) blocks and their mask; masked: n×n scores/mask


def test_loglog_slope_recovers_a_power_law():
    ns = [2048, 4096, 8192, 16384]
    assert bench.loglog_slope(ns, [3e-5 * n**1.5 for n in ns]) == pytest.approx(1.5)
    assert bench.loglog_slope([2048], [1.0]) is None


def test_benchmark_json_fields():
    result = bench.run(lengths=(256, 512), threads=1, slope_min_n=256)
    json.dumps(result)  # plain JSON, no tensors
    methods = {"sdpa", "dense", "dense-masked", "local", "strided", "vq", "vq+quantize"}
    assert {r["method"] for r in result["rows"]} == methods
    assert len(result["rows"]) == 2 * len(methods)
    for r in result["rows"]:
        assert set(r) == {"method", "n", "ms", "peak_mb"} and r["n"] in (256, 512)
        assert isinstance(r["ms"], float) and r["ms"] > 0
        assert isinstance(r["peak_mb"], float) and r["peak_mb"] > 0  # at least the output
    for key in ("vq_speedup_16k", "vq_slope", "local_slope", "dense_overhead"):
        assert isinstance(result[key], float) and math.isfinite(result[key]) and result[key] > 0, key
    assert result["vq_speedup_n"] == 512  # quick lengths: the largest n both ran, named
    assert 0 <= result["vq_max_abs_error_vs_quadratic"] < 1e-4 and result["vq_error_n"] == 512
    assert set(result["goals"]) == set(bench.GOALS)
    assert result["config"]["threads"] == 1 and torch.get_num_threads() == 1  # pinned, then restored
