"""Every flow layer is a bijection whose log-determinant is exact (float64).

For each layer, with every parameter perturbed away from its (often identity) initialisation:
inverse(forward(x)) = x to 1e-10; forward's log-det equals log|det| of the autograd Jacobian of the
flattened map; inverse's log-det at y is minus forward's at x.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import jacobian_logdet, perturbed
from kexue.flows import (
    ActNorm,
    AffineCoupling,
    Chain,
    CheckerboardCoupling,
    InvConv1x1,
    Reverse,
    Scaling,
    Shuffle,
    Split,
    Squeeze,
    TopPrior,
    checkerboard,
    nets,
)


def check_bijection(layer: nn.Module, x: torch.Tensor) -> None:
    layer.eval()
    with torch.no_grad():
        y, ld = layer(x)
        back, ld_inv = layer.inverse(y)
    assert ld.shape == (len(x),) and ld.dtype == torch.float64
    assert (back - x).abs().max() < 1e-10
    assert torch.allclose(ld_inv, -ld, atol=1e-10)
    assert torch.allclose(ld, jacobian_logdet(lambda v: layer(v)[0], x), atol=1e-9)


def image(gen, c=4, h=4, w=4, b=3):
    return torch.randn(b, c, h, w, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize("additive", [False, True])
@pytest.mark.parametrize("d", [2, 5, 8])
def test_flat_coupling(gen, d, parity, additive):
    first, second = d // 2, d - d // 2
    d_in, d_out = (first, second) if parity == 0 else (second, first)
    net = nets.mlp(d_in, d_out * (1 if additive else 2), hidden=8, depth=2)
    layer = perturbed(AffineCoupling(d, net, parity=parity, additive=additive))
    check_bijection(layer, torch.randn(4, d, generator=gen, dtype=torch.float64))


def test_additive_coupling_is_volume_preserving(gen):
    layer = perturbed(AffineCoupling(6, nets.mlp(3, 3, hidden=8, depth=1), additive=True))
    _, ld = layer(torch.randn(4, 6, generator=gen, dtype=torch.float64))
    assert torch.equal(ld, torch.zeros(4, dtype=torch.float64))


@pytest.mark.parametrize("parity", [0, 1])
def test_channel_coupling_on_images(gen, parity):
    layer = perturbed(AffineCoupling(4, nets.conv(2, 4, hidden=6), parity=parity))
    check_bijection(layer, image(gen))


@pytest.mark.parametrize("parity", [0, 1])
def test_checkerboard_coupling(gen, parity):
    layer = perturbed(CheckerboardCoupling(2, 4, 4, nets.conv(2, 4, hidden=6), parity=parity))
    check_bijection(layer, image(gen, c=2))


def test_checkerboard_mask_alternates():
    b0, b1 = checkerboard(3, 4, 0), checkerboard(3, 4, 1)
    assert torch.equal(b0 + b1, torch.ones(1, 1, 3, 4))
    assert b0[0, 0, 0, 0] == 1 and b0[0, 0, 0, 1] == 0 and b0[0, 0, 1, 0] == 0


def test_checkerboard_coupling_keeps_the_conditioning_pixels(gen):
    layer = perturbed(CheckerboardCoupling(2, 4, 4, nets.conv(2, 4, hidden=6), parity=0))
    x = image(gen, c=2)
    y, _ = layer(x)
    b = layer.mask.to(x.dtype)
    assert torch.equal(y * b, x * b)


@pytest.mark.parametrize("shape", [(5,), (3, 4, 4)])
def test_actnorm(gen, shape):
    check_bijection(perturbed(ActNorm(shape[0])), torch.randn(3, *shape, generator=gen, dtype=torch.float64))


def test_actnorm_data_init_gives_zero_mean_unit_variance(gen):
    layer = ActNorm(3).double().train()
    x = 5 + 3 * torch.randn(64, 3, 4, 4, generator=gen, dtype=torch.float64)
    x[:, 1] = x[:, 1] * 0.1 - 7
    y, _ = layer(x)
    per_channel = y.transpose(0, 1).flatten(1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(per_channel.std(1, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5)
    assert bool(layer.initialized)
    before = layer.bias.detach().clone()
    layer(x + 100)  # no second initialisation
    assert torch.equal(layer.bias.detach(), before)


def test_actnorm_init_survives_a_state_dict_round_trip(gen):
    a = ActNorm(2).train()
    a(torch.randn(16, 2, generator=gen))
    b = ActNorm(2).train()
    b.load_state_dict(a.state_dict())
    assert bool(b.initialized)
    b(torch.zeros(1, 2) + 1000.0)  # would re-initialise if the flag were lost
    assert torch.equal(b.bias, a.bias)


@pytest.mark.parametrize("shape", [(5,), (4, 3, 3)])
def test_invconv(gen, shape):
    layer = perturbed(InvConv1x1(shape[0], generator=torch.Generator().manual_seed(1)))
    check_bijection(layer, torch.randn(3, *shape, generator=gen, dtype=torch.float64))


def test_invconv_lu_logdet_equals_slogdet_and_starts_as_a_rotation():
    layer = InvConv1x1(6, generator=torch.Generator().manual_seed(0)).double()
    w = layer.weight()
    assert torch.allclose(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-6)
    perturbed(layer)
    _, logabs = torch.linalg.slogdet(layer.weight())
    assert torch.allclose(logabs, layer.log_s.sum(), atol=1e-10)


def test_squeeze(gen):
    layer = Squeeze().double()
    x = image(gen, c=2, h=4, w=6)
    check_bijection(layer, x)
    y, _ = layer(x)
    assert y.shape == (3, 8, 2, 3)
    # each output pixel holds the 2×2 input block of every channel
    assert torch.equal(y[0, :4, 0, 0], x[0, 0, :2, :2].flatten())


def test_squeeze_rejects_odd_sizes():
    with pytest.raises(ValueError, match="even height and width"):
        Squeeze()(torch.zeros(1, 1, 3, 4))


class SplitAsFlow(nn.Module):
    """Split viewed as one bijection h → [h_1, ẑ_2] along the channels."""

    def __init__(self, split: Split) -> None:
        super().__init__()
        self.split = split

    def forward(self, h):
        kept, z, ld = self.split(h)
        return torch.cat([kept, z], 1), ld

    def inverse(self, y):
        return self.split.inverse(y[:, : self.split.keep], y[:, self.split.keep :])


@pytest.mark.parametrize("channels", [4, 5])
def test_split_with_conditional_prior(gen, channels):
    check_bijection(perturbed(SplitAsFlow(Split(channels))), image(gen, c=channels))


def test_split_prior_starts_standard_normal(gen):
    h = image(gen)
    kept, z, ld = Split(4).double()(h)
    assert (
        torch.equal(kept, h[:, :2]) and torch.equal(z, h[:, 2:]) and torch.equal(ld, torch.zeros(3).double())
    )


def test_shuffle_is_a_fixed_permutation(gen):
    layer = Shuffle(6, generator=torch.Generator().manual_seed(3)).double()
    check_bijection(layer, torch.randn(3, 6, generator=gen, dtype=torch.float64))
    check_bijection(layer, image(gen, c=6))
    assert sorted(layer.perm.tolist()) == list(range(6)) and layer.perm.tolist() != list(range(6))


def test_top_prior_and_scaling_and_reverse(gen):
    check_bijection(perturbed(TopPrior((2, 3, 3))), image(gen, c=2, h=3, w=3))
    check_bijection(perturbed(Scaling(5)), torch.randn(3, 5, generator=gen, dtype=torch.float64))
    check_bijection(Reverse(), torch.randn(3, 5, generator=gen, dtype=torch.float64))


def test_chain_adds_logdets(gen):
    chain = perturbed(Chain([ActNorm(4), InvConv1x1(4), AffineCoupling(4, nets.conv(2, 4, hidden=4))]))
    check_bijection(chain, image(gen))
