"""`build_transformer_model`: bert4keras's one entry point [6915], for PyTorch and Hugging Face checkpoints.

[6915] 自己实现了一个bert4keras, kexue.fm/archives/6915:

    model = build_transformer_model(config_path, checkpoint_path)      # bert4keras
    model = build_transformer_model("chinese-bert/config.json", "chinese-bert")   # kexue, an HF folder

This is the one place where a model name becomes a class (style rule 8). The config is an HF config.json (a
path, its folder, or a dict); the checkpoint an HF folder (config.json + model.safetensors, sharded
safetensors or pytorch_model.bin) or one weights file, read without unpickling (`kexue.models.checkpoint`).
Without a checkpoint the weights are initialised from `generator` (BERT's N(0, 0.02²)).

    model          bert | roberta | roformer | gpt2
    application    encoder | lm | unilm (bert4keras; GPT-2 is always lm): the attention mask of
                   `kexue.models.bert` — bidirectional, causal, or UniLM's s_j ≤ s_i, s = cumsum(segment_ids)
    with_mlm       the MLM head (logits out); default: on for lm / unilm, off for encoder (bert4keras's)
    hierarchical_position   None, True (α = 0.4) or α: [7947]'s extension of a learned table of n
                   positions to n² (BERT, RoBERTa, GPT-2)

The model comes back in eval mode (dropout off), as HF's from_pretrained returns it; call .train() to
fine-tune.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from kexue.errors import KexueError
from kexue.models.bert import Bert, bert_config, init_weights
from kexue.models.checkpoint import load_hf_state, read_config, read_state_dict
from kexue.models.gpt2 import GPT2, gpt2_config
from kexue.models.roformer import RoFormer, roformer_config

MODELS = ("bert", "roberta", "roformer", "gpt2")


def _alpha(hierarchical_position: bool | float | None) -> float | None:
    if hierarchical_position is None or hierarchical_position is False:
        return None
    return 0.4 if hierarchical_position is True else float(hierarchical_position)  # [7947]: α = 0.4


def build_transformer_model(
    config: str | os.PathLike | dict,
    checkpoint: str | os.PathLike | None = None,
    *,
    model: str = "bert",
    application: str = "encoder",
    with_mlm: bool | None = None,
    with_pool: bool = False,
    hierarchical_position: bool | float | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """A kexue `Bert` (bert, roberta, roformer) or `GPT2`, with the HF checkpoint's weights when given."""
    hf = read_config(config)
    alpha = _alpha(hierarchical_position)
    if model == "gpt2":
        if application not in ("encoder", "lm") or with_pool:  # "encoder" is the default: GPT-2 is an lm
            raise KexueError(
                f"GPT-2 is a causal language model: application must be 'lm', got {application!r}"
            )
        net: nn.Module = GPT2(gpt2_config(hf, hierarchical_alpha=alpha))
    elif model in ("bert", "roberta", "roformer"):
        mlm = application != "encoder" if with_mlm is None else with_mlm
        options = dict(application=application, with_mlm=mlm, with_pool=with_pool, hierarchical_alpha=alpha)
        if model == "roformer":
            if alpha is not None:
                raise KexueError("hierarchical_position extends a learned position table; RoFormer uses RoPE")
            net = RoFormer(roformer_config(hf, **options))
        else:
            net = Bert(bert_config(hf, roberta=model == "roberta", **options))
    else:
        raise KexueError(f"unknown model {model!r}; use one of {MODELS}")
    init_weights(net, std=hf.get("initializer_range", 0.02), generator=generator)
    if checkpoint is not None:
        load_hf_state(net, read_state_dict(checkpoint), model, source=f"checkpoint {checkpoint}")
    return net.to(device=device, dtype=dtype).eval()
