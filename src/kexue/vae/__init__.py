"""Variational autoencoders ([5253], [5343], [7725]): the Gaussian VAE with Bernoulli or Gaussian decoders,
MLP and conv encoder/decoder nets, and the IWAE bound (test NLL in nats, active units, IWAE training)."""

from kexue.vae.categorical_vae import CategoricalVAE, CategoricalVAEConfig, anneal_tau
from kexue.vae.cluster_vae import ClusterVAE, ClusterVAEConfig
from kexue.vae.iwae import active_units, iwae_bound, log_weights, nll, posterior_mean_variance
from kexue.vae.nvae import NVAE, NVAEConfig, Whitened
from kexue.vae.vae import VAE, VAEConfig

__all__ = [
    "NVAE",
    "VAE",
    "CategoricalVAE",
    "CategoricalVAEConfig",
    "ClusterVAE",
    "ClusterVAEConfig",
    "NVAEConfig",
    "VAEConfig",
    "Whitened",
    "active_units",
    "anneal_tau",
    "iwae_bound",
    "log_weights",
    "nll",
    "posterior_mean_variance",
]
