"""The SIGHAN bakeoff `score` script (Sproat & Emerson, icwb2-data/scripts/score) ported to Python.

The Perl script, per line pair (gold, test): strips the ends, turns U+3000 (and Big5 A1 40) into spaces,
deletes CR, splits on ASCII whitespace, writes one word per line to two files and runs `diff -y`; a gold
word on a diff line marked `|`, `<` or `>` is missed (recall), a test word on such a line is wrong
(precision); a gold word missing from the word list is OOV. Totals: R, P, F = 2PR/(P+R), the OOV rate,
OOV recall and IV recall, printed "%2.3f". Lines are read in step until either file ends; a gold line that
is empty is skipped.

This port works on bytes like the script (no `use utf8`: `\\s` is ASCII whitespace). The alignment is a
shortest edit script (common prefix and suffix first, then Myers' O(ND) search), which is what GNU diff
finds on sentence-sized inputs; within a change hunk diff -y pairs lines as `|` and prints the rest as
`<` / `>`. The script reads the *displayed* gold word back from diff's output, so a gold word wider than
diff's 61-column half is looked up truncated: that is reproduced for a UTF-8 locale (East Asian wide
characters count two columns). The regular expressions are the script's, applied to diff-shaped lines,
so its quirks (a word that is itself "<", ">" or "|") come out the same.

Known difference: GNU diff is not always minimal — on inputs with many changes it discards frequent
"confusing" lines and cuts its search short, so for outputs far from the gold (F ≈ 0.5, mostly single
characters) the Perl numbers can differ from this port's in the third decimal. On realistic outputs
(F ≈ 0.9, the tests' real PKU files) they are identical.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

_STRIP = re.compile(rb"^\s*|\s*$")
_SPACE = re.compile(rb"(\xe3\x80\x80)|(\xa1\x40)")
_SPLIT = re.compile(rb"\s+")
_LEFT = re.compile(rb"^([^\s]+)\s")
_MISSED = re.compile(rb"^[^\s]+\s.*\s[\|\>\<]\s")
_WRONG = re.compile(rb"\s[\|\>\<]\s.*[^\s]$")
_CHANGED = (re.compile(rb"\s\|\s"), re.compile(rb"\s\>\s"), re.compile(rb"\s\<\s"))
HALF = 61  # the column width of each side of `diff -y` (default width 130)


def _perl_dollar(line: bytes) -> bytes:
    """Perl's `$` also matches before a final newline: emulate by testing the line without it too."""
    return line[:-1] if line.endswith(b"\n") else line


def _displayed(word: bytes) -> bytes:
    """The part of `word` that diff -y shows in a 61-column half (UTF-8 locale)."""
    try:
        text = word.decode("utf-8")
    except UnicodeDecodeError:
        return word[:HALF]
    cols = 0
    for i, ch in enumerate(text):
        w = 2 if unicodedata.east_asian_width(ch) in "WF" else (0 if unicodedata.combining(ch) else 1)
        if cols + w > HALF:
            return text[:i].encode("utf-8")
        cols += w
    return word


def edit_script(a: list[bytes], b: list[bytes]) -> list[tuple[str, int, int]]:
    """A shortest edit script as diff -y lines: ("=", i, j), ("|", i, j), ("<", i, -1), (">", -1, j)."""
    p = 0
    while p < len(a) and p < len(b) and a[p] == b[p]:
        p += 1
    s = 0
    while s < len(a) - p and s < len(b) - p and a[-1 - s] == b[-1 - s]:
        s += 1
    matches = [(p + i, p + j) for i, j in _myers(a[p : len(a) - s], b[p : len(b) - s])]
    matches = [(i, i) for i in range(p)] + matches + [(len(a) - s + t, len(b) - s + t) for t in range(s)]
    out: list[tuple[str, int, int]] = []
    i = j = 0
    for mi, mj in [*matches, (len(a), len(b))]:
        dels, inss = list(range(i, mi)), list(range(j, mj))
        for x, y in zip(dels, inss):
            out.append(("|", x, y))
        out += [("<", x, -1) for x in dels[len(inss) :]] + [(">", -1, y) for y in inss[len(dels) :]]
        if mi < len(a):
            out.append(("=", mi, mj))
        i, j = mi + 1, mj + 1
    return out


def _myers(a: list[bytes], b: list[bytes]) -> list[tuple[int, int]]:
    """Matched index pairs of a shortest edit script (Myers 1986, greedy forward search)."""
    n, m = len(a), len(b)
    if not n or not m:
        return []
    v = {1: 0}
    trace = []
    for d in range(n + m + 1):
        trace.append(dict(v))
        for k in range(-d, d + 1, 2):
            x = v[k + 1] if k == -d or (k != d and v[k - 1] < v[k + 1]) else v[k - 1] + 1
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x, y = x + 1, y + 1
            v[k] = x
            if x >= n and y >= m:
                return _backtrack(trace, a, b, d)
    return []


def _backtrack(trace, a, b, d_end) -> list[tuple[int, int]]:
    x, y = len(a), len(b)
    pairs = []
    for d in range(d_end, 0, -1):
        v, k = trace[d], x - y
        pk = k + 1 if k == -d or (k != d and v[k - 1] < v[k + 1]) else k - 1
        px = v[pk]
        py = px - pk
        while x > px and y > py:  # the snake after the edit of round d
            x, y = x - 1, y - 1
            pairs.append((x, y))
        x, y = px, py
    while x > 0 and y > 0:  # the snake of round 0
        x, y = x - 1, y - 1
        pairs.append((x, y))
    return pairs[::-1]


def _line(kind: str, left: bytes, right: bytes) -> bytes:
    """A diff -y output line in shape: diff pads the left half with tabs (one when it is full)."""
    shown = _displayed(left)
    pad = b"\t" if shown != left else b"\t\t"
    return {
        "=": shown + pad + right,
        "|": shown + pad + b"|\t" + right,
        "<": shown + pad + b"<",
        ">": b"\t\t>\t" + right,
    }[kind] + b"\n"


def _prep(line: bytes) -> list[bytes]:
    line = _STRIP.sub(b"", line)
    line = _SPACE.sub(b" ", line).replace(b"\r", b"")
    return [w for w in _SPLIT.split(line)] if line else []


def score_lines(words: set[bytes], gold: list[bytes], test: list[bytes]) -> dict:
    """Totals of the script over line pairs (bytes lines); `words` is the word list."""
    t = dict.fromkeys(("ins", "dels", "subst", "true", "test", "recall", "precision"), 0)
    oov = iv = oov_missed = iv_missed = 0
    for g_line, s_line in zip(gold, test):
        g, s = _prep(g_line), _prep(s_line)
        if not g:
            continue
        miss_r = miss_p = 0
        for kind, i, j in edit_script(g, s):
            line = _line(kind, g[i] if i >= 0 else b"", s[j] if j >= 0 else b"")
            if _CHANGED[0].search(line):
                t["subst"] += 1
            elif _CHANGED[1].search(line):
                t["ins"] += 1
            elif _CHANGED[2].search(line):
                t["dels"] += 1
            left = _LEFT.match(line)
            if left:
                known = left.group(1) in words
                oov, iv = oov + (not known), iv + known
                if _MISSED.match(line):
                    oov_missed, iv_missed = oov_missed + (not known), iv_missed + known
                    miss_r += 1
            if _WRONG.search(_perl_dollar(line)):
                miss_p += 1
        t["true"] += len(g)
        t["test"] += len(s)
        t["recall"] += len(g) - miss_r
        t["precision"] += len(s) - miss_p
    R, P = t["recall"] / t["true"], t["precision"] / t["test"]
    F = 2 * P * R / (P + R) if P + R else 0.0
    return {
        "R": R,
        "P": P,
        "F": F,
        "oov_rate": oov / t["true"],
        "oov_recall": 1 - oov_missed / oov if oov else float("nan"),
        "iv_recall": 1 - iv_missed / iv if iv else float("nan"),
        "insertions": t["ins"],
        "deletions": t["dels"],
        "substitutions": t["subst"],
        "true_words": t["true"],
        "test_words": t["test"],
    }


def _perl_lines(path: Path) -> list[bytes]:
    """Lines as Perl's <FH> reads them, without the newline (the last one may lack it)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    return lines[:-1] if data.endswith(b"\n") or not data else lines


def _word_list(path: Path) -> set[bytes]:
    """The script's %dict: `chop` (drops the newline — or the last byte of an unterminated last line),
    then strip both ends."""
    data = path.read_bytes()
    lines = _perl_lines(path)
    if lines and not data.endswith(b"\n"):
        lines[-1] = lines[-1][:-1]
    return {_STRIP.sub(b"", line) for line in lines}


def score(dictionary: str | Path, gold: str | Path, test: str | Path) -> dict:
    """P, R, F, OOV rate / recall, IV recall of `test` against `gold`, as the Perl script computes them.

    The "…_str" entries are the script's printed "%2.3f" numbers."""
    res = score_lines(_word_list(Path(dictionary)), _perl_lines(Path(gold)), _perl_lines(Path(test)))
    for k in ("R", "P", "F", "oov_rate", "oov_recall", "iv_recall"):
        res[k + "_str"] = "--" if res[k] != res[k] else f"{res[k]:2.3f}"
    return res
