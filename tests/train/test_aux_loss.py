"""Module-contributed losses (post 5765, §层与loss的结合).

`add_loss` records only inside `collecting_losses` and only in training mode, sums terms per name, rejects
non-scalars, and nested blocks do not leak."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.train.aux_loss import add_loss, collecting_losses


class Center(nn.Module):
    """The post's center loss as a layer: adds ‖h − c‖² (summed over the batch) under the name `name`."""

    def __init__(self, name: str = "center") -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
        self.name = name

    def forward(self, h):
        add_loss(self, (h - self.c).pow(2).sum(), self.name)
        return h


def h_of(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def values(out):
    return {k: v.item() for k, v in out.items()}  # small integers: exact in float64


def test_records_only_inside_a_block_and_in_training_mode():
    layer = Center()
    layer(h_of([0.0, 0.0]))  # outside any block: nothing to record into, no error
    with collecting_losses() as out:
        layer(h_of([0.0, 0.0]))
        assert out == {}  # filled when the block ends
    assert out.keys() == {"center"}
    assert torch.equal(out["center"], torch.tensor(5.0, dtype=torch.float64))  # 1² + 2²
    layer.eval()
    with collecting_losses() as out:
        layer(h_of([0.0, 0.0]))
    assert out == {}


def test_terms_are_summed_per_name_and_keep_the_graph():
    """A layer called twice contributes both terms; two names stay apart; gradients reach the centre."""
    layer, other = Center(), Center("other")
    with collecting_losses() as out:
        layer(h_of([0.0, 0.0]))  # 5
        layer(h_of([1.0, 0.0]))  # 0 + 4
        other(h_of([1.0, -1.0]))  # 0 + 1
    assert values(out) == {"center": 9.0, "other": 1.0}
    (g,) = torch.autograd.grad(out["center"], layer.c)
    # d/dc [‖(0,0) − c‖² + ‖(1,0) − c‖²] = 2(c − (0,0)) + 2(c − (1,0)) = (2, −8) at c = (1, −2)
    assert torch.equal(g, h_of(2.0, -8.0))


def test_non_scalar_is_rejected():
    class Bad(nn.Module):
        def forward(self, h):
            add_loss(self, h.pow(2).sum(1), "bad")
            return h

    with pytest.raises(ValueError, match=r"scalar tensor, got shape \(2,\)"), collecting_losses():
        Bad()(h_of([1.0, 2.0], [3.0, 4.0]))


def test_nested_blocks_are_isolated():
    layer = Center()
    with collecting_losses() as outer:
        layer(h_of([0.0, 0.0]))  # 5 → outer
        with collecting_losses() as inner:
            layer(h_of([1.0, 0.0]))  # 4 → inner only
        layer(h_of([1.0, -1.0]))  # 1 → outer again after the inner block closed
    assert values(inner) == {"center": 4.0}
    assert values(outer) == {"center": 6.0}
    with collecting_losses() as after:
        pass
    assert after == {}  # nothing left over from earlier blocks
