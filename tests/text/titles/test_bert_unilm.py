"""Titles from a pretrained BERT folder [6933, 6915]: the loss sees only the title, a few dozen steps on four
toy pairs reproduce their titles (mask, loss offset and decoding agree), the cached step equals the full
forward on the training layout, a run directory round-trips, and an incomplete folder is named."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch

from kexue.errors import KexueError
from kexue.nn.decoding import beam_search, greedy
from kexue.text.titles import (
    TitlesTrainConfig,
    fit_titles,
    from_bert_folder,
    generate,
    generate_titles,
    load_titles,
    save_titles,
    seq2seq_loss,
    train_titles,
)
from kexue.text.titles.bert_unilm import encode_bert_pairs, prompts, target_mask
from kexue.text.titles.data import Pair

transformers = pytest.importorskip("transformers", reason="a tiny HF BERT needs transformers (a dev extra)")
pytest.importorskip("tokenizers", reason="the BERT tokenizer needs tokenizers")

PAIRS = [
    Pair("今天北京下了一场大雪道路结冰", "北京大雪"),
    Pair("研究人员提出一种新的图像分类方法", "图像分类新方法"),
    Pair("球队在决赛中获得冠军球迷庆祝", "球队夺冠"),
    Pair("央行宣布下调利率以支持经济增长", "央行降息"),
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CFG = TitlesTrainConfig(
    model="unilm", steps=60, batch_size=4, bert_lr=5e-3, max_source=40, max_title=10, seed=0, log_every=1000
)


def write_bert(folder, gen, **hf_options):
    """A tiny random BertForMaskedLM (hidden 32, 2 layers) + vocab.txt of the toy characters, HF layout."""
    chars = sorted({c for p in PAIRS for c in p.source + p.title})
    config = transformers.BertConfig(
        vocab_size=len(SPECIALS) + len(chars),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,  # a deterministic overfit in few steps
        attention_probs_dropout_prob=0.0,
        **hf_options,
    )
    hf = transformers.BertForMaskedLM(config)
    with torch.no_grad():  # weights from the test's generator, not HF's global-RNG init
        for name, p in hf.named_parameters():
            if "LayerNorm" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    hf.save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(SPECIALS + chars) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return write_bert(tmp_path_factory.mktemp("bert"), torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def trained(bert_dir):
    """(model, tokenizer) after CFG.steps Adam steps on the four toy pairs."""
    model, tok = from_bert_folder(bert_dir)
    fit_titles(model, PAIRS, tok, replace(CFG, bert_dir=str(bert_dir)))
    return model, tok


def test_loss_counts_only_title_tokens(bert_dir, gen):
    model, tok = from_bert_folder(bert_dir)
    model = model.double()
    tokens, segments, lengths = encode_bert_pairs(PAIRS, tok, max_source=40, max_title=10)
    real = torch.arange(tokens.shape[1]) < lengths[:, None]
    logits = torch.randn(*tokens.shape, tok.vocab_size, generator=gen, dtype=torch.float64)
    terms = [
        -logits[b, i].log_softmax(-1)[tokens[b, i + 1]]
        for b in range(len(PAIRS))
        for i in range(int(lengths[b]) - 1)
        if segments[b, i + 1] == 1
    ]
    assert len(terms) == sum(len(p.title) + 1 for p in PAIRS)  # title characters + the final [SEP]
    loss = seq2seq_loss(logits, tokens, segments, real)["loss"]
    assert loss.item() == pytest.approx(float(sum(terms) / len(terms)), rel=1e-12)
    noisy = logits.clone()
    source = torch.ones_like(real)
    source[:, :-1] = ~target_mask(segments, real)  # positions that predict no title token
    noisy[source] += 100 * torch.randn(int(source.sum()), tok.vocab_size, generator=gen, dtype=torch.float64)
    assert seq2seq_loss(noisy, tokens, segments, real)["loss"].item() == pytest.approx(loss.item(), rel=1e-12)
    with torch.no_grad():  # the model's loss (MLM head at the targets only) = the loss of its full logits
        full = seq2seq_loss(model(tokens, segments, real), tokens, segments, real)["loss"]
        assert model.loss((tokens, segments, lengths))["loss"].item() == pytest.approx(full.item(), rel=1e-12)


def test_cached_step_equals_full_forward(bert_dir):
    model, tok = from_bert_folder(bert_dir)
    model = model.double().eval()
    sep = tok.token_to_id("[SEP]")
    tokens, segments, lengths = encode_bert_pairs(PAIRS, tok, max_source=40, max_title=10)
    real = torch.arange(tokens.shape[1]) < lengths[:, None]
    with torch.no_grad():
        full = model(tokens, segments, real)  # (B, L, V) right-padded training layout
        prompt, prompt_real = prompts([p.source for p in PAIRS], tok, 40)  # left-padded
        assert not prompt_real.all()  # rows of different lengths: the padding is exercised
        titles = [tok.encode(p.title)[0][1:] for p in PAIRS]  # title … [SEP]
        width = max(len(t) for t in titles)
        feed = torch.tensor([t + [sep] * (width - len(t)) for t in titles])  # (B, width)
        logits, state = model.step(prompt, {"padding": prompt_real})
        cached = [logits]
        for j in range(width - 1):
            logits, state = model.step(feed[:, j : j + 1], state)
            cached.append(logits)
    cached = torch.stack(cached, 1)  # (B, width, V): the prediction of title token j
    for b, t in enumerate(titles):
        first = (
            int(((segments[b] == 0) & real[b]).sum()) - 1
        )  # the [SEP] ending the source predicts title token 0
        ref = full[b, first : first + len(t)]
        torch.testing.assert_close(cached[b, : len(t)], ref, atol=1e-10, rtol=0)


def test_few_steps_overfit_and_decoders_reproduce_titles(trained):
    model, tok = trained
    sep = tok.token_to_id("[SEP]")
    titles = [p.title for p in PAIRS]
    assert generate(model, tok, [p.source for p in PAIRS], max_source=40, max_title=10) == titles
    prompt, real = prompts([p.source for p in PAIRS], tok, 40)
    with torch.no_grad():
        g = greedy(model.step, prompt, state={"padding": real}, max_new=11, end_ids=sep, pad_id=tok.pad_id)
        b, _ = beam_search(
            model.step,
            prompt,
            state={"padding": real},
            beam_size=2,
            max_new=11,
            end_ids=sep,
            pad_id=tok.pad_id,
        )
    for row_g, row_b, title in zip(g.tolist(), b.tolist(), titles):
        assert tok.decode(row_g[: row_g.index(sep)]) == tok.decode(row_b[: row_b.index(sep)]) == title


def test_save_load_generate_round_trip(trained, tmp_path):
    model, tok = trained
    texts = [p.source for p in PAIRS] + ["", "北京研究球队"]  # an empty text, an unseen mixture
    want = generate(model, tok, texts, max_source=40, max_title=10, beam_size=3)
    run = save_titles(model, tok, tmp_path / "run", {"note": "test"}, max_source=40, max_title=10)
    assert sorted(p.name for p in run.iterdir()) == [
        "model.safetensors",
        "titles.json",
        "train.json",
        "vocab.txt",
    ]
    assert json.loads((run / "titles.json").read_text())["model"] == "unilm-bert"
    loaded, tok2, meta = load_titles(run)
    assert tok2.vocab == tok.vocab and meta["config"]["family"] == "bert"
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert generate_titles(run, texts, beam_size=3) == want and want[4] == ""


def test_train_titles_from_a_bert_folder(bert_dir, tmp_path):
    data = tmp_path / "data" / "csl"
    data.mkdir(parents=True)
    lines = "".join(f"{p.title}\t{p.source}\t{p.title}\n" for p in PAIRS)  # CSL's to-title format
    (data / "dev.tsv").write_text(lines, encoding="utf-8")
    (data / "test.tsv").write_text(lines, encoding="utf-8")
    cfg = replace(CFG, bert_dir=str(bert_dir), steps=2, eval_size=2)
    info = train_titles(tmp_path / "data", tmp_path / "run", cfg)
    assert info["vocab_size"] == len((bert_dir / "vocab.txt").read_text().splitlines())
    assert info["eval"]["pairs"] == 2 and info["train"]["steps"] == 2
    assert (tmp_path / "run" / "vocab.txt").read_text() == (bert_dir / "vocab.txt").read_text()


def test_incomplete_folder_and_bad_options_are_named(bert_dir, tmp_path):
    for name in ("vocab.txt", "config.json"):
        folder = tmp_path / name.split(".")[0]
        shutil.copytree(bert_dir, folder)
        (folder / name).unlink()
        with pytest.raises(KexueError, match=name.replace(".", r"\.")):
            from_bert_folder(folder)
    with pytest.raises(KexueError, match="does not exist"):
        from_bert_folder(tmp_path / "nowhere")
    one_segment = tmp_path / "roberta"
    shutil.copytree(bert_dir, one_segment)
    hf = json.loads((one_segment / "config.json").read_text())
    (one_segment / "config.json").write_text(json.dumps({**hf, "type_vocab_size": 1}))
    with pytest.raises(KexueError, match="type_vocab_size"):
        from_bert_folder(one_segment)
    with pytest.raises(KexueError, match="--model unilm"):
        TitlesTrainConfig(model="lstm", bert_dir=str(bert_dir))
    with pytest.raises(KexueError, match="--bert-model"):
        TitlesTrainConfig(model="unilm", bert_model="gpt2")
