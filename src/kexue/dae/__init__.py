"""Denoising autoencoders as generative models (post 7038 "从去噪自编码器到生成模型").

The optimal DAE of noise level σ is r*(x̃) = x̃ + σ²∇log p_σ(x̃) (Tweedie), so a trained denoiser is a
score, and a score is a sampler (Langevin dynamics). Modules:
  tweedie  — score ↔ denoiser, the DAE objective and a small DAE r(x)            [7038] eq. 1
  dde      — the denoising density estimator: a scalar E with E ≈ σ² log p_σ + C,
             grid normalisation and the Gaussian KDE it converges to              [7038] eq. (e-grad), [DDE]
  langevin — single-scale and annealed Langevin dynamics, the final Tweedie jump  [7038] eq. (sde), [NCSN]
  ncsn     — the noise-conditional score net s(x, σ) and multi-level DSM          [NCSN] eqs. 5–6
  nets     — the smooth MLP and the input scale c_in they share
"""

from kexue.dae.dde import DDE, DDEConfig, dde_loss, grid_log_normalizer, grid_points, kde_log_prob
from kexue.dae.langevin import annealed_langevin, check_sigmas, geometric_sigmas, langevin
from kexue.dae.ncsn import ScoreNet, ScoreNetConfig, dsm_loss
from kexue.dae.tweedie import DAE, DAEConfig, dae_loss, denoiser_from_score, score_from_denoiser

__all__ = [
    "DAE",
    "DDE",
    "DAEConfig",
    "DDEConfig",
    "ScoreNet",
    "ScoreNetConfig",
    "annealed_langevin",
    "check_sigmas",
    "dae_loss",
    "dde_loss",
    "denoiser_from_score",
    "dsm_loss",
    "geometric_sigmas",
    "grid_log_normalizer",
    "grid_points",
    "kde_log_prob",
    "langevin",
    "score_from_denoiser",
]
