"""Modules that contribute their own loss terms. [5765] kexue.fm/archives/5765, §层与loss的结合.

The post's `Dense_with_Center_loss` keeps a layer's regulariser next to its parameters (Keras's
`add_loss`). Here a module calls `add_loss(self, value, "center")` in its forward pass; inside a
`collecting_losses()` block (the trainer opens one around every forward) the term is recorded and the
trainer adds it to the objective, logging it under its name. Outside such a block, or in eval mode,
`add_loss` does nothing — evaluation code never accumulates graphs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from torch import Tensor, nn

_SINK: ContextVar[list[tuple[str, Tensor]] | None] = ContextVar("kexue_aux_losses", default=None)


def add_loss(module: nn.Module, value: Tensor, name: str = "aux") -> None:
    """Add a scalar term to the training objective (recorded only while `module.training`)."""
    sink = _SINK.get()
    if sink is None or not module.training:
        return
    if value.dim() != 0:
        raise ValueError(f"add_loss expects a scalar tensor, got shape {tuple(value.shape)}; reduce it first")
    sink.append((name, value))


@contextmanager
def collecting_losses() -> Iterator[dict[str, Tensor]]:
    """Yield a dict that, when the block ends, holds the recorded terms summed per name."""
    sink: list[tuple[str, Tensor]] = []
    out: dict[str, Tensor] = {}
    token = _SINK.set(sink)
    try:
        yield out
    finally:
        _SINK.reset(token)
        for name, value in sink:
            out[name] = out[name] + value if name in out else value
