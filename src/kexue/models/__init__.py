"""Pretrained-model architectures and their Hugging Face checkpoint loaders: the bert4keras toolkit [6915].

`build_transformer_model(config, checkpoint, model=…, application=…)` (kexue.models.builder) builds BERT,
RoBERTa, RoFormer (kexue.models.bert, kexue.models.roformer) or GPT-2 with a KV cache (kexue.models.gpt2) and
loads HF weights through kexue.models.checkpoint.
"""

from kexue.models.bert import Bert, BertConfig
from kexue.models.builder import build_transformer_model
from kexue.models.gpt2 import GPT2, GPT2Config

__all__ = ["GPT2", "Bert", "BertConfig", "GPT2Config", "build_transformer_model"]
