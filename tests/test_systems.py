"""The map stays true: `kexue list` matches ../shared/SYSTEMS.md, every flag is backed by code, tests and
registered reproductions, and the README's table is the generated one."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from kexue.registry import benchmarks, reproductions
from kexue.systems import SYSTEMS, markdown_table

ROOT = Path(__file__).resolve().parents[1]


def test_ids_names_families_match_the_shared_map(shared_data):
    text = (shared_data.parent / "SYSTEMS.md").read_text()
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if re.match(r"^\| *\d+ *\|", line)
    ]
    assert len(rows) == len(SYSTEMS) == 38
    for cells, s in zip(rows, SYSTEMS):
        assert (int(cells[0]), cells[1], cells[2]) == (s.id, s.name, s.family)
        assert [int(p) for p in re.findall(r"\d+", cells[3])] == list(s.posts)


@pytest.mark.parametrize("system", [s for s in SYSTEMS if any(s.flags.values())], ids=lambda s: s.name)
def test_every_flag_is_backed(system):
    for module in system.modules:
        importlib.import_module(module)
    for test in system.tests:
        assert (ROOT / test).is_file(), test
    registered = reproductions()
    for name in system.reproductions:
        assert name in registered and system.id in registered[name].systems
    for name in system.peers:
        assert name in benchmarks(), name


def test_every_registered_reproduction_is_on_the_map():
    on_map = {name for s in SYSTEMS for name in s.reproductions}
    assert set(reproductions()) <= on_map


def test_readme_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "regenerate the README table with `kexue list --markdown`"
