"""A tiny stand-in for the cached digits ε-net, shared by the diffusion reproductions' contract tests."""

from __future__ import annotations

import pytest

from helpers import install_tiny_recipe


@pytest.fixture
def tiny_recipe(monkeypatch, tmp_path) -> str:
    return install_tiny_recipe(monkeypatch, tmp_path)
