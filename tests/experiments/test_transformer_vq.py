"""The transformer-vq reproduction end to end on a micro budget: files, keys, a verdict computed from rows."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from helpers import run_contract
from kexue.experiments import transformer_vq as repro

MICRO = replace(
    repro.QUICK,
    test_chars=600,
    layers=1,
    d_model=16,
    d_k=8,
    d_v=16,
    num_codes=8,
    block_size=8,
    context=32,
    steps=4,
    batch_size=2,
    warmup=2,
    seeds=(0, 1),
    exact_n=70,
    exact_block=16,
    exact_codes=8,
    op_lengths=(64, 128),
    long_context=100,
    decode_tokens=3,
    repeats=1,
    threads=1,
)


def test_micro_run_writes_the_contract(shared_data, tmp_path):
    if not (shared_data / "gutenberg").is_dir():
        pytest.skip(f"{shared_data / 'gutenberg'} is absent (the Gutenberg books of the shared data folder)")
    on_disk = run_contract(repro.REPRODUCTION, replace(MICRO, data_dir=str(shared_data)), tmp_path)
    assert on_disk["name"] == "transformer-vq" and on_disk["systems"] == [14]
    rows = on_disk["rows"]
    by = {t: [r for r in rows if r["table"] == t] for t in ("exactness", "lm", "op", "model")}
    assert len(by["exactness"]) == 8 and len(by["lm"]) == 4 and len(by["op"]) == 2 and len(by["model"]) == 2
    assert all(r["max_abs_error"] <= (1e-5 if r["dtype"] == "float32" else 1e-10) for r in by["exactness"])
    for r in by["lm"]:  # a few steps from a uniform start: near 8 bits/char, finite
        assert 0 < r["bpc"] < 12 and r["train_tokens_per_s"] > 0
        assert ("codes_used" in r) == (r["mode"] == "vq")
    vq_cache = next(r for r in by["model"] if r["mode"] == "vq")["cache_floats"]
    dense_cache = next(r for r in by["model"] if r["mode"] == "dense")["cache_floats"]
    assert dense_cache == 103 * (8 + 16)  # (k, v) of every token: 100 prompt + 3 decoded
    assert vq_cache < dense_cache  # counts, means and at most two blocks
    gaps = [
        next(r["bpc"] for r in by["lm"] if r["mode"] == "vq" and r["seed"] == s)
        - next(r["bpc"] for r in by["lm"] if r["mode"] == "dense" and r["seed"] == s)
        for s in MICRO.seeds
    ]
    assert on_disk["bpc_gap_vq_minus_dense"]["per_seed"] == pytest.approx(gaps)
    checks = on_disk["checks"]
    assert checks[repro.CHECK_EXACT.format(f32=1e-5, f64=1e-10)]
    assert checks[repro.CHECK_BPC.format(margin=0.1)] == (sum(gaps) / 2 <= 0.1)
    report = (tmp_path / "report.md").read_text()
    assert "### (a) Exactness" in report and "Enwik8" in report
    assert (tmp_path / "transformer_vq.png").stat().st_size > 1000


def _rows(f32, f64, bpc, speed):
    rows = [{"table": "exactness", "dtype": "float32", "max_abs_error": f32}]
    rows += [{"table": "exactness", "dtype": "float64", "max_abs_error": f64}]
    for s, (dense, vq) in enumerate(bpc):
        rows += [{"table": "lm", "mode": "dense", "seed": s, "bpc": dense}]
        rows += [{"table": "lm", "mode": "vq", "seed": s, "bpc": vq}]
    rows += [
        {"table": "op", "n": n, "dense_ms": d, "vq_ms": v, "speedup": d / v}
        for n, (d, v) in zip((1024, 2048, 4096), speed)
    ]
    return rows


def test_checks_follow_the_rows():
    cfg = repro.QUICK
    good = _rows(
        3e-7, 6e-16, [(2.0, 2.05), (2.1, 2.12), (2.0, 2.0)], [(1.0, 4.0), (4.0, 8.0), (16.0, 16.0 - 1)]
    )
    checks, found = repro.checks_from(cfg, good)
    assert all(checks.values()), checks
    assert found["crossover_n"] == 4096 and found["vq_slope"] == pytest.approx(math.log2(15 / 8))
    assert found["dense_slope"] == pytest.approx(2.0)
    bad = _rows(2e-5, 1e-9, [(2.0, 2.2), (2.0, 2.1), (2.0, 2.05)], [(1.0, 4.0), (4.0, 8.0), (16.0, 17.0)])
    checks, found = repro.checks_from(cfg, bad)
    assert not any(checks.values()) and found["crossover_n"] is None
    assert found["bpc_gap_vq_minus_dense"]["mean"] == pytest.approx(0.35 / 3)


def test_the_model_decodes_as_it_forwards(gen):
    """CharLM.step over a prompt and then token by token gives the logits of the full forward pass."""
    for mode in repro.MODES:
        model = repro.build(MICRO, mode, seed=0).double().eval()
        x = torch.randint(256, (2, 21), generator=gen)
        want = model(x)[:, -1]
        logits, state = model.step(x[:, :13], None)
        for t in range(13, 21):
            logits, state = model.step(x[:, t : t + 1], state)
        assert torch.allclose(logits, want, atol=1e-10), mode


def test_config_refuses_an_exactness_length_that_skips_the_short_block():
    with pytest.raises(ValueError, match="not be a multiple"):
        replace(repro.QUICK, exact_n=1024)
