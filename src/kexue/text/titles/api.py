"""What `kexue titles train|generate` calls: train a title generator, save it, load it, generate, score.

Models: "lstm" and "lstm-copy" ([5861]'s seq2seq without / with the copy prior) and "unilm" (a BERT-style
UniLM [6933]: from scratch on characters, or fine-tuned from a user's pretrained BERT folder when
`bert_dir` is given — `bert_unilm`, saved as model "unilm-bert"). A run directory (written atomically;
nothing is pickled):
    model.safetensors   the weights
    titles.json         {"format", "version", "model", "config": the model's config,
                         "vocab": characters by id ("unilm-bert": the file name vocab.txt),
                         "max_source", "max_title"}
    vocab.txt           "unilm-bert" only: the BERT vocabulary, copied from the pretrained folder
    train.json          what was done: data, settings, seconds, and the scores on the evaluation split

Randomness: `train_titles(seed=s)` initialises from a generator seeded with s and trains (data order,
dropout) inside a forked global RNG seeded with s: the caller's RNG is untouched, a run is reproducible on one
device. Decoding is deterministic (beam search).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from kexue.errors import CheckpointError, KexueError
from kexue.metrics.rouge_bleu import corpus_scores
from kexue.text.titles.bert_unilm import (
    FAMILIES,
    VOCAB,
    BertUniLM,
    bert_unilm_from_config,
    check_lengths,
    encode_bert_pairs,
    from_bert_folder,
    generate_bert,
    tokenizer_lines,
)
from kexue.text.titles.data import END, PAD, CharVocab, Pair, encode_pairs, load_pairs, pad_ids
from kexue.text.titles.lstm import LSTMSeq2Seq, LSTMSeq2SeqConfig
from kexue.text.titles.unilm import UniLM, UniLMConfig
from kexue.text.tokenizer import Tokenizer

MODELS = ("lstm", "lstm-copy", "unilm")
FORMAT, VERSION = "kexue-titles", 1
WEIGHTS, META, INFO = "model.safetensors", "titles.json", "train.json"


@dataclass(frozen=True)
class TitlesTrainConfig:
    model: str = "lstm-copy"  # "lstm" | "lstm-copy" | "unilm"
    corpus: str = "csl"  # "csl" | "lcsts"
    train_split: str = "dev"  # CSL's 1k dev split: its 8k train split is not public (reference/nlp.md)
    eval_split: str | None = "test"  # scored after training (None: skip)
    eval_size: int | None = 200  # pairs of eval_split scored (None: all)
    min_count: int = 2  # characters rarer than this in the training pairs are UNK ([5861]: 32 on 800k)
    max_source: int = 256  # characters of the document kept (bert4keras CSL: maxlen 256)
    max_title: int = 32  # title characters kept / generated (bert4keras CSL: 32)
    steps: int = 2000  # optimizer steps
    batch_size: int = 32  # [5861]: 64; bert4keras CSL: 16
    lr: float = 1e-3  # Adam ([5861]: 1e-3)
    seed: int = 0  # initialisation, data order, dropout
    embed_dim: int = 128  # LSTM: shared embedding [5861]
    hidden: int = 128  # LSTM: z_dim [5861]
    layers: int = 2  # LSTM: encoder and decoder layers [5861]
    unilm_d_model: int = 256  # UniLM width
    unilm_layers: int = 4  # UniLM depth
    unilm_heads: int = 4  # UniLM heads
    bert_dir: str | None = None  # "unilm": fine-tune this BERT folder (config.json, weights, vocab.txt)
    bert_model: str = "bert"  # its family: bert | roberta | roformer (hfl RoBERTa-wwm ships as bert)
    bert_lr: float = 1e-5  # Adam when fine-tuning bert_dir ([6915] CSL example: 1e-5)
    beam_size: int = 3  # [5861] topk = 3
    log_every: int = 100  # steps between progress lines (when `say` is given)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise KexueError(f"unknown title model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.bert_dir is not None and self.model != "unilm":
            raise KexueError(f"a pretrained BERT (--bert) needs --model unilm, got --model {self.model}")
        if self.bert_model not in FAMILIES:
            raise KexueError(f"unknown --bert-model {self.bert_model!r}; choose one of {', '.join(FAMILIES)}")


def build_model(cfg: TitlesTrainConfig, vocab_size: int) -> nn.Module:
    """The untrained model of `cfg.model`, initialised from a generator seeded with `cfg.seed`."""
    if cfg.bert_dir is not None:
        raise KexueError(
            "build_model trains from scratch; a pretrained BERT comes from from_bert_folder(bert_dir)"
        )
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.model == "unilm":
        c = UniLMConfig(
            vocab_size,
            d_model=cfg.unilm_d_model,
            heads=cfg.unilm_heads,
            layers=cfg.unilm_layers,
            d_ff=4 * cfg.unilm_d_model,
            max_len=cfg.max_source + cfg.max_title + 3,  # [CLS] source [SEP] title [SEP]
        )
        return UniLM(c, generator=gen)
    c = LSTMSeq2SeqConfig(
        vocab_size,
        embed_dim=cfg.embed_dim,
        hidden=cfg.hidden,
        encoder_layers=cfg.layers,
        decoder_layers=cfg.layers,
        copy_prior=cfg.model == "lstm-copy",
    )
    return LSTMSeq2Seq(c, generator=gen)


def _kind(model: nn.Module) -> str:
    if isinstance(model, BertUniLM):
        return "unilm-bert"
    if isinstance(model, UniLM):
        return "unilm"
    return "lstm-copy" if model.config.copy_prior else "lstm"


# ------------------------------------------------------------------------------------------ training
def _dataset(model: nn.Module, pairs: Sequence[Pair], vocab: CharVocab | Tokenizer, cfg: TitlesTrainConfig):
    """The training tensors: (tokens, segments, lengths) for a pretrained BERT, else (sources, titles)."""
    from torch.utils.data import TensorDataset

    if isinstance(model, BertUniLM):
        check_lengths(model, cfg.max_source, cfg.max_title)
        return TensorDataset(
            *encode_bert_pairs(pairs, vocab, max_source=cfg.max_source, max_title=cfg.max_title)
        )
    return TensorDataset(*encode_pairs(pairs, vocab, max_source=cfg.max_source, max_title=cfg.max_title))


def fit_titles(
    model: nn.Module,
    pairs: Sequence[Pair],
    vocab: CharVocab | Tokenizer,
    cfg: TitlesTrainConfig,
    *,
    device: torch.device | str = "cpu",
    say: Callable[[str], None] | None = None,
) -> dict:
    """Train `model` on `pairs` with the kexue Trainer (Adam: cfg.lr, or cfg.bert_lr when fine-tuning a
    pretrained BERT); returns {"steps", "seconds", …}."""
    from kexue.train.callbacks import Callback
    from kexue.train.distributed import Dist
    from kexue.train.trainer import TrainConfig, Trainer

    class _Say(Callback):
        def on_step_end(self, trainer, logs):
            if say is not None and trainer.step % cfg.log_every == 0 and "train/loss" in logs:
                acc = logs.get("train/token_acc", float("nan"))
                say(
                    f"titles {cfg.model} step {trainer.step}/{cfg.steps}: loss {logs['train/loss']:.3f}, "
                    f"token acc {acc:.3f}"
                )

    data = _dataset(model, pairs, vocab, cfg)
    train = TrainConfig(
        steps=cfg.steps,
        batch_size=min(cfg.batch_size, len(pairs)),
        lr=cfg.bert_lr if isinstance(model, BertUniLM) else cfg.lr,
        seed=cfg.seed,
        log_every=cfg.log_every,
        progress=False,
    )
    t0 = time.perf_counter()
    device = torch.device(device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # dropout and data order: seeded, caller's RNG untouched
        torch.manual_seed(cfg.seed)
        # dist=…: the Trainer's default Dist() is the CPU, which would move the model back off `device`
        trainer = Trainer(model.to(device), data, train, dist=Dist(device=device), callbacks=[_Say()]).fit()
    model.eval()
    seconds = time.perf_counter() - t0
    return {"steps": trainer.step, "seconds": seconds, "epochs": trainer.step * train.batch_size / len(pairs)}


# ------------------------------------------------------------------------------------------ decoding
@torch.no_grad()
def generate(
    model: nn.Module,
    vocab: CharVocab | Tokenizer,
    texts: Sequence[str],
    *,
    max_source: int = 256,
    max_title: int = 32,
    beam_size: int = 3,
    batch_size: int = 64,
) -> list[str]:
    """Titles of `texts` by beam search over the model's cached `step` ([5861] eq. 1, beam 3 by default).

    Texts are batched by length (a batch pads to its longest); an empty text gets an empty title. A
    pretrained-BERT model (`BertUniLM`, with its `Tokenizer` as `vocab`) decodes by `generate_bert`."""
    from kexue.nn.decoding import beam_search

    if isinstance(model, BertUniLM):
        return generate_bert(
            model,
            vocab,
            texts,
            max_source=max_source,
            max_title=max_title,
            beam_size=beam_size,
            batch_size=batch_size,
        )
    model.eval()
    device = next(model.parameters()).device
    ids = [vocab.encode(t.strip(), max_source) for t in texts]
    order = sorted((i for i in range(len(ids)) if ids[i]), key=lambda i: len(ids[i]))
    out = [""] * len(texts)
    for at in range(0, len(order), batch_size):
        chunk = order[at : at + batch_size]
        prompt, state = model.start(pad_ids([ids[i] for i in chunk]).to(device))
        tokens, _ = beam_search(
            model.step,
            prompt,
            state=state,
            beam_size=beam_size,
            max_new=max_title + 1,
            end_ids=END,
            pad_id=PAD,
        )
        for i, row in zip(chunk, tokens.tolist()):
            out[i] = vocab.decode(row[:max_title])  # max_title characters; the END after them is dropped
    return out


def evaluate_titles(
    model: nn.Module,
    vocab: CharVocab | Tokenizer,
    pairs: Sequence[Pair],
    *,
    max_source: int,
    max_title: int,
    beam_size: int,
) -> tuple[dict[str, float], list[str]]:
    """(bert4keras-style character ROUGE-1/2/L F and BLEU averaged over `pairs`, the generated titles)."""
    t0 = time.perf_counter()
    preds = generate(
        model,
        vocab,
        [p.source for p in pairs],
        max_source=max_source,
        max_title=max_title,
        beam_size=beam_size,
    )
    seconds = time.perf_counter() - t0
    scores = corpus_scores(preds, [p.title for p in pairs])
    return {**scores, "titles_per_second": len(pairs) / max(seconds, 1e-9)}, preds


def train_titles(
    data_dir: str | Path | None,
    out: str | Path,
    config: TitlesTrainConfig = TitlesTrainConfig(),  # frozen: sharing the default is safe
    *,
    device: torch.device | str = "cpu",
    say: Callable[[str], None] | None = None,
) -> dict:
    """Read `corpus/train_split`, build the vocabulary, train, score on `eval_split`, write `out/`.

    data_dir: the folder holding csl/ and lcsts/ (None: KEXUE_DATA, then the cache). With
    `config.bert_dir`, the UniLM starts from that pretrained BERT and its vocabulary. Returns train.json."""
    from kexue.paths import data_dir as resolve

    root = resolve(data_dir)
    pairs = load_pairs(root, config.corpus, config.train_split)
    vocab: CharVocab | Tokenizer
    if config.bert_dir is not None:
        model, vocab = from_bert_folder(config.bert_dir, config.bert_model)
    else:
        vocab = CharVocab.build((p.source[: config.max_source] + p.title for p in pairs), config.min_count)
        model = build_model(config, len(vocab))
    stats = fit_titles(model, pairs, vocab, config, device=device, say=say)
    info = {
        "data_dir": str(root),
        "train_pairs": len(pairs),
        "vocab_size": vocab.vocab_size if isinstance(vocab, Tokenizer) else len(vocab),
        "config": asdict(config),
        "train": stats,
        "eval": None,
    }
    if config.eval_split is not None:
        test = load_pairs(root, config.corpus, config.eval_split)[: config.eval_size]
        scores, preds = evaluate_titles(
            model,
            vocab,
            test,
            max_source=config.max_source,
            max_title=config.max_title,
            beam_size=config.beam_size,
        )
        examples = [{"title": p.title, "generated": g} for p, g in zip(test[:10], preds)]
        info["eval"] = {"split": config.eval_split, "pairs": len(test), **scores, "examples": examples}
    save_titles(model, vocab, out, info, max_source=config.max_source, max_title=config.max_title)
    return info


# ------------------------------------------------------------------------------------------ files
def save_titles(
    model: nn.Module,
    vocab: CharVocab | Tokenizer,
    directory: str | Path,
    info: dict | None = None,
    *,
    max_source: int = 256,
    max_title: int = 32,
) -> Path:
    """Write a run directory atomically: model.safetensors, titles.json, (if given) train.json, and for a
    pretrained-BERT model its vocab.txt (`vocab` is then its `Tokenizer`)."""
    from kexue.train.checkpoint import (
        build_directory_atomic,
        save_tensors_atomic,
        write_json_atomic,
        write_text_atomic,
    )

    bert = isinstance(model, BertUniLM)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": _kind(model),
        "config": model.config if bert else asdict(model.config),
        "vocab": VOCAB if bert else "".join(vocab.chars),
        "max_source": max_source,
        "max_title": max_title,
    }

    def build(work: Path) -> None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_tensors_atomic(state, work / WEIGHTS, metadata={"format": FORMAT})
        write_json_atomic(meta, work / META)
        if bert:
            write_text_atomic(tokenizer_lines(vocab), work / VOCAB)
        if info is not None:
            write_json_atomic(info, work / INFO)

    return build_directory_atomic(directory, build)


def load_titles(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, CharVocab | Tokenizer, dict]:
    """(model in eval mode, vocabulary, titles.json) of a run written by `train_titles` / `save_titles`;
    the vocabulary is a `CharVocab`, or the run's BERT `Tokenizer` (vocab.txt) for a "unilm-bert" run."""
    from kexue.train.checkpoint import load_tensors, read_run_meta

    directory = Path(directory)
    meta = read_run_meta(directory, META, FORMAT, VERSION, "kexue titles train")
    try:
        vocab: CharVocab | Tokenizer
        if meta["model"] == "unilm-bert":
            model: nn.Module = bert_unilm_from_config(meta["config"])
            vocab = Tokenizer(directory / VOCAB, do_lower_case=meta["config"]["do_lower_case"])
        elif meta["model"] == "unilm":
            vocab = CharVocab(tuple(meta["vocab"]))
            model = UniLM(UniLMConfig(**meta["config"]))
        else:
            vocab = CharVocab(tuple(meta["vocab"]))
            model = LSTMSeq2Seq(LSTMSeq2SeqConfig(**meta["config"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / META}: unusable config or vocabulary ({e}); retrain") from None
    try:
        model.load_state_dict(load_tensors(directory / WEIGHTS))
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise CheckpointError(
            f"{directory / WEIGHTS} does not match {META} ({first}); the files come from different runs"
        ) from None
    return model.to(device).eval(), vocab, meta


def generate_titles(
    run_dir: str | Path, texts: Sequence[str], *, beam_size: int = 3, device: str | torch.device = "cpu"
) -> list[str]:
    """One title per document of `texts` by the model saved in `run_dir` (`kexue titles generate`)."""
    model, vocab, meta = load_titles(run_dir, device)
    return generate(
        model, vocab, texts, max_source=meta["max_source"], max_title=meta["max_title"], beam_size=beam_size
    )
