"""Capture intermediate outputs. [6575] kexue.fm/archives/6575, §输出中间变量.

The post wants any tensor inside a model — a layer's output, or a value that is not any layer's output,
like an attention matrix — without rebuilding the model (Keras's `K.function`). In PyTorch:

- `capture_outputs(model, names)` hooks the named sub-modules' outputs (forward hooks), and
- `record(module, name, value)` lets a module expose an inner value; it is a no-op unless a
  `capture_records(model)` block is active, so production code pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

_SINK = "_kexue_record_sink"


@contextmanager
def capture_outputs(
    model: nn.Module, names: Iterable[str], *, detach: bool = True
) -> Iterator[dict[str, Any]]:
    """Yield a dict that fills with the outputs of the named sub-modules on each forward pass.

    names: qualified module names as in `model.named_modules()` (e.g. "encoder.layers.0.attn").
    A module called several times per forward keeps its last output.
    """
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise KeyError(f"no sub-module named {missing[0]!r}; available: {', '.join(list(modules)[1:12])}, …")
    out: dict[str, Any] = {}

    def hook_for(name: str):
        def hook(module, args, output):
            out[name] = output.detach() if detach and hasattr(output, "detach") else output

        return hook

    handles = [modules[n].register_forward_hook(hook_for(n)) for n in names]
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


def record(module: nn.Module, name: str, value: Any) -> None:
    """Expose `value` as "<module's qualified name>.<name>" to an active `capture_records` block."""
    sink = module.__dict__.get(_SINK)
    if sink is not None:
        prefix, store, detach = sink
        store[f"{prefix}.{name}" if prefix else name] = (
            value.detach() if detach and hasattr(value, "detach") else value
        )


@contextmanager
def capture_records(model: nn.Module, *, detach: bool = True) -> Iterator[dict[str, Any]]:
    """Yield a dict that fills with every `record(...)` made inside `model` during the block."""
    store: dict[str, Any] = {}
    modules = list(model.named_modules())
    for qualname, m in modules:
        m.__dict__[_SINK] = (qualname, store, detach)
    try:
        yield store
    finally:
        for _, m in modules:
            m.__dict__.pop(_SINK, None)
