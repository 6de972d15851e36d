"""Shared fixtures: a seeded generator per test, the shared data folder, strict float64 math."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Deterministic cuBLAS (needed by use_deterministic_algorithms on a GPU); set before CUDA starts.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch
from hypothesis import settings

# CI (`.ci/run`) draws the same hypothesis examples on every run, so a merge is never decided by a lucky or
# unlucky draw; a plain `make test` keeps exploring new examples (and saves failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("KEXUE_HYPOTHESIS_PROFILE", "default"))

# One thread per test process: `make test` runs pytest-xdist workers side by side on 2 cores.
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KEXUE_TEST_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def gen() -> torch.Generator:
    """Each test gets its own seeded generator (style rule 12); nothing seeds global state."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The workplace's real data sets (../shared/data); tests that need them skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (set KEXUE_TEST_DATA to point at it)")
    return SHARED_DATA
