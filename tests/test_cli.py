"""The command line's contract: --help everywhere, one-line errors with exit status 2, list/train/sample."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from kexue.cli import build_parser, main

SUBCOMMANDS = ["list", "train", "sample", "reproduce", "bench", "data", "wordvec", "segment"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_help(sub, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([sub, "--help"] if sub else ["--help"])
    assert e.value.code == 0
    assert "usage: kexue" in capsys.readouterr().out


def test_list_json_has_the_38_systems(capsys):
    code, out, _ = run(capsys, "list", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["id"] for r in rows] == list(range(1, 39))
    assert all(
        {"id", "name", "family", "url", "implemented", "tested", "reproduced", "peer"} <= set(r) for r in rows
    )
    row5 = rows[4]
    assert row5["name"] == "noise-gradient-penalty" and row5["reproduced"] and row5["tested"]


ERRORS = [
    (["train", "classifier", "--data", "cifar", "--out", "{tmp}/r"], "unknown data set 'cifar'"),
    (["train", "transformer", "--data", "digits", "--out", "{tmp}/r"], "unknown model 'transformer'"),
    (["train", "classifier", "--data", "digits"], "needs --out DIR"),
    (
        ["train", "classifier", "--data", "mnist", "--data-dir", "{tmp}/nowhere", "--out", "{tmp}/r"],
        "nowhere",
    ),
    (
        ["train", "classifier", "--data", "digits", "--out", "{tmp}/r", "--set", "widht=3"],
        "unknown option 'widht'",
    ),
    (
        ["train", "classifier", "--data", "digits", "--out", "{tmp}/r", "--set", "width=wide"],
        "cannot read 'wide'",
    ),
    (
        ["train", "classifier", "--data", "digits", "--out", "{tmp}/r", "--set", "regularizer=magic"],
        "regularizer",
    ),
    (["train", "classifier", "--data", "digits", "--out", "{tmp}/r", "--set", "width"], "expected KEY=VALUE"),
    (["train", "classifier", "--data", "digits", "--out", "{tmp}/r", "--resume"], "holds no checkpoint"),
    (
        ["train", "classifier", "--data", "digits", "--out", "{tmp}/r", "--batch-size", "5000"],
        "fewer than one batch",
    ),
    (["train", "classifier", "--data", "ring8", "--out", "{tmp}/r"], "needs labelled image data"),
    (["train", "gaussian", "--data", "digits", "--out", "{tmp}/r", "--fid-proxy"], "only applies"),
    (["sample", "{tmp}/missing"], "is not a directory"),
    (["reproduce", "no-such-claim"], "unknown reproduction 'no-such-claim'"),
    (["bench", "no-such-bench"], "unknown benchmark 'no-such-bench'"),
    (["data", "download", "digits"], "only mnist can be downloaded"),
    (["data", "info", "mnist", "--split", "all", "--data-dir", "{tmp}"], "split must be 'train' or 'test'"),
    (
        ["train", "classifier", "--data", "digits", "--out", "{tmp}/r", "--ema", "1.0"],
        "EMA decay must lie in",
    ),
    (["train", "classifier", "--data", "digits", "--out", "{tmp}/r", "--lr", "-1"], "learning rate must be"),
    (["train", "classifier", "--data", "digits", "--out", "{tmp}/r", "--clip-grad", "-1"], "clipping norm"),
    (
        ["train", "classifier", "--data", "digits", "--out", "{tmp}/r", "--save-every", "-2"],
        "take a number of steps ≥ 0",
    ),
    (["train", "gaussian", "--data", "ring8", "--out", "{tmp}/r", "--set", "dim=3"], "come from the data"),
    (["train", "classifier", "--data", "digits", "--out", "{tmp}/file.txt"], "is a file"),
    (["sample", "{tmp}/file.txt"], "is not a directory"),
    (["train", "glow", "--data", "digits", "--out", "{tmp}/r", "--set", "levels=3"], "come from the data"),
    (["bench", "trainer", "--data-dir", "{tmp}"], "reads no data folder"),
    (
        ["reproduce", "word2vec-svd", "--quick", "--data-dir", "{tmp}/none", "--out", "{tmp}/o"],
        "needs gutenberg/",
    ),
    (["train", "glow", "--data", "digits", "--out", "{tmp}/r", "--set", "L=4"], "divisible by 16"),
    (["train", "realnvp", "--data", "digits", "--out", "{tmp}/r", "--set", "logit=0.7"], "α must lie"),
]
if not torch.cuda.is_available():
    ERRORS.append(
        (
            ["train", "classifier", "--data", "digits", "--out", "{tmp}/r", "--device", "cuda"],
            "CUDA is not available",
        )
    )


@pytest.mark.parametrize(
    ("args", "message"), ERRORS, ids=[" ".join(a[:3]) + f" [{i}]" for i, (a, _) in enumerate(ERRORS)]
)
def test_bad_input_gives_one_line_and_status_2(args, message, capsys, tmp_path):
    (tmp_path / "file.txt").write_text("not a directory")
    code, _, err = run(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kexue: error: ") and message in lines[0], err


@pytest.fixture
def gaussian_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "g"
    assert (
        main(
            [
                "train",
                "gaussian",
                "--data",
                "ring8",
                "--steps",
                "400",
                "--lr",
                "0.05",
                "--batch-size",
                "256",
                "--out",
                str(out),
                "--no-progress",
                "--ema",
                "0.9",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    return out


def test_train_then_sample(gaussian_run, capsys, tmp_path):
    for name in ("model.safetensors", "model_ema.safetensors", "config.json", "metrics.jsonl"):
        assert (gaussian_run / name).is_file()
    config = json.loads((gaussian_run / "config.json").read_text())
    assert config["model"] == "gaussian" and config["model_config"] == {"dim": 2, "levels": None}
    code, _, err = run(capsys, "sample", str(gaussian_run), "--n", "5000", "--out", str(tmp_path / "s.npz"))
    assert code == 0, err
    x = np.load(tmp_path / "s.npz")["samples"]
    assert x.shape == (5000, 2) and (tmp_path / "s.png").stat().st_size > 1000
    # ring8 has mean 0 and covariance (r²/2 + σ²)·I = 2.0004·I: the fitted Gaussian's samples show it.
    assert np.abs(x.mean(0)).max() < 0.1 and np.abs(np.cov(x.T) - 2.0004 * np.eye(2)).max() < 0.2


def test_sample_refuses_classifiers_and_corrupt_weights(capsys, tmp_path):
    out = tmp_path / "c"
    assert (
        main(["train", "classifier", "--data", "digits", "--steps", "3", "--out", str(out), "--no-progress"])
        == 0
    )
    code, _, err = run(capsys, "sample", str(out))
    assert code == 2 and "does not generate samples" in err
    (out / "model.safetensors").write_bytes(b"garbage")
    code, _, err = run(capsys, "sample", str(out))
    assert code == 2 and "not a readable safetensors file" in err and len(err.strip().splitlines()) == 1


def test_data_info(capsys):
    code, out, _ = run(capsys, "data", "info", "digits", "--split", "test")
    assert code == 0 and json.loads(out) == {
        "name": "digits",
        "n": 297,
        "shape": [1, 8, 8],
        "levels": 17,
        "classes": 10,
    }


def test_data_info_reads_a_mnist_folder_by_path(capsys, shared_data):
    code, out, _ = run(capsys, "data", "info", str(shared_data / "mnist"), "--split", "test")
    assert code == 0 and json.loads(out)["n"] == 10000


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "d"
    args = ["train", "ddpm", "--data", "digits", "--steps", "5", "--batch-size", "32", "--ema", "0.9"]
    args += ["--set", "width=32", "--set", "depth=1", "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    return out


def test_train_ddpm_then_sample_with_each_sampler(ddpm_run, capsys, tmp_path):
    config = json.loads((ddpm_run / "config.json").read_text())
    assert config["model"] == "ddpm" and config["model_config"]["shape"] == [1, 8, 8]
    for sampler in ("ddim", "ddpm", "ddpm-large", "sigma-hat", "analytic-ddpm", "analytic-ddim", "dpmpp-2m"):
        grid = tmp_path / f"{sampler}.png"
        code, _, err = run(
            capsys,
            "sample",
            str(ddpm_run),
            "--sampler",
            sampler,
            "--steps",
            "3",
            "--n",
            "6",
            "--out",
            str(grid),
        )
        assert code == 0, err
        x = np.load(grid.with_suffix(".npz"))["samples"]
        assert x.shape == (6, 1, 8, 8) and x.min() >= 0 and x.max() <= 1 and grid.stat().st_size > 500
    a, b = (tmp_path / "a.npz", tmp_path / "b.npz")
    for out, seed in ((a, "1"), (b, "2")):  # η = 0 is deterministic given the starting noise
        run(capsys, "sample", str(ddpm_run), "--steps", "4", "--n", "3", "--seed", seed, "--out", str(out))
    assert not np.array_equal(np.load(a)["samples"], np.load(b)["samples"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sampler", "plms"], "unknown sampler 'plms'"),
        (["--steps", "1001"], "--steps must lie in 1..1000"),
        (["--steps", "0"], "--steps must lie in 1..1000"),
        (["--eta", "-1"], "--eta must be ≥ 0"),
        (["--sampler", "ddpm", "--eta", "0.5"], "--eta applies to --sampler ddim and analytic-ddim only"),
    ],
)
def test_sample_bad_diffusion_options(ddpm_run, extra, message, capsys):
    code, _, err = run(capsys, "sample", str(ddpm_run), "--n", "2", *extra)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_sampler_options_refused_for_non_diffusion_runs(gaussian_run, capsys):
    code, _, err = run(capsys, "sample", str(gaussian_run), "--steps", "10")
    assert code == 2 and "apply to diffusion runs" in err


def test_train_sid_distils_a_ddpm_run_and_refuses_what_is_not_one(capsys, tmp_path):
    teacher, gen, gauss = (str(tmp_path / n) for n in ("teacher", "gen", "gauss"))
    assert run(capsys, "train", "ddpm", "--data", "ring8", "--steps", "3", "--set", "width=16",
               "--set", "depth=1", "--out", teacher, "--no-progress", "--device", "cpu")[0] == 0  # fmt: skip
    code, _, err = run(capsys, "train", "sid", "--teacher", teacher, "--steps", "2", "--batch-size", "8",
                       "--out", gen, "--no-progress", "--device", "cpu")  # fmt: skip
    assert code == 0 and "one-step generator" in err
    config = json.loads((tmp_path / "gen" / "config.json").read_text())
    assert config["model"] == "sid" and config["sid_config"]["alpha"] == 1.2
    code, _, err = run(capsys, "sample", gen, "--n", "10", "--device", "cpu")
    assert code == 0 and np.load(tmp_path / "gen" / "samples.npz")["samples"].shape == (10, 2)
    # not an ε-net, no teacher, a bad α, --data given: one line each, exit status 2
    run(capsys, "train", "gaussian", "--data", "ring8", "--steps", "1", "--out", gauss, "--no-progress")
    for args, words in (
        (["--teacher", gauss], "not an ε-net"),
        ([], "needs --teacher"),
        (["--teacher", teacher, "--set", "alpha=-1"], "α must be a finite number ≥ 0"),
        (["--teacher", teacher, "--data", "ring8"], "data-free"),
        (["--teacher", str(tmp_path / "nowhere")], "is not a directory"),
    ):
        code, _, err = run(capsys, "train", "sid", *args, "--out", str(tmp_path / "x"), "--device", "cpu")
        assert code == 2 and words in err and err.count("\n") == 1, (args, err)


@pytest.mark.parametrize("model", ["nice", "realnvp", "glow"])
def test_train_flow_then_sample_at_temperatures(model, capsys, tmp_path):
    out = tmp_path / model
    code, _, err = run(capsys, "train", model, "--data", "digits", "--steps", "3", "--batch-size",
                       "32", "--set", "hidden=8", "--out", str(out), "--no-progress")  # fmt: skip
    assert code == 0 and "test_bpd" in err, err
    config = json.loads((out / "config.json").read_text())
    assert config["model_config"]["shape"] == [1, 8, 8] and config["model_config"]["levels"] == 17
    for t in ("0", "0.7"):
        code, _, err = run(capsys, "sample", str(out), "--n", "6", "--temperature", t,
                           "--out", str(tmp_path / f"s{t}.npz"))  # fmt: skip
        assert code == 0, err
        x = np.load(tmp_path / f"s{t}.npz")["samples"]
        assert x.shape == (6, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    assert np.ptp(np.load(tmp_path / "s0.npz")["samples"], axis=0).max() == 0  # T = 0: one point
    code, _, err = run(capsys, "sample", str(out), "--temperature", "nan")
    assert code == 2 and "--temperature must be a finite number" in err


def test_temperature_refused_for_non_flow_runs(gaussian_run, capsys):
    code, _, err = run(capsys, "sample", str(gaussian_run), "--temperature", "0.5")
    assert code == 2 and "applies to flow runs" in err


def test_wordvec_train_then_eval(capsys, tmp_path):
    books, ev = tmp_path / "books", tmp_path / "eval" / "en"
    books.mkdir()
    ev.mkdir(parents=True)
    text = " ".join(["the king and the queen sat", "the man and the woman ran", "a king is a man"] * 40)
    (books / "a.txt").write_text("*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n" + text)
    (ev / "wordsim353.tsv").write_text("# w1\tw2\tscore\nking\tqueen\t8\nman\twoman\t8\nking\tsat\t1\n")
    out = tmp_path / "v.txt"
    code, stdout, err = run(capsys, "wordvec", "train", "--corpus", str(books), "--dim", "4", "--window", "2",
                            "--min-count", "5", "--out", str(out))  # fmt: skip
    assert code == 0 and out.is_file() and json.loads(stdout)["dim"] == 4, err
    code, stdout, err = run(capsys, "wordvec", "eval", str(out), "--eval-dir", str(tmp_path / "eval"))
    assert code == 0 and json.loads(stdout)["results"]["ws353"]["found"] == 3, err
    for args, message in [
        (["wordvec", "train", "--out", str(out)], "needs --corpus"),
        (["wordvec", "eval"], "needs the vectors file"),
        (["wordvec", "train", "--corpus", str(tmp_path / "none"), "--out", str(out)], "does not exist"),
        (
            [
                "wordvec",
                "train",
                "--corpus",
                str(books),
                "--method",
                "sgns",
                "--epochs",
                "0",
                "--out",
                str(out),
            ],
            "must be ≥ 1",
        ),
    ]:
        code, _, err = run(capsys, *args)
        assert code == 2 and err.count("\n") == 1 and message in err, err


def test_segment_streams_and_trains(capsys, tmp_path, monkeypatch):
    import io

    words = tmp_path / "words.txt"
    words.write_text("我们\n北京\n大学\n北京大学\n学习\n", encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("我们在北京大学学习\nab 12\n".encode())))
    code, out, err = run(capsys, "segment", "--dict", str(words))
    assert code == 0 and out == "我们 在 北京大学 学习\nab 12\n", err
    model = tmp_path / "model"
    code, out, err = run(
        capsys, "segment", "train", "--dict", str(words), "--steps", "2", "--out", str(model)
    )
    assert code == 0 and (model / "tagger.safetensors").is_file(), err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("我们在北京\n".encode())))
    code, out, err = run(capsys, "segment", "--dict", str(words), "--model", str(model))
    assert code == 0 and out.replace(" ", "") == "我们在北京\n", err
    for args, message in [
        (["segment"], "needs --dict"),
        (["segment", "train", "--dict", str(words)], "needs --out"),
        (["segment", "--dict", str(words), "--out", str(tmp_path / "x")], "apply to `kexue segment train`"),
        (["segment", "--dict", str(tmp_path / "missing.txt")], "missing.txt"),
        (
            ["segment", "train", "--dict", str(words), "--steps", "0", "--out", str(model)],
            "steps must be ≥ 1",
        ),
    ]:
        code, _, err = run(capsys, *args)
        assert code == 2 and err.count("\n") == 1 and message in err, err
