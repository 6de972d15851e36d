"""kexue bench segment: its JSON fields and their definitions on the quick text (needs jieba, data)."""

from __future__ import annotations

import pytest

pytest.importorskip("jieba", reason="jieba is a bench extra (pip install 'kexue[bench]')")


def test_benchmark_json_fields(monkeypatch, shared_data):
    from kexue.bench import segment as bench

    monkeypatch.setattr(bench, "REPEATS", 1)
    result = bench.run(quick=True, data_dir=str(shared_data))
    assert result["chars"] > 100_000 and result["repeats"] == 1
    for key in ("jieba_chars_per_s", "kexue_maxprob_chars_per_s", "jieba_f1", "kexue_maxprob_f1"):
        assert result[key] > 0, key
    assert abs(result["jieba_f1"] - 0.893) < 0.001  # issue 10: jieba + PKU words (f = 1, HMM off)
    if result["fastest_kexue_method"] == "kexue_maxprob":
        ratio = result["kexue_maxprob_chars_per_s"] / result["jieba_chars_per_s"]
        assert result["speedup_vs_jieba"] == pytest.approx(ratio)
        assert result["goal_met"] == (ratio >= 2)
