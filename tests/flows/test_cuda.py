"""The flows on a GPU: the same log-likelihoods as on the CPU, sampling with a CUDA generator, training
steps through the trainer. Skipped without CUDA (`make test` on a GPU machine runs them)."""

from __future__ import annotations

import pytest
import torch

from kexue.flows import NICE, Glow, GlowConfig, NICEConfig, RealNVP, RealNVPConfig
from kexue.metrics.likelihood import dequantized_bits_per_dim

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
CUDA = torch.device("cuda")
BUILD = {
    "nice": lambda: NICE(NICEConfig(shape=(1, 8, 8), levels=17, hidden=16)),
    "realnvp": lambda: RealNVP(RealNVPConfig(shape=(1, 8, 8), levels=17, hidden=8)),
    "glow": lambda: Glow(GlowConfig(shape=(1, 8, 8), levels=17, K=2, hidden=8)),
}


@pytest.mark.parametrize("name", BUILD)
def test_log_prob_and_sampling_agree_across_devices(name):
    torch.manual_seed(0)
    cpu = BUILD[name]().train()
    k = torch.randint(0, 17, (64, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    cpu.loss((k.float() / 16,))  # ActNorm's data init on the CPU
    gpu = BUILD[name]()
    gpu.load_state_dict(cpu.state_dict())
    cpu, gpu = cpu.eval(), gpu.to(CUDA).eval()
    a = dequantized_bits_per_dim(cpu.log_prob, k, 17)
    b = dequantized_bits_per_dim(gpu.log_prob, k, 17, device=CUDA)
    assert abs(a - b) < 1e-4
    x = gpu.sample(16, temperature=0.7, generator=torch.Generator(device=CUDA).manual_seed(0))
    assert x.device.type == "cuda" and x.shape == (16, 1, 8, 8) and torch.isfinite(x).all()


def test_training_steps_on_the_gpu():
    from kexue.experiments.flows import train_for_seconds

    torch.manual_seed(0)
    k = torch.randint(0, 17, (300, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    model = BUILD["glow"]().to(CUDA)
    fit = train_for_seconds(
        model, k[:250], k[250:], 17, seconds=2, batch_size=64, lr=1e-3, eval_every=5, seed=0, device=CUDA
    )
    assert fit["steps"] >= 5 and not fit["nan_stop"]
