"""piecewise_linear (bert4keras's warm-up schedule): values at and between the knots, flat ends, agreement
with numpy's linear interpolation, and the LambdaLR factory's learning rate per optimizer update."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.errors import KexueError
from kexue.train.lr_schedule import piecewise_linear, piecewise_linear_lr

WARMUP = {1000: 1.0, 2000: 0.1}  # the usual bert4keras warm-up (reference notes §1.7)


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0, 0.0),  # the implicit (0, 0) knot
        (500, 0.5),  # halfway up the warm-up
        (1000, 1.0),  # at the first knot
        (1500, 0.55),  # halfway between 1 and 0.1
        (2000, 0.1),  # at the last knot
        (2001, 0.1),
        (10**6, 0.1),  # constant after the last knot
    ],
)
def test_warmup_at_and_between_the_knots(t, expected):
    assert piecewise_linear(t, WARMUP) == pytest.approx(expected, abs=1e-15)


def test_from_zero_false_is_flat_before_the_first_knot():
    assert piecewise_linear(0, WARMUP, from_zero=False) == 1.0
    assert piecewise_linear(999, WARMUP, from_zero=False) == 1.0
    assert piecewise_linear(1500, WARMUP, from_zero=False) == pytest.approx(0.55)
    assert piecewise_linear(7, {5: 2.0}, from_zero=False) == 2.0  # a single knot: constant everywhere
    assert piecewise_linear(0, {0: 3.0, 10: 1.0}) == 3.0  # a knot at 0 replaces the implicit (0, 0)


@settings(max_examples=60, deadline=None)
@given(
    knots=st.dictionaries(st.integers(0, 10_000), st.floats(-5, 5), min_size=1, max_size=6),
    ts=st.lists(st.floats(-100, 20_000), min_size=1, max_size=20),
    from_zero=st.booleans(),
)
def test_equals_numpy_interpolation(knots, ts, from_zero):
    """np.interp with its flat ends is the same function (an independent implementation)."""
    items = sorted(knots.items())
    if from_zero and items[0][0] != 0:
        items = [(0, 0.0), *items]
    xs, ys = zip(*items)
    expected = np.interp(ts, xs, ys)
    got = piecewise_linear(torch.tensor(ts, dtype=torch.float64), knots, from_zero=from_zero)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert piecewise_linear(ts[0], knots, from_zero=from_zero) == pytest.approx(expected[0], abs=1e-12)


def test_tensor_in_tensor_out_keeps_shape():
    t = torch.arange(0, 3000, 250).view(3, 4)
    out = piecewise_linear(t, WARMUP)
    assert out.shape == (3, 4) and out.dtype == torch.float64
    assert out[0, 2].item() == 0.5  # t = 500


def test_lambda_lr_sets_the_lr_of_each_update():
    """The n-th update (n = 0, 1, …) runs at base_lr · piecewise_linear(n), as bert4keras's iterations."""
    p = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([p], lr=0.2)
    sched = piecewise_linear_lr(opt, {4: 1.0, 8: 0.5})
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.2 * piecewise_linear(n, {4: 1.0, 8: 0.5}) for n in range(12)]
    assert seen == pytest.approx(expected, abs=1e-15)
    assert seen[0] == 0.0 and seen[4] == pytest.approx(0.2) and seen[6] == pytest.approx(0.15)


@pytest.mark.parametrize(
    "schedule",
    [{}, {1000: float("nan")}, {-5: 1.0}, [(1000, 1.0)], {float("inf"): 1.0}],
)
def test_bad_schedules_are_refused(schedule):
    with pytest.raises(KexueError, match="piecewise_linear"):
        piecewise_linear(3, schedule)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=0.1)
    with pytest.raises(KexueError):
        piecewise_linear_lr(opt, schedule)
