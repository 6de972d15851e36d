"""train_vectors / evaluate_vectors end to end on a tiny corpus (what `kexue wordvec train|eval` runs)."""

from __future__ import annotations

import numpy as np
import pytest

from kexue.errors import DataError
from kexue.text.wordvec import evaluate_vectors, read_word2vec, train_vectors

TEXT = "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n" + " ".join(
    ["the king and the queen sat", "the man and the woman ran", "a king is a man", "a queen is a woman"] * 40
)


@pytest.fixture
def tiny_corpus(tmp_path):
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "a.txt").write_text(TEXT)
    (folder / "b.txt").write_text(TEXT.replace("sat", "ran"))
    return folder


@pytest.fixture
def eval_dir(tmp_path):
    (tmp_path / "eval" / "en").mkdir(parents=True)
    (tmp_path / "eval" / "en" / "wordsim353.tsv").write_text(
        "# w1\tw2\tscore\nking\tqueen\t8\nman\twoman\t8\nking\tsat\t1\nzebra\tking\t3\n"
    )
    (tmp_path / "eval" / "en" / "questions-words.txt").write_text(": s\nman king woman queen\nman king x y\n")
    return tmp_path / "eval"


@pytest.mark.parametrize("method", ["svd", "sgns"])
def test_train_then_evaluate(tiny_corpus, eval_dir, tmp_path, method):
    out = tmp_path / "v" / f"{method}.txt"
    stats = train_vectors(
        tiny_corpus, method=method, dim=4, window=2, min_count=5, out=out, epochs=1, sample=0
    )
    assert stats["method"] == method and stats["out"] == str(out) and stats["seconds"] > 0
    assert stats["tokens_per_s"] > 0 and stats["words"] == 10 and stats["dim"] == 4
    v = read_word2vec(out)
    assert v.vectors.shape == (10, 4) and np.isfinite(v.vectors).all()
    result = evaluate_vectors(out, eval_dir)
    ws, google = result["results"]["ws353"], result["results"]["google"]
    assert ws["found"] == 3 and ws["coverage"] == 0.75  # "zebra" is reported as coverage, not an error
    assert google["found"] == 1 and google["coverage"] == 0.5


def test_user_errors_are_clear(tiny_corpus, tmp_path):
    with pytest.raises(DataError, match="method"):
        train_vectors(tiny_corpus, method="glove", out=tmp_path / "v.txt")
    with pytest.raises(DataError, match="does not exist"):
        train_vectors(tmp_path / "nothing", out=tmp_path / "v.txt")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("*** START OF THE PROJECT GUTENBERG EBOOK ***\n")
    with pytest.raises(DataError, match="no tokens"):
        train_vectors(tmp_path / "empty", out=tmp_path / "v.txt")
    (tmp_path / "short").mkdir()
    (tmp_path / "short" / "a.txt").write_text("one two three")
    with pytest.raises(DataError, match="smaller than the window"):
        train_vectors(tmp_path / "short", min_count=1, dim=1, window=5, out=tmp_path / "v.txt")
    with pytest.raises(DataError, match="dim"):
        train_vectors(tiny_corpus, dim=300, window=2, min_count=5, out=tmp_path / "v.txt")
    assert not (tmp_path / "v.txt").exists()
    with pytest.raises(DataError, match="does not exist"):
        evaluate_vectors(tmp_path / "v.txt", tmp_path)
