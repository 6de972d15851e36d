"""The dictionary-only neural segmenter of [4245] 【中文分词系列】7. 深度学习分词？只需一个词典！

Recipe ([4245]; reference/nlp.md §1.2), with this file's changes marked ★:
1. Pseudo-sentences: n ~ U{1..16} words drawn with p(w) ∝ f(w) — the max-probability model's own
   assumption that a sentence is a random concatenation of words [4245] eq. 1 — kept if ≤ 48 atoms.
   ★ Sampled for a whole batch at once (numpy), so no frequency bucketing is needed.
2. Labels: S for a one-atom word, B M…M E otherwise [3924].
3. Vocabulary: the atoms of the dictionary. Padding is id 0, ★ unknown atoms are id 1 (the original maps
   unknown characters to 0, the masked padding id: an unknown character silently became padding), and
   ★ a fraction `unk_rate` of training atoms is replaced by UNK so that id 1 is actually trained.
4. Tagger: ★ a residual CNN (Embedding → dilated Conv1d k=3 + ReLU, residual → Linear(4)) instead of the
   BiLSTM, as [4195] (cws-6) does, so training takes CPU minutes; loss: cross-entropy over non-padding.
5. Decoding: pieces between whitespace and punctuation (as [4245] pre-splits), Viterbi over S/B/M/E with
   the allowed transitions ([4245], `viterbi.py`), all pieces of a chunk batched.

Randomness is explicit: `train_tagger(..., seed=…)` draws sentences from `np.random.default_rng(seed)` and
initialises the network inside `torch.random.fork_rng` seeded with it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from kexue.errors import DataError
from kexue.text.segment.atoms import Atoms, atomize, render, words_codes
from kexue.text.segment.dictionary import Dictionary
from kexue.text.segment.viterbi import B, E, M, S, tags_to_starts, viterbi

PAD, UNK = 0, 1


@dataclass(frozen=True)
class TaggerConfig:
    emb: int = 64  # atom embedding ([4245]: 128; "larger helps long words")
    hidden: int = 128  # conv channels
    dilations: tuple[int, ...] = (1, 1, 2, 4, 1)  # one residual conv block each; receptive field 19
    max_words: int = 16  # n ~ U{1..max_words} words per pseudo-sentence  [4245]
    maxlen: int = 48  # longer pseudo-sentences are discarded  [4245]
    batch: int = 256  # pseudo-sentences per step ([4245]: 1024)
    steps: int = 2000  # optimiser steps
    lr: float = 2e-3  # Adam, cosine-decayed to 0
    unk_rate: float = 0.02  # training atoms replaced by UNK (trains the UNK embedding)

    def __post_init__(self) -> None:
        sizes = {k: getattr(self, k) for k in ("emb", "hidden", "max_words", "maxlen", "batch", "steps")}
        bad = {k: v for k, v in sizes.items() if v < 1}
        if bad or not self.lr > 0 or not 0 <= self.unk_rate < 1:
            raise DataError(
                f"tagger config: sizes and steps must be ≥ 1, lr > 0 and unk_rate in [0, 1); got "
                f"{bad or ''}{'' if self.lr > 0 else f' lr={self.lr}'}"
                f"{'' if 0 <= self.unk_rate < 1 else f' unk_rate={self.unk_rate}'}"
            )


class Vocabulary:
    """Atom code → id: 0 padding, 1 unknown, 2… the dictionary's atoms in increasing code order."""

    def __init__(self, codes: np.ndarray):
        self.codes = np.unique(np.asarray(codes, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.codes) + 2

    def ids(self, codes: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(self.codes, codes), max(len(self.codes) - 1, 0))
        hit = self.codes[pos] == codes if len(self.codes) else np.zeros(len(codes), bool)
        return np.where(hit, pos + 2, UNK)


class CNNTagger(nn.Module):
    """(N, T) atom ids → (N, T, 4) logits of S/B/M/E."""

    def __init__(self, vocab_size: int, cfg: TaggerConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.emb, padding_idx=PAD)
        self.inp = nn.Conv1d(cfg.emb, cfg.hidden, 3, padding=1)
        self.convs = nn.ModuleList(
            nn.Conv1d(cfg.hidden, cfg.hidden, 3, padding=d, dilation=d) for d in cfg.dilations
        )
        self.out = nn.Linear(cfg.hidden, 4)

    def forward(self, x: Tensor) -> Tensor:
        mask = (x != PAD).unsqueeze(1).float()  # (N, 1, T): padding stays zero between layers
        h = torch.relu(self.inp(self.embed(x).transpose(1, 2))) * mask  # (N, H, T)
        for conv in self.convs:
            h = (h + torch.relu(conv(h))) * mask  # residual block
        return self.out(h.transpose(1, 2))  # (N, T, 4)


# ------------------------------------------------------------------------------------ pseudo-sentences
@dataclass(frozen=True)
class _Lexicon:
    flat: np.ndarray  # all words' atom ids, concatenated
    off: np.ndarray  # (V,) offset of each word in flat
    lens: np.ndarray  # (V,) atoms per word
    cdf: np.ndarray  # (V,) cumulative p(w) ∝ f(w)


def _lexicon(dictionary: Dictionary, vocab: Vocabulary | None = None):
    codes = words_codes(dictionary.words)
    vocab = vocab or Vocabulary(np.concatenate(codes))
    lens = np.array([len(c) for c in codes])
    f = np.array([dictionary.freq[w] for w in dictionary.words], dtype=np.float64)
    cdf = np.cumsum(f / f.sum())
    flat = vocab.ids(np.concatenate(codes))
    return _Lexicon(flat, np.r_[0, np.cumsum(lens)[:-1]], lens, cdf), vocab


def sample_batch(lex: _Lexicon, rng: np.random.Generator, cfg: TaggerConfig) -> tuple[np.ndarray, np.ndarray]:
    """(batch, maxlen) atom ids and tags (−100 on padding) of pseudo-sentences  [4245] `data_generator`."""
    n = rng.integers(1, cfg.max_words + 1, size=cfg.batch)  # words per sentence
    w = np.minimum(np.searchsorted(lex.cdf, rng.random(n.sum()) * lex.cdf[-1]), len(lex.cdf) - 1)
    lens = lex.lens[w]
    sent = np.repeat(np.arange(cfg.batch), n)  # sentence of each word
    first = np.r_[0, np.cumsum(n)[:-1]]  # index of each sentence's first word
    cum = np.cumsum(lens)
    word_pos = cum - lens - (cum - lens)[first][sent]  # offset of each word in its sentence
    L = np.bincount(sent, weights=lens, minlength=cfg.batch)
    wid = np.repeat(np.arange(len(w)), lens)  # word of each atom
    inner = np.arange(len(wid)) - np.repeat(cum - lens, lens)  # offset inside the word
    wl = lens[wid]
    tag = np.where(wl == 1, S, np.where(inner == 0, B, np.where(inner == wl - 1, E, M)))
    row, col = sent[wid], word_pos[wid] + inner
    ok = L[row] <= cfg.maxlen  # [4245] discards longer samples
    x = np.zeros((cfg.batch, cfg.maxlen), dtype=np.int64)
    y = np.full((cfg.batch, cfg.maxlen), -100, dtype=np.int64)
    x[row[ok], col[ok]] = lex.flat[lex.off[w[wid[ok]]] + inner[ok]]
    y[row[ok], col[ok]] = tag[ok]
    unk = (rng.random(x.shape) < cfg.unk_rate) & (x != PAD)
    x[unk] = UNK
    return x, y


# ------------------------------------------------------------------------------------------- training
def train_tagger(
    dictionary: Dictionary,
    cfg: TaggerConfig = TaggerConfig(),
    *,
    seed: int = 0,
    stats: dict | None = None,
    say=None,
) -> Tagger:
    """Train the [4245] tagger on pseudo-sentences from `dictionary` (frequencies ∝ sampling weights)."""
    lex, vocab = _lexicon(dictionary)
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CNNTagger(len(vocab), cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    t0, losses = time.perf_counter(), []
    for step in range(cfg.steps):
        x, y = map(torch.from_numpy, sample_batch(lex, rng, cfg))
        loss = nn.functional.cross_entropy(model(x).reshape(-1, 4), y.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if say and (step + 1) % max(cfg.steps // 5, 1) == 0:
            say(f"tagger step {step + 1}/{cfg.steps}: loss {np.mean(losses[-50:]):.4f}")
    if stats is not None:
        stats.update(seconds=time.perf_counter() - t0, final_loss=float(np.mean(losses[-50:])))
    return Tagger(model.eval(), vocab, cfg)


# ------------------------------------------------------------------------------------------- decoding
class Tagger:
    """A trained tagger: segments text, saves to / loads from a directory (safetensors + JSON)."""

    def __init__(self, model: CNNTagger, vocab: Vocabulary, cfg: TaggerConfig):
        self.model, self.vocab, self.cfg = model, vocab, cfg

    def best_path(self, atoms: Atoms, *, batch: int = 512) -> np.ndarray:
        """(m,) bool token starts."""
        m = len(atoms)
        start = np.zeros(m, dtype=bool)
        if not m:
            return start
        # pieces: cut at whitespace (blocks) and around punctuation atoms   [4245] `not_cuts`
        cut = np.r_[True, atoms.block[1:] != atoms.block[:-1]] | atoms.punct | np.r_[False, atoms.punct[:-1]]
        p0 = np.flatnonzero(cut)
        plen = np.diff(np.r_[p0, m])
        ids = torch.from_numpy(self.vocab.ids(atoms.code))
        order = np.argsort(plen, kind="stable")
        with torch.inference_mode():
            for a in range(0, len(order), batch):
                sel = order[a : a + batch]
                T = int(plen[sel].max())
                idx = p0[sel][:, None] + np.arange(T)  # (b, T)
                live = np.arange(T) < plen[sel][:, None]
                x = torch.where(torch.from_numpy(live), ids[np.minimum(idx, m - 1)], PAD)
                logp = torch.log_softmax(self.model(x).float(), dim=-1)  # (b, T, 4)
                tags = viterbi(logp, torch.from_numpy(plen[sel]))
                starts = tags_to_starts(tags).numpy()
                start[idx[live]] = starts[live]
        return start

    def segment(self, text: str) -> str:
        from kexue.text.segment.maxprob import _chunks

        return "\n".join(self.render_chunk(c) for c in _chunks(text))

    def render_chunk(self, text: str) -> str:
        atoms = atomize(text)
        return render(atoms, self.best_path(atoms))

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        save_file(
            {k: v.contiguous() for k, v in self.model.state_dict().items()}, str(path / "tagger.safetensors")
        )
        meta = {
            "format": "kexue-segment-tagger-1",
            "config": asdict(self.cfg),
            "codes": self.vocab.codes.tolist(),
        }
        (path / "tagger.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, path: str | Path) -> Tagger:
        from safetensors.torch import load_file

        from kexue.errors import CheckpointError

        path = Path(path)
        try:
            meta = json.loads((path / "tagger.json").read_text())
            cfg = TaggerConfig(**{**meta["config"], "dilations": tuple(meta["config"]["dilations"])})
            vocab = Vocabulary(np.array(meta["codes"], dtype=np.int64))
            model = CNNTagger(len(vocab), cfg)
            model.load_state_dict(load_file(str(path / "tagger.safetensors")))
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
            raise CheckpointError(
                f"{path}: not a segmenter model directory ({type(e).__name__}: {str(e)[:80]}); "
                "train one with `kexue segment train`"
            ) from None
        return cls(model.eval(), vocab, cfg)
