"""The titles reproduction end to end on a micro budget: the runner's contract, rows, check and report."""

from __future__ import annotations

from dataclasses import replace

import pytest

from helpers import run_contract
from kexue.experiments import titles as repro
from kexue.text.titles.api import TitlesTrainConfig

SMALL = dict(
    steps=3, batch_size=8, max_source=24, max_title=8, embed_dim=8, hidden=8, layers=1, eval_split=None
)
MICRO = replace(
    repro.QUICK,
    train=TitlesTrainConfig(**SMALL),
    unilm=TitlesTrainConfig(model="unilm", unilm_d_model=16, unilm_layers=1, unilm_heads=2, **SMALL),
    test_size=6,
    examples=3,
)


def test_micro_run_writes_the_contract(shared_data, tmp_path):
    if not (shared_data / "csl" / "test.tsv").is_file():
        pytest.skip(f"{shared_data / 'csl'} is absent (CSL of the shared data folder)")
    on_disk = run_contract(repro.REPRODUCTION, replace(MICRO, data_dir=str(shared_data)), tmp_path / "out")
    assert on_disk["name"] == "titles" and on_disk["systems"] == [35]
    rows = on_disk["rows"]
    assert [r["model"] for r in rows] == ["lstm", "lstm-copy", "lstm", "lstm-copy", "unilm", "lead"]
    assert all(0 <= r[k] <= 1 for r in rows for k in repro.METRICS)
    by = {s["model"]: s for s in on_disk["summary"]}
    assert on_disk["checks"][repro.CHECK] == (by["lstm-copy"]["rouge_l"] > by["lstm"]["rouge_l"])
    mean = sum(r["rouge_l"] for r in rows if r["model"] == "lstm") / 2
    assert by["lstm"]["rouge_l"] == pytest.approx(100 * mean)
    assert len(on_disk["examples"]) == 3 and set(on_disk["examples"][0]) == {"reference", *by}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "41.80" in report and on_disk["examples"][0]["reference"] in report


def test_lead_baseline_by_hand():
    docs = ["采用修正的参数,建立了模型。", "版本3.5的研究；其他"]
    assert repro.lead_titles(docs, 5) == ["采用修正的", "版本3.5"]  # "3.5" is not a clause end
