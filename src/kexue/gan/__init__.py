"""GANs: the loss zoo, alternating and single-loss training, GAN-QP, BiGAN-QP, O-GAN, the VI regulariser."""

from kexue.gan.aae import AAE, AAEConfig
from kexue.gan.gan import GAN, GANConfig
from kexue.gan.losses import LOSSES, GANLoss, gan_loss, qp_distance, single_loss

__all__ = [
    "AAE",
    "GAN",
    "LOSSES",
    "AAEConfig",
    "GANConfig",
    "GANLoss",
    "gan_loss",
    "qp_distance",
    "single_loss",
]
