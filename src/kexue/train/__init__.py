"""Training: the loop (`Trainer`), its callbacks, checkpoints, EMA, module losses, intermediates, DDP,
and the post-7466 regularisers (noise, gradient penalty, FGM, VAT) in `kexue.train.adversarial`."""

from kexue.train.aux_loss import add_loss, collecting_losses
from kexue.train.ema import EMA
from kexue.train.intermediates import capture_outputs, capture_records, record
from kexue.train.trainer import TrainConfig, Trainer

__all__ = [
    "EMA",
    "TrainConfig",
    "Trainer",
    "add_loss",
    "capture_outputs",
    "capture_records",
    "collecting_losses",
    "record",
]
