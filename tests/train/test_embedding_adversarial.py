"""Adversarial training on the embedding matrix (float64): FGM's δ = εg/‖g‖ and the bit-exact restore, the
FGM training step's gradients against a functional reference, PGD inside the ε-ball and equal to a hand
loop through torch.func, and the gradient penalty L + ½ε‖∇_e L‖² by closed form, torch.func and gradcheck."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from helpers import assert_bit_identical, weights
from kexue.errors import KexueError
from kexue.train.embedding_adversarial import (
    embedding_gradient_penalty,
    embedding_weight,
    fgm,
    fgm_delta,
    perturbed,
    pgd,
    pgd_delta,
)
from kexue.train.intermediates import capture_outputs

F64 = torch.float64


class TokenModel(nn.Module):
    """ids (B, T) → embedding (B, T, D) → tanh → mean over T → Linear → logits (B, C)."""

    def __init__(self, gen: torch.Generator, vocab: int = 7, dim: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, dtype=F64)
        self.head = nn.Linear(dim, classes, dtype=F64)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=F64))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embedding(ids)).mean(1))  # (B, C)


def data(gen, n=5, t=4, vocab=7, classes=3):
    return torch.randint(vocab, (n, t), generator=gen), torch.randint(classes, (n,), generator=gen)


def loss_at(model, ids, y, **replaced):
    """The loss with some parameters replaced (torch.func; the model itself is not touched)."""
    params = dict(model.named_parameters()) | replaced
    return F.cross_entropy(functional_call(model, params, (ids,)), y)


def clean_backward(model, ids, y):
    model.zero_grad()
    F.cross_entropy(model(ids), y).backward()
    return model.embedding.weight.grad.clone()


# --------------------------------------------------------------------------------------------- FGM
def test_fgm_delta_and_bit_exact_restore(gen):
    model = TokenModel(gen)
    ids, y = data(gen)
    g = clean_backward(model, ids, y)
    before = weights(model)
    emb = embedding_weight(model, "embedding")
    with fgm(emb, epsilon=0.5):
        delta = emb.detach() - before["embedding.weight"]
        torch.testing.assert_close(delta, 0.5 * g / g.norm(), rtol=1e-12, atol=1e-15)
        assert torch.isclose(delta.norm(), torch.tensor(0.5, dtype=F64), rtol=1e-12)
        assert torch.equal(model.head.weight, before["head.weight"])  # only the embedding moves
    assert_bit_identical(weights(model), before)
    with pytest.raises(RuntimeError, match="inside"), fgm(emb, epsilon=0.5):
        raise RuntimeError("an error inside the block")
    assert_bit_identical(weights(model), before)  # restored on error too


def test_fgm_training_step_gradients(gen):
    """After the clean and the adversarial backward, every .grad is ∇L(E) + ∇L(E + δ) (a reference that
    evaluates both losses functionally, with δ built from its own gradient)."""
    model = TokenModel(gen)
    ids, y = data(gen)
    names = [n for n, _ in model.named_parameters()]
    g_clean = torch.autograd.grad(loss_at(model, ids, y), list(model.parameters()))
    e = model.embedding.weight.detach()
    e_adv = (e + 0.5 * g_clean[0] / g_clean[0].norm()).requires_grad_(True)
    others = [model.head.weight, model.head.bias]
    g_adv = torch.autograd.grad(loss_at(model, ids, y, **{"embedding.weight": e_adv}), [e_adv, *others])

    clean_backward(model, ids, y)
    with fgm(model.embedding.weight, epsilon=0.5):
        F.cross_entropy(model(ids), y).backward()
    for name, p, a, b in zip(names, model.parameters(), g_clean, g_adv):
        torch.testing.assert_close(p.grad, a + b, rtol=1e-12, atol=1e-14, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("bad", [0.0, float("nan"), float("inf")])
def test_fgm_degenerate_gradient_gives_no_perturbation(bad):
    g = torch.full((3, 2), bad, dtype=F64)
    assert torch.equal(fgm_delta(g, epsilon=0.5), torch.zeros(3, 2, dtype=F64))


# --------------------------------------------------------------------------------------------- PGD
def hand_pgd(model, ids, y, g0, epsilon, alpha, steps):
    """r₁ = Π(αg₀/‖g₀‖), r_{t+1} = Π(r_t + α g_t/‖g_t‖), g_t = ∇_E L(E + r_t) via torch.func.grad."""
    e = model.embedding.weight.detach()

    def project(r):
        return r if r.norm() <= epsilon else epsilon * r / r.norm()

    grad_e = torch.func.grad(lambda w: loss_at(model, ids, y, **{"embedding.weight": w}))
    r = project(alpha * g0 / g0.norm())
    for _ in range(steps - 1):
        g = grad_e(e + r)
        r = project(r + alpha * g / g.norm())
    return r


@settings(max_examples=25, deadline=None)
@given(
    epsilon=st.floats(0.01, 3.0),
    alpha=st.floats(0.01, 3.0),
    steps=st.integers(1, 4),
    seed=st.integers(0, 2**31),
)
def test_pgd_stays_in_the_ball_and_equals_the_hand_loop(epsilon, alpha, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    model = TokenModel(gen)
    ids, y = data(gen)
    g0 = clean_backward(model, ids, y)
    grads, before = {n: p.grad.clone() for n, p in model.named_parameters()}, weights(model)
    r = pgd_delta(
        lambda: F.cross_entropy(model(ids), y),
        model.embedding.weight,
        epsilon=epsilon,
        alpha=alpha,
        steps=steps,
    )
    assert r.norm() <= epsilon * (1 + 1e-12)
    torch.testing.assert_close(r, hand_pgd(model, ids, y, g0, epsilon, alpha, steps), rtol=1e-10, atol=1e-13)
    assert_bit_identical(weights(model), before)  # every evaluation restored the weight
    assert_bit_identical({n: p.grad for n, p in model.named_parameters()}, grads)  # .grad untouched
    if steps == 1:  # one step from 0: FGM of size min(α, ε)
        torch.testing.assert_close(r, fgm_delta(g0, epsilon=min(alpha, epsilon)), rtol=1e-12, atol=1e-15)


def test_pgd_context_perturbs_then_restores(gen):
    model = TokenModel(gen)
    ids, y = data(gen)
    clean_backward(model, ids, y)
    before = weights(model)
    emb = model.embedding.weight
    with pgd(lambda: F.cross_entropy(model(ids), y), emb, epsilon=0.2, alpha=0.15, steps=3):
        moved = emb.detach() - before["embedding.weight"]
        assert 0 < moved.norm() <= 0.2 * (1 + 1e-12)
    assert_bit_identical(weights(model), before)


# --------------------------------------------------------------------------------------------- penalty
def test_gradient_penalty_closed_form_on_a_linear_readout(gen):
    """L = Σ_{b,t} w·e_{b,t}: ∇_e L = w at every position, so the penalty is ½ε·B·T·‖w‖² and its gradient
    in w is ε·B·T·w on top of ∂L/∂w."""
    emb = nn.Embedding(6, 3, dtype=F64)
    w = torch.randn(3, generator=gen, dtype=F64, requires_grad=True)
    ids = torch.randint(6, (4, 5), generator=gen)
    e = emb(ids)  # (B, T, D)
    loss = (e @ w).sum()
    total = embedding_gradient_penalty(loss, e, epsilon=0.7)
    torch.testing.assert_close(total, loss + 0.5 * 0.7 * 20 * w.pow(2).sum(), rtol=1e-14, atol=0)
    (gw,) = torch.autograd.grad(total, w)
    torch.testing.assert_close(gw, e.sum((0, 1)).detach() + 0.7 * 20 * w.detach(), rtol=1e-13, atol=1e-14)


def test_gradient_penalty_on_the_captured_embedding_output(gen):
    """On the model, through capture_outputs: the value equals a torch.func reference, and the gradient of
    L + ½ε‖∇_e L‖² in the head weight passes gradcheck (the double backward is right)."""
    model = TokenModel(gen)
    ids, y = data(gen)

    def total(head_w):
        with capture_outputs(model, ["embedding"], detach=False) as out:
            logits = functional_call(model, {"head.weight": head_w}, (ids,), strict=False)
        return embedding_gradient_penalty(F.cross_entropy(logits, y), out["embedding"], epsilon=0.5)

    e = model.embedding(ids).detach()

    def loss_of_e(e):
        return F.cross_entropy(model.head(torch.tanh(e).mean(1)), y)

    ref = loss_of_e(e) + 0.25 * torch.func.grad(loss_of_e)(e).pow(2).sum()
    torch.testing.assert_close(total(model.head.weight), ref, rtol=1e-13, atol=0)
    assert torch.autograd.gradcheck(total, (model.head.weight.detach().clone().requires_grad_(True),))


def test_output_penalty_counts_each_occurrence(gen):
    """bert4keras penalises the gradient rows of each token occurrence; the matrix's gradient sums the rows
    of repeated tokens first. Without repeats the two coincide; with repeats they differ."""
    model = TokenModel(gen)
    y = torch.tensor([0, 2])
    for ids, same in (
        (torch.tensor([[0, 1, 2], [3, 4, 5]]), True),
        (torch.tensor([[1, 1, 2], [2, 1, 1]]), False),
    ):
        with capture_outputs(model, ["embedding"], detach=False) as out:
            loss = F.cross_entropy(model(ids), y)
        by_output = embedding_gradient_penalty(loss, out["embedding"], epsilon=1.0)
        by_matrix = embedding_gradient_penalty(loss, model.embedding.weight, epsilon=1.0)
        assert torch.isclose(by_output, by_matrix, rtol=1e-13) == same


# --------------------------------------------------------------------------------------------- errors
def test_bad_arguments_raise_kexue_error(gen):
    model = TokenModel(gen)
    ids, y = data(gen)
    emb = model.embedding.weight
    with pytest.raises(KexueError, match="no gradient"), fgm(emb):
        pass
    clean_backward(model, ids, y)
    for eps in (0.0, -1.0, float("nan")):
        with pytest.raises(KexueError, match="epsilon"), fgm(emb, epsilon=eps):
            pass
    with pytest.raises(KexueError, match="steps"):
        pgd_delta(lambda: F.cross_entropy(model(ids), y), emb, steps=0)
    with pytest.raises(KexueError, match="alpha"):
        pgd_delta(lambda: F.cross_entropy(model(ids), y), emb, alpha=0.0)
    with pytest.raises(KexueError, match="shape"), perturbed(emb, torch.zeros(2, 2, dtype=F64)):
        pass
    with pytest.raises(KexueError, match="exactly one"):
        embedding_weight(model, "weight")  # embedding.weight and head.weight
    with pytest.raises(KexueError, match="exactly one"):
        embedding_weight(model, "wte")
    e = model.embedding(ids)
    loss = F.cross_entropy(model(ids), y)
    with pytest.raises(KexueError, match="scalar"):
        embedding_gradient_penalty(loss.expand(2), e)
    with pytest.raises(KexueError, match="does not require grad"):
        embedding_gradient_penalty(loss, e.detach())
    with pytest.raises(KexueError, match="does not depend"):
        embedding_gradient_penalty(loss, e)  # another forward's output
