"""Character-level ROUGE-1/2/L F and BLEU, computed exactly as bert4keras's CSL title example does.

[6933]/bert4keras `examples/task_seq2seq_autotitle_csl.py`, `Evaluator.evaluate` (reference/nlp.md §3.3):
    title = ' '.join(title).lower(); pred = ' '.join(pred).lower()
    if pred.strip():                                        # an empty prediction scores 0
        scores = Rouge().get_scores(hyps=pred, refs=title)  # pip package `rouge` (pltrdy)
        rouge_1 += scores[0]['rouge-1']['f'] …              # F of ROUGE-1, ROUGE-2, ROUGE-L
        bleu += sentence_bleu([title.split(' ')], pred.split(' '), smoothing_function=method1)
    each divided by the number of samples.
This module re-implements those definitions in plain Python (no `rouge`, no `nltk` at run time); the tests
compare it with both packages on random strings.

The `rouge` package's steps, reproduced literally (they are what the published CSL numbers measured):
1. The space-joined text is split into "sentences" at "."; empty pieces are dropped and each piece's
   whitespace runs collapse to one space (`" ".join(s.split())`); words are the pieces split at " ".
   So a "." character never counts, and full-width spaces vanish — quirks kept on purpose.
2. ROUGE-N: n-grams of the words of all sentences concatenated. rouge 1.0.0 (the version of 2019–2021,
   when the CSL numbers of [8209] and CLGE were made; `Rouge(exclusive=False)` by default) counts them as
   multisets: overlap = Σ_g min(c_hyp(g), c_ref(g)). rouge ≥ 1.0.1 defaults to sets (`distinct_ngrams`).
   P = overlap / #hyp n-grams, R = overlap / #ref n-grams (0 when a count is 0), F = 2PR / (P + R + 1e-8).
3. ROUGE-L (summary level; rouge forces sets in every version): for each reference sentence r_i and each
   hypothesis sentence c_j, ONE longest common subsequence is traced back through the DP table (match →
   diagonal; else up when T[i−1][j] > T[i][j−1], else left) and its distinct words are added to a union;
   LCS = |union|, m, n = distinct words of the reference and the hypothesis; P = LCS/n, R = LCS/m and F as
   above. (With repeated characters this is not Lin's LCS_∪ count; it is what `rouge` computes.)

BLEU (nltk `sentence_bleu`, weights ¼ each, [Papineni] Papineni et al., ACL 2002): modified n-gram
precisions p_n = Σ_g min(c_hyp(g), c_ref(g)) / max(1, #hyp n-grams); method1 replaces a p_n whose numerator
is 0 by 0.1 / denominator; BLEU = BP · exp(Σ ¼ log p_n) with BP = 1 if c > r, 0 if c = 0, else e^{1 − r/c};
0 when no unigram matches. Tokens are `' '.join(text).lower().split(' ')`, so a space in the text becomes two
empty tokens — again as in the example.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

EPS_F = 1e-8  # rouge's F = 2PR / (P + R + 1e-8)
EPS_BLEU = 0.1  # nltk SmoothingFunction().epsilon, used by method1


# ----------------------------------------------------------------------------------------------- tokens
def spaced(text: str) -> str:
    """The example's preprocessing: characters joined by spaces, lower-cased."""
    return " ".join(text).lower()


def rouge_sentences(text: str) -> list[list[str]]:
    """`rouge`'s view of `spaced(text)`: sentences (split at ".", empty ones dropped) of words."""
    pieces = [" ".join(s.split()) for s in spaced(text).split(".") if len(s) > 0]
    return [p.split(" ") for p in pieces]


def bleu_tokens(text: str) -> list[str]:
    """nltk's tokens in the example: `spaced(text).split(' ')` (a space character gives two '' tokens)."""
    return spaced(text).split(" ")


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _f(overlap: int, n_hyp: int, n_ref: int) -> float:
    p = overlap / n_hyp if n_hyp else 0.0
    r = overlap / n_ref if n_ref else 0.0
    return 2.0 * ((p * r) / (p + r + EPS_F))  # rouge's f_r_p_rouge_n, same operation order


# ----------------------------------------------------------------------------------------------- ROUGE
def rouge_n(hyp: str, ref: str, n: int, *, distinct_ngrams: bool = False) -> float:
    """Character ROUGE-N F of one prediction against one reference (module docstring, step 2).

    distinct_ngrams False: rouge 1.0.0's multiset counts (the published numbers); True: rouge ≥ 1.0.1.
    An empty prediction (nothing left after step 1) scores 0; `rouge` itself would raise.
    """
    h, r = rouge_sentences(hyp), rouge_sentences(ref)
    if not h or not r:
        return 0.0
    ch = _ngrams([w for s in h for w in s], n)
    cr = _ngrams([w for s in r for w in s], n)
    if distinct_ngrams:
        return _f(len(ch.keys() & cr.keys()), len(ch), len(cr))
    return _f(sum((ch & cr).values()), sum(ch.values()), sum(cr.values()))


def _lcs_words(x: Sequence[str], y: Sequence[str]) -> set[str]:
    """The distinct words of the LCS of x (reference) and y (hypothesis) that `rouge._recon_lcs` traces."""
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            if x[i - 1] == y[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    i, j, words = len(x), len(y), set()
    while i > 0 and j > 0:  # rouge's recursive _recon, unrolled
        if x[i - 1] == y[j - 1]:
            words.add(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def rouge_l(hyp: str, ref: str) -> float:
    """Character ROUGE-L F (summary level, as `rouge` computes it: module docstring, step 3)."""
    h, r = rouge_sentences(hyp), rouge_sentences(ref)
    if not h or not r:
        return 0.0
    union: set[str] = set()
    for ref_s in r:
        for hyp_s in h:
            union |= _lcs_words(ref_s, hyp_s)
    m = len({w for s in r for w in s})
    n = len({w for s in h for w in s})
    return _f(len(union), n, m)


# ------------------------------------------------------------------------------------------------ BLEU
def bleu(hyp: str, ref: str) -> float:
    """Sentence BLEU-4 with nltk's smoothing method1 on the example's tokens (module docstring)."""
    h, r = bleu_tokens(hyp), bleu_tokens(ref)
    nums, dens = [], []
    for n in range(1, 5):
        ch, cr = _ngrams(h, n), _ngrams(r, n)
        nums.append(sum((ch & cr).values()))  # clipped counts [Papineni] §2.1
        dens.append(max(1, sum(ch.values())))
    if nums[0] == 0:
        return 0.0
    p = [(num + EPS_BLEU) / den if num == 0 else num / den for num, den in zip(nums, dens)]
    c, rl = len(h), len(r)
    bp = 1.0 if c > rl else math.exp(1 - rl / c)  # c > 0 here: a unigram matched
    return bp * math.exp(math.fsum(0.25 * math.log(x) for x in p))


# ----------------------------------------------------------------------------------------------- corpus
def title_scores(hyp: str, ref: str, *, distinct_ngrams: bool = False) -> dict[str, float]:
    """{"rouge_1", "rouge_2", "rouge_l", "bleu"} of one prediction; all 0 when `hyp.strip()` is empty."""
    if not spaced(hyp).strip():  # the example's `if pred_title.strip()`
        return {"rouge_1": 0.0, "rouge_2": 0.0, "rouge_l": 0.0, "bleu": 0.0}
    return {
        "rouge_1": rouge_n(hyp, ref, 1, distinct_ngrams=distinct_ngrams),
        "rouge_2": rouge_n(hyp, ref, 2, distinct_ngrams=distinct_ngrams),
        "rouge_l": rouge_l(hyp, ref),
        "bleu": bleu(hyp, ref),
    }


def corpus_scores(
    hyps: Iterable[str], refs: Iterable[str], *, distinct_ngrams: bool = False
) -> dict[str, float]:
    """The example's averages over samples (×1, not ×100) of `title_scores`; hyps and refs pair up."""
    hyps, refs = list(hyps), list(refs)
    if len(hyps) != len(refs) or not hyps:
        raise ValueError(f"need as many predictions as references (≥ 1), got {len(hyps)} and {len(refs)}")
    total = Counter()
    for h, r in zip(hyps, refs):
        total.update(title_scores(h, r, distinct_ngrams=distinct_ngrams))
    return {k: total[k] / len(hyps) for k in ("rouge_1", "rouge_2", "rouge_l", "bleu")}
