"""Optimizer wrappers in the manner of bert4keras's `extend_with_*` (repository bojone/bert4keras,
bert4keras/optimizers.py; [5879] kexue.fm/archives/5879, [6915] kexue.fm/archives/6915), as wrappers
around ANY `torch.optim.Optimizer` instead of one subclass per optimizer.

Each wrapper runs the optimizer it wraps, which turns θ (the weights before the step) into θ' (after it),
then edits the result. η is the group's current learning rate, so LR schedulers apply.

    DecoupledWeightDecay   θ ← θ' − η·λ·θ                 unless the name contains an `exclude` substring
    LayerAdaptation        θ ← θ + r·(θ' − θ),  r = ‖θ‖ / ‖(θ' − θ)/η‖   per tensor (LAMB's trust ratio)
    LazyUpdates            rows whose gradient is exactly 0 keep θ and the optimizer's state (e.g. Adam's
                           m and v) unchanged, decay included          for names containing `include`
    ParamwiseLR            θ ← θ + m·(θ' − θ),  m = Π of the multipliers whose key is in the name
    Lookahead              every k updates: φ ← φ + α(θ − φ), θ ← φ      (φ: slow weights, φ₀ = θ₀)
    WeightEMA              after every update: the EMA of `kexue.train.ema` (bias-corrected read-out)
    GradientAccumulation   collect k micro-batch gradients; on the k-th call run one step on their mean

Composition order. A wrapper edits the update of everything inside it, so the order is part of the math.
The recommended stack, innermost first:

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt = DecoupledWeightDecay(opt, model.named_parameters(), 0.01, exclude=("bias", "norm"))
    opt = LazyUpdates(opt, model.named_parameters(), include=("embedding",))
    opt = LayerAdaptation(opt, model.named_parameters(), exclude=("bias", "norm"))  # + the two above = LAMB
    opt = ParamwiseLR(opt, model.named_parameters(), {"head": 10.0})
    opt = Lookahead(opt, k=5, alpha=0.5)
    opt = WeightEMA(opt, model, decay=0.999)
    opt = GradientAccumulation(opt, steps=4)
    sched = piecewise_linear_lr(opt, {1000: 1, 2000: 0.1})     # kexue.train.lr_schedule

- Decay inside LayerAdaptation: the trust ratio scales the update with its decay, ‖θ‖/‖u + λθ‖ as in LAMB
  (You et al., ICLR 2020); bert4keras's hooks compose in the same order.
- LazyUpdates outside the decay, so idle rows are not decayed, and inside LayerAdaptation, so the ratio
  sees only the rows that move.
- ParamwiseLR outside LayerAdaptation: the ratio resets every update's length to η‖θ‖ and would undo a
  multiplier applied inside it. Outside, m scales the whole update exactly as a learning rate m·η would
  (decay included, since its size is η·λ).
- Lookahead and WeightEMA act on whole updates. GradientAccumulation must be outermost (enforced):
  everything inside it then counts real updates. The inner optimizer's step counter, Lookahead's k and
  the EMA's n all advance once per k micro-batches. `opt.updated` says whether the last `step()` changed
  the weights; step the LR scheduler only then.

Every wrapper shares the wrapped optimizer's `param_groups`, `state` and `defaults`, so LR schedulers
and `zero_grad` work through it. `state_dict()` nests the inner state, and loading it continues
bit-identically. A closure passed to `step` is evaluated once, before the step. Optimizers that
re-evaluate it (LBFGS) are not supported. Parameters are named through `model.named_parameters()`, and
every parameter of the optimizer must be named there.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from kexue.errors import KexueError
from kexue.train.ema import EMA

NamedParameters = Iterable[tuple[str, Tensor]]


class _Wrapper(Optimizer):
    """Delegates to `self.optimizer`; keeps its own per-parameter buffers in `self.extra`.

    Optimizer.__init__ is not called: it would copy the parameter groups, and schedulers must see the
    inner optimizer's own groups (which `load_state_dict` replaces), hence the delegating properties.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise KexueError(
                f"{type(self).__name__}: wraps a torch.optim.Optimizer, got {type(optimizer).__name__}; "
                "build the optimizer first, e.g. torch.optim.Adam(model.parameters())"
            )
        if _find(optimizer, GradientAccumulation) is not None:
            raise KexueError(
                f"{type(self).__name__} wraps a GradientAccumulation: it must be the outermost wrapper, "
                "so that every other wrapper counts whole updates; wrap it around the others instead"
            )
        self.optimizer = optimizer
        self.updated = False  # whether the last step() changed the weights
        self.extra: dict[Tensor, dict[str, Tensor]] = {}  # this wrapper's buffers, by parameter
        self.count = 0  # this wrapper's step counter (where it needs one)
        hooks = ("step_pre", "step_post", "state_dict_pre", "state_dict_post", "load_state_dict_pre")
        for kind in (*hooks, "load_state_dict_post"):  # the hook tables Optimizer.__init__ would make
            setattr(self, f"_optimizer_{kind}_hooks", OrderedDict())
        self._patch_step_function()  # register_step_pre_hook etc. work on the wrapper too

    # ---- the wrapped optimizer's view ----------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = value

    @property
    def state(self):  # type: ignore[override]
        return self.optimizer.state

    @state.setter
    def state(self, value) -> None:
        self.optimizer.state = value

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]) -> None:
        self.optimizer.defaults = value

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("step", None)  # an LR scheduler's per-instance wrapper of step (it holds a weakref)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._patch_step_function()

    def __repr__(self) -> str:
        inner = "\n".join("    " + line for line in repr(self.optimizer).splitlines())
        return f"{type(self).__name__}(\n{inner}\n)"

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)

    def params(self) -> list[Tensor]:
        """Every parameter of the optimizer, in the order of its groups (the state_dict's indices)."""
        return [p for g in self.param_groups for p in g["params"]]

    def lr_of(self) -> dict[Tensor, float | Tensor]:
        return {p: g["lr"] for g in self.param_groups for p in g["params"]}

    # ---- stepping ------------------------------------------------------------------------------
    @staticmethod
    def _evaluate(closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()

    def _inner_step(self) -> None:
        self.optimizer.step()
        self.updated = True

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        index = {p: i for i, p in enumerate(self.params())}
        return {
            "wrapper": type(self).__name__,
            "optimizer": self.optimizer.state_dict(),
            "extra": {index[p]: dict(bufs) for p, bufs in self.extra.items()},
            "count": self.count,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        kind = state_dict.get("wrapper") if isinstance(state_dict, Mapping) else None
        if kind != type(self).__name__:
            raise KexueError(
                f"{type(self).__name__}.load_state_dict: the state was saved from "
                f"{kind or 'a plain optimizer'}; rebuild the same stack of wrappers before loading"
            )
        self.optimizer.load_state_dict(state_dict["optimizer"])
        params = self.params()
        self.extra = {
            params[int(i)]: {k: v.to(params[int(i)].device) for k, v in bufs.items()}
            for i, bufs in state_dict["extra"].items()
        }
        self.count = int(state_dict["count"])


def _find(optimizer: Optimizer, kind: type) -> Optimizer | None:
    """The first wrapper of type `kind` in the chain starting at `optimizer`."""
    return next((o for o in wrappers(optimizer) if isinstance(o, kind)), None)


def _name_map(optimizer: Optimizer, named_parameters: NamedParameters, who: str) -> dict[Tensor, str]:
    """Each of the optimizer's parameters → its name; every one must be named."""
    names = {p: n for n, p in named_parameters}
    params = [p for g in optimizer.param_groups for p in g["params"]]
    unnamed = [i for i, p in enumerate(params) if p not in names]
    if unnamed:
        raise KexueError(
            f"{who}: {len(unnamed)} of the optimizer's {len(params)} parameters (first: index {unnamed[0]}) "
            "are missing from named_parameters; pass model.named_parameters() of the model whose "
            "parameters the optimizer holds"
        )
    return {p: names[p] for p in params}


def _matches(name: str, keys: Sequence[str]) -> bool:
    return any(k in name for k in keys)  # bert4keras's string_matching


def _strings(value: Sequence[str], what: str, who: str) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(s, str) and s for s in value):
        raise KexueError(
            f"{who}: {what} must be a list of non-empty name substrings, got {value!r}; "
            f"e.g. {what}=('bias', 'norm')"
        )
    return tuple(value)


def _rule(p: Tensor, rules: Mapping[Tensor, Any], who: str) -> Any:
    if p not in rules:
        raise KexueError(
            f"{who}: a parameter was added after wrapping and has no name; wrap the optimizer after "
            "adding all its parameter groups"
        )
    return rules[p]


def _norm(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x, dtype=torch.promote_types(x.dtype, torch.float32))


# --------------------------------------------------------------------------------------------- wrappers
class DecoupledWeightDecay(_Wrapper):
    """θ ← θ' − η·λ·θ with θ the weights before the step (bert4keras `extend_with_weight_decay`;
    Loshchilov & Hutter's AdamW). Parameters whose name contains an `exclude` substring (commonly
    "bias" and "norm") and parameters without a gradient are not decayed. Keeps a copy of the decayed
    weights during the step."""

    def __init__(
        self,
        optimizer: Optimizer,
        named_parameters: NamedParameters,
        weight_decay: float,
        *,
        exclude: Sequence[str] = (),
    ) -> None:
        super().__init__(optimizer)
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise KexueError(f"DecoupledWeightDecay: weight_decay must be finite and ≥ 0, got {weight_decay}")
        self.weight_decay = float(weight_decay)
        self.exclude = _strings(exclude, "exclude", "DecoupledWeightDecay")
        names = _name_map(optimizer, named_parameters, "DecoupledWeightDecay")
        self.decayed = {p: not _matches(n, self.exclude) for p, n in names.items()}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._evaluate(closure)
        lr = self.lr_of()
        params = [p for p in self.params() if p.grad is not None]
        params = [p for p in params if _rule(p, self.decayed, "DecoupledWeightDecay")]
        theta = [p.detach().clone() for p in params]  # θ before the step
        self._inner_step()
        for p, t in zip(params, theta):
            p.sub_(t.mul_(lr[p] * self.weight_decay))  # θ' − η λ θ
        return loss


class LayerAdaptation(_Wrapper):
    """LAMB-style trust ratio per tensor (bert4keras `extend_with_layer_adaptation`; You et al. 2020):
    with Δ = θ' − θ the wrapped optimizer's update,

        θ ← θ + r Δ,   r = ‖θ‖ / ‖Δ/η‖ = η‖θ‖/‖Δ‖   (r = 1 when ‖θ‖ = 0 or ‖Δ‖ = 0)

    so every adapted tensor moves by η‖θ‖ along its update's direction. Names containing an `exclude`
    substring are left alone. Keeps a copy of the adapted weights during the step."""

    def __init__(
        self, optimizer: Optimizer, named_parameters: NamedParameters, *, exclude: Sequence[str] = ()
    ) -> None:
        super().__init__(optimizer)
        self.exclude = _strings(exclude, "exclude", "LayerAdaptation")
        names = _name_map(optimizer, named_parameters, "LayerAdaptation")
        self.adapted = {p: not _matches(n, self.exclude) for p, n in names.items()}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._evaluate(closure)
        lr = self.lr_of()
        params = [p for p in self.params() if p.grad is not None]
        params = [p for p in params if _rule(p, self.adapted, "LayerAdaptation")]
        theta = [p.detach().clone() for p in params]
        self._inner_step()
        for p, t in zip(params, theta):
            delta = p - t  # Δ = θ' − θ
            n_theta, n_delta = _norm(t), _norm(delta)
            ok = (n_theta > 0) & (n_delta > 0)
            r = torch.where(ok, lr[p] * n_theta / n_delta.clamp_min(torch.finfo(n_delta.dtype).tiny), 1.0)
            p.copy_(t.add_(delta.mul_(r.to(p.dtype))))  # θ + rΔ
        return loss


class LazyUpdates(_Wrapper):
    """Lazy optimisation of embedding-like tensors (bert4keras `extend_with_lazy_optimization`, which
    masks only the weights; here the optimizer's state is kept too): for parameters whose name contains
    an `include` substring, every row (index along dim 0) whose gradient is exactly zero keeps its
    weights and its rows of every state tensor shaped like the parameter (Adam's m and v, momentum), so
    an update — weight decay inside this wrapper included — touches only the rows that were used.

    Scalar state such as Adam's step count still advances (as in TF's LazyAdam). State that the wrapped
    optimizer creates during its first step is not restored: its idle rows then hold the optimizer's
    initial value (0 for Adam, SGD momentum and RMSprop without their coupled `weight_decay`). Sparse
    gradients are refused. Keeps a copy of the lazy tensors and their state during the step."""

    def __init__(
        self, optimizer: Optimizer, named_parameters: NamedParameters, *, include: Sequence[str]
    ) -> None:
        super().__init__(optimizer)
        self.include = _strings(include, "include", "LazyUpdates")
        if not self.include:
            raise KexueError("LazyUpdates: include must name at least one substring, e.g. ('embedding',)")
        names = _name_map(optimizer, named_parameters, "LazyUpdates")
        self.lazy = {p: _matches(n, self.include) and p.dim() >= 1 for p, n in names.items()}
        if not any(self.lazy.values()):
            raise KexueError(
                f"LazyUpdates: no parameter of at least one dimension has a name containing any of "
                f"{self.include}; names are e.g. {', '.join(list(names.values())[:5])}"
            )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._evaluate(closure)
        saved = []
        for p in self.params():
            if p.grad is None or not _rule(p, self.lazy, "LazyUpdates"):
                continue
            if p.grad.is_sparse:
                raise KexueError(
                    "LazyUpdates: sparse gradients are not supported; use nn.Embedding(sparse=False), or "
                    "torch.optim.SparseAdam without this wrapper"
                )
            idle = ~(p.grad.reshape(p.shape[0], -1) != 0).any(1)  # (rows,) gradient exactly zero
            idle = idle.view(-1, *[1] * (p.dim() - 1))  # broadcast over the row's entries
            state = self.state.get(p, {})
            kept = {k: v.clone() for k, v in state.items() if isinstance(v, Tensor) and v.shape == p.shape}
            saved.append((p, idle, p.detach().clone(), kept))
        self._inner_step()
        for p, idle, theta, kept in saved:
            p.copy_(torch.where(idle, theta, p))
            state = self.state[p]
            for k, v in kept.items():
                state[k].copy_(torch.where(idle, v, state[k]))
        return loss


class ParamwiseLR(_Wrapper):
    """Learning-rate multipliers by parameter name (bert4keras `extend_with_parameter_wise_lr`): a
    parameter whose name contains key k gets multiplier m_k (the product when several keys match) and

        θ ← θ + m·(θ' − θ),

    which for SGD, momentum, Adam(W) and RMSprop is the step at learning rate m·η (their update is
    linear in η). Keeps a copy of the scaled weights during the step."""

    def __init__(
        self, optimizer: Optimizer, named_parameters: NamedParameters, multipliers: Mapping[str, float]
    ) -> None:
        super().__init__(optimizer)
        if not isinstance(multipliers, Mapping) or not multipliers:
            raise KexueError(
                f"ParamwiseLR: multipliers must be a non-empty dict {{name substring: multiplier}}, got "
                f"{multipliers!r}; e.g. {{'head': 10.0}}"
            )
        for k, m in multipliers.items():
            if not (isinstance(k, str) and k) or not (math.isfinite(m) and m >= 0):
                raise KexueError(
                    f"ParamwiseLR: {k!r}: {m!r} needs a non-empty name substring and a finite multiplier ≥ 0"
                )
        self.multipliers = dict(multipliers)
        names = _name_map(optimizer, named_parameters, "ParamwiseLR")
        self.multiplier = {
            p: math.prod(m for k, m in multipliers.items() if k in n) for p, n in names.items()
        }

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._evaluate(closure)
        params = [p for p in self.params() if p.grad is not None]
        params = [p for p in params if _rule(p, self.multiplier, "ParamwiseLR") != 1.0]
        theta = [p.detach().clone() for p in params]
        self._inner_step()
        for p, t in zip(params, theta):
            p.copy_(torch.lerp(t, p, self.multiplier[p]))  # θ + m(θ' − θ)
        return loss


class Lookahead(_Wrapper):
    """Lookahead (Zhang et al., NeurIPS 2019; bert4keras `extend_with_lookahead`): the wrapped optimizer
    moves the fast weights θ; every k-th update the slow weights φ (φ₀ = θ at the first step) move
    φ ← φ + α(θ − φ) and θ ← φ. After k updates from θ₀: θ = θ₀ + α(θ_k − θ₀)."""

    def __init__(self, optimizer: Optimizer, *, k: int = 5, alpha: float = 0.5) -> None:
        super().__init__(optimizer)
        if not (isinstance(k, int) and k >= 1):
            raise KexueError(f"Lookahead: k (updates between synchronisations) must be an int ≥ 1, got {k!r}")
        if not (0.0 < alpha <= 1.0):
            raise KexueError(f"Lookahead: alpha must lie in (0, 1] (1 = plain optimizer), got {alpha!r}")
        self.k, self.alpha = k, float(alpha)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._evaluate(closure)
        params = self.params()
        for p in params:
            if p not in self.extra:
                self.extra[p] = {"slow": p.detach().clone()}  # φ₀ = θ₀
        self._inner_step()
        self.count += 1
        if self.count % self.k == 0:
            for p in params:
                slow = self.extra[p]["slow"]
                slow.lerp_(p, self.alpha)  # φ + α(θ − φ)
                p.copy_(slow)
        return loss


class WeightEMA(_Wrapper):
    """Updates a `kexue.train.ema.EMA` of `model`'s weights after every update (bert4keras
    `extend_with_exponential_moving_average`, with its bias correction): Θ_n = mΘ_{n−1} + (1−m)θ_n from
    Θ_0 = 0, read out as Θ_n/(1 − mⁿ). `with opt.averaged_weights(): …` swaps the read-out into the model
    and restores the trained weights bit-for-bit on exit."""

    def __init__(self, optimizer: Optimizer, model: nn.Module, *, decay: float = 0.999) -> None:
        super().__init__(optimizer)
        if not (0.0 <= decay < 1.0):
            raise KexueError(f"WeightEMA: decay must lie in [0, 1), got {decay!r}; bert4keras uses 0.999")
        self.model = model
        self.ema = EMA(model, decay)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._evaluate(closure)
        self._inner_step()
        self.ema.update(self.model)
        return loss

    def averaged_weights(self) -> AbstractContextManager[nn.Module]:
        return self.ema.applied(self.model)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return super().state_dict() | {"ema": self.ema.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        super().load_state_dict(state_dict)
        self.ema.load_state_dict(state_dict["ema"])


class GradientAccumulation(_Wrapper):
    """Gradient accumulation ("软batch" of [5879], corrected in kexue.fm/archives/6794; bert4keras
    `extend_with_gradient_accumulation`): every call adds the current gradients to a running sum; the
    k-th call sets each gradient to the mean of the k and runs ONE step of the wrapped optimizer, so k
    micro-batches of equal size give the large-batch step and the step count advances once per k.
    `updated` is True only after those calls. Keeps one gradient-sized buffer per parameter.

    Must be the outermost wrapper; call `zero_grad()` after every `step()` as usual."""

    def __init__(self, optimizer: Optimizer, *, steps: int) -> None:
        super().__init__(optimizer)
        if not (isinstance(steps, int) and steps >= 1):
            raise KexueError(f"GradientAccumulation: steps must be an int ≥ 1 (micro-batches), got {steps!r}")
        self.steps = steps

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._evaluate(closure)
        for p in self.params():
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise KexueError("GradientAccumulation: sparse gradients are not supported; use dense ones")
            bufs = self.extra.setdefault(p, {})
            if "grad_sum" in bufs:
                bufs["grad_sum"].add_(p.grad)
            else:
                bufs["grad_sum"] = p.grad.detach().clone()
        self.count += 1
        self.updated = False
        if self.count % self.steps:
            return loss
        for p in self.params():  # a parameter without a gradient in all k micro-batches has grad None
            bufs = self.extra.pop(p, None)
            if bufs is not None:
                p.grad = bufs["grad_sum"].div_(self.steps)  # the mean gradient
        self._inner_step()
        return loss


def wrappers(optimizer: Optimizer) -> Iterator[Optimizer]:
    """The chain from `optimizer` inwards: each wrapper, then the base torch optimizer."""
    while optimizer is not None:
        yield optimizer
        optimizer = getattr(optimizer, "optimizer", None)


__all__ = [
    "DecoupledWeightDecay",
    "GradientAccumulation",
    "LayerAdaptation",
    "LazyUpdates",
    "Lookahead",
    "ParamwiseLR",
    "WeightEMA",
    "wrappers",
]
