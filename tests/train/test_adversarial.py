"""Noise ↔ gradient penalty ↔ adversarial training (post 7466), checked against brute-force autograd.

All in float64 on a smooth MLP 6 → 8 → 3 (tanh or softplus), B = 4 samples:
- `fisher_penalty` equals Σ_i p_i‖∇_x log p_i‖² from per-sample Jacobians and tr(Jᵀ(diag p − ppᵀ)J) with
  J = ∂z/∂x; the Rademacher version (eq. 16) is unbiased; both are differentiable in the parameters;
- `laplacian` is the trace of the per-sample Hessian (2·tr A for xᵀAx);
- the post's second-order claims (eqs. 6 and 15) hold numerically as σ → 0;
- FGM (eq. 18) moves by ε along ∇_x l; VAT's power iteration finds the top eigenvector of ∇²KL.

Monte Carlo checks use a fixed seed and a tolerance of a few standard errors of their own sample.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.autograd.functional import hessian, jacobian
from torch.func import functional_call

from kexue.train import adversarial as adv

F64 = torch.float64
B, D, K = 4, 6, 3


class MLP(nn.Module):
    """x (…, 6) → logits (…, 3); works on one sample (6,) too, as torch.func and hessian need."""

    def __init__(self, gen: torch.Generator, act=torch.tanh, h: int = 8) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(h, D, generator=gen, dtype=F64) / D**0.5)
        self.b1 = nn.Parameter(0.5 * torch.randn(h, generator=gen, dtype=F64))
        self.w2 = nn.Parameter(1.5 * torch.randn(K, h, generator=gen, dtype=F64))
        self.b2 = nn.Parameter(0.5 * torch.randn(K, generator=gen, dtype=F64))
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x @ self.w1.T + self.b1) @ self.w2.T + self.b2


@pytest.fixture(params=["tanh", "softplus"])
def setup(request, gen):
    act = {"tanh": torch.tanh, "softplus": F.softplus}[request.param]
    model = MLP(gen, act)
    x = torch.randn(B, D, generator=gen, dtype=F64)
    y = torch.randint(0, K, (B,), generator=gen)
    return model, x, y


def leaf(x: Tensor) -> Tensor:
    return x.detach().clone().requires_grad_(True)


def fisher_brute(model, x: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Per sample: Σ_i p_i‖∇ log p_i‖², tr(Jᵀ(diag p − ppᵀ)J), and the matrix Jᵀ(diag p − ppᵀ)J."""
    direct, trace, mats = [], [], []
    for xb in x:
        p = torch.softmax(model(xb), -1)
        j_logp = jacobian(lambda v: torch.log_softmax(model(v), -1), xb)  # (K, D)
        j_z = jacobian(model, xb)  # (K, D)
        fisher = j_z.T @ (torch.diag(p) - torch.outer(p, p)) @ j_z  # (D, D)
        direct.append((p * j_logp.pow(2).sum(1)).sum())
        trace.append(fisher.trace())
        mats.append(fisher)
    return torch.stack(direct).detach(), torch.stack(trace).detach(), mats


def ce_one(model):
    """l(x_b, y_b): one sample's cross-entropy, the `fn` that `laplacian` takes."""
    return lambda xb, yb: F.cross_entropy(model(xb), yb)


# ------------------------------------------------------------------------------------------ fisher_penalty
def test_fisher_penalty_equals_brute_force_jacobians(setup):
    """Eq. (15) with λ_i = 1/f_i, and the docstring's identity: it is the trace of the input Fisher matrix."""
    model, x, _ = setup
    xr = leaf(x)
    got = adv.fisher_penalty(model(xr), xr)
    direct, trace, _ = fisher_brute(model, x)
    assert got.shape == (B,) and got.requires_grad
    torch.testing.assert_close(got.detach(), direct, rtol=1e-12, atol=0)
    torch.testing.assert_close(got.detach(), trace, rtol=1e-12, atol=0)


def test_fisher_penalty_needs_x_to_require_grad(setup):
    model, x, _ = setup
    with pytest.raises(ValueError, match="require grad"):
        adv.fisher_penalty(model(x), x)


def test_sampled_fisher_penalty_is_unbiased(setup, gen):
    """Eq. (16) exactly: every draw is ‖Σ_i η_i v_i‖², v_i = √p_i ∇_x log p_i (per-sample Jacobians), for a
    sign vector η ∈ {±1}^K; the 2^(K−1) values (η and −η agree) come up equally often; and their average is
    the exact penalty (cross terms cancel). So the estimator is unbiased; the mean of M = 4000 draws is also
    within 4 standard errors of the exact value — and the draws do spread."""
    model, x, _ = setup
    m = 4000
    xr = leaf(x.repeat_interleave(m, 0))  # (B·M, D)
    draws = adv.fisher_penalty(model(xr), xr, sampled=True, generator=gen).detach().view(B, m)
    exact, _, _ = fisher_brute(model, x)
    signs = torch.tensor([[1.0, *s] for s in itertools.product((1.0, -1.0), repeat=K - 1)], dtype=F64)
    for b, xb in enumerate(x):
        p = torch.softmax(model(xb), -1).detach()
        v = p.sqrt()[:, None] * jacobian(lambda u: torch.log_softmax(model(u), -1), xb)  # (K, D)
        values = (signs @ v).pow(2).sum(1)  # one per class {η, −η}, (2^(K−1),)
        torch.testing.assert_close(values.mean(), exact[b], rtol=1e-12, atol=0)
        gap = (values[:, None] - values[None, :]).abs() + torch.eye(len(values), dtype=F64)
        assert gap.min() > 1e-6 * exact[b]  # the classes are told apart by value
        hit = (draws[b][:, None] - values[None, :]).abs().argmin(1)
        torch.testing.assert_close(draws[b], values[hit], rtol=1e-10, atol=0)
        counts = torch.bincount(hit, minlength=len(values)).to(F64)
        assert ((counts - m / len(values)).abs() < 5 * (m * 3 / 16) ** 0.5).all()  # binomial(M, ¼) sd
    se = draws.std(1) / m**0.5
    assert (se > 1e-3 * exact).all()
    assert ((draws.mean(1) - exact).abs() < 4 * se).all()
    again = []  # the same generator state gives the same draw
    for _ in range(2):
        xs = leaf(x)
        again.append(
            adv.fisher_penalty(model(xs), xs, sampled=True, generator=torch.Generator().manual_seed(3))
        )
    assert torch.equal(*again)


def flat_grad(value: Tensor, model: nn.Module) -> Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(value, list(model.parameters()))])


def test_sampled_fisher_penalty_gives_an_unbiased_training_gradient(setup, gen):
    """What training uses: the parameter gradient of the sampled penalty averages to the exact penalty's.
    20 groups of 200 copies per sample: under no bias ‖mean − exact‖² ≈ Σ_j se_j² over the 83 parameters
    (0.55–0.6 here); we allow 3×. A stop-gradient on √p_i (value right, gradient wrong) gives ~1.5·10³."""
    model, x, _ = setup
    xr = leaf(x)
    exact = flat_grad(adv.fisher_penalty(model(xr), xr).sum(), model)
    groups = []
    for _ in range(20):
        xr = leaf(x.repeat_interleave(200, 0))
        pen = adv.fisher_penalty(model(xr), xr, sampled=True, generator=gen).view(B, 200).mean(1)
        groups.append(flat_grad(pen.sum(), model))
    g = torch.stack(groups)  # (20, P)
    se2 = g.var(0) / len(g)
    assert (g.mean(0) - exact).pow(2).sum() < 3 * se2.sum()


@pytest.mark.parametrize("sampled", [False, True])
def test_fisher_penalty_gradient_in_the_parameters(setup, sampled):
    """create_graph: the penalty trains the model; its parameter gradient matches finite differences."""
    model, x, _ = setup
    names = [n for n, _ in model.named_parameters()]

    def penalty(*params):
        xr = leaf(x)
        logits = functional_call(model, dict(zip(names, params)), (xr,))
        g = torch.Generator().manual_seed(1)  # the same η at every evaluation
        return adv.fisher_penalty(logits, xr, sampled=sampled, generator=g)

    params = tuple(leaf(p) for p in model.parameters())
    assert torch.autograd.gradcheck(penalty, params, eps=1e-6, atol=1e-7, rtol=1e-5)


# ------------------------------------------------------------------------------------------ laplacian
def test_laplacian_is_the_trace_of_the_hessian(setup):
    model, x, y = setup
    fn = ce_one(model)
    got = adv.laplacian(fn, x, y)
    ref = torch.stack([hessian(lambda v, yb=yb: fn(v, yb), xb).trace() for xb, yb in zip(x, y)])
    assert got.shape == (B,)
    torch.testing.assert_close(got.detach(), ref, rtol=1e-12, atol=1e-14)


def test_laplacian_of_a_quadratic(gen):
    """Δ(y·xᵀAx) = y·2·tr A for any A (the Hessian is y(A + Aᵀ)), on image-shaped inputs (B, 1, 2, 3)."""
    a = torch.randn(D, D, generator=gen, dtype=F64)
    x = torch.randn(3, 1, 2, 3, generator=gen, dtype=F64)
    y = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    got = adv.laplacian(lambda xb, yb: yb * (xb.flatten() @ a @ xb.flatten()), x, y)
    torch.testing.assert_close(got, 2 * a.trace() * y, rtol=1e-15, atol=1e-15)


# ------------------------------------------------------------------------------------------ second order
def antithetic(f, x: Tensor, z: Tensor, sigma: float) -> Tensor:
    """(f(x + σz) + f(x − σz))/2 − f(x) per draw: the odd Taylor terms cancel, leaving ½σ² zᵀHz + O(σ⁴)."""
    return (f(x + sigma * z) + f(x - sigma * z)) / 2 - f(x.expand_as(z))


def check_second_order(f, x: Tensor, hess: list[Tensor], target: Tensor, gen) -> None:
    """E_ε f(x + ε) − f(x) ≈ ½σ² tr H(x) with ε ~ N(0, σ²I), split into its two approximations:
    1) per draw the antithetic difference is ½σ² zᵀHz up to O(σ⁴): the relative gap falls ~100× per
       decade of σ and is < 1e-3 at σ = 1e-2 (no sampling noise: the same z for both σ);
    2) the mean of zᵀHz over M draws is tr H = `target` within 4 standard errors.
    And the whole claim at σ = 1e-2: within 5 % of ½σ²·target."""
    m = 20000
    z = torch.randn(m, B, D, generator=gen, dtype=F64)
    quad = torch.einsum("mbi,bij,mbj->mb", z, torch.stack(hess), z)  # zᵀHz per draw, (M, B)
    gaps = []
    for sigma in (1e-1, 1e-2):
        est = antithetic(f, x, z, sigma).mean(0) / (0.5 * sigma**2)
        gaps.append(((est - quad.mean(0)) / quad.mean(0)).abs())
    assert (gaps[1] < 1e-3).all() and (gaps[1] < gaps[0] / 50).all()
    se = quad.std(0) / m**0.5
    assert ((quad.mean(0) - target).abs() < 4 * se).all()
    est = antithetic(f, x, z, 1e-2).mean(0)
    assert ((est / (0.5 * 1e-4 * target) - 1).abs() < 0.05).all()


@torch.no_grad()
def test_noise_is_half_sigma_squared_laplacian(setup, gen):
    """Eq. (6): E_ε l(f(x + ε), y) ≈ l(f(x), y) + ½σ² Δ_x l."""
    model, x, y = setup

    def loss(v):  # (M, B, D) → (M, B)
        return F.cross_entropy(model(v).transpose(1, 2), y.expand(v.shape[0], B), reduction="none")

    fn = ce_one(model)
    with torch.enable_grad():
        hess = [hessian(lambda v, yb=yb: fn(v, yb), xb) for xb, yb in zip(x, y)]
        lap = adv.laplacian(fn, x, y)
    check_second_order(loss, x[None], hess, lap, gen)


@torch.no_grad()
def test_kl_noise_is_half_sigma_squared_fisher_penalty(setup, gen):
    """Eq. (15): E_ε KL(f(x) ‖ f(x + ε)) ≈ ½σ² Σ_i f_i‖∇ log f_i‖²; the Hessian of the KL at ε = 0 is the
    Fisher matrix Jᵀ(diag p − ppᵀ)J."""
    model, x, _ = setup
    logits = model(x)

    def kl(v):  # (M, B, D) → (M, B)
        return adv.kl_logits(logits.expand(v.shape[0], B, K), model(v))

    with torch.enable_grad():
        xr = leaf(x)
        pen = adv.fisher_penalty(model(xr), xr).detach()
        _, _, fisher = fisher_brute(model, x)
    check_second_order(kl, x[None], fisher, pen, gen)


# ------------------------------------------------------------------------------------------ FGM
def per_sample_grads(model, x: Tensor, y: Tensor) -> Tensor:
    """∇_x l(x_b, y_b) one sample at a time (no batching in the reference)."""
    fn = ce_one(model)
    return torch.stack([jacobian(lambda v, yb=yb: fn(v, yb), xb) for xb, yb in zip(x, y)])


def test_fgm_is_epsilon_along_the_input_gradient(setup, gen):
    model, x, y = setup
    eps = 0.3
    r = adv.fgm_perturbation(lambda v: F.cross_entropy(model(v), y, reduction="sum"), x, eps)
    g = per_sample_grads(model, x, y)
    assert not r.requires_grad and x.grad is None
    torch.testing.assert_close(r.norm(dim=1), torch.full((B,), eps, dtype=F64), rtol=1e-14, atol=0)
    torch.testing.assert_close(r / eps, g / g.norm(dim=1, keepdim=True), rtol=1e-12, atol=1e-14)
    # image-shaped input (B, 1, 2, 3): the norm is per sample over all of C, H, W
    x4 = x.view(B, 1, 2, 3)
    r4 = adv.fgm_perturbation(lambda v: F.cross_entropy(model(v.flatten(1)), y, reduction="sum"), x4, eps)
    torch.testing.assert_close(r4.flatten(1), r, rtol=1e-14, atol=0)


@torch.no_grad()
def test_fgm_raises_the_loss_by_epsilon_times_gradient_norm(setup, gen):
    """Eq. (18): to first order l(x + r) − l(x) = ε‖∇_x l‖, the most any direction of norm ε achieves."""
    model, x, y = setup
    eps = 1e-6
    with torch.enable_grad():
        r = adv.fgm_perturbation(lambda v: F.cross_entropy(model(v), y, reduction="sum"), x, eps)
        g = per_sample_grads(model, x, y)

    def loss(v):
        return F.cross_entropy(model(v), y, reduction="none")

    rise = loss(x + r) - loss(x)
    torch.testing.assert_close(rise / (eps * g.norm(dim=1)), torch.ones(B, dtype=F64), rtol=1e-4, atol=0)
    u = torch.randn(64, B, D, generator=gen, dtype=F64)
    u = eps * u / u.norm(dim=-1, keepdim=True)
    other = F.cross_entropy(model(x + u).transpose(1, 2), y.expand(64, B), reduction="none") - loss(x)
    assert (other < rise).all()


# ------------------------------------------------------------------------------------------ VAT
def test_vat_without_iterations_is_scaled_gaussian_noise(setup):
    model, x, _ = setup
    r = adv.vat_perturbation(model, x, 0.7, iters=0, generator=torch.Generator().manual_seed(5))
    u = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    torch.testing.assert_close(r, 0.7 * u / u.norm(dim=1, keepdim=True), rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("iters", [1, 20])
def test_vat_has_norm_epsilon_and_is_reproducible(setup, iters):
    model, x, _ = setup
    rs = [
        adv.vat_perturbation(model, x, 0.7, iters=iters, generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]
    assert torch.equal(*rs) and not rs[0].requires_grad
    torch.testing.assert_close(rs[0].norm(dim=1), torch.full((B,), 0.7, dtype=F64), rtol=1e-14, atol=0)


def test_vat_power_iteration_finds_the_top_eigenvector(setup, gen):
    """The post's box: u ← ∇_u KL(f(x) ‖ f(x + ξu)) ≈ ξHu, so 20 steps align u with the top eigenvector of
    H = ∇²_r KL(f(x) ‖ f(x + r))|_{r=0} (brute-force Hessian; its trace is the Fisher penalty)."""
    model, x, _ = setup
    r = adv.vat_perturbation(model, x, 1.0, xi=1e-4, iters=20, generator=gen)
    xr = leaf(x)
    pen = adv.fisher_penalty(model(xr), xr).detach()
    for b, xb in enumerate(x):
        target = model(xb).detach()[None]
        h = hessian(
            lambda v, xb=xb, t=target: adv.kl_logits(t, model(xb + v)[None]).sum(), torch.zeros(D, dtype=F64)
        )
        evals, evecs = torch.linalg.eigh(h)
        assert evals[-2] < 0.5 * evals[-1]  # a clear gap: 20 steps converge to (λ₂/λ₁)^20 < 1e-6
        assert abs(float(r[b] @ evecs[:, -1])) > 0.999
        torch.testing.assert_close(h.trace(), pen[b], rtol=1e-10, atol=0)


# ------------------------------------------------------------------------------------------ KL, noise
@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 4),
    k=st.integers(2, 6),
    scale=st.floats(0.0, 20.0),
    seed=st.integers(0, 2**32),
)
def test_kl_logits_matches_torch_and_is_nonnegative(rows, k, scale, seed):
    g = torch.Generator().manual_seed(seed)
    p, q = scale * torch.randn(2, rows, k, generator=g, dtype=F64)
    kl = adv.kl_logits(p, q)
    ref = F.kl_div(F.log_softmax(q, -1), F.log_softmax(p, -1), reduction="none", log_target=True).sum(-1)
    assert kl.shape == (rows,)
    torch.testing.assert_close(kl, ref, rtol=1e-12, atol=1e-14)
    assert (kl >= -1e-14).all()  # KL ≥ 0 (Gibbs), up to float64 rounding of the sum
    assert torch.equal(adv.kl_logits(p, p), torch.zeros(rows, dtype=F64))
    torch.testing.assert_close(adv.kl_logits(p + 3.0, q - 1.0), kl, rtol=1e-10, atol=1e-12)  # shift-free


def test_gaussian_noise_uses_the_generator(gen):
    x = torch.randn(5, 3, generator=gen, dtype=F64)
    got = adv.gaussian_noise(x, 0.3, generator=torch.Generator().manual_seed(9))
    ref = x + 0.3 * torch.randn(5, 3, generator=torch.Generator().manual_seed(9), dtype=F64)
    assert torch.equal(got, ref) and got.dtype == F64
