"""Streaming: one output line per input line, nothing but whitespace lost, invalid UTF-8 passed through."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.text.segment import segment_stream, train_segmenter
from kexue.text.segment.tagger import TaggerConfig

SPACE = b" \t\r\n\x0b\x0c"


def _dict(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("中华\n文化\n古老\n的\n", encoding="utf-8")
    return p


def _run(tmp_path, data: bytes, model=None) -> bytes:
    out = io.BytesIO()
    info = segment_stream(_dict(tmp_path), model, io.BytesIO(data), out)
    assert info["lines"] == data.count(b"\n") + (not data.endswith(b"\n") and bool(data))
    return out.getvalue()


def test_lines_and_bytes(tmp_path):
    data = "古老的中华文化\r\n\n ab 12\n".encode() + b"\xff\xfe\x00\xe4\xb8\n" + "末".encode()
    out = _run(tmp_path, data)
    assert out.split(b"\n")[0] == "古老 的 中华 文化".encode()
    assert out.count(b"\n") == data.count(b"\n") and not out.endswith(b"\n")
    assert bytes(c for c in out if c not in SPACE) == bytes(c for c in data if c not in SPACE)


def test_empty_input(tmp_path):
    assert _run(tmp_path, b"") == b""


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("s")
    out = _run(tmp, data)
    assert out.count(b"\n") == data.count(b"\n")
    # every non-whitespace character (str.isspace; invalid bytes count as characters) survives in order
    keep = "".join(c for c in data.decode("utf-8", "surrogateescape") if not c.isspace())
    assert out.replace(b" ", b"").replace(b"\n", b"") == keep.encode("utf-8", "surrogateescape")


def test_train_and_stream_with_a_model(tmp_path, gen):
    words = _dict(tmp_path)
    corpus = tmp_path / "raw.txt"
    corpus.write_text("古老的中华文化\n中华的文化\n", encoding="utf-8")
    info = train_segmenter(
        words, corpus, tmp_path / "model", seed=0, config=TaggerConfig(steps=3, batch=8, hidden=8, emb=8)
    )
    assert (tmp_path / "model" / "tagger.safetensors").is_file() and info["em"]["rounds"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]  # no temporary left behind
    data = "古老的中华文化\n未知字符㐀\n".encode()
    out = _run(tmp_path, data, tmp_path / "model")
    assert bytes(c for c in out if c not in SPACE) == bytes(c for c in data if c not in SPACE)
