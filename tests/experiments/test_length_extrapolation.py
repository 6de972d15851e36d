"""The copy task (generator, scoring, attention knobs) and the length-extrapolation reproduction, tiny."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from helpers import run_contract
from kexue.errors import KexueError
from kexue.experiments import length_extrapolation as repro
from kexue.experiments.copy_task import (
    CopyTask,
    ModelSpec,
    TrainSpec,
    accuracy,
    lm_batch,
    periodic_batch,
    set_attention,
    tiny_lm,
)
from kexue.nn.attention import MultiHeadAttention

TINY_TASK = CopyTask(vocab=12, min_period=2, max_period=5)
TINY_MODEL = ModelSpec(d_model=16, heads=2, layers=1, d_ff=32, train_length=16)
TINY = replace(
    repro.QUICK,
    task=TINY_TASK,
    model=TINY_MODEL,
    train=TrainSpec(steps=6, batch_size=8),
    seeds=(0, 1),
    lengths=(16, 32, 128, 256),  # n, 2n, 8n, 16n = n²
    sequences=4,
)


# ------------------------------------------------------------------------------------------- the task
def _segments(task: CopyTask, length: int) -> list[tuple[int, int]]:
    seg = task.segment or length
    return [(a, min(a + seg, length)) for a in range(0, length, seg)]


@st.composite
def tasks(draw) -> CopyTask:
    vocab = draw(st.integers(2, 40))
    lo = draw(st.integers(1, vocab))
    hi = draw(st.integers(lo, min(vocab, lo + 12)))
    segment = draw(st.one_of(st.none(), st.integers(hi + 1, hi + 25)))
    return CopyTask(vocab=vocab, min_period=lo, max_period=hi, segment=segment)


@settings(max_examples=40, deadline=None)
@given(task=tasks(), length=st.integers(1, 70), seed=st.integers(0, 2**31 - 1))
def test_batch_is_periodic_with_distinct_patterns(task, length, seed):
    tokens, known = periodic_batch(task, 3, length, generator=torch.Generator().manual_seed(seed))
    assert tokens.shape == known.shape == (3, length) and tokens.dtype == torch.long
    assert known.dtype == torch.bool and 0 <= int(tokens.min()) and int(tokens.max()) < task.vocab
    for b in range(3):
        for a, z in _segments(task, length):
            x = tokens[b, a:z].tolist()
            # the period: the first repeat of the segment's first token (distinct tokens), or unseen
            P = next((s for s in range(1, len(x)) if x[s] == x[0]), None)
            if P is None:  # the segment ends inside its first period: nothing is known
                assert len(set(x)) == len(x) and not known[b, a:z].any()
                continue
            assert task.min_period <= P <= task.max_period and len(set(x[:P])) == P  # P distinct tokens
            assert all(x[s] == x[s - P] for s in range(P, len(x)))  # x_s = x_{s−P}
            assert known[b, a:z].tolist() == [s > P for s in range(len(x))]  # P is revealed at s = P


@pytest.mark.parametrize(
    "kw", [dict(min_period=5, max_period=4), dict(max_period=40), dict(min_period=0), dict(segment=24)]
)
def test_task_refuses_impossible_settings(kw):
    with pytest.raises(KexueError, match="CopyTask"):
        CopyTask(**kw)


def test_batch_is_reproducible_from_the_generator():
    a = periodic_batch(TINY_TASK, 4, 20, generator=torch.Generator().manual_seed(3))
    b = periodic_batch(TINY_TASK, 4, 20, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_lm_batch_ignores_exactly_the_first_period():
    tokens, known = periodic_batch(TINY_TASK, 5, 30, generator=torch.Generator().manual_seed(0))
    inputs, targets = lm_batch(tokens, known)
    assert torch.equal(inputs, tokens[:, :-1])
    assert torch.equal(targets >= 0, known[:, 1:])
    assert torch.equal(targets[known[:, 1:]], tokens[:, 1:][known[:, 1:]])


class Oracle(nn.Module):
    """Induction by brute force: find the previous occurrence of the current token, predict its successor;
    with none, predict token 0. One-hot logits (B, T, V)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab, self.dummy = vocab, nn.Parameter(torch.zeros(()))

    def forward(self, x):
        pred = torch.zeros_like(x)
        for b in range(x.shape[0]):
            for t in range(x.shape[1]):
                prev = [j for j in range(t) if x[b, j] == x[b, t]]
                pred[b, t] = x[b, prev[-1] + 1] if prev else 0
        return nn.functional.one_hot(pred, self.vocab).float()


@pytest.mark.parametrize("segment", [None, 7])
def test_accuracy_scores_the_determined_tokens_only(segment):
    """The oracle is exact on every scored token, so the scored set holds only determined tokens; a constant
    predictor's score equals a brute-force count over the tokens at r > P (the first period and the repeat
    that reveals P excluded)."""
    task = CopyTask(vocab=10, min_period=2, max_period=6, segment=segment)
    assert accuracy(Oracle(10), task, 30, sequences=6, seed=1, batch_size=4) == 1.0
    constant = Oracle(10)
    constant.forward = lambda x: nn.functional.one_hot(torch.full_like(x, 3), 10).float()
    g = torch.Generator().manual_seed(1 * 100_003 + 30)  # the evaluation draw of (seed 1, length 30)
    right = total = 0
    for size in (4, 2):
        tokens, _ = periodic_batch(task, size, 31, generator=g)
        for row in tokens.tolist():
            for a, z in _segments(task, 31):
                x = row[a:z]
                P = next((s for s in range(1, len(x)) if x[s] == x[0]), len(x))
                for s in range(P + 1, len(x)):  # token a + s (determined: s > P), predicted at a + s − 1
                    if a + s >= 13:  # `beyond` = 13 keeps tokens at positions ≥ 13
                        right, total = right + (x[s] == 3), total + 1
    assert accuracy(constant, task, 30, sequences=6, seed=1, batch_size=4, beyond=13) == right / total


# ---------------------------------------------------------------------------------- attention knobs
@pytest.fixture
def rope_model():
    return tiny_lm(TINY_TASK, TINY_MODEL, positions="rope", seed=0, device="cpu").double().eval()


def test_set_attention_reaches_every_layer(rope_model):
    set_attention(rope_model, scale="log_n", log_n_base=16, log_n_min=4, window=7)
    mha = [m for m in rope_model.modules() if isinstance(m, MultiHeadAttention)]
    assert mha and all((m.scale, m.log_n_base, m.log_n_min, m.window) == ("log_n", 16, 4, 7) for m in mha)


def test_inference_only_knobs_change_nothing_up_to_the_training_length(rope_model):
    """max(1, log_n n) = 1 and a window of n keys hide nothing while n keys or fewer are visible; at 2n
    both change the logits."""
    n = TINY_MODEL.train_length
    x = periodic_batch(TINY_TASK, 3, 2 * n, generator=torch.Generator().manual_seed(0))[0]
    with torch.no_grad():
        ref = rope_model(x)
        for variant in ("rope+logn-inference", "rope+window"):
            set_attention(rope_model, **repro._settings(variant, TINY))
            out = rope_model(x)
            torch.testing.assert_close(out[:, :n], ref[:, :n], rtol=1e-12, atol=1e-12)
            assert (out[:, n:] - ref[:, n:]).abs().max() > 1e-6
            set_attention(rope_model)


# ------------------------------------------------------------------------------------- reproduction
def test_tiny_run_writes_the_contract(tmp_path):
    on_disk = run_contract(repro.REPRODUCTION, TINY, tmp_path)
    assert on_disk["name"] == "length-extrapolation"
    rows = on_disk["rows"]
    assert len(rows) == len(TINY.seeds) * len(repro.VARIANTS) * len(TINY.lengths)
    assert {r["variant"] for r in rows} == set(repro.VARIANTS)
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    n = TINY.model.train_length
    for seed in TINY.seeds:  # the extension and the clamp read the same table up to n
        at_n = {r["variant"]: r["accuracy"] for r in rows if r["seed"] == seed and r["length"] == n}
        assert at_n["learned+hierarchical"] == at_n["learned+clamp"]
        assert at_n["rope"] == at_n["rope+window"]
    assert len(on_disk["summary"]) == len(repro.VARIANTS) * len(TINY.lengths)
    assert len(on_disk["training"]) == len(TINY.seeds) * len(repro.MODELS)
    assert on_disk["checks"] == repro.checks_from(TINY, rows)
    report = (tmp_path / "report.md").read_text()
    assert "Accuracy (%), mean ± std over seeds" in report and "41.17" in report  # Su's [8823] table
    assert (tmp_path / "length_extrapolation.png").stat().st_size > 1000


def _rows(acc: dict[str, list[float]]) -> list[dict]:
    """Rows with accuracy acc[variant][k] at TINY.lengths[k], the same for both seeds."""
    return [
        {"variant": v, "seed": s, "length": L, "accuracy": a}
        for v, accs in acc.items()
        for L, a in zip(TINY.lengths, accs)
        for s in TINY.seeds
    ]


GOOD = {  # lengths n, 2n, 8n, 16n
    "rope": [0.99, 0.95, 0.6, 0.5],
    "rope+logn-inference": [0.99, 0.95, 0.59, 0.49],
    "rope+logn-train": [0.99, 0.9, 0.4, 0.3],
    "rope+window": [0.99, 0.99, 0.99, 0.98],
    "learned+hierarchical": [0.95, 0.9, 0.88, 0.85],  # ≥ 10× chance = 10/12
    "learned+clamp": [0.95, 0.95, 0.95, 0.95],
}


def test_checks_follow_the_rows():
    assert all(repro.checks_from(TINY, _rows(GOOD)).values())

    def failing(**changes) -> set[str]:
        checks = repro.checks_from(TINY, _rows(GOOD | changes))
        return {k for k, ok in checks.items() if not ok}

    fmt = TINY
    assert failing(**{"rope": [0.9, 0.9, 0.6, 0.5]}) == {repro.CHECK_LEARNED.format(a=fmt.min_accuracy)}
    assert repro.CHECK_DEGRADE.format(p=fmt.degrade_points) in failing(rope=[0.99, 0.99, 0.95, 0.92])
    window = repro.CHECK_WINDOW.format(p=fmt.window_points)
    assert failing(**{"rope+window": [0.99, 0.99, 0.99, 0.69]}) == {window}
    logn = repro.CHECK_LOGN.format(p=fmt.logn_points)
    assert failing(**{"rope+logn-inference": [0.99, 0.95, 0.57, 0.49]}) == {logn}
    hier = repro.CHECK_HIER.format(k=fmt.chance_multiple)
    assert failing(**{"learned+hierarchical": [0.95, 0.9, 0.88, 0.8]}) == {hier}
    assert not failing(**{"rope+logn-train": [0.0, 0.0, 0.0, 0.0]})  # reported, never gated


def test_config_refuses_checks_that_could_not_run():
    with pytest.raises(ValueError, match="two seeds"):
        replace(TINY, seeds=(0,))
    with pytest.raises(ValueError, match="reach 16n"):
        replace(TINY, lengths=(16, 32, 128))
    with pytest.raises(ValueError, match="n²"):
        replace(TINY, lengths=(16, 256, 512))
