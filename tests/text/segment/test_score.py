"""The Python port of the SIGHAN `score` script against the Perl script itself."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from kexue.text.segment import MaxProb, read_dictionary, score


def _perl(script, words, gold, test) -> dict:
    out = subprocess.run(
        ["perl", str(script), str(words), str(gold), str(test)],
        capture_output=True,
        check=True,
        env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
    ).stdout.decode("utf-8", "replace")
    keys = {
        "TOTAL TRUE WORDS RECALL": "R",
        "TOTAL TEST WORDS PRECISION": "P",
        "F MEASURE": "F",
        "OOV Rate": "oov_rate",
        "OOV Recall Rate": "oov_recall",
        "IV Recall Rate": "iv_recall",
        "TOTAL TRUE WORD COUNT": "true_words",
        "TOTAL TEST WORD COUNT": "test_words",
    }
    return {keys[k]: v for k, v in re.findall(r"=== ([^:\t]+):\t(\S+)", out) if k in keys}


def _compare(script, words, gold, test):
    want, got = _perl(script, words, gold, test), score(words, gold, test)
    for k in ("R", "P", "F", "oov_rate", "oov_recall", "iv_recall"):
        assert got[k + "_str"] == want[k], k
    assert str(got["true_words"]) == want["true_words"] and str(got["test_words"]) == want["test_words"]


@pytest.mark.skipif(
    shutil.which("perl") is None, reason="perl is not installed: cannot run the official script"
)
def test_python_scorer_equals_perl_on_pku(shared_data, tmp_path):
    s05 = shared_data / "sighan2005"
    words, gold = s05 / "gold" / "pku_training_words.utf8", s05 / "gold" / "pku_test_gold.utf8"
    lines = (s05 / "testing" / "pku_test.utf8").read_text(encoding="utf-8").splitlines()[:400]
    gold_part = tmp_path / "gold.txt"
    gold_part.write_bytes(b"\n".join(gold.read_bytes().split(b"\n")[:400]) + b"\n")
    text = "\n".join(lines)
    outputs = {
        "uniform": MaxProb(read_dictionary(words)).segment(text),
        "jieba-like": MaxProb(read_dictionary(words), max_len=4).segment(text),
    }
    for name, out in outputs.items():
        p = tmp_path / f"{name}.txt"
        p.write_text(out + "\n", encoding="utf-8")
        _compare(s05 / "scripts" / "score", words, gold_part, p)


@pytest.mark.skipif(
    shutil.which("perl") is None, reason="perl is not installed: cannot run the official script"
)
def test_quirks_equal_perl(shared_data, tmp_path):
    script = shared_data / "sighan2005" / "scripts" / "score"
    (tmp_path / "w").write_text("a\n<\n" + "长" * 40 + "\nb")  # no final newline: chop eats 'b'
    (tmp_path / "g").write_text("a  <  b\n\n" + "长" * 40 + " x\u3000y\r\n| > <\n")
    (tmp_path / "t").write_text("a < b\nz\n" + "长" * 40 + " x y\n|><\nextra\n")
    _compare(script, tmp_path / "w", tmp_path / "g", tmp_path / "t")
