"""The poetry-vae reproduction end to end on a tiny budget: files, the metrics contract, checks, metrics."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from helpers import run_contract
from kexue.experiments import poetry_vae as repro
from kexue.text.poetry import PoetryVAEConfig, PoetTrainConfig

TINY = replace(
    repro.QUICK,
    train=PoetTrainConfig(
        model=PoetryVAEConfig(hidden_dim=8, latent_dim=4),
        steps=10,
        batch_size=16,
        min_count=3,
        max_files=1,
        test_size=100,
    ),
    samples=40,
    report_samples=20,
)


def test_tiny_run_writes_the_contract(shared_data, tmp_path):
    if not (shared_data / "tang-poems").is_dir():
        pytest.skip(f"{shared_data / 'tang-poems'} is absent (the Tang poems of the shared data folder)")
    on_disk = run_contract(repro.REPRODUCTION, replace(TINY, data_dir=str(shared_data)), tmp_path / "out")
    assert on_disk["name"] == "poetry-vae" and on_disk["systems"] == [33]
    by = {r["model"]: r for r in on_disk["rows"] if r["table"] == "likelihood"}
    vae = by["CNN-VAE [5332], test −ELBO"]
    assert math.isclose(vae["neg_elbo"], vae["reconstruction"] + vae["kl"], rel_tol=1e-9)
    unigram = by["unigram (add-one)"]["neg_elbo"]
    checks = on_disk["checks"]
    assert checks["test −ELBO below the unigram NLL (nats per couplet)"] == (vae["neg_elbo"] < unigram)
    samples = [r for r in on_disk["rows"] if r["table"] == "samples"]
    assert len(samples) == 3 and all(0 <= r["novel"] <= 1 and 0 < r["distinct_2"] <= 1 for r in samples)
    assert len(on_disk["samples"]) == 20 and all(len(s) == 10 for s in on_disk["samples"])
    assert "，" in (tmp_path / "out" / "report.md").read_text()


def test_metrics_by_hand():
    couplets = ["白日依山尽黄河入海流", "白日依山尽黄河东海流"]
    # lines: 白日依山尽 ×2, 黄河入海流, 黄河东海流 → 20 characters, 11 distinct; 16 bigrams, 10 distinct
    assert repro.distinct_n(couplets, 1) == 11 / 20
    assert repro.distinct_n(couplets, 2) == 10 / 16
    assert repro.novelty(couplets, {"白日依山尽黄河入海流"}) == 0.5
    # unigram: train "ab", "ab" (as 1-char places) with V = 3: p(a) = (2 + 1) / (4 + 3)
    nll = repro.unigram_nll(["ab", "ab"], ["aa"], 3, positional=False)
    assert math.isclose(nll, -2 * math.log(3 / 7))
    # position-wise: place 0 has a twice, place 1 has b twice → p(a at 1) = 1 / (2 + 3)
    nll = repro.unigram_nll(["ab", "ab"], ["aa"], 3, positional=True)
    assert math.isclose(nll, -math.log(3 / 5) - math.log(1 / 5))
