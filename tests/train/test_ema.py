"""Weight EMA (post 6575, §权重滑动平均) with bias correction: after θ_1 … θ_n the read-out is the exact
weighted average (1−α) Σ_k α^{n−k} θ_k / (1−α^n); `applied` swaps it in and the trained weights back
bit-for-bit; the state round-trips; integer parameters are skipped; low-precision models keep a float32
shadow."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from helpers import assert_bit_identical, weights
from kexue.train.ema import EMA


class Params(nn.Module):
    """Two float parameters (to be set by hand) and an integer one the EMA must leave alone."""

    def __init__(self, dtype=torch.float64) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(3, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(2, 2, dtype=dtype))
        self.count = nn.Parameter(torch.tensor([1, 2]), requires_grad=False)
        self.register_buffer("stat", torch.ones(2, dtype=dtype))

    def set(self, theta: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in theta.items():
                getattr(self, k).copy_(v)


def draw(gen, dtype=torch.float64):
    return {
        "a": torch.randn(3, generator=gen, dtype=dtype),
        "b": torch.randn(2, 2, generator=gen, dtype=dtype),
    }


@settings(max_examples=40, deadline=None)
@given(decay=st.floats(0.0, 0.999), n=st.integers(1, 25), seed=st.integers(0, 2**32))
def test_read_out_is_the_weighted_average(decay, n, seed):
    """Θ̂_n = (1−α) Σ_k α^{n−k} θ_k / (1−α^n), in float64 (the module docstring's recursion, summed)."""
    gen = torch.Generator().manual_seed(seed)
    model, ema = Params(), None
    thetas = []
    for _ in range(n):
        thetas.append(draw(gen))
        model.set(thetas[-1])
        ema = ema or EMA(model, decay)
        ema.update(model)
    avg = ema.averaged()
    assert set(avg) == {"a", "b"}
    for name in avg:
        ref = sum((1 - decay) * decay ** (n - k) * thetas[k - 1][name] for k in range(1, n + 1))
        torch.testing.assert_close(avg[name], ref / (1 - decay**n), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.999])
def test_constant_weights_read_out_unchanged(gen, decay):
    """Σ_k weights = 1 exactly, so constant θ comes back (to float64 rounding of the recursion: a few ulp)."""
    model = Params()
    theta = draw(gen)
    model.set(theta)
    ema = EMA(model, decay)
    for _ in range(30):
        ema.update(model)
    for name, v in ema.averaged().items():
        torch.testing.assert_close(v, theta[name], rtol=4e-16 * 30, atol=0)
    if decay == 0.0:  # α = 0: the read-out is the last θ itself
        assert_bit_identical(ema.averaged(), theta)


def test_nothing_before_the_first_update(gen):
    model = Params()
    model.set(draw(gen))
    ema = EMA(model, 0.9)
    assert ema.averaged() == {}
    before = weights(model)
    with ema.applied(model) as m:
        assert m is model
        assert_bit_identical(weights(model), before)


def test_applied_swaps_in_and_restores_bit_for_bit(gen):
    model = Params()
    ema = EMA(model, 0.7)
    for _ in range(5):
        model.set(draw(gen))
        ema.update(model)
    model.set(draw(gen))  # trained weights ≠ averaged ones
    trained = weights(model)
    avg = ema.averaged()
    with ema.applied(model) as m:
        inside = weights(m)
    for k in ("a", "b"):
        assert torch.equal(inside[k], avg[k])
        assert not torch.equal(inside[k], trained[k])
    assert torch.equal(inside["count"], trained["count"]) and torch.equal(inside["stat"], trained["stat"])
    assert_bit_identical(weights(model), trained)
    with pytest.raises(RuntimeError, match="boom"), ema.applied(model):
        assert torch.equal(model.a.detach(), avg["a"])
        raise RuntimeError("boom")
    assert_bit_identical(weights(model), trained)


def test_state_dict_round_trip(gen):
    model = Params()
    ema = EMA(model, 0.8)
    for _ in range(4):
        model.set(draw(gen))
        ema.update(model)
    other = EMA(Params(), 0.5)  # decay and count come from the state
    other.load_state_dict(ema.state_dict())
    assert (other.decay, other.num_updates) == (0.8, 4)
    assert_bit_identical(other.averaged(), ema.averaged())
    model.set(draw(gen))
    ema.update(model)
    other.update(model)
    assert_bit_identical(other.averaged(), ema.averaged())  # and they continue alike
    with pytest.raises(ValueError, match="another model"):
        EMA(nn.Linear(2, 2), 0.8).load_state_dict(ema.state_dict())


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_invalid_decay(decay):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        EMA(Params(), decay)


def test_integer_parameters_are_skipped(gen):
    model = Params()
    ema = EMA(model, 0.9)
    assert ema.names == ["a", "b"]
    model.set(draw(gen))
    ema.update(model)
    with torch.no_grad():
        model.count.add_(5)
    with ema.applied(model):
        assert torch.equal(model.count, torch.tensor([6, 7]))  # untouched by the swap


def test_bfloat16_model_keeps_a_float32_shadow(gen):
    """bf16 → f32 is exact, so a bf16 model's EMA equals a float32 model's EMA fed the same values — whereas
    a bf16 shadow would round every update (α = 0.99: (1−α)θ is below bf16's resolution of Θ ≈ θ)."""
    low, high = Params(torch.bfloat16), Params(torch.float32)
    ema_low, ema_high = EMA(low, 0.99), EMA(high, 0.99)
    assert all(s.dtype == torch.float32 for s in ema_low.shadow)
    for _ in range(20):
        theta = draw(gen, torch.bfloat16)
        low.set(theta)
        high.set({k: v.float() for k, v in theta.items()})
        ema_low.update(low)
        ema_high.update(high)
    assert_bit_identical(ema_low.averaged(), ema_high.averaged())
    with ema_low.applied(low):  # swapped in at the model's precision
        assert torch.equal(low.a.detach(), ema_high.averaged()["a"].bfloat16())
