"""A bert4keras-style tokenizer for BERT vocabularies, on the Hugging Face `tokenizers` library's WordPiece.

[6915] 自己实现了一个bert4keras, kexue.fm/archives/6915: `tokenizer = Tokenizer(dict_path); token_ids,
segment_ids = tokenizer.encode(u'语言模型')`. bert4keras re-implements BERT's basic + WordPiece tokenisation
in Python; kexue does not: the splitting (clean text, lower case and strip accents when `do_lower_case`, one
token per CJK character, split on whitespace and punctuation, greedy longest-match WordPiece with `##`) is the
`tokenizers` library's `BertWordPieceTokenizer`, which is what `transformers.BertTokenizerFast` runs too. What
is bert4keras's is the interface around it:

- `tokenize(text)` → ["[CLS]", …, "[SEP]"];
- `encode(first, second=None, maxlen=None)` → (token_ids, segment_ids): [CLS] first [SEP] (second [SEP]),
  segment ids 0 then 1. With `maxlen`, bert4keras's `truncate_sequences` removes the token just before [SEP]
  of the longer segment (the first on a tie) until the total fits, so [CLS] and both [SEP]s are always kept;
- `decode(ids)`: drops [xxx] tokens, glues `##` pieces, writes Chinese without spaces and English with them
  (bert4keras's rules, including its clean-up of spaces around punctuation and in decimals).

`tokenizers` is a runtime dependency of this module only (imported when a Tokenizer is built).
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from kexue.errors import KexueError


def is_cjk(ch: str) -> bool:
    """A CJK Unified Ideograph (BERT's `_is_chinese_char` blocks)."""
    c = ord(ch)
    return (
        0x4E00 <= c <= 0x9FFF
        or 0x3400 <= c <= 0x4DBF
        or 0x20000 <= c <= 0x2A6DF
        or 0x2A700 <= c <= 0x2B73F
        or 0x2B740 <= c <= 0x2B81F
        or 0x2B820 <= c <= 0x2CEAF
        or 0xF900 <= c <= 0xFAFF
        or 0x2F800 <= c <= 0x2FA1F
    )


def is_punctuation(ch: str) -> bool:
    """ASCII non-alphanumeric printable characters, or any Unicode P* category (BERT's `_is_punctuation`)."""
    c = ord(ch)
    return (
        33 <= c <= 47
        or 58 <= c <= 64
        or 91 <= c <= 96
        or 123 <= c <= 126
        or unicodedata.category(ch)[0] == "P"
    )


_CJK_PUNCTUATION = (
    "\uff02\uff03\uff04\uff05\uff06\uff07\uff08\uff09\uff0a\uff0b\uff0c\uff0d\uff0f\uff1a\uff1b\uff1c\uff1d"
    "\uff1e\uff20\uff3b\uff3c\uff3d\uff3e\uff3f\uff40\uff5b\uff5c\uff5d\uff5e\uff5f\uff60\uff62\uff63\uff64"
    "\u3000\u3001\u3003\u3008\u3009\u300a\u300b\u300c\u300d\u300e\u300f\u3010\u3011\u3014\u3015\u3016\u3017"
    "\u3018\u3019\u301a\u301b\u301c\u301d\u301e\u301f\u3030\u303e\u303f\u2013\u2014\u2018\u2019\u201b\u201c"
    "\u201d\u201e\u201f\u2026\u2027\ufe4f\ufe51\ufe54\u00b7\uff01\uff1f\uff61\u3002"
)  # bert4keras `_cjk_punctuation`: full-width forms, CJK brackets and quotes, Chinese full stop


def truncate_sequences(maxlen: int, index: int, *sequences: list) -> list[list]:
    """bert4keras `truncate_sequences`: pop element `index` of the longest non-empty list (the first on a tie)
    until the total length is ≤ maxlen. Lists are modified in place and returned."""
    seqs = [s for s in sequences if s]
    while sum(len(s) for s in seqs) > maxlen:
        longest = max(range(len(seqs)), key=lambda i: (len(seqs[i]), -i))  # np.argmax: first maximum
        seqs[longest].pop(index)
    return seqs


class Tokenizer:
    """bert4keras's `Tokenizer(dict_path, do_lower_case=…)` for a BERT vocab.txt (one token per line)."""

    def __init__(
        self,
        vocab_path: str | os.PathLike,
        do_lower_case: bool = True,  # lower case and strip accents (uncased / Chinese BERT vocabularies)
        *,
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        unk_token: str = "[UNK]",
        pad_token: str = "[PAD]",
        mask_token: str = "[MASK]",
    ):
        try:
            from tokenizers import BertWordPieceTokenizer
        except ImportError:
            raise KexueError(
                "kexue.text.tokenizer needs the `tokenizers` package: pip install tokenizers"
            ) from None
        path = Path(vocab_path)
        if not path.is_file():
            raise KexueError(f"vocabulary {path} does not exist; pass a BERT vocab.txt (one token per line)")
        tokens = path.read_text(encoding="utf-8").splitlines()
        vocab = {}
        for i, tok in enumerate(tokens):
            vocab.setdefault(tok, i)  # duplicates: the first line wins (as in HF's load_vocab)
        missing = [t for t in (cls_token, sep_token, unk_token) if t not in vocab]
        if missing:
            raise KexueError(f"vocabulary {path} lacks the special tokens {missing}; use a BERT vocab.txt")
        self._tok = BertWordPieceTokenizer(
            vocab,
            unk_token=unk_token,
            sep_token=sep_token,
            cls_token=cls_token,
            pad_token=pad_token,
            mask_token=mask_token,
            lowercase=do_lower_case,
            strip_accents=do_lower_case,  # BERT: accents are stripped exactly when lower-casing
            handle_chinese_chars=True,
        )
        self.vocab, self.inverse = vocab, dict(enumerate(tokens))
        self.cls, self.sep, self.unk = cls_token, sep_token, unk_token
        self.pad_id = vocab.get(pad_token, 0)

    # ---- tokens and ids
    @property
    def vocab_size(self) -> int:
        return len(self.inverse)

    def token_to_id(self, token: str) -> int:
        return self.vocab.get(token, self.vocab[self.unk])

    def id_to_token(self, i: int) -> str:
        return self.inverse[i]

    def tokens_to_ids(self, tokens: list[str]) -> list[int]:
        return [self.token_to_id(t) for t in tokens]

    def ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self.id_to_token(int(i)) for i in ids]

    def tokenize(self, text: str) -> list[str]:
        """[CLS] + WordPiece tokens + [SEP]."""
        return [self.cls, *self._tok.encode(text, add_special_tokens=False).tokens, self.sep]

    # ---- bert4keras encode / decode
    def encode(self, first: str, second: str | None = None, maxlen: int | None = None):
        """(token_ids, segment_ids): [CLS] first [SEP] (second [SEP]) with segments 0 … 0 (1 … 1).

        maxlen: the total length after truncation (bert4keras `truncate_from='right'`: the token before each
        [SEP] of the longer segment goes first). Needs maxlen ≥ 2 (3 with a second text).
        """
        a = self.tokenize(first)
        b = None if second is None else self.tokenize(second)  # [CLS] second [SEP]; its [CLS] goes below
        if maxlen is not None:
            least = 2 if b is None else 3
            if maxlen < least:
                raise KexueError(f"encode: maxlen must be ≥ {least} to keep [CLS] and [SEP], got {maxlen}")
            # bert4keras: index −2 (the token before [SEP]); + 1 for the second [CLS] dropped afterwards
            truncate_sequences(maxlen + (b is not None), -2, a, *([] if b is None else [b]))
        b = None if b is None else b[1:]
        ids = self.tokens_to_ids(a)
        segments = [0] * len(ids)
        if b is not None:
            ids += self.tokens_to_ids(b)
            segments += [1] * len(b)
        return ids, segments

    def decode(self, ids: list[int]) -> str:
        """Text from ids, bert4keras's way: Chinese without spaces, English words and numbers with them."""
        tokens = [t for t in self.ids_to_tokens(ids) if not (t.startswith("[") and t.endswith("]"))]
        text = ""
        for i, token in enumerate(tokens):
            if token.startswith("##"):
                text += token[2:]
            elif len(token) == 1 and is_cjk(token):
                text += token
            elif len(token) == 1 and is_punctuation(token):
                text += token + " "
            elif i > 0 and text and is_cjk(text[-1]):
                text += token
            else:
                text += " " + token
        text = re.sub(" +", " ", text)
        text = re.sub(r"' (re|m|s|t|ve|d|ll) ", r"'\1 ", text)
        glue = "|".join(re.escape(p) for p in _CJK_PUNCTUATION + "+-/={(<[")
        text = re.sub(f"({glue}) ", r"\1", text)
        text = re.sub(r"(\d\.) (\d)", r"\1\2", text)
        return text.strip()
