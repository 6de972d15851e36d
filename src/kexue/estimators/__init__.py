"""Gradient estimators and reparameterizations ([6705], [9085]): Gaussian, Gumbel-max, Gumbel-softmax,
straight-through, score-function (REINFORCE) with baselines, and argmax-of-perturbation distributions."""

from kexue.estimators.gaussian import gaussian_kl, gaussian_kl_standard, gaussian_log_prob, reparameterize
from kexue.estimators.gumbel import gumbel_max, gumbel_noise, gumbel_softmax
from kexue.estimators.perturbation import NOISES, Noise, argmax_probabilities, sample_argmax
from kexue.estimators.score_function import MovingAverageBaseline, score_function_surrogate
from kexue.estimators.straight_through import straight_through

__all__ = [
    "NOISES",
    "MovingAverageBaseline",
    "Noise",
    "argmax_probabilities",
    "gaussian_kl",
    "gaussian_kl_standard",
    "gaussian_log_prob",
    "gumbel_max",
    "gumbel_noise",
    "gumbel_softmax",
    "reparameterize",
    "sample_argmax",
    "score_function_surrogate",
    "straight_through",
]
