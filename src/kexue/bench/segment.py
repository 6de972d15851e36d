"""`kexue bench segment`: characters per second of kexue's segmenters and jieba, same text, same dictionary.

Text: raw Chinese from the data folder — the SIGHAN 2005 PKU and MSR test sentences and the SXU 2008
sentences with their spaces removed (1.4M characters; quick: the PKU test text only, 173k). Dictionary:
the PKU training word list, frequency 1 for every word, for every method (jieba: HMM off). One thread each.
Each method segments the text 5 times, alternating which goes first; the median pass is kept.
F1 on the PKU test set (official scoring, Python port) is measured for the same methods, and
"speedup_vs_jieba" is the characters/s of the fastest kexue method whose F1 ≥ jieba's, over jieba's
(issue 10's goal: ≥ 2). The neural tagger is not in the speed race: it needs training (see
`kexue reproduce segmentation`). jieba is a `bench` extra: `pip install kexue[bench]`.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from pathlib import Path

import torch

from kexue.errors import DataError, KexueError

REPEATS = 5  # timed passes over the text per method (median kept)


def _timed(fn, text_lines: list[str]) -> tuple[list[str], float]:
    t0 = time.perf_counter()
    out = fn(text_lines)
    return out, time.perf_counter() - t0


def run(*, quick: bool = False, device: torch.device | None = None, data_dir: str | None = None) -> dict:
    from kexue.paths import data_dir as find_data
    from kexue.text.segment import MaxProb, read_dictionary, score

    try:
        import jieba
    except ImportError:
        raise KexueError("kexue bench segment compares against jieba: pip install 'kexue[bench]'") from None
    torch.set_num_threads(1)
    root = find_data(data_dir)
    s05 = root / "sighan2005"
    words_path = s05 / "gold" / "pku_training_words.utf8"
    files = [s05 / "testing" / "pku_test.utf8"]
    if not quick:
        files += [
            s05 / "testing" / "msr_test.utf8",
            root / "sighan2008-sxu" / "train.txt",
            root / "sighan2008-sxu" / "test.txt",
        ]
    for p in [words_path, *files]:
        if not p.is_file():
            raise DataError(f"{p} is missing; point --data-dir / KEXUE_DATA at the shared data folder")
    lines = [re.sub(r"\s+", "", ln) for f in files for ln in f.read_text(encoding="utf-8").splitlines()]
    chars = sum(map(len, lines))
    pku = files[0].read_text(encoding="utf-8").splitlines()
    dictionary = read_dictionary(words_path)
    jieba.setLogLevel(60)
    result: dict = {
        "chars": chars,
        "lines": len(lines),
        "dictionary": "pku_training_words (f = 1)",
        "threads": 1,
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "words.txt"
        path.write_text("".join(f"{w} 1\n" for w in dictionary.words), encoding="utf-8")
        tok = jieba.Tokenizer(str(path))
        tok.tmp_dir = tmp
        tok.initialize()
        mp = MaxProb(dictionary)
        methods = {
            "jieba": lambda ls: [" ".join(tok.lcut(x, HMM=False)) for x in ls],
            "kexue_maxprob": lambda ls: mp.segment("\n".join(ls)).split("\n"),
        }
        gold = s05 / "gold" / "pku_test_gold.utf8"
        times: dict[str, list[float]] = {name: [] for name in methods}
        order = list(methods.items())
        for r in range(REPEATS):  # alternate which method goes first; keep the median run
            for name, fn in order if r % 2 == 0 else order[::-1]:
                times[name].append(_timed(fn, lines)[1])
        result["repeats"] = REPEATS
        for name, fn in methods.items():
            sec = statistics.median(times[name])
            out, _ = _timed(fn, pku)
            pred = Path(tmp) / f"{name}.txt"
            pred.write_text("\n".join(out) + "\n", encoding="utf-8")
            result[f"{name}_chars_per_s"] = chars / sec
            result[f"{name}_seconds"] = sec
            result[f"{name}_f1"] = score(words_path, gold, pred)["F"]
    fast = [m for m in ("kexue_maxprob",) if result[f"{m}_f1"] >= result["jieba_f1"]]
    best = max(fast, key=lambda m: result[f"{m}_chars_per_s"], default=None)
    result["fastest_kexue_method"] = best
    result["speedup_vs_jieba"] = (
        result[f"{best}_chars_per_s"] / result["jieba_chars_per_s"] if best else float("nan")
    )
    result["goal_met"] = bool(best) and result["speedup_vs_jieba"] >= 2.0
    return result
