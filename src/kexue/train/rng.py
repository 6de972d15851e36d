"""Random-generator states as JSON, so that a resumed run draws exactly the numbers it would have drawn."""

from __future__ import annotations

import base64
import random

import numpy as np
import torch


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def get_rng_state(device: torch.device | None = None) -> dict:
    """torch's CPU generator and the CUDA generator of `device` (the process's own GPU), NumPy's and
    Python's global generators."""
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the global one
    version, internal, gauss = random.getstate()
    return {
        "torch": _b64(torch.get_rng_state()),
        "cuda": _b64(torch.cuda.get_rng_state(device))
        if device is not None and device.type == "cuda"
        else None,
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss],
    }


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    torch.set_rng_state(_unb64(state["torch"]))
    if state["cuda"] and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(_unb64(state["cuda"]), device)
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
