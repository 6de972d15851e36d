"""Where kexue reads data and keeps its cache.

Data: an explicit `--data-dir` wins, then the environment variable KEXUE_DATA, then `<cache>/data`
(where `download=True` puts files). Cache: KEXUE_CACHE, else $XDG_CACHE_HOME/kexue, else ~/.cache/kexue;
it holds the FID-proxy classifiers that kexue trains itself (nothing is ever downloaded into it but data).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("KEXUE_CACHE"):
        return Path(os.environ["KEXUE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "kexue"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit is not None:
        return Path(explicit).expanduser()
    if os.environ.get("KEXUE_DATA"):
        return Path(os.environ["KEXUE_DATA"]).expanduser()
    return cache_dir() / "data"
