"""A table of word vectors: the words and a (V, D) float32 array, row i the vector of words[i]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kexue.errors import DataError


@dataclass(frozen=True)
class WordVectors:
    """words: (V,) distinct strings without whitespace; vectors: (V, D) float32."""

    words: tuple[str, ...]
    vectors: np.ndarray

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.words) != len(self.vectors):
            raise DataError(
                f"{len(self.words)} words but vectors of shape {tuple(self.vectors.shape)}; "
                "give one row per word"
            )
        if len(set(self.words)) != len(self.words):
            raise DataError("the word list has duplicates; give each word once")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def unit(self) -> np.ndarray:
        """(V, D) float32 rows scaled to unit L2 norm (zero rows stay zero), for cosines."""
        norm = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        return (self.vectors / np.where(norm > 0, norm, 1.0)).astype(np.float32)
