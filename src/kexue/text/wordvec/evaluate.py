"""Intrinsic evaluation: word similarity (Spearman ρ) and analogies (3CosAdd, 3CosMul), with coverage.

Similarity: ρ between the human scores and cos(w1, w2) over the pairs whose words are both in the
vocabulary; `coverage` is that share of the pairs (out-of-vocabulary pairs are reported, never an error).
Analogy a : b :: c : d (Google's and CA8's line "a b c d"), over all words x ∉ {a, b, c}:

    3CosAdd:  d̂ = argmax_x cos(x, b) − cos(x, a) + cos(x, c)                           [MYZ13]
    3CosMul:  d̂ = argmax_x cos'(x, b) · cos'(x, c) / (cos'(x, a) + ε)                   [LG14b] eq. 4
              with cos' = (cos + 1)/2 and ε = 1e-3

`accuracy` counts the questions whose four words are all in the vocabulary (gensim's
`evaluate_word_analogies` convention); `accuracy_all` counts the uncovered ones as wrong.

Readers: WordSim-353 (`#` comments, tab-separated), Chinese WordSim-240/297 ("w1<TAB>w2<TAB>score"),
Google analogy and CA8 (": section" headers, "a b c d" lines; CA8 has CRLF line ends).

Sources: [MYZ13] Mikolov, Yih & Zweig, NAACL 2013; [LG14b] Levy & Goldberg, "Linguistic Regularities in
Sparse and Explicit Word Representations", CoNLL 2014; [LGD15] Sec. 4 (the evaluation protocol).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kexue.errors import DataError
from kexue.text.wordvec.vectors import WordVectors

Pair = tuple[str, str, float]
Question = tuple[str, str, str, str, str]  # (section, a, b, c, d)


def _lines(path: Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"evaluation file {path} does not exist; check the evaluation folder")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason})") from e


def read_word_pairs(path: Path) -> list[Pair]:
    """(w1, w2, score) per line; blank and `#` lines skipped; tab- or space-separated."""
    pairs = []
    for lineno, line in enumerate(_lines(path), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [p.strip() for p in parts if p.strip()]
        try:
            pairs.append((parts[0], parts[1], float(parts[2])))
        except (IndexError, ValueError):
            raise DataError(f"{path}:{lineno}: expected 'word1<TAB>word2<TAB>score', got {line!r}") from None
    if not pairs:
        raise DataError(f"{path} has no word pairs; expected 'word1<TAB>word2<TAB>score' lines")
    return pairs


def read_analogies(path: Path) -> list[Question]:
    """(section, a, b, c, d) per question; ": name" lines start a section."""
    questions, section = [], ""
    for lineno, line in enumerate(_lines(path), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith(":"):
            section = line[1:].strip()
            continue
        parts = line.split()
        if len(parts) != 4:
            raise DataError(f"{path}:{lineno}: expected four words 'a b c d', got {line!r}")
        questions.append((section, *parts))
    if not questions:
        raise DataError(f"{path} has no analogy questions; expected ': section' and 'a b c d' lines")
    return questions


def similarity(vectors: WordVectors, pairs: list[Pair], *, lowercase: bool = True) -> dict:
    """Spearman ρ (and Pearson r) of cosine against the human scores, on the covered pairs."""
    from scipy.stats import pearsonr, spearmanr

    index, unit = vectors.index(), vectors.unit()
    norm = str.lower if lowercase else str
    found = [
        (index[norm(a)], index[norm(b)], s) for a, b, s in pairs if norm(a) in index and norm(b) in index
    ]
    out = {"pairs": len(pairs), "found": len(found), "coverage": len(found) / len(pairs)}
    if len(found) < 3:
        return {**out, "spearman": float("nan"), "pearson": float("nan")}
    i, j, human = (np.array(x) for x in zip(*found))
    cos = np.einsum("nd,nd->n", unit[i], unit[j])  # (n,)
    return {**out, "spearman": float(spearmanr(cos, human)[0]), "pearson": float(pearsonr(cos, human)[0])}


def analogy(
    vectors: WordVectors,
    questions: list[Question],
    *,
    lowercase: bool = True,
    eps: float = 1e-3,
    chunk: int = 512,
) -> dict:
    """3CosAdd and 3CosMul accuracy over all words except the question's three; coverage reported."""
    index, unit = vectors.index(), vectors.unit()
    norm = str.lower if lowercase else str
    covered = [[index[norm(w)] for w in q[1:]] for q in questions if all(norm(w) in index for w in q[1:])]
    n, total = len(covered), len(questions)
    correct_add = correct_mul = 0
    if n:
        abcd = np.array(covered)  # (n, 4)
        for s in range(0, n, chunk):
            q = abcd[s : s + chunk]  # (m, 4)
            cos_a, cos_b, cos_c = (unit[q[:, j]] @ unit.T for j in range(3))  # each (m, V)
            add = cos_b - cos_a + cos_c  # 3CosAdd  [MYZ13]
            mul = (cos_b + 1) / 2 * ((cos_c + 1) / 2) / ((cos_a + 1) / 2 + eps)  # 3CosMul  [LG14b] eq. 4
            rows = np.arange(len(q))[:, None]
            add[rows, q[:, :3]] = -np.inf  # the question words are never answers
            mul[rows, q[:, :3]] = -np.inf
            correct_add += int((add.argmax(1) == q[:, 3]).sum())
            correct_mul += int((mul.argmax(1) == q[:, 3]).sum())
    nan = float("nan")
    return {
        "questions": total,
        "found": n,
        "coverage": n / total if total else nan,
        "add": correct_add / n if n else nan,  # 3CosAdd accuracy on covered questions
        "mul": correct_mul / n if n else nan,
        "add_all": correct_add / total if total else nan,  # uncovered questions counted wrong
        "mul_all": correct_mul / total if total else nan,
    }


# the evaluation sets of shared/data/wordvec-eval, by file name: (key, kind)
EVAL_SETS = {
    "wordsim353.tsv": ("ws353", "similarity"),
    "questions-words.txt": ("google", "analogy"),
    "wordsim-240.txt": ("ws240", "similarity"),
    "wordsim-297.txt": ("ws297", "similarity"),
    "CA8-morphological.txt": ("ca8_morphological", "analogy"),
    "CA8-semantic.txt": ("ca8_semantic", "analogy"),
}


def find_eval_sets(eval_dir: Path) -> dict[str, tuple[str, Path]]:
    """key → (kind, path) for every known evaluation file under `eval_dir` (e.g. wordvec-eval/)."""
    eval_dir = Path(eval_dir)
    if not eval_dir.is_dir():
        raise DataError(f"evaluation folder {eval_dir} does not exist; give the wordvec-eval folder")
    found = {}
    for name, (key, kind) in EVAL_SETS.items():
        hits = sorted(eval_dir.rglob(name))
        if hits:
            found[key] = (kind, hits[0])
    if not found:
        raise DataError(
            f"no evaluation set in {eval_dir}; expected any of {', '.join(EVAL_SETS)} (wordvec-eval/en, zh)"
        )
    return found


def evaluate_all(vectors: WordVectors, eval_dir: Path, *, only: tuple[str, ...] | None = None) -> dict:
    """Every evaluation set found under `eval_dir` (or the keys in `only`) → its result dict."""
    results = {}
    for key, (kind, path) in find_eval_sets(eval_dir).items():
        if only is not None and key not in only:
            continue
        if kind == "similarity":
            results[key] = similarity(vectors, read_word_pairs(path))
        else:
            results[key] = analogy(vectors, read_analogies(path))
    return results
