"""A jieba-like front end: `Segmenter(dictionary).lcut(text)`, `cut`, `add_word`, `del_word`.

Without a tagger it is the max-probability segmenter [3908]; with one ([4245], `tagger.py`) the neural
tagger decides and the dictionary is used only to train it. `add_word(word, freq)` follows jieba's
`add_word`: with no frequency the word gets one high enough that a path through it is preferred to the
path the segmenter currently chooses for the word alone (jieba's `suggest_freq`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from kexue.text.segment.dictionary import Dictionary
from kexue.text.segment.maxprob import MaxProb
from kexue.text.segment.tagger import Tagger


class Segmenter:
    def __init__(self, dictionary: Dictionary, tagger: Tagger | None = None, *, max_len: int = 16):
        self._freq = dict(dictionary.freq)
        self.tagger, self.max_len = tagger, max_len
        self._model: MaxProb | None = None

    @property
    def maxprob(self) -> MaxProb:
        if self._model is None:  # rebuilt lazily after add_word / del_word
            if not self._freq:
                from kexue.errors import KexueError

                raise KexueError(
                    "the segmenter's dictionary is empty (every word was deleted); add_word first"
                )
            self._model = MaxProb(Dictionary(self._freq), max_len=self.max_len)
        return self._model

    def segment(self, text: str) -> str:
        """Lines in, lines out: words separated by one space (whitespace dropped, newlines kept)."""
        return (self.tagger or self.maxprob).segment(text)

    def lcut(self, text: str) -> list[str]:
        """The words of `text` in order (whitespace and newlines are separators, not words)."""
        return self.segment(text).split()

    def cut(self, text: str) -> Iterator[str]:
        yield from self.lcut(text)

    def add_word(self, word: str, freq: float | None = None) -> None:
        """Add (or re-weight) a word; freq=None picks one that makes the word win on its own."""
        if not word or any(c.isspace() for c in word):
            from kexue.errors import KexueError

            raise KexueError(f"add_word: {word!r} is empty or contains whitespace; a word is one token")
        if freq is None:
            total = sum(self._freq.values())
            parts = self.maxprob.lcut(word)  # the path the dictionary gives the word alone
            logp = sum(math.log(self._freq.get(p, 0.5 * min(self._freq.values())) / total) for p in parts)
            freq = max(self._freq.get(word, 0.0), math.exp(logp) * total + 1)  # jieba suggest_freq
        self._freq[word] = float(freq)
        self._model = None

    def del_word(self, word: str) -> None:
        self._freq.pop(word, None)
        self._model = None
