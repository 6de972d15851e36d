"""The segmentation reproduction end to end on a tiny budget: files, the metrics contract, checks."""

from __future__ import annotations

from dataclasses import replace

from helpers import run_contract
from kexue.experiments import segmentation as repro
from kexue.text.segment import TaggerConfig

TINY = replace(
    repro.QUICK,
    tagger=TaggerConfig(steps=3, batch=16, emb=8, hidden=8),
    test_lines=40,
    em_rounds=1,
    em_corpus=("sighan2008-sxu/test.txt",),
    jieba=False,
)


def test_tiny_run_writes_the_contract(shared_data, tmp_path):
    on_disk = run_contract(repro.REPRODUCTION, replace(TINY, data_dir=str(shared_data)), tmp_path / "out")
    assert on_disk["name"] == "segmentation" and on_disk["systems"] == [26]
    by = {r["method"]: r for r in on_disk["rows"]}
    neural = by["neural, dictionary only [4245]"]
    ((_name, ok),) = on_disk["checks"].items()
    assert ok == (neural["F1"] >= 0.85)
    for r in on_disk["rows"]:
        assert 0 <= r["P"] <= 1 and 0 <= r["F1"] <= 1 and r["chars_per_s"] > 0
    assert by["max-prob, f=1"]["F1"] > 0.85  # a uniform dictionary of the test's own training words
