"""Weight EMA (Polyak averaging) with bias correction. [6575] kexue.fm/archives/6575, §权重滑动平均.

    Θ_n = α Θ_{n−1} + (1 − α) θ_n,   Θ_0 = 0,   read out Θ̂_n = Θ_n / (1 − α^n)

The post starts Θ at the initial weights; starting at zero and dividing by 1 − α^n (Adam's bias
correction, Kingma & Ba 2015 §3) instead makes Θ̂_n an exact weighted average of θ_1 … θ_n, free of the
random initialisation, which matters for short runs where α^n is far from 0.

As the post insists, the EMA never changes the optimizer's trajectory: `applied` swaps the averaged
weights in (for evaluation, sampling, saving) and swaps the trained weights back bit-for-bit.
Buffers (e.g. BatchNorm running statistics) are not averaged; the model's current ones are used.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.names = [n for n, p in model.named_parameters() if p.dtype.is_floating_point]
        params = dict(model.named_parameters())
        # The shadow is kept in float32 at least, even when the model trains in a lower precision.
        self.shadow = [
            torch.zeros_like(params[n], dtype=torch.promote_types(params[n].dtype, torch.float32))
            for n in self.names
        ]

    def _params(self, model: nn.Module) -> list[Tensor]:
        params = dict(model.named_parameters())
        return [params[n] for n in self.names]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step after an optimizer step: Θ ← αΘ + (1 − α)θ."""
        theta = [p.detach().to(s.dtype) for p, s in zip(self._params(model), self.shadow)]
        torch._foreach_mul_(self.shadow, self.decay)
        torch._foreach_add_(self.shadow, theta, alpha=1.0 - self.decay)
        self.num_updates += 1

    def averaged(self) -> dict[str, Tensor]:
        """Θ̂_n = Θ_n / (1 − α^n), by parameter name (empty before the first update)."""
        if self.num_updates == 0:
            return {}
        correction = 1.0 - self.decay**self.num_updates
        return {n: s / correction for n, s in zip(self.names, self.shadow)}

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Swap the averaged weights into `model`; restore the trained weights on exit (even on error)."""
        if self.num_updates == 0:
            yield model
            return
        params = self._params(model)
        backup = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, a in zip(params, self.averaged().values()):
                p.copy_(a)
        try:
            yield model
        finally:
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "shadow": dict(zip(self.names, self.shadow)),
        }

    def load_state_dict(self, state: dict) -> None:
        if set(state["shadow"]) != set(self.names):
            raise ValueError(
                "EMA state does not match the model's parameters; was it saved for another model?"
            )
        self.decay, self.num_updates = float(state["decay"]), int(state["num_updates"])
        for name, s in zip(self.names, self.shadow):
            s.copy_(state["shadow"][name])
