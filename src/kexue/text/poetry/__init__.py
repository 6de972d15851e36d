"""The CNN-VAE poetry robot of [5332] 基于CNN和VAE的作诗机器人：随机成诗 (kexue.fm/archives/5332).

Modules, in the order data flows:
  corpus  Tang poems (chinese-poetry JSON) → OpenCC t2s → five-character couplets (10 characters), vocabulary
  vae     GatedConv1d (GCNN) and PoetryVAE: embedding → GCNNs → (μ, log σ²) → z → 10 positions of logits
  api     train_poet, save_poet, load_poet, sample_couplets (what `kexue poetry train|sample` calls)
"""

from kexue.text.poetry.api import (
    PoetTrainConfig,
    evaluate_elbo,
    fit_poet,
    load_poet,
    sample_couplets,
    save_poet,
    train_poet,
)
from kexue.text.poetry.corpus import (
    Vocabulary,
    extract_couplets,
    format_couplet,
    load_couplets,
    poem_couplets,
    read_poems,
    read_tang_poems,
    split_couplets,
    strip_marks,
    tang_poem_files,
    to_simplified,
)
from kexue.text.poetry.vae import GatedConv1d, PoetryVAE, PoetryVAEConfig

__all__ = [
    "GatedConv1d",
    "PoetTrainConfig",
    "PoetryVAE",
    "PoetryVAEConfig",
    "Vocabulary",
    "evaluate_elbo",
    "extract_couplets",
    "fit_poet",
    "format_couplet",
    "load_couplets",
    "load_poet",
    "poem_couplets",
    "read_poems",
    "read_tang_poems",
    "sample_couplets",
    "save_poet",
    "split_couplets",
    "strip_marks",
    "tang_poem_files",
    "to_simplified",
    "train_poet",
]
