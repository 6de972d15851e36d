"""The [4765] Transformer reproduction on a micro budget: the contract, the task data against brute force,
the accuracy measures, and cached = uncached greedy decoding."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from helpers import run_contract
from kexue.experiments import transformer as repro
from kexue.nn.transformer import Seq2SeqTransformer

MICRO = replace(
    repro.QUICK,
    tasks=("copy", "sort"),
    max_len=5,
    n_train=256,
    n_valid=16,
    n_test=32,
    d_model=16,
    heads=2,
    layers=1,
    d_ff=32,
    max_steps=12,
    warmup=4,
    eval_every=5,
)


def test_micro_run_writes_the_contract(tmp_path):
    on_disk = run_contract(repro.REPRODUCTION, MICRO, tmp_path)
    assert on_disk["name"] == "transformer" and on_disk["systems"] == [32]
    rows = on_disk["rows"]
    assert [r["task"] for r in rows] == ["copy", "sort"]
    keys = {"seq_acc", "token_acc", "steps", "seconds", "cached_equals_uncached", "max_logit_gap"}
    assert keys <= set(rows[0])
    assert all(r["cached_equals_uncached"] for r in rows)  # exact at any training state
    assert all(r["max_logit_gap"] < 1e-4 for r in rows)
    assert on_disk["checks"] == repro.checks_from(MICRO, rows)
    assert {t: len(h["valid"]) for t, h in on_disk["histories"].items()} == {
        "copy": 3,
        "sort": 3,
    }  # 5, 10, 12
    report = (tmp_path / "report.md").read_text()
    assert "| task | seq_acc |" in report and "BLEU 28.4" in report
    assert (tmp_path / "transformer.png").stat().st_size > 1000


@pytest.mark.parametrize("task", repro.TASKS)
def test_pairs_match_the_task_row_by_row(task):
    cfg = replace(repro.QUICK, min_len=1, max_len=7)
    src, tgt = repro.make_pairs(task, 50, cfg, torch.Generator().manual_seed(0))
    assert src.shape == (50, 7) and tgt.shape == (50, 9)
    fn = {"copy": list, "reverse": lambda x: x[::-1], "sort": sorted}[task]
    lengths = set()
    for s, t in zip(src.tolist(), tgt.tolist()):
        x = [a for a in s if a != repro.PAD]
        assert s == x + [repro.PAD] * (7 - len(x)) and all(a >= repro.FIRST_DIGIT for a in x)
        assert t == [repro.BOS, *fn(x), repro.EOS] + [repro.PAD] * (7 - len(x))
        lengths.add(len(x))
    assert lengths == set(range(1, 8))


def test_accuracy_counts_whole_sequences_and_real_tokens():
    tgt = torch.tensor([[1, 5, 6, 2, 0], [1, 7, 2, 0, 0]])
    pred = torch.tensor([[5, 6, 2, 0], [7, 9, 0, 0]])  # row 1: EOS wrong
    seq, tok = repro.accuracy(pred, tgt)
    assert seq == 0.5 and tok == pytest.approx(4 / 5)


def test_cached_greedy_equals_recomputation_on_an_untrained_model():
    torch.manual_seed(0)
    model = Seq2SeqTransformer(repro.model_config(MICRO)).double().eval()
    src, _ = repro.make_pairs("reverse", 20, MICRO, torch.Generator().manual_seed(1))
    cached = repro.decode(model, src, max_new=6)
    assert torch.equal(cached, repro.decode(model, src, max_new=6, cached=False))
    assert cached.shape == (20, 6)


def test_checks_follow_the_rows():
    good = [
        {"seq_acc": 0.995, "cached_equals_uncached": True},
        {"seq_acc": 1.0, "cached_equals_uncached": True},
    ]
    assert all(repro.checks_from(repro.QUICK, good).values())
    low = [dict(good[0], seq_acc=0.98), good[1]]
    assert list(repro.checks_from(repro.QUICK, low).values()) == [False, True]
    drift = [good[0], dict(good[1], cached_equals_uncached=False)]
    assert list(repro.checks_from(repro.QUICK, drift).values()) == [True, False]


def test_config_refuses_unknown_tasks():
    with pytest.raises(ValueError, match="tasks"):
        replace(repro.QUICK, tasks=("addition",))
    with pytest.raises(ValueError, match="min_len"):
        replace(repro.QUICK, min_len=0)
