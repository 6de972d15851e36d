"""Checkpoints: the state codec round-trips, files are atomic, and kill -9 during a save leaves the newest
complete checkpoint loadable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.errors import CheckpointError
from kexue.train import checkpoint as ckpt


def test_optimizer_state_round_trips(gen):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.95))
    for _ in range(3):
        model(torch.randn(5, 3, generator=gen)).pow(2).sum().backward()
        opt.step()
    tensors: dict = {}
    tree = ckpt.flatten_state(opt.state_dict(), "optimizer", tensors)
    import json

    tree = json.loads(json.dumps(tree, sort_keys=True))  # what the JSON file gives back
    back = ckpt.unflatten_state(tree, tensors)
    ref = opt.state_dict()
    assert back["param_groups"] == ref["param_groups"]  # tuples (betas) come back as tuples
    assert back["state"].keys() == ref["state"].keys()
    for i in ref["state"]:
        for k, v in ref["state"][i].items():
            assert torch.equal(back["state"][i][k], v)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False),
)
trees = st.recursive(
    scalars,
    lambda c: st.one_of(
        st.lists(c, max_size=3),
        st.tuples(c, c),
        st.dictionaries(st.text(max_size=5), c, max_size=3),
        st.dictionaries(st.integers(0, 9), c, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=50, deadline=None)
@given(trees)
def test_codec_round_trips_any_json_tree(tree):
    import json

    tensors: dict = {}
    flat = json.loads(json.dumps(ckpt.flatten_state(tree, "x", tensors)))
    assert ckpt.unflatten_state(flat, tensors) == tree


def test_codec_rejects_objects():
    with pytest.raises(TypeError, match="cannot store object"):
        ckpt.flatten_state({"a": object()}, "x", {})


def test_keep_last_k_and_shared_tensors(tmp_path):
    w = torch.arange(6.0)
    for step in range(1, 6):
        ckpt.save_checkpoint(tmp_path, step, {"a": w, "tied": w, "view": w[::2]}, {"k": step}, keep=2)
    assert ckpt.checkpoint_steps(tmp_path) == [4, 5]
    tensors, meta = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))
    assert meta["step"] == 5 and meta["k"] == 5
    assert torch.equal(tensors["tied"], w) and torch.equal(tensors["view"], w[::2])


def test_corrupt_files_give_one_line_errors(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as e:
        ckpt.load_tensors(bad)
    assert "\n" not in str(e.value)
    (tmp_path / "c.json").write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        ckpt.read_json(tmp_path / "c.json")
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.load_tensors(tmp_path / "missing.safetensors")


WRITER = """
import sys, torch
from kexue.train.checkpoint import save_checkpoint
step = 0
while True:
    step += 1
    save_checkpoint(sys.argv[1], step, {"w": torch.full((2_000_000,), float(step))}, {"value": step}, keep=2)
    print(step, flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.013, 0.031, 0.057])
def test_kill_9_during_save_leaves_a_loadable_checkpoint(tmp_path, delay):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(2):  # at least two complete checkpoints, then kill somewhere inside a later save
            assert proc.stdout.readline()
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    path = ckpt.latest_checkpoint(tmp_path)
    tensors, meta = ckpt.load_checkpoint(path)
    assert meta["step"] == meta["value"] >= 2
    assert torch.equal(tensors["w"], torch.full((2_000_000,), float(meta["value"])))
    # A later save sweeps whatever half-written temporary directory the kill left behind.
    ckpt.save_checkpoint(tmp_path, 10**6, {"w": torch.zeros(1)}, {}, keep=5)
    assert not list(tmp_path.glob(".tmp-*"))


def test_build_directory_atomic_replaces_whole_or_not_at_all(tmp_path):
    from kexue.train.checkpoint import build_directory_atomic

    final = tmp_path / "cache" / "net"
    build_directory_atomic(final, lambda work: (work / "a.txt").write_text("old"))
    assert (final / "a.txt").read_text() == "old"

    def broken(work):
        (work / "a.txt").write_text("half-written")
        raise RuntimeError("training died")

    with pytest.raises(RuntimeError, match="training died"):
        build_directory_atomic(final, broken)
    assert (final / "a.txt").read_text() == "old" and sorted(p.name for p in final.parent.iterdir()) == [
        "net"
    ]
    build_directory_atomic(final, lambda work: (work / "b.txt").write_text("new"))
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]
