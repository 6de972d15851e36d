"""Two CPU processes under torchrun (gloo) equal one process with the same global batch; a run killed with
SIGKILL and resumed ends bit-identical to an uninterrupted one — both through the real command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TRAIN = ["train", "classifier", "--data", "digits", "--batch-size", "64", "--device", "cpu", "--no-progress"]


def _run_group(cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Run cmd in its own process group; on timeout kill the whole group (torchrun's workers too)."""
    proc = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd[:6])} … timed out after {timeout} s; stderr: {err[-1000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kexue(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "kexue"), *args], env=ENV, capture_output=True, text=True, timeout=300, **kw
    )


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    single = _kexue(*TRAIN, "--steps", "30", "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    cmd = [
        str(BIN / "torchrun"),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "kexue",
        *TRAIN,
        "--steps",
        "30",
        "--out",
        str(tmp_path / "two"),
    ]
    ddp = _run_group(cmd)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    a = load_file(tmp_path / "one" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:  # same samples per step; only the order of float additions in the all-reduce differs
        assert (a[k] - b[k]).abs().max() < 1e-5, k
    # Only rank 0 wrote: exactly one line per logging step (rank 1's would repeat a step, with another time).
    lines = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    train_steps = [x["step"] for x in lines if "train/loss" in x]
    assert train_steps == [30]  # log_every 50: the only training line is the last step's


@pytest.mark.slow
def test_kill_9_then_resume_is_bit_identical(tmp_path):
    args = [
        *TRAIN,
        "--steps",
        "400",
        "--save-every",
        "25",
        "--set",
        "regularizer=noise",
        "--set",
        "sigma=0.2",
        "--ema",
        "0.99",
    ]
    ref = _kexue(*args, "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [str(BIN / "kexue"), *args, "--out", str(run)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (run / "checkpoints" / "step-00000100").exists() and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "model.safetensors").exists(), "the run finished before it could be killed"
    resumed = _kexue(*args, "--out", str(run), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for name in ("model.safetensors", "model_ema.safetensors"):
        a, b = load_file(tmp_path / "ref" / name), load_file(run / name)
        assert all((a[k] == b[k]).all() for k in a), name
