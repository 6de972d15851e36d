"""Mode-collapse metrics: class coverage of a classifier's labels, mode coverage on 2-D Gaussian mixtures.

Sources:
  [M17]  Metz, Poole, Pfau, Sohl-Dickstein, "Unrolled Generative Adversarial Networks", ICLR 2017
         (the ring / grid of Gaussians toys and stacked-MNIST mode counts).
  [S17]  Srivastava, Valkov, Russell, Gutmann, Sutton, "VEEGAN", NeurIPS 2017, Sec. 5.1: a sample is
         "high quality" when within three standard deviations of its nearest mode; modes are counted.
  [L18]  Lin, Khetan, Fanti, Oh, "PacGAN", NeurIPS 2018, Sec. 5: modes captured and the KL divergence
         between the generated mode distribution and the true one.

Both functions report KL(q ‖ w) = Σ_k q_k log(q_k / w_k) in nats, with q the generated distribution over
classes or modes and w the target (uniform unless weights are given); 0·log 0 = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _kl_entropy(q: Tensor, w: Tensor) -> tuple[float, float]:
    """KL(q ‖ w) and entropy H(q) in nats for probability vectors (K,), with 0·log 0 = 0."""
    pos = q > 0
    kl = (q[pos] * (q[pos] / w[pos]).log()).sum()
    return float(kl), float(-(q[pos] * q[pos].log()).sum())


def class_coverage(pred_labels: Tensor, num_classes: int, *, min_fraction: float = 0.01) -> dict:
    """Which classes a generator produces, judged by a classifier's labels for its samples.

    pred_labels: (N,) integer labels in [0, num_classes). Returns
      "classes_covered": number of classes holding ≥ min_fraction of the N samples,
      "histogram": list of the C class fractions (sums to 1),
      "kl_to_uniform": KL(histogram ‖ uniform) in nats (0 for a perfectly even generator, ln C at collapse),
      "entropy": entropy of the histogram in nats (ln C at most).
    """
    where = "class_coverage"
    labels = torch.as_tensor(pred_labels)
    if labels.dim() != 1 or labels.numel() == 0 or labels.is_floating_point() or labels.is_complex():
        raise ValueError(
            f"{where}: pred_labels must be a non-empty (N,) integer tensor, got shape "
            f"{tuple(labels.shape)} {labels.dtype}; pass argmax class ids"
        )
    if num_classes < 1 or int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(
            f"{where}: labels must lie in [0, {num_classes}), got range "
            f"[{int(labels.min())}, {int(labels.max())}]; check num_classes"
        )
    hist = (
        torch.bincount(labels.long().cpu(), minlength=num_classes).to(torch.float64) / labels.numel()
    )  # (C,)
    kl, entropy = _kl_entropy(hist, torch.full_like(hist, 1 / num_classes))
    return {
        "classes_covered": int((hist >= min_fraction).sum()),
        "histogram": hist.tolist(),
        "kl_to_uniform": kl,
        "entropy": entropy,
    }


def mode_coverage(
    samples: Tensor,
    means: Tensor,
    stds: float | Tensor,
    *,
    num_std: float = 3.0,  # [S17] Sec. 5.1: "within three standard deviations"
    min_fraction: float = 0.01,  # a mode counts as covered when it holds ≥ 1% of all samples as HQ samples
    weights: Tensor | None = None,  # (K,) positive target mixture weights, normalised here; None: uniform
) -> dict:
    """Modes covered and high-quality samples of a generator on a Gaussian-mixture toy  [S17], [L18].

    samples: (N, 2) generated points; means: (K, 2) mode centres; stds: a float or (K,) per-mode std.
    Each sample goes to its nearest mean k and is high quality (HQ) when ‖x − μ_k‖ ≤ num_std·σ_k.
    Returns
      "modes_covered": number of modes holding ≥ min_fraction of all N samples as HQ samples,
      "high_quality_fraction": HQ samples / N,
      "mode_histogram": list of K fractions, HQ samples of mode k / N (sums to high_quality_fraction),
      "kl_to_weights": KL(q ‖ w) in nats, q = the HQ samples' distribution over modes; NaN with no HQ sample.
    """
    where = "mode_coverage"
    x, mu = torch.as_tensor(samples, dtype=torch.float64), torch.as_tensor(means, dtype=torch.float64)
    if x.dim() != 2 or mu.dim() != 2 or x.shape[1] != mu.shape[1] or 0 in (x.shape[0], mu.shape[0]):
        raise ValueError(
            f"{where}: samples must be (N, D) and means (K, D) with N, K ≥ 1, got "
            f"{tuple(x.shape)} and {tuple(mu.shape)}"
        )
    k = mu.shape[0]
    sigma = torch.as_tensor(stds, dtype=torch.float64, device=x.device)
    sigma = sigma.expand(k) if sigma.dim() == 0 else sigma  # (K,) one std per mode
    w = torch.full((k,), 1 / k, dtype=torch.float64) if weights is None else torch.as_tensor(weights).double()
    if sigma.shape != (k,) or (sigma <= 0).any() or w.shape != (k,) or (w <= 0).any():
        raise ValueError(
            f"{where}: stds and weights must be positive with one entry per mode ({k}), got "
            f"stds {tuple(sigma.shape)} and weights {tuple(w.shape)}"
        )
    # Direct differences, not the ‖a‖² + ‖b‖² − 2aᵀb shortcut, so a sample on a mean is at distance 0 exactly.
    dist = torch.cdist(x, mu.to(x.device), compute_mode="donot_use_mm_for_euclid_dist")  # (N, K)
    d, nearest = dist.min(dim=1)  # (N,), (N,) distance to and index of the nearest mean
    hq = d <= num_std * sigma[nearest]  # (N,) high-quality mask  [S17] Sec. 5.1
    counts = torch.bincount(nearest[hq].cpu(), minlength=k).to(torch.float64)  # (K,) HQ samples per mode
    hist = counts / x.shape[0]  # (K,)
    n_hq = counts.sum()
    kl = _kl_entropy(counts / n_hq, w.cpu() / w.sum())[0] if n_hq > 0 else float("nan")
    return {
        "modes_covered": int((hist >= min_fraction).sum()),
        "high_quality_fraction": float(n_hq / x.shape[0]),
        "mode_histogram": hist.tolist(),
        "kl_to_weights": kl,
    }
