"""Class and mode coverage on hand-built samples whose answers are known by construction."""

from __future__ import annotations

import math

import pytest
import torch

from kexue.metrics.coverage import class_coverage, mode_coverage


def ring(k: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The k-Gaussians-on-a-ring toy of [M17]: means (K, 2) evenly spaced on a circle."""
    angle = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    return radius * torch.stack([angle.cos(), angle.sin()], 1)  # (K, 2)


def test_class_coverage_hand_built():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 19 + [3] * 1)  # class 4 never appears
    out = class_coverage(labels, 5, min_fraction=0.05)
    p = [0.5, 0.3, 0.19, 0.01, 0.0]
    assert out["histogram"] == pytest.approx(p, abs=1e-15)
    assert out["classes_covered"] == 3  # class 3 holds 1% < 5%
    assert class_coverage(labels, 5, min_fraction=0.01)["classes_covered"] == 4  # the bound is inclusive
    entropy = -sum(q * math.log(q) for q in p if q > 0)
    assert out["entropy"] == pytest.approx(entropy, rel=1e-14)
    assert out["kl_to_uniform"] == pytest.approx(math.log(5) - entropy, rel=1e-14)  # KL(p ‖ u) = ln C − H(p)


@pytest.mark.parametrize("num_classes", [1, 10])
def test_class_coverage_extremes(num_classes):
    even = class_coverage(torch.arange(num_classes).repeat(7), num_classes)
    assert even["classes_covered"] == num_classes
    assert even["kl_to_uniform"] == pytest.approx(0.0, abs=1e-15)
    assert even["entropy"] == pytest.approx(math.log(num_classes), abs=1e-15)
    collapsed = class_coverage(torch.zeros(70, dtype=torch.int64), num_classes)
    assert collapsed["classes_covered"] == 1
    assert collapsed["kl_to_uniform"] == pytest.approx(math.log(num_classes), abs=1e-15)
    assert collapsed["entropy"] == 0.0


def test_mode_coverage_hand_built():
    means, std = ring(), 0.05
    right = torch.tensor([1.0, 0.0], dtype=torch.float64)
    samples = torch.cat(
        [
            means[0].repeat(40, 1),  # 40 on mode 0: HQ
            (means[1] + 2 * std * right).repeat(30, 1),  # 30 at 2σ from mode 1: HQ
            (means[2] + 4 * std * right).repeat(20, 1),  # 20 at 4σ from mode 2: nearest is mode 2, not HQ
            means[3][None],  # 1 on mode 3: HQ, exactly 1% of the samples
            torch.zeros(9, 2, dtype=torch.float64),  # 9 at the centre, 2 from every mode: not HQ
        ]
    )  # (100, 2)
    out = mode_coverage(samples, means, std)
    assert out["mode_histogram"] == pytest.approx([0.4, 0.3, 0, 0.01, 0, 0, 0, 0], abs=1e-15)
    assert out["high_quality_fraction"] == pytest.approx(0.71, abs=1e-15)
    assert out["modes_covered"] == 3  # modes 0, 1 and 3 (1% ≥ min_fraction = 1%)
    q = torch.tensor([40, 30, 1], dtype=torch.float64) / 71  # HQ samples' distribution over modes 0, 1, 3
    assert out["kl_to_weights"] == pytest.approx(float((q * (q * 8).log()).sum()), rel=1e-14)
    # A per-mode std of 0.1 for mode 2 makes its 20 samples (at 0.2 = 2σ) high quality.
    stds = torch.full((8,), std, dtype=torch.float64)
    stds[2] = 0.1
    assert mode_coverage(samples, means, stds)["modes_covered"] == 4
    assert mode_coverage(samples, means, std, num_std=5.0)["high_quality_fraction"] == pytest.approx(0.91)


def test_mode_coverage_boundary_is_inclusive():
    # A 5 × 5 grid toy [M17], means 2 apart, σ = 0.25: a sample 0.75 = 3σ away sits exactly on the edge.
    axis = 2 * torch.arange(5, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(25, 2)  # (25, 2)
    offsets = torch.tensor([[0.75, 0.0], [0.0, -0.75], [0.75 + 1e-12, 0.0]], dtype=torch.float64)
    samples = grid[[0, 6, 12]] + offsets  # on the edge, on the edge, just outside
    out = mode_coverage(samples, grid, 0.25)
    assert out["high_quality_fraction"] == pytest.approx(2 / 3)
    assert [i for i, f in enumerate(out["mode_histogram"]) if f > 0] == [0, 6]


def test_mode_coverage_weights_and_collapse():
    means = ring(4)
    samples = means.repeat_interleave(torch.tensor([10, 20, 30, 40]), dim=0)  # mode k holds (k+1)/10
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = mode_coverage(samples, means, 0.1, weights=w)  # weights are normalised to sum to 1
    assert out["kl_to_weights"] == pytest.approx(0.0, abs=1e-15)
    assert out["modes_covered"] == 4 and out["high_quality_fraction"] == 1.0
    uniform = mode_coverage(samples, means, 0.1)["kl_to_weights"]
    assert uniform == pytest.approx(sum(p * math.log(4 * p) for p in (0.1, 0.2, 0.3, 0.4)), rel=1e-14)
    nothing = mode_coverage(torch.zeros(5, 2), means, 0.1)  # every sample far from every mode
    assert nothing["modes_covered"] == 0 and nothing["high_quality_fraction"] == 0.0
    assert math.isnan(nothing["kl_to_weights"])


def test_mode_coverage_of_the_true_mixture(gen):
    # Samples of the mixture itself: ‖x − μ‖/σ is Rayleigh, so P(HQ) = P(χ²₂ ≤ 9) = 1 − e^{−4.5}; modes are
    # 1.5 apart (30σ), so the nearest mean is always the true one.
    means, std, n = ring(), 0.05, 8000
    idx = torch.randint(0, 8, (n,), generator=gen)
    samples = means[idx] + std * torch.randn(n, 2, dtype=torch.float64, generator=gen)
    out = mode_coverage(samples, means, std)
    p = 1 - math.exp(-4.5)
    assert out["high_quality_fraction"] == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n))
    assert out["modes_covered"] == 8
    assert out["kl_to_weights"] < 12 / n  # 2n·KL ≈ χ²₇ for a multinomial histogram; P(χ²₇ > 24) ≈ 0.001


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: class_coverage(torch.tensor([0, 5]), 5), r"in \[0, 5\)"),
        (lambda: class_coverage(torch.tensor([0.0, 1.0]), 5), "integer"),
        (lambda: class_coverage(torch.zeros(0, dtype=torch.int64), 5), "non-empty"),
        (lambda: mode_coverage(torch.zeros(3, 2), torch.zeros(2, 3), 0.1), r"\(N, D\)"),
        (lambda: mode_coverage(torch.zeros(3, 2), torch.zeros(2, 2), 0.0), "positive"),
        (lambda: mode_coverage(torch.zeros(3, 2), torch.zeros(2, 2), torch.ones(3)), "one entry per mode"),
        (lambda: mode_coverage(torch.zeros(3, 2), torch.zeros(2, 2), 0.1, weights=torch.ones(3)), "positive"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
