"""Word lists: formats, and bad lines as one-line DataErrors naming file:line."""

from __future__ import annotations

import pytest

from kexue.errors import DataError
from kexue.text.segment import parse_dictionary, read_dictionary, write_dictionary


def test_formats(tmp_path):
    d = parse_dictionary(["\ufeff中华 3 ns", "", "文化 2", "文化 1"])
    assert d.freq == {"中华": 3.0, "文化": 3.0} and d.has_freqs
    u = parse_dictionary([b"a", b"b"])
    assert u.freq == {"a": 1.0, "b": 1.0} and not u.has_freqs
    write_dictionary(d, tmp_path / "d.txt")
    assert read_dictionary(tmp_path / "d.txt").freq == d.freq


@pytest.mark.parametrize(
    ("lines", "where"),
    [
        (["中华 3", "文化 x"], ":2:"),
        (["中华 -1"], ":1:"),
        (["a 1 n extra"], ":1:"),
        (["中华 3", "文化"], ":2:"),
        ([b"ok", b"\xff\xfe"], ":2:"),
        ([], "empty"),
    ],
)
def test_bad_lines(lines, where):
    with pytest.raises(DataError, match=where) as e:
        parse_dictionary(lines, "words.txt")
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_dictionary(tmp_path / "none.txt")
