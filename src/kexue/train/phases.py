"""Alternating (multi-phase) training: GANs and other min-max models in the ordinary trainer.

A model that declares `phases`, e.g. `("d", "d", "g")`, is trained in cycles: one trainer step runs every
phase in order, each on a fresh batch, as `loss(batch, phase=name)` → backward → optimizer step. There is
one optimizer over all parameters (parameter groups may give the networks different learning rates, via the
model's `configure_optimizer(train_config)`); a phase updates exactly the parameters it gives gradients to,
because PyTorch optimizers skip parameters whose `.grad` is None. So a phase must keep gradients away from
the networks it does not train: detach their outputs (x_f.detach() in the critic's loss), or compute the
forward pass with the other network `frozen` (the critic inside the generator's loss).

`steps` keeps its usual meaning of trainer steps, i.e. generator iterations for ("d", …, "g") cycles.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Forward passes inside this block record no gradient path to the modules' parameters
    (requires_grad off, restored on exit); gradients still flow *through* them to their inputs."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
