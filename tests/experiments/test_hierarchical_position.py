"""The [7947] reproduction on a tiny budget, its position extensions, and its verdict logic."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from helpers import run_contract
from kexue.experiments import hierarchical_position as repro
from kexue.experiments.copy_task import CopyTask, ModelSpec, TrainSpec, tiny_lm
from kexue.nn.positions import HierarchicalPositions, LearnedPositions

TINY = replace(
    repro.QUICK,
    task=CopyTask(vocab=12, min_period=2, max_period=4, segment=8),
    model=ModelSpec(d_model=16, heads=2, layers=1, d_ff=32, train_length=8),
    train=TrainSpec(steps=6, batch_size=8),
    seeds=(0, 1),
    alphas=(0.3, 0.4, 0.6),
    exact_lengths=(1, 5, 8),
    direct_lengths=(8, 16, 32),
    finetune_length=16,
    finetune=TrainSpec(steps=4, batch_size=4),
    finetune_evals=2,
    sequences=4,
)


def test_tiny_run_writes_the_contract(tmp_path):
    on_disk = run_contract(repro.REPRODUCTION, TINY, tmp_path)
    assert on_disk["name"] == "hierarchical-position" and on_disk["systems"] == [12]
    rows = on_disk["rows"]
    parts = {p: [r for r in rows if r["part"] == p] for p in ("exact", "n2", "direct", "finetune")}
    seeds, ext = len(TINY.seeds), TINY.extensions
    assert len(parts["exact"]) == seeds * len(TINY.exact_lengths) * len(TINY.alphas)
    assert all(r["identical"] for r in parts["exact"])  # [7947] eq. 2: q_j = p_j for j ≤ n, bitwise
    assert [r["length"] for r in parts["n2"]] == [64] * seeds and all(r["finite"] for r in parts["n2"])
    assert len(parts["direct"]) == seeds * len(ext) * len(TINY.direct_lengths)
    n = TINY.model.train_length
    for seed in TINY.seeds:  # at n every extension reads the trained table itself
        at_n = {r["accuracy"] for r in parts["direct"] if r["seed"] == seed and r["length"] == n}
        assert len(at_n) == 1
    assert {r["step"] for r in parts["finetune"]} == {0, 2, 4}
    assert len(parts["finetune"]) == seeds * len(ext) * 3
    assert set(on_disk["curve_means"]) == set(ext)
    assert on_disk["checks"] == repro.checks_from(TINY, rows)
    report = (tmp_path / "report.md").read_text()
    assert "### (a) Exactness" in report and "≈ 38%" in report  # Su's numbers beside ours
    assert (tmp_path / "hierarchical_position.png").stat().st_size > 1000


def test_baseline_extensions_read_the_table_as_defined():
    g = torch.Generator().manual_seed(0)
    table = LearnedPositions(8, 4, generator=g, std=1.0)
    w = table.weight.detach()
    pos = torch.arange(40)
    clamp = repro.extension("clamp", table, 40, seed=0)(pos)
    assert torch.equal(clamp, w[pos.clamp(max=7)])
    assert torch.equal(repro.extension("repeat", table, 40, seed=0)(pos), w[pos % 8])
    rnd = repro.extension("random", table, 40, seed=0)
    assert rnd.max_len == 40 and torch.equal(rnd(pos[:8]), w)
    assert torch.equal(rnd.weight, repro.extension("random", table, 40, seed=0).weight)  # seeded
    hier = repro.extension("hier-0.3", table, 40, seed=0)
    # [7947] eq. 1–2 written out 1-based: q_{(i−1)n+j} = αu_i + (1−α)u_j, u_i = (p_i − αp_1)/(1 − α)
    p, a = w.double(), 0.3
    u = (p - a * p[0]) / (1 - a)
    brute = torch.stack([a * u[i - 1] + (1 - a) * u[j - 1] for i in range(1, 6) for j in range(1, 9)])
    torch.testing.assert_close(hier(pos).double(), brute, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="unknown extension"):
        repro.extension("nearest", table, 40, seed=0)


def test_exactness_rows_are_measured(monkeypatch):
    """(a) is computed from the model: an extension that moved rows < n by 1e-6 would show as False."""
    cfg = replace(TINY, alphas=(0.4, 0.7))
    model = tiny_lm(cfg.task, cfg.model, positions="learned", seed=0, device="cpu").eval()
    rows = [r for r in repro.exactness(model, cfg, seed=0) if r["part"] == "exact"]
    assert len(rows) == 6 and all(r["identical"] for r in rows)

    class Shifted(torch.nn.Module):
        def __init__(self, table, alpha):
            super().__init__()
            self.inner = HierarchicalPositions(table, alpha)

        def forward(self, positions):
            return self.inner(positions) + 1e-6

    monkeypatch.setattr(repro, "HierarchicalPositions", Shifted)
    rows = [r for r in repro.exactness(model, cfg, seed=0) if r["part"] == "exact"]
    assert not any(r["identical"] for r in rows)


def test_finetuning_sees_the_same_batches_for_every_extension():
    """Fine-tuning is deterministic per seed: the same extension twice gives the same curve."""
    model = tiny_lm(TINY.task, TINY.model, positions="learned", seed=0, device="cpu")
    a = repro.finetuned(model, TINY, "hier-0.4", seed=0)
    b = repro.finetuned(model, TINY, "hier-0.4", seed=0)
    assert a == b and [r["step"] for r in a] == [0, 2, 4]


def _rows(cfg, *, at_n=0.98, direct=0.5, final=0.97, curves=None) -> list[dict]:
    curves = curves or {}
    n = cfg.model.train_length
    rows = [{"part": "exact", "seed": 0, "length": 1, "alpha": 0.4, "identical": True}]
    rows.append({"part": "n2", "seed": 0, "length": n * n, "finite": True, "min_distance": 0.1})
    for e in cfg.extensions:
        for L in cfg.direct_lengths:
            rows.append({"part": "direct", "seed": 0, "extension": e, "length": L, "accuracy": at_n})
            rows[-1]["accuracy_beyond"] = float("nan") if L == n else direct
        start, end = curves.get(e, (0.5, final))
        rows.append({"part": "finetune", "seed": 0, "extension": e, "step": 0, "accuracy_beyond": start})
        rows.append({"part": "finetune", "seed": 0, "extension": e, "step": 4, "accuracy_beyond": end})
    return rows


def test_checks_follow_the_rows():
    cfg = TINY  # chance 1/12: "≫ chance" needs 10/12
    good = {"random": (0.3, 0.9), "hier-0.6": (0.4, 0.9)}
    assert all(repro.checks_from(cfg, _rows(cfg, direct=0.9, curves=good)).values())

    def failing(rows) -> set[str]:
        return {k for k, ok in repro.checks_from(cfg, rows).items() if not ok}

    direct = repro.CHECK_DIRECT.format(a=cfg.alpha, k=cfg.chance_multiple)
    assert failing(_rows(cfg, direct=0.5, curves=good)) == {direct}
    recover = repro.CHECK_RECOVER.format(s=4, f=cfg.finetune_length, p=cfg.recover_points)
    assert recover in failing(_rows(cfg, direct=0.9, final=0.9, curves=good))
    init = failing(_rows(cfg, direct=0.9, curves={**good, "random": (0.9, 0.97)}))
    assert init == {repro.CHECK_INIT}
    alpha = failing(_rows(cfg, direct=0.9, curves={"random": (0.3, 0.9), "hier-0.6": (0.9, 0.99)}))
    assert repro.CHECK_ALPHA in alpha and repro.CHECK_DEFAULT.format(a=0.4, p=2.0) in alpha
    broken = _rows(cfg, direct=0.9, curves=good)
    broken[0]["identical"] = False
    broken[1]["min_distance"] = 0.0
    assert failing(broken) == {repro.CHECK_EXACT, repro.CHECK_N2}


def test_config_refuses_checks_that_could_not_run():
    with pytest.raises(ValueError, match="two seeds"):
        replace(TINY, seeds=(0,))
    with pytest.raises(ValueError, match=r"both sides of 0\.5"):
        replace(TINY, alphas=(0.3, 0.4))
    with pytest.raises(ValueError, match=r"α = 0\.4"):
        replace(TINY, alphas=(0.3, 0.6))
    with pytest.raises(ValueError, match=r"\(n, n²\]"):
        replace(TINY, finetune_length=8)
