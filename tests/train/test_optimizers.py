"""The optimizer wrappers against their formulas (float64): hand-computed SGD and Adam steps, torch's AdamW
and per-group learning rates as references, accumulation = one large batch, Lookahead's closed form, lazy
rows bit-unchanged (weights and Adam state), the EMA's bias-corrected read-out, state_dict round trips
that continue bit-identically, schedulers through the stack, and KexueError on bad arguments."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from helpers import assert_bit_identical, weights
from kexue.errors import KexueError
from kexue.train.lr_schedule import piecewise_linear, piecewise_linear_lr
from kexue.train.optimizers import (
    DecoupledWeightDecay,
    GradientAccumulation,
    LayerAdaptation,
    LazyUpdates,
    Lookahead,
    ParamwiseLR,
    WeightEMA,
    wrappers,
)

F64 = torch.float64


class Tiny(nn.Module):
    """token ids (B, T) → embedding (B, T, D) → mean over T → Linear → LayerNorm → (B, 2)."""

    def __init__(self, gen: torch.Generator, vocab: int = 6, dim: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, dtype=F64)
        self.head = nn.Linear(dim, 2, dtype=F64)
        self.norm = nn.LayerNorm(2, dtype=F64)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=F64))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.head(self.embedding(tokens).mean(1)))  # (B, 2)


def loss_of(model: nn.Module, tokens: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (model(tokens) - target).pow(2).mean()


def batch(gen: torch.Generator, n: int = 8, vocab: int = 6, tokens: list[int] | None = None):
    pool = torch.tensor(tokens if tokens is not None else list(range(vocab)))
    ids = pool[torch.randint(len(pool), (n, 4), generator=gen)]
    return ids, torch.randn(n, 2, generator=gen, dtype=F64)


def train(opt, model, batches, *, sched=None) -> None:
    for ids, y in batches:
        loss_of(model, ids, y).backward()
        opt.step()
        if sched is not None and getattr(opt, "updated", True):
            sched.step()
        opt.zero_grad()


def params_with_grads(gen, shapes=((3,), (2, 2))):
    """Loose float64 parameters with hand-set gradients (the wrappers only read .grad)."""
    ps = [nn.Parameter(torch.randn(s, generator=gen, dtype=F64)) for s in shapes]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=gen, dtype=F64)
    return ps


# --------------------------------------------------------------------------------------------- decay
def test_weight_decay_hand_step_sgd_and_adam(gen):
    """SGD: θ₁ = θ₀ − ηg − ηλθ₀. Adam's first step has m̂ = g, v̂ = g²: θ₁ = θ₀ − ηg/(|g|+ε) − ηλθ₀."""
    eta, lam, eps = 0.1, 0.3, 1e-8
    for make, update in (
        (lambda ps: torch.optim.SGD(ps, lr=eta), lambda g: g),
        (lambda ps: torch.optim.Adam(ps, lr=eta, eps=eps), lambda g: g / (g.abs() + eps)),
    ):
        a, b = params_with_grads(gen)
        theta = [a.detach().clone(), b.detach().clone()]
        opt = DecoupledWeightDecay(make([a, b]), [("w", a), ("bias", b)], lam, exclude=("bias",))
        opt.step()
        torch.testing.assert_close(
            a, theta[0] - eta * update(a.grad) - eta * lam * theta[0], rtol=1e-14, atol=0
        )
        torch.testing.assert_close(b, theta[1] - eta * update(b.grad), rtol=1e-14, atol=0)  # excluded


def test_weight_decay_over_adam_is_torch_adamw(gen):
    """Adam's update does not read θ, so θ' − ηλθ equals AdamW's θ(1 − ηλ) − update, step after step."""
    model = Tiny(gen)
    twin = copy.deepcopy(model)
    ours = DecoupledWeightDecay(torch.optim.Adam(model.parameters(), lr=0.05), model.named_parameters(), 0.1)
    ref = torch.optim.AdamW(twin.parameters(), lr=0.05, weight_decay=0.1)
    data = [batch(gen) for _ in range(6)]
    train(ours, model, data)
    train(ref, twin, data)
    for p, q in zip(model.parameters(), twin.parameters()):  # the two round differently; 6 steps amplify it
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_weight_decay_follows_the_scheduled_lr(gen):
    """The decay uses the group's current η, so a warm-up at η = 0 leaves θ untouched."""
    (a,) = params_with_grads(gen, shapes=((4,),))
    theta = a.detach().clone()
    opt = DecoupledWeightDecay(torch.optim.SGD([a], lr=0.5), [("w", a)], 0.2)
    sched = piecewise_linear_lr(opt, {10: 1.0})  # η = 0 at the first update
    opt.step()
    assert torch.equal(a, theta)
    sched.step()
    opt.step()  # η = 0.5 · 0.1
    torch.testing.assert_close(a, theta - 0.05 * a.grad - 0.05 * 0.2 * theta, rtol=1e-14, atol=0)


# --------------------------------------------------------------------------------------------- LAMB
def test_layer_adaptation_hand_step_sgd(gen):
    """Δ = −ηg, so θ₁ = θ₀ − η‖θ₀‖ g/‖g‖ per tensor; the excluded tensor takes the plain step."""
    a, b = params_with_grads(gen)
    theta = [a.detach().clone(), b.detach().clone()]
    eta = 0.01
    opt = LayerAdaptation(torch.optim.SGD([a, b], lr=eta), [("w", a), ("norm.w", b)], exclude=("norm",))
    opt.step()
    torch.testing.assert_close(
        a, theta[0] - eta * theta[0].norm() * a.grad / a.grad.norm(), rtol=1e-14, atol=0
    )
    torch.testing.assert_close(b, theta[1] - eta * b.grad, rtol=1e-14, atol=0)
    assert torch.isclose((a - theta[0]).norm(), eta * theta[0].norm(), rtol=1e-13)  # step length η‖θ‖


def test_lamb_is_adaptation_over_decay_over_adam(gen):
    """LAMB's first step (You et al. 2020, Alg. 2): u = g/(|g|+ε) + λθ₀, θ₁ = θ₀ − η‖θ₀‖ u/‖u‖."""
    (a,) = params_with_grads(gen, shapes=((5, 3),))
    theta, g = a.detach().clone(), a.grad.clone()
    eta, lam, eps = 0.02, 0.01, 1e-6
    names = [("w", a)]
    opt = LayerAdaptation(DecoupledWeightDecay(torch.optim.Adam([a], lr=eta, eps=eps), names, lam), names)
    opt.step()
    u = g / (g.abs() + eps) + lam * theta
    torch.testing.assert_close(a, theta - eta * theta.norm() * u / u.norm(), rtol=1e-13, atol=0)


def test_layer_adaptation_zero_weight_takes_the_plain_step(gen):
    (a,) = params_with_grads(gen, shapes=((3,),))
    with torch.no_grad():
        a.zero_()
    LayerAdaptation(torch.optim.SGD([a], lr=0.1), [("w", a)]).step()
    torch.testing.assert_close(a, -0.1 * a.grad, rtol=1e-15, atol=0)  # r = 1 when ‖θ‖ = 0


# --------------------------------------------------------------------------------------------- accumulation
def test_accumulation_equals_one_large_batch_sgd(gen):
    """k micro-batches of equal size: the mean of their mean gradients is the large batch's gradient."""
    k = 3
    model = Tiny(gen)
    twin = copy.deepcopy(model)
    big = [batch(gen, n=12) for _ in range(4)]
    micro = [(ids[i::k], y[i::k]) for ids, y in big for i in range(k)]  # each big batch in k parts
    momentum = dict(lr=0.1, momentum=0.9)
    train(GradientAccumulation(torch.optim.SGD(model.parameters(), **momentum), steps=k), model, micro)
    train(torch.optim.SGD(twin.parameters(), **momentum), twin, big)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_accumulation_adam_counts_updates(gen):
    """Adam inside takes one step per k calls (its bias correction counts updates, not micro-batches)."""
    k = 4
    model = Tiny(gen)
    twin = copy.deepcopy(model)
    big = [batch(gen, n=8) for _ in range(3)]
    micro = [(ids[i::k], y[i::k]) for ids, y in big for i in range(k)]
    opt = GradientAccumulation(torch.optim.Adam(model.parameters(), lr=0.01), steps=k)
    flags = []
    for ids, y in micro:
        loss_of(model, ids, y).backward()
        opt.step()
        flags.append(opt.updated)
        opt.zero_grad()
    assert flags == [False, False, False, True] * 3
    assert all(s["step"].item() == 3 for s in opt.state.values())  # 12 micro-batches / k = 3 updates
    train(torch.optim.Adam(twin.parameters(), lr=0.01), twin, big)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_accumulation_must_be_outermost(gen):
    (a,) = params_with_grads(gen, shapes=((2,),))
    inner = GradientAccumulation(torch.optim.SGD([a], lr=0.1), steps=2)
    with pytest.raises(KexueError, match="outermost"):
        Lookahead(inner)


# --------------------------------------------------------------------------------------------- lookahead
@settings(max_examples=15, deadline=None)
@given(k=st.integers(1, 5), alpha=st.floats(0.05, 1.0), seed=st.integers(0, 2**31))
def test_lookahead_closed_form(k, alpha, seed):
    """After k updates φ₁ = θ₀ + α(θ_k − θ₀) with θ_k the plain optimizer's; after 2k the same from φ₁."""
    gen = torch.Generator().manual_seed(seed)
    model = Tiny(gen)
    plain = copy.deepcopy(model)
    data = [batch(gen, n=4) for _ in range(2 * k)]
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=k, alpha=alpha)
    phi = weights(plain)
    for block in (data[:k], data[k:]):
        plain.load_state_dict(phi)  # SGD without momentum has no state: the fast weights restart at φ
        train(torch.optim.SGD(plain.parameters(), lr=0.1), plain, block)
        phi = {n: phi[n] + alpha * (v - phi[n]) for n, v in weights(plain).items()}
        train(opt, model, block)
        for n, v in weights(model).items():
            torch.testing.assert_close(v, phi[n], rtol=1e-13, atol=1e-14)


# --------------------------------------------------------------------------------------------- lazy
def test_lazy_rows_bit_unchanged_weights_and_adam_state(gen):
    """A second step that uses tokens {1, 3} only: the other rows of the embedding and of Adam's m and v
    keep their exact bits (decay inside included); rows 1 and 3 equal the non-lazy update's."""
    model = Tiny(gen)
    twin = copy.deepcopy(model)

    def stack(m):
        decayed = DecoupledWeightDecay(torch.optim.Adam(m.parameters(), lr=0.05), m.named_parameters(), 0.1)
        return decayed, LazyUpdates(decayed, m.named_parameters(), include=("embedding",))

    _, lazy = stack(model)
    reference, _ = stack(twin)
    first, second = batch(gen), batch(gen, tokens=[1, 3])
    train(lazy, model, [first])
    train(reference, twin, [first])
    emb = model.embedding.weight
    before = {"w": emb.detach().clone(), **{k: v.clone() for k, v in lazy.state[emb].items()}}
    train(lazy, model, [second])
    train(reference, twin, [second])
    idle, used = [0, 2, 4, 5], [1, 3]
    state, ref_state = lazy.state[emb], reference.state[twin.embedding.weight]
    assert torch.equal(emb[idle], before["w"][idle])
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(state[key][idle], before[key][idle])
        torch.testing.assert_close(state[key][used], ref_state[key][used], rtol=0, atol=0)
    torch.testing.assert_close(emb[used], twin.embedding.weight[used], rtol=1e-15, atol=0)
    assert not torch.equal(
        twin.embedding.weight[idle], before["w"][idle]
    )  # non-lazy: momentum and decay move them
    torch.testing.assert_close(model.head.weight, twin.head.weight, rtol=0, atol=0)  # not included: as plain


def test_lazy_refuses_sparse_gradients_and_empty_matches(gen):
    emb = nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([[1, 2]])).sum().backward()
    opt = LazyUpdates(torch.optim.SGD(emb.parameters(), lr=0.1), emb.named_parameters(), include=("weight",))
    with pytest.raises(KexueError, match="sparse"):
        opt.step()
    with pytest.raises(KexueError, match="no parameter"):
        LazyUpdates(torch.optim.SGD(emb.parameters(), lr=0.1), emb.named_parameters(), include=("embed",))


# --------------------------------------------------------------------------------------------- EMA
def test_weight_ema_bias_corrected_read_out_and_restore(gen):
    """Θ̂_n = (1−m) Σ_k m^{n−k} θ_k / (1−mⁿ) over the weights after each update; the trajectory is the
    plain optimizer's, and `averaged_weights` gives the trained weights back bit-for-bit."""
    m, n = 0.9, 5
    model = Tiny(gen)
    twin = copy.deepcopy(model)
    opt = WeightEMA(torch.optim.SGD(model.parameters(), lr=0.1), model, decay=m)
    data = [batch(gen) for _ in range(n)]
    history = []
    for b in data:
        train(opt, model, [b])
        history.append(weights(model))
    train(torch.optim.SGD(twin.parameters(), lr=0.1), twin, data)
    assert_bit_identical(weights(model), weights(twin))
    trained = weights(model)
    with opt.averaged_weights():
        for name, v in model.named_parameters():
            ref = sum((1 - m) * m ** (n - k) * history[k - 1][name] for k in range(1, n + 1)) / (1 - m**n)
            torch.testing.assert_close(v.detach(), ref, rtol=1e-13, atol=1e-15)
    assert_bit_identical(weights(model), trained)


# --------------------------------------------------------------------------------------------- paramwise
def test_paramwise_lr_is_a_per_group_learning_rate(gen):
    """Adam with multiplier m on 'head' = Adam with a param group at lr m·η (the update is linear in η);
    several matching keys multiply."""
    model = Tiny(gen)
    twin = copy.deepcopy(model)
    opt = ParamwiseLR(
        torch.optim.Adam(model.parameters(), lr=0.01),
        model.named_parameters(),
        {"head": 3.0, "weight": 0.5},
    )
    groups = {
        "head.weight": 1.5,
        "head.bias": 3.0,
        "embedding.weight": 0.5,
        "norm.weight": 0.5,
        "norm.bias": 1,
    }
    named = dict(twin.named_parameters())
    ref = torch.optim.Adam([{"params": [named[n]], "lr": 0.01 * m} for n, m in groups.items()])
    data = [batch(gen) for _ in range(4)]
    train(opt, model, data)
    train(ref, twin, data)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)  # rounding, amplified by Adam


# --------------------------------------------------------------------------------------------- the stack
def full_stack(model: nn.Module):
    named = list(model.named_parameters())
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    opt = DecoupledWeightDecay(opt, named, 0.01, exclude=("bias", "norm"))
    opt = LazyUpdates(opt, named, include=("embedding",))
    opt = LayerAdaptation(opt, named, exclude=("bias", "norm"))
    opt = ParamwiseLR(opt, named, {"head": 2.0})
    opt = Lookahead(opt, k=3, alpha=0.5)
    opt = WeightEMA(opt, model, decay=0.9)
    return GradientAccumulation(opt, steps=2)


def test_state_dict_round_trip_continues_bit_identically(gen):
    """Saved mid-accumulation and between Lookahead syncs, a fresh stack on a fresh model continues with
    the same weights, Adam state and EMA as the original."""
    model = Tiny(gen)
    opt = full_stack(model)
    sched = piecewise_linear_lr(opt, {4: 1.0, 10: 0.2})
    data = [batch(gen, tokens=[0, 2, 3] if i % 3 else None) for i in range(12)]
    train(opt, model, data[:5], sched=sched)  # 5 micro-batches: 2 updates and one half-accumulated
    saved_opt, saved_model = copy.deepcopy(opt.state_dict()), weights(model)
    saved_sched = copy.deepcopy(sched.state_dict())

    fresh = Tiny(torch.Generator().manual_seed(99))
    fresh.load_state_dict(saved_model)
    opt2 = full_stack(fresh)
    sched2 = piecewise_linear_lr(opt2, {4: 1.0, 10: 0.2})  # built before loading, as torch expects
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    train(opt, model, data[5:], sched=sched)
    train(opt2, fresh, data[5:], sched=sched2)
    assert_bit_identical(weights(model), weights(fresh))
    inner, inner2 = list(wrappers(opt))[-1], list(wrappers(opt2))[-1]
    for p, q in zip(model.parameters(), fresh.parameters()):
        assert_bit_identical(inner.state[p], inner2.state[q])
    with list(wrappers(opt))[1].averaged_weights(), list(wrappers(opt2))[1].averaged_weights():
        assert_bit_identical(weights(model), weights(fresh))


def test_schedulers_and_zero_grad_reach_the_inner_optimizer(gen):
    model = Tiny(gen)
    opt = full_stack(model)
    base = list(wrappers(opt))[-1]
    assert isinstance(base, torch.optim.Adam) and opt.param_groups is base.param_groups
    sched = piecewise_linear_lr(opt, {4: 1.0})
    for n in range(3):
        assert base.param_groups[0]["lr"] == pytest.approx(0.02 * piecewise_linear(n, {4: 1.0}))
        loss_of(model, *batch(gen)).backward()
        opt.step()
        opt.zero_grad()
        assert all(p.grad is None for p in model.parameters())
        sched.step()


def test_closure_is_evaluated_once(gen):
    model = Tiny(gen)
    ids, y = batch(gen)
    calls = []

    def closure():
        calls.append(1)
        loss = loss_of(model, ids, y)
        loss.backward()
        return loss

    opt = DecoupledWeightDecay(torch.optim.SGD(model.parameters(), lr=0.1), model.named_parameters(), 0.1)
    before = weights(model)
    loss = opt.step(closure)
    assert len(calls) == 1 and loss.item() > 0
    assert not torch.equal(weights(model)["head.weight"], before["head.weight"])


def test_loading_into_another_stack_is_refused(gen):
    model = Tiny(gen)
    saved = full_stack(model).state_dict()
    with pytest.raises(KexueError, match="rebuild the same stack"):
        Lookahead(torch.optim.Adam(model.parameters())).load_state_dict(saved)
    with pytest.raises(KexueError, match="plain optimizer"):
        Lookahead(torch.optim.Adam(model.parameters())).load_state_dict(
            torch.optim.Adam(model.parameters()).state_dict()
        )


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda m, o, n: DecoupledWeightDecay(m, n, 0.1), "wraps a torch.optim.Optimizer"),
        (lambda m, o, n: DecoupledWeightDecay(o, n, -0.1), "weight_decay"),
        (lambda m, o, n: DecoupledWeightDecay(o, n, float("nan")), "weight_decay"),
        (lambda m, o, n: DecoupledWeightDecay(o, n, 0.1, exclude="bias"), "substrings"),
        (lambda m, o, n: DecoupledWeightDecay(o, n[:2], 0.1), "missing from named_parameters"),
        (lambda m, o, n: LayerAdaptation(o, n, exclude=("",)), "substrings"),
        (lambda m, o, n: LazyUpdates(o, n, include=()), "at least one"),
        (lambda m, o, n: ParamwiseLR(o, n, {"head": -1.0}), "multiplier"),
        (lambda m, o, n: ParamwiseLR(o, n, {}), "non-empty dict"),
        (lambda m, o, n: Lookahead(o, k=0), "k"),
        (lambda m, o, n: Lookahead(o, alpha=0.0), "alpha"),
        (lambda m, o, n: Lookahead(o, alpha=1.5), "alpha"),
        (lambda m, o, n: WeightEMA(o, m, decay=1.0), "decay"),
        (lambda m, o, n: GradientAccumulation(o, steps=0), "steps"),
        (lambda m, o, n: GradientAccumulation(o, steps=2.0), "steps"),
    ],
)
def test_bad_arguments_raise_kexue_error(gen, build, match):
    model = Tiny(gen)
    with pytest.raises(KexueError, match=match):
        build(model, torch.optim.SGD(model.parameters(), lr=0.1), list(model.named_parameters()))
