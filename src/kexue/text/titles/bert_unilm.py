"""UniLM title generation fine-tuned from a user's pretrained BERT / RoBERTa-wwm / RoFormer [6933, 6915].

[6933] 从语言模型到Seq2Seq：Transformer如戏，全靠Mask (kexue.fm/archives/6933); [6915] bert4keras, example
task_seq2seq_autotitle_csl.py (maxlen 256, Adam 1e-5, batch 16); [UniLM] Dong et al., NeurIPS 2019.

The folder is what Chinese BERT releases ship in Hugging Face form: config.json, model.safetensors (or a
sharded index, or pytorch_model.bin) with the MLM head, and vocab.txt (optionally tokenizer_config.json for
`do_lower_case`). The network is `kexue.models.Bert` built with application="unilm" (its mask: s = cumsum
(segment_ids), query i sees key j iff s_j ≤ s_i); the text goes through the BERT vocabulary's WordPiece
(`kexue.text.tokenizer.Tokenizer`), not the character vocabulary of the from-scratch models:
- a training pair is tokenizer.encode(source, title, maxlen=max_source + max_title) = [CLS] source [SEP]
  title [SEP] with segments 0 … 0 1 … 1 ([6915]: one maxlen for the pair, the longer text cut first);
- the loss is the cross-entropy of token i + 1 from position i, counted where segment_ids[i + 1] = 1 and the
  token is real ([6915] `CrossEntropy`: y_mask = segment_ids[:, 1:]): the source is never a target;
- decoding feeds the prompt tokenizer.encode(text, maxlen=max_source) = [CLS] text [SEP] once (segment 0,
  bidirectional), left-padded with {"padding": real} as the initial state of `Bert.step`, which appends the
  title tokens as segment 1 against a KV cache; beam search stops at [SEP]; `Tokenizer.decode` writes the
  title (Chinese without spaces, bert4keras's rules).

Lengths: prompt ≤ max_source tokens, title ≤ max_title tokens + [SEP]; max_source + max_title must fit the
learned position table (BERT: 512; RoFormer's RoPE has no table).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from kexue.errors import CheckpointError, KexueError
from kexue.models.bert import Bert
from kexue.models.builder import build_transformer_model
from kexue.text.titles.data import Pair
from kexue.text.titles.unilm import seq2seq_loss, target_mask
from kexue.text.tokenizer import Tokenizer

FAMILIES = ("bert", "roberta", "roformer")  # BERT-format checkpoints (vocab.txt); hfl RoBERTa-wwm is "bert"
CONFIG, VOCAB = "config.json", "vocab.txt"


class BertUniLM(nn.Module):
    """A pretrained `Bert` (application "unilm", MLM head) with the UniLM title loss and `step`.

    `config` (stored in titles.json) = {"family", "do_lower_case", "hf": the checkpoint's config.json}."""

    def __init__(self, bert: Bert, hf: dict, *, family: str = "bert", do_lower_case: bool = True) -> None:
        super().__init__()
        if bert.cfg.application != "unilm" or bert.mlm is None:
            raise KexueError("BertUniLM needs a Bert built with application='unilm' and with_mlm=True")
        self.bert = bert
        self.config = {"family": family, "do_lower_case": do_lower_case, "hf": dict(hf)}

    def forward(self, tokens: Tensor, segments: Tensor, real: Tensor) -> Tensor:
        """tokens, segments (B, L), real (B, L) bool → logits (B, L, V) under the UniLM mask."""
        return self.bert(tokens, segments, padding=real)

    def loss(self, batch: Sequence[Tensor]) -> dict[str, Tensor]:
        """batch (tokens (B, L), segments (B, L), lengths (B,)) right-padded, from `encode_bert_pairs`;
        the MLM head runs at the target positions only."""
        tokens, segments, lengths = batch
        L = int(lengths.max())
        tokens, segments = tokens[:, :L], segments[:, :L]  # (B, L): drop all-padding columns
        real = torch.arange(L, device=tokens.device) < lengths[:, None]  # (B, L)
        h, _ = self.bert.encode(tokens, segments, padding=real)  # (B, L, d)
        keep = target_mask(segments, real)  # (B, L − 1)
        return seq2seq_loss(self.bert.mlm(h[:, :-1][keep]), tokens, segments, real)

    def step(self, tokens: Tensor, state: dict | None) -> tuple[Tensor, dict]:
        """`kexue.nn.decoding` step: `Bert.step` (prompt as segment 0, then title tokens as segment 1)."""
        return self.bert.step(tokens, state)


# ------------------------------------------------------------------------------------------ the folder
def _do_lower_case(folder: Path) -> bool:
    """tokenizer_config.json's do_lower_case when the folder has one; else True (Chinese BERT's)."""
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return True
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("do_lower_case", True))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise CheckpointError(f"{path} is not a JSON object ({e}); fix or delete it") from None


def _read_config(folder: Path) -> dict:
    """The folder's config.json, checked for what the UniLM needs."""
    from kexue.models.checkpoint import read_config

    hf = read_config(folder / CONFIG)  # KexueError naming the file when it is not a JSON object
    if not isinstance(hf.get("vocab_size"), int):
        raise CheckpointError(f"{folder / CONFIG} has no integer vocab_size; is this a BERT config.json?")
    if hf.get("type_vocab_size", 2) < 2:
        raise CheckpointError(
            f"{folder / CONFIG}: UniLM needs two segment embeddings (type_vocab_size ≥ 2), got "
            f"{hf.get('type_vocab_size')}; use a BERT-style checkpoint (hfl RoBERTa-wwm: --bert-model bert)"
        )
    return hf


def from_bert_folder(folder: str | Path, family: str = "bert") -> tuple[BertUniLM, Tokenizer]:
    """(the UniLM with the folder's weights, in eval mode as the builder returns it; its tokenizer)."""
    folder = Path(folder)
    if family not in FAMILIES:
        raise KexueError(f"unknown BERT family {family!r} for titles; use one of {', '.join(FAMILIES)}")
    if not folder.is_dir():
        raise CheckpointError(f"BERT folder {folder} does not exist; give the folder holding {CONFIG}")
    for name in (CONFIG, VOCAB):
        if not (folder / name).is_file():
            raise CheckpointError(
                f"BERT folder {folder} has no {name}; a BERT release needs {CONFIG}, {VOCAB} and the "
                "weights (model.safetensors or pytorch_model.bin)"
            )
    hf, lower = _read_config(folder), _do_lower_case(folder)
    tokenizer = Tokenizer(folder / VOCAB, do_lower_case=lower)
    if tokenizer.vocab_size > hf["vocab_size"]:
        raise CheckpointError(
            f"{folder / VOCAB} has {tokenizer.vocab_size} tokens but {CONFIG} vocab_size is "
            f"{hf['vocab_size']}; the files come from different models"
        )
    gen = torch.Generator().manual_seed(0)  # the init the checkpoint overwrites: leave the global RNG alone
    bert = build_transformer_model(
        hf, folder, model=family, application="unilm", with_mlm=True, generator=gen
    )
    return BertUniLM(bert, hf, family=family, do_lower_case=lower), tokenizer


def bert_unilm_from_config(config: dict) -> BertUniLM:
    """An untrained `BertUniLM` of a saved `config` ({"family", "do_lower_case", "hf"}), to load weights."""
    gen = torch.Generator().manual_seed(0)  # overwritten by the saved weights
    bert = build_transformer_model(
        config["hf"], model=config["family"], application="unilm", with_mlm=True, generator=gen
    )
    return BertUniLM(bert, config["hf"], family=config["family"], do_lower_case=config["do_lower_case"])


def check_lengths(model: BertUniLM, max_source: int, max_title: int) -> None:
    """A prompt of max_source tokens plus max_title fed title tokens must fit the position table."""
    cfg = model.bert.cfg
    if not cfg.rope and cfg.hierarchical_alpha is None and max_source + max_title > cfg.max_position:
        raise KexueError(
            f"max_source {max_source} + max_title {max_title} exceeds the checkpoint's "
            f"{cfg.max_position} positions (max_position_embeddings); lower max_source"
        )


# ------------------------------------------------------------------------------------------ data
def encode_bert_pairs(
    pairs: Sequence[Pair], tokenizer: Tokenizer, *, max_source: int, max_title: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(tokens (N, L), segments (N, L), lengths (N,)): [CLS] source [SEP] title [SEP], segments 0…0 1…1,
    right-padded with the vocabulary's [PAD] id and segment 0 ([6915]: encode(content, title, maxlen))."""
    rows = [tokenizer.encode(p.source, p.title, maxlen=max_source + max_title) for p in pairs]
    L = max(len(ids) for ids, _ in rows)
    tokens = torch.full((len(rows), L), tokenizer.pad_id, dtype=torch.long)
    segments = torch.zeros((len(rows), L), dtype=torch.long)
    for i, (ids, seg) in enumerate(rows):
        tokens[i, : len(ids)], segments[i, : len(seg)] = torch.tensor(ids), torch.tensor(seg)
    return tokens, segments, torch.tensor([len(ids) for ids, _ in rows])


def prompts(texts: Sequence[str], tokenizer: Tokenizer, max_source: int) -> tuple[Tensor, Tensor]:
    """(prompt (B, S) = [CLS] text [SEP] left-padded, real (B, S) bool): the decoder's first input."""
    rows = [tokenizer.encode(t, maxlen=max_source)[0] for t in texts]
    S = max(len(r) for r in rows)
    prompt = torch.full((len(rows), S), tokenizer.pad_id, dtype=torch.long)
    real = torch.zeros((len(rows), S), dtype=torch.bool)
    for i, r in enumerate(rows):
        prompt[i, S - len(r) :], real[i, S - len(r) :] = torch.tensor(r), True  # left padding: [SEP] last
    return prompt, real


# ------------------------------------------------------------------------------------------ decoding
@torch.no_grad()
def generate_bert(
    model: BertUniLM,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    max_source: int = 256,
    max_title: int = 32,
    beam_size: int = 3,
    batch_size: int = 64,
) -> list[str]:
    """Titles of `texts` by beam search over `Bert.step` ([6915] `AutoTitle`, with a cache and a batch).

    Texts are batched by length (a batch left-pads to its longest); an empty text gets an empty title."""
    from kexue.nn.decoding import beam_search

    check_lengths(model, max_source, max_title)
    model.eval()
    device = next(model.parameters()).device
    sep = tokenizer.token_to_id(tokenizer.sep)
    texts = [t.strip() for t in texts]
    order = sorted((i for i in range(len(texts)) if texts[i]), key=lambda i: len(texts[i]))
    out = [""] * len(texts)
    for at in range(0, len(order), batch_size):
        chunk = order[at : at + batch_size]
        prompt, real = prompts([texts[i] for i in chunk], tokenizer, max_source)
        tokens, _ = beam_search(
            model.step,
            prompt.to(device),
            state={"padding": real.to(device)},
            beam_size=beam_size,
            max_new=max_title + 1,  # the title and its [SEP]
            end_ids=sep,
            pad_id=tokenizer.pad_id,
        )
        for i, row in zip(chunk, tokens.tolist()):
            row = row[: row.index(sep)] if sep in row else row
            out[i] = tokenizer.decode(row[:max_title])
    return out


def tokenizer_lines(tokenizer: Tokenizer) -> str:
    """The vocabulary as vocab.txt text (one token per line, by id), to copy into a run directory."""
    return "".join(tokenizer.id_to_token(i) + "\n" for i in range(tokenizer.vocab_size))
