r"""The nets inside couplings and conditional priors (any net works; the flow stays invertible).

- `mlp`: NICE's m, Linear–ReLU stacks on flat vectors ([5776]: 5 × Dense(1000, ReLU); [NICE] 4 × 1000).
- `conv`: Glow's f, conv3×3 → ReLU → conv1×1 → ReLU → zero-initialised conv3×3 ([Glow] Sec. 3.3;
  [5807] "f": three ReLU conv layers).
The last layer starts at zero, so each coupling and each learned prior starts as the identity /
the standard normal ([Glow] Sec. 3.3 "zero initialization").
"""

from __future__ import annotations

from torch import nn


def zero_init(layer: nn.Module) -> nn.Module:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(d_in: int, d_out: int, *, hidden: int, depth: int) -> nn.Sequential:
    """depth hidden ReLU layers of width `hidden`, then a zero-initialised linear output."""
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    return nn.Sequential(*layers, zero_init(nn.Linear(d, d_out)))


def conv(c_in: int, c_out: int, *, hidden: int) -> nn.Sequential:
    """Glow's coupling net f: 3×3 → 1×1 → zero-initialised 3×3, ReLU between, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(c_in, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, 1),
        nn.ReLU(),
        zero_init(nn.Conv2d(hidden, c_out, 3, padding=1)),
    )


def zero_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """A zero-initialised 3×3 conv: Glow's split prior net ([Glow] code `conv2d_zeros`)."""
    return zero_init(nn.Conv2d(c_in, c_out, 3, padding=1))
