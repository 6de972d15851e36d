"""`kexue bench flows`: kexue's Glow against normflows' Glow — same architecture, data, budget and trainer.

Both models: L levels of K steps (ActNorm, invertible 1×1 conv in LU form, affine coupling with Glow's
3×3 → 1×1 → zero-initialised 3×3 net of `hidden` channels, ReLU), squeezes between levels, the same logit
preprocessing (α = 0.05; normflows' `transforms.Logit`), uniform dequantization, Adam at the same learning
rate and batch, the same wall-clock budget, and the weights of the best validation bits/dim
(kexue.experiments.flows.train_for_seconds drives both). The remaining differences are the models' own:
normflows gives every factored-out piece an independent learned diagonal Gaussian (`GlowBase`), kexue
the learned conditional prior N(μ(z_kept), σ(z_kept)) that [5807] reads from Glow's source (normflows
issue #46 asks for it); normflows' coupling scale is sigmoid(h + 2), kexue's γ·tanh(h).

Result: {"kexue_bpd", "normflows_bpd"} (test bits/dim on the discrete data, fixed dequantization noise),
"kexue_seconds_per_epoch", "normflows_seconds_per_epoch", steps, parameters, and "goal_met"
(kexue_bpd ≤ normflows_bpd). Quick: 8×8 digits; full: MNIST (needs the MNIST files in the data folder).
normflows is a `bench` extra: `pip install kexue[bench]`.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor, nn

from kexue.data.transforms import dequantize
from kexue.errors import KexueError
from kexue.metrics.likelihood import bits_per_dim, dequantized_bits_per_dim


class NormflowsGlow(nn.Module):
    """normflows' Glow (their examples/glow.ipynb layout) behind kexue's loss / log_prob interface."""

    def __init__(
        self, shape: tuple[int, int, int], levels: int, *, L: int, K: int, hidden: int, logit: float
    ):
        super().__init__()
        import normflows as nf

        c, h, w = shape
        self.shape, self.levels = shape, levels
        q0, merges, flows = [], [], []
        for i in range(L):  # i = 0 is the coarsest level (normflows orders from the latent side)
            flows.append(
                [
                    nf.flows.GlowBlock(c * 2 ** (L + 1 - i), hidden, split_mode="channel", scale=True)
                    for _ in range(K)
                ]
                + [nf.flows.Squeeze()]
            )
            if i > 0:
                merges.append(nf.flows.Merge())
                latent = (c * 2 ** (L - i), h // 2 ** (L - i), w // 2 ** (L - i))
            else:
                latent = (c * 2 ** (L + 1), h // 2**L, w // 2**L)
            q0.append(nf.distributions.GlowBase(latent))
        self.flow = nf.MultiscaleFlow(
            q0, flows, merges, transform=nf.transforms.Logit(alpha=logit), class_cond=False
        )

    def log_prob(self, y: Tensor) -> Tensor:
        return self.flow.log_prob(y.reshape(len(y), *self.shape), None)

    def loss(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        k = (batch[0] * (self.levels - 1)).round()
        nll = -self.log_prob(dequantize(k, self.levels)).mean()
        return {"loss": nll, "bpd": bits_per_dim(nll.detach(), math.prod(self.shape), num_bins=self.levels)}


def run(*, quick: bool = False, device: torch.device | None = None, data_dir: str | None = None) -> dict:
    from kexue.experiments.flows import split_validation, train_for_seconds
    from kexue.flows import Glow, GlowConfig
    from kexue.registry import load_data

    try:
        import normflows  # noqa: F401
    except ImportError:
        raise KexueError("kexue bench flows compares against normflows: pip install 'kexue[bench]'") from None
    device = device or torch.device("cpu")
    data = "digits" if quick else "mnist"
    train, test = (load_data(data, data_dir=data_dir, split=s) for s in ("train", "test"))
    levels, shape = train.levels, train.shape
    arch = {"L": 2, "K": 4, "hidden": 64} if quick else {"L": 2, "K": 8, "hidden": 128}
    budget = 60.0 if quick else 600.0
    batch, lr, eval_every = (128, 1e-3, 100) if quick else (64, 1e-3, 500)
    valid = 200 if quick else 5000
    train_k, valid_k = split_validation(train.x, valid, 0)
    test_k = test.x if quick else test.x[:5000]
    makers = {
        "kexue": lambda: Glow(GlowConfig(shape=shape, levels=levels, logit=0.05, **arch)),
        "normflows": lambda: NormflowsGlow(shape, levels, logit=0.05, **arch),
    }
    result: dict = {"data": data, "architecture": arch, "budget_seconds": budget, "batch_size": batch}
    for name, make in makers.items():
        torch.manual_seed(0)
        model = make().to(device)
        fit = train_for_seconds(
            model,
            train_k,
            valid_k,
            levels,
            seconds=budget,
            batch_size=batch,
            lr=lr,
            eval_every=eval_every,
            seed=0,
            device=device,
        )
        t0 = time.perf_counter()
        bpd = dequantized_bits_per_dim(model.log_prob, test_k, levels, device=device)
        epochs = fit["steps"] * batch / len(train_k)
        result |= {
            f"{name}_bpd": bpd,
            f"{name}_valid_bpd": fit["valid_bpd"],
            f"{name}_seconds_per_epoch": fit["seconds"] / epochs,
            f"{name}_steps": fit["steps"],
            f"{name}_best_step": fit["best_step"],
            f"{name}_params": sum(p.numel() for p in model.parameters()),
            f"{name}_eval_seconds": time.perf_counter() - t0,
            f"{name}_nan_stop": fit["nan_stop"],
        }
    result["goal_met"] = result["kexue_bpd"] <= result["normflows_bpd"]
    return result
