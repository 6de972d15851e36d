"""The [5332] CNN-VAE poet: GCNN identity, loss by hand, KL, training, save/load, sampling, errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from kexue.errors import CheckpointError
from kexue.text.poetry import (
    GatedConv1d,
    PoetryVAE,
    PoetryVAEConfig,
    PoetTrainConfig,
    Vocabulary,
    evaluate_elbo,
    load_poet,
    sample_couplets,
    save_poet,
    train_poet,
)

COUPLETS = ["白日依山尽黄河入海流", "欲穷千里目更上一层楼", "国破山河在城春草木深", "感时花溅泪恨别鸟惊心"]
TINY = PoetryVAEConfig(hidden_dim=6, latent_dim=3)


@pytest.fixture
def vocab():
    return Vocabulary.build(COUPLETS)


@pytest.fixture
def model(vocab, gen):
    return PoetryVAE(vocab, TINY, generator=gen).double()


def test_gated_conv_is_conv_times_sigmoid_gate_plus_input(gen):
    layer = GatedConv1d(4, 3).double()
    x = torch.randn(2, 10, 4, generator=gen, dtype=torch.float64)  # (B, T, D)
    w = layer.conv.weight  # (2D, D, 3): first D output channels "a", last D the gate "b"
    xp = F.pad(x, (0, 0, 1, 1))  # "same" padding: one zero position each side, (B, 12, D)
    conv = torch.stack(
        [torch.einsum("bjc,ocj->bo", xp[:, t : t + 3], w) for t in range(10)], 1
    )  # (B, 10, 2D)
    expected = conv[..., :4] * torch.sigmoid(conv[..., 4:]) + x
    assert layer(x).shape == (2, 10, 4)
    assert torch.allclose(layer(x), expected)
    plain = GatedConv1d(4, 3, residual=False).double()
    plain.load_state_dict(layer.state_dict())
    assert torch.allclose(plain(x), expected - x)


def test_loss_equals_hand_computation(model, vocab, gen):
    x = vocab.encode(COUPLETS[:2])  # (2, 10)
    eps = torch.randn(2, TINY.latent_dim, generator=gen, dtype=torch.float64)
    # by hand: embed → GCNN → GCNN → mean → μ, log σ²; z = μ + σε; → dense → GCNN → dense → CE; KL
    h = model.embed.weight[x]  # (2, 10, 6)
    for layer in model.encoder:
        a, b = F.conv1d(h.transpose(1, 2), layer.conv.weight, padding=1).chunk(2, 1)
        h = (a * b.sigmoid()).transpose(1, 2) + h
    h = h.mean(1)  # (2, 6)
    mu = h @ model.to_mu.weight.T + model.to_mu.bias
    logvar = h @ model.to_logvar.weight.T + model.to_logvar.bias
    z = mu + torch.exp(logvar / 2) * eps
    g = (z @ model.from_z.weight.T + model.from_z.bias).view(2, 10, 6)
    for layer in model.decoder:
        a, b = F.conv1d(g.transpose(1, 2), layer.conv.weight, padding=1).chunk(2, 1)
        g = (a * b.sigmoid()).transpose(1, 2) + g
    logp = torch.log_softmax(g @ model.to_logits.weight.T + model.to_logits.bias, -1)  # (2, 10, V)
    rec = -sum(logp[i, t, x[i, t]] for i in range(2) for t in range(10)) / 2
    kl = (
        sum(
            -0.5 * (1 + logvar[i, j] - mu[i, j] ** 2 - logvar[i, j].exp()) for i in range(2) for j in range(3)
        )
        / 2
    )  # vae_shi.py kl_loss, averaged over the batch
    terms = model.terms(x, eps=eps)
    out = {"reconstruction": terms[0].mean(), "kl": terms[1].mean()}
    assert torch.allclose(out["reconstruction"], rec) and torch.allclose(out["kl"], kl)
    g2 = torch.Generator().manual_seed(7)
    loss = model.loss((x,), generator=torch.Generator().manual_seed(7))
    eps2 = torch.randn(2, 3, generator=g2, dtype=torch.float64)
    rec2, kl2 = model.terms(x, eps=eps2)
    assert torch.allclose(loss["loss"], (rec2 + kl2).mean()) and torch.allclose(loss["kl"], kl)


def test_kl_term_closed_form(model, vocab):
    x = vocab.encode(COUPLETS)
    with torch.no_grad():
        for lin in (model.to_mu, model.to_logvar):
            lin.weight.zero_()
        model.to_mu.bias.fill_(1.0)  # μ = 1, log σ² = 0: KL = ½ Σ μ² = d/2
        model.to_logvar.bias.zero_()
    assert torch.allclose(model.terms(x)[1], torch.full((4,), TINY.latent_dim / 2, dtype=torch.float64))
    with torch.no_grad():
        model.to_mu.bias.zero_()
        model.to_logvar.bias.fill_(math.log(2.0))  # σ² = 2: KL = ½ d (2 − log 2 − 1)
    expected = 0.5 * TINY.latent_dim * (1 - math.log(2.0))
    assert torch.allclose(model.terms(x)[1], torch.full((4,), expected, dtype=torch.float64))


def test_shapes(model, vocab, gen):
    mu, logvar = model.encode(vocab.encode(COUPLETS))
    assert mu.shape == logvar.shape == (4, 3)
    assert model.encode(COUPLETS)[0].shape == (4, 3)  # strings are encoded through the vocabulary
    assert model.decode(mu).shape == (4, 10, len(vocab))
    assert model.sample_ids(5, generator=gen).shape == (5, 10)


def test_a_few_steps_lower_the_loss(vocab, gen):
    model = PoetryVAE(vocab, PoetryVAEConfig(hidden_dim=16, latent_dim=4), generator=gen)
    x = vocab.encode(COUPLETS)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    with torch.no_grad():
        first = float(model.loss(x, generator=torch.Generator().manual_seed(0))["loss"])
    for step in range(30):
        loss = model.loss(x, generator=torch.Generator().manual_seed(step))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = float(model.loss(x, generator=torch.Generator().manual_seed(0))["loss"])
    assert last < 0.7 * first, (first, last)


def test_sampling_is_seeded_and_argmax_is_the_zero_temperature_limit(model):
    a = model.sample(6, generator=torch.Generator().manual_seed(1))
    assert a == model.sample(6, generator=torch.Generator().manual_seed(1))
    assert all(len(s) == 12 and s[5] == "，" and s[-1] == "。" for s in a)
    cold = model.sample(6, generator=torch.Generator().manual_seed(1), temperature=1e-6)
    assert cold == a  # softmax(logits / T) → one-hot at the argmax as T → 0
    warm = model.sample(6, generator=torch.Generator().manual_seed(1), temperature=1.0)
    assert warm == model.sample(6, generator=torch.Generator().manual_seed(1), temperature=1.0)
    assert model.sample(0) == []


def test_reconstruct_decodes_the_posterior_mean(model, vocab):
    out = model.reconstruct(["白日依山尽，黄河入海流。", "欲穷千里目更上一层楼"])
    mu, _ = model.encode(vocab.encode(COUPLETS[:2]))
    assert out == [f"{s[:5]}，{s[5:]}。" for s in vocab.decode(model.decode(mu).argmax(-1))]


def test_save_load_round_trip(model, tmp_path):
    model = model.float()
    save_poet(model, tmp_path / "run", {"note": "test"})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "model.safetensors",
        "poet.json",
        "train.json",
    ]
    back = load_poet(tmp_path / "run")
    assert back.vocab == model.vocab and back.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])
    for t in (0.0, 1.0):
        same = [m.sample(8, generator=torch.Generator().manual_seed(3), temperature=t) for m in (model, back)]
        assert same[0] == same[1]
    assert sample_couplets(tmp_path / "run", 8, 3) == model.sample(
        8, generator=torch.Generator().manual_seed(3)
    )


def test_train_poet_end_to_end(tmp_path):
    data = [{"author": "a", "title": "t", "id": "0", "paragraphs": [f"{c[:5]}，{c[5:]}。" for c in COUPLETS]}]
    (tmp_path / "poems").mkdir()
    (tmp_path / "poems" / "poet.tang.0.json").write_text(json.dumps(data, ensure_ascii=False))
    cfg = PoetTrainConfig(model=TINY, steps=4, batch_size=2, min_count=1, test_size=1, log_every=2)
    said: list[str] = []
    info = train_poet(tmp_path / "poems", tmp_path / "run", cfg, say=said.append)
    assert info["train_couplets"] == 3 and info["test_couplets"] == 1 and info["train"]["steps"] == 4
    assert info["test"]["neg_elbo"] == pytest.approx(info["test"]["reconstruction"] + info["test"]["kl"])
    assert len(said) == 2 and said[0].startswith("poetry step 2/4: loss ") and ", kl " in said[0]
    assert json.loads((tmp_path / "run" / "train.json").read_text())["samples"] == info["samples"]
    a = sample_couplets(tmp_path / "run", 5, seed=2)
    assert a == sample_couplets(tmp_path / "run", 5, seed=2) and len(a) == 5
    again = train_poet(tmp_path / "poems", tmp_path / "run2", cfg)  # same seed → same run
    assert again["samples"] == info["samples"] and again["test"] == info["test"]


def test_evaluate_elbo_matches_terms(model, vocab):
    x = vocab.encode(COUPLETS)
    out = evaluate_elbo(model, x, generator=torch.Generator().manual_seed(5), batch=3)
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        rec, kl = model.terms(x, eps=eps)
    assert out["reconstruction"] == pytest.approx(float(rec.mean())) and out["kl"] == pytest.approx(
        float(kl.mean())
    )


# ------------------------------------------------------------------------------------------ errors
def test_bad_inputs(model, vocab):
    with pytest.raises(ValueError, match=r"\(B, 10\) tensor"):
        model.loss(torch.zeros(2, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="int64"):
        model.loss(torch.zeros(2, 10))
    with pytest.raises(ValueError, match=r"lie in \[0, "):
        model.loss(torch.full((2, 10), len(vocab)))
    with pytest.raises(ValueError, match="not in the vocabulary"):
        model.encode(["白日依山尽黄河入海月"])
    with pytest.raises(ValueError, match="z must have shape"):
        model.decode(torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, temperature=-1.0)
    with pytest.raises(ValueError, match="number of samples"):
        model.sample(-1)
    with pytest.raises(ValueError, match="GatedConv1d expects"):
        GatedConv1d(4)(torch.zeros(2, 10, 3))
    with pytest.raises(ValueError, match="odd"):
        PoetryVAEConfig(kernel_size=2)
    with pytest.raises(ValueError, match="latent_dim"):
        PoetryVAEConfig(latent_dim=0)


def test_bad_run_directories(model, tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        load_poet(tmp_path / "missing")
    save_poet(model.float(), tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "poet.json").read_text())
    (tmp_path / "run" / "poet.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(CheckpointError, match="not a kexue-poetry-vae"):
        load_poet(tmp_path / "run")
    (tmp_path / "run" / "poet.json").write_text(json.dumps({**meta, "vocab": meta["vocab"] + "月"}))
    with pytest.raises(CheckpointError, match="does not match"):
        load_poet(tmp_path / "run")
    (tmp_path / "run" / "poet.json").write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_poet(tmp_path / "run")
    (tmp_path / "run" / "poet.json").write_text(json.dumps(meta))
    (tmp_path / "run" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_poet(tmp_path / "run")
