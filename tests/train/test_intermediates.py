"""Intermediate outputs (post 6575, §输出中间变量).

`capture_outputs` returns exactly what the sub-modules return and leaves no hook behind; `record` is free
outside `capture_records` and, inside, exposes a value that is no layer's output (the post's attention
matrix via `K.function`) under its qualified name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.train.intermediates import capture_outputs, capture_records, record


class Attention(nn.Module):
    """Single-head self-attention recording its attention matrix A = softmax(QKᵀ/√D), no layer's output."""

    def __init__(self, d: int, gen: torch.Generator) -> None:
        super().__init__()
        self.q = nn.Parameter(torch.randn(d, d, generator=gen, dtype=torch.float64))
        self.k = nn.Parameter(torch.randn(d, d, generator=gen, dtype=torch.float64))

    def scores(self, x):
        return torch.softmax(
            (x @ self.q) @ (x @ self.k).transpose(1, 2) / x.shape[-1] ** 0.5, -1
        )  # (B, T, T)

    def forward(self, x):  # x: (B, T, D)
        a = self.scores(x)
        record(self, "scores", a)
        return a @ x


class Net(nn.Module):
    def __init__(self, gen: torch.Generator) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 4, dtype=torch.float64)
        self.blocks = nn.ModuleList([Attention(4, gen), Attention(4, gen)])
        self.head = nn.Linear(4, 2, dtype=torch.float64)
        with torch.no_grad():
            for p in (*self.embed.parameters(), *self.head.parameters()):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))

    def forward(self, x):
        h = self.embed(x)
        for blk in self.blocks:
            h = blk(h)
        record(self, "pooled", h.mean(1))
        return self.head(h.mean(1))


@pytest.fixture
def net(gen):
    return Net(gen), torch.randn(3, 5, 4, generator=gen, dtype=torch.float64)  # model, x (B, T, D)


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_capture_outputs_equals_calling_the_submodules(net):
    model, x = net
    with capture_outputs(model, ["embed", "blocks.0", "blocks.1", "head"]) as out:
        y = model(x)
    h0 = model.embed(x)  # by hand
    h1 = model.blocks[0](h0)
    h2 = model.blocks[1](h1)
    for name, ref in (("embed", h0), ("blocks.0", h1), ("blocks.1", h2), ("head", y)):
        assert torch.equal(out[name], ref), name
        assert not out[name].requires_grad  # detached by default
    assert torch.equal(model.head(h2.mean(1)), y)


def test_capture_outputs_keeps_the_last_call_and_removes_its_hooks(net):
    model, x = net
    with capture_outputs(model, ["blocks.1"]) as out:
        model(x)
        model(2 * x)
    ref = model.blocks[1](model.blocks[0](model.embed(2 * x)))
    assert torch.equal(out["blocks.1"], ref)
    assert hook_count(model) == 0
    model(x)  # a later forward no longer writes into the dict
    assert torch.equal(out["blocks.1"], ref)
    with pytest.raises(RuntimeError, match="body"), capture_outputs(model, ["embed"]):
        raise RuntimeError("body")
    assert hook_count(model) == 0  # removed on error too


def test_unknown_name_lists_the_available_ones(net):
    model, _ = net
    with pytest.raises(KeyError, match=r"no sub-module named 'blocks\.2'.*embed, blocks, blocks\.0"):
        with capture_outputs(model, ["embed", "blocks.2"]):
            pass
    assert hook_count(model) == 0  # nothing was registered


def test_capture_outputs_without_detach_keeps_the_graph(net):
    model, x = net
    with capture_outputs(model, ["embed"], detach=False) as out:
        model(x)
    (g,) = torch.autograd.grad(out["embed"].sum(), model.embed.bias)
    assert torch.equal(g, torch.full((4,), 15.0, dtype=torch.float64))  # d Σ(xWᵀ + b)/db = B·T per entry


def test_record_is_a_no_op_outside_capture_records(net):
    model, x = net
    before = [dict(m.__dict__) for m in model.modules()]
    model(x)  # no error, and no module gained or changed an attribute
    assert [dict(m.__dict__) for m in model.modules()] == before


def test_record_exposes_an_inner_value_under_its_qualified_name(net):
    model, x = net
    with capture_records(model) as rec:
        model(x)
    assert set(rec) == {"blocks.0.scores", "blocks.1.scores", "pooled"}
    h0 = model.embed(x)
    a0 = model.blocks[0].scores(h0)
    a1 = model.blocks[1].scores(a0 @ h0)
    assert torch.equal(rec["blocks.0.scores"], a0) and torch.equal(rec["blocks.1.scores"], a1)
    torch.testing.assert_close(rec["blocks.0.scores"].sum(-1), torch.ones(3, 5, dtype=torch.float64))
    assert not rec["pooled"].requires_grad
    assert all("_kexue_record_sink" not in m.__dict__ for m in model.modules())  # sinks removed
    model(2 * x)
    assert torch.equal(rec["blocks.0.scores"], a0)  # a forward after the block records nothing


def test_capture_records_on_a_submodule_uses_names_relative_to_it(net):
    model, x = net
    with capture_records(model.blocks) as rec:
        model(x)
    assert set(rec) == {"0.scores", "1.scores"}


def test_record_without_detach_keeps_the_graph(net):
    model, x = net
    with capture_records(model, detach=False) as rec:
        model(x)
    a = rec["blocks.0.scores"]
    (g,) = torch.autograd.grad(a[:, 0, 1].sum(), model.blocks[0].q)
    h0 = model.embed(x).detach()
    q = model.blocks[0].q.detach().requires_grad_(True)
    ref = torch.softmax((h0 @ q) @ (h0 @ model.blocks[0].k.detach()).transpose(1, 2) / 2.0, -1)
    (g_ref,) = torch.autograd.grad(ref[:, 0, 1].sum(), q)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-14)
    assert g.abs().sum() > 0
