"""Reading Hugging Face checkpoints into kexue's BERT / RoBERTa / RoFormer / GPT-2 (bert4keras [6915] loads
the official checkpoints the same way: by a name map, not by the checkpoint's own code).

A checkpoint is an HF folder — `config.json` plus `model.safetensors` (or a sharded
`model.safetensors.index.json`, or a `pytorch_model.bin`) — or one weights file. Nothing is unpickled:
safetensors files are read as such, and a `.bin` state dict only through `torch.load(weights_only=True)`.

Names are mapped by one table of regular expressions per family (HF name → kexue name; GPT-2's Conv1D weights
are stored (in, out) and transposed). The base-model prefix (`bert.`, `roberta.`, `roformer.`, `transformer.`)
is optional, so both `…ForMaskedLM` / `…LMHeadModel` and bare `…Model` checkpoints load; TF-era
`LayerNorm.gamma / beta` names are accepted. Entries that are not weights of the built model are dropped by
name only when they are known: buffers (position_ids, GPT-2's attention-mask `attn.bias`), duplicates of tied
weights, RoFormer's sinusoidal table (checked against kexue's angles), and heads the model was built without
(pooler, NSP, MLM). Anything else, and any weight the model needs but the checkpoint lacks, raises a
`KexueError` naming the keys.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from kexue.errors import KexueError

FAMILIES = ("bert", "roberta", "roformer", "gpt2")
_PREFIX = {"bert": "bert.", "roberta": "roberta.", "roformer": "roformer.", "gpt2": "transformer."}

# (HF pattern, kexue replacement, transpose) — matched against the whole key after the prefix is stripped
_ENCODER_RULES = [
    (r"embeddings\.word_embeddings\.weight", r"embeddings.token.weight", False),
    (r"embeddings\.position_embeddings\.weight", r"embeddings.position.weight", False),
    (r"embeddings\.token_type_embeddings\.weight", r"embeddings.segment.weight", False),
    (r"embeddings\.LayerNorm\.(weight|bias)", r"embeddings.norm.\1", False),
    (r"embeddings_project\.(weight|bias)", r"embeddings.project.\1", False),  # RoFormer embedding_size
    (r"encoder\.layer\.(\d+)\.attention\.self\.query\.(weight|bias)", r"layers.\1.attn.q.\2", False),
    (r"encoder\.layer\.(\d+)\.attention\.self\.key\.(weight|bias)", r"layers.\1.attn.k.\2", False),
    (r"encoder\.layer\.(\d+)\.attention\.self\.value\.(weight|bias)", r"layers.\1.attn.v.\2", False),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"layers.\1.attn.o.\2", False),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(weight|bias)", r"layers.\1.norm1.\2", False),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"layers.\1.ffn_in.\2", False),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"layers.\1.ffn_out.\2", False),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(weight|bias)", r"layers.\1.norm2.\2", False),
    (r"pooler\.dense\.(weight|bias)", r"pooler.\1", False),
    (r"cls\.predictions\.transform\.dense\.(weight|bias)", r"mlm.dense.\1", False),  # BERT / RoFormer MLM
    (r"cls\.predictions\.transform\.LayerNorm\.(weight|bias)", r"mlm.norm.\1", False),
    (r"cls\.predictions\.bias", r"mlm.bias", False),
    (r"cls\.predictions\.decoder\.weight", r"mlm.decoder.weight", False),
    (r"lm_head\.dense\.(weight|bias)", r"mlm.dense.\1", False),  # RoBERTa MLM
    (r"lm_head\.layer_norm\.(weight|bias)", r"mlm.norm.\1", False),
    (r"lm_head\.bias", r"mlm.bias", False),
    (r"lm_head\.decoder\.weight", r"mlm.decoder.weight", False),
]
_ENCODER_DROP = [  # not weights of kexue's model: buffers and duplicates of tied weights
    r"embeddings\.(position_ids|token_type_ids)",
    r"(cls\.predictions|lm_head)\.decoder\.bias",  # HF ties it to the head's `bias`
    r"cls\.seq_relationship\.(weight|bias)",  # BERT's next-sentence head (bert4keras drops it too)
]
_GPT2_RULES = [
    (r"wte\.weight", r"token.weight", False),
    (r"wpe\.weight", r"position.weight", False),
    (r"h\.(\d+)\.ln_1\.(weight|bias)", r"blocks.\1.norm1.\2", False),
    (r"h\.(\d+)\.attn\.c_attn\.weight", r"blocks.\1.attn.qkv.weight", True),  # Conv1D (in, out)
    (r"h\.(\d+)\.attn\.c_attn\.bias", r"blocks.\1.attn.qkv.bias", False),
    (r"h\.(\d+)\.attn\.c_proj\.weight", r"blocks.\1.attn.o.weight", True),
    (r"h\.(\d+)\.attn\.c_proj\.bias", r"blocks.\1.attn.o.bias", False),
    (r"h\.(\d+)\.ln_2\.(weight|bias)", r"blocks.\1.norm2.\2", False),
    (r"h\.(\d+)\.mlp\.c_fc\.weight", r"blocks.\1.ffn_in.weight", True),
    (r"h\.(\d+)\.mlp\.c_fc\.bias", r"blocks.\1.ffn_in.bias", False),
    (r"h\.(\d+)\.mlp\.c_proj\.weight", r"blocks.\1.ffn_out.weight", True),
    (r"h\.(\d+)\.mlp\.c_proj\.bias", r"blocks.\1.ffn_out.bias", False),
    (r"ln_f\.(weight|bias)", r"norm_f.\1", False),
    (r"lm_head\.weight", r"head.weight", False),
]
_GPT2_DROP = [r"h\.\d+\.attn\.(bias|masked_bias)"]  # the causal-mask buffers of old checkpoints


# --------------------------------------------------------------------------------------------- reading
def read_config(config: str | os.PathLike | dict) -> dict:
    """An HF config as a dict: the dict itself, a config.json path, or a folder holding config.json."""
    if isinstance(config, dict):
        return dict(config)
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise KexueError(f"config {path} does not exist; pass an HF config.json, its folder, or a dict")
    try:
        out = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KexueError(f"config {path} is not valid JSON ({e}); restore the file") from None
    if not isinstance(out, dict):
        raise KexueError(f"config {path} must hold a JSON object, not {type(out).__name__}")
    return out


def _load_file(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise KexueError(f"checkpoint {path} is not a readable safetensors file ({e})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never arbitrary unpickling
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError … for bad files
        raise KexueError(
            f"checkpoint {path} cannot be read as a PyTorch state dict with weights_only=True ({e}); "
            "convert it to safetensors"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise KexueError(f"checkpoint {path} is not a flat state dict of tensors (name → tensor)")
    return state


def read_state_dict(checkpoint: str | os.PathLike) -> dict[str, Tensor]:
    """The HF weights (name → tensor, CPU) of a folder or a .safetensors / .bin / .pt file."""
    path = Path(checkpoint)
    if path.is_file():
        return _load_file(path)
    if not path.is_dir():
        raise KexueError(f"checkpoint {path} does not exist; pass an HF model folder or a weights file")
    if (path / "model.safetensors").is_file():
        return _load_file(path / "model.safetensors")
    index = path / "model.safetensors.index.json"
    if index.is_file():  # sharded: {"weight_map": {name: shard file}}
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in _load_file(path / shard).items()}
    if (path / "pytorch_model.bin").is_file():
        return _load_file(path / "pytorch_model.bin")
    raise KexueError(
        f"checkpoint folder {path} holds no model.safetensors, model.safetensors.index.json or "
        "pytorch_model.bin; point at the folder HF save_pretrained wrote"
    )


# --------------------------------------------------------------------------------------------- mapping
def _strip(key: str, family: str) -> str:
    key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)  # TF-era names
    key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
    prefix = _PREFIX[family]
    return key[len(prefix) :] if key.startswith(prefix) else key


def map_hf_state(state: dict[str, Tensor], family: str) -> tuple[dict[str, Tensor], list[str], dict]:
    """(kexue name → tensor, HF names that matched no rule, dropped known entries by HF name)."""
    if family not in FAMILIES:
        raise KexueError(f"unknown model family {family!r}; use one of {FAMILIES}")
    drop = _GPT2_DROP if family == "gpt2" else _ENCODER_DROP
    if family == "roformer":
        drop = [*drop, r"encoder\.embed_positions\.weight"]
    mapped, unknown, dropped = {}, [], {}
    for hf_key, value in state.items():
        key = _strip(hf_key, family)
        if any(re.fullmatch(p, key) for p in drop):
            dropped[key] = value
            continue
        name = kexue_name(hf_key, family)
        if name is None:
            unknown.append(hf_key)
        else:
            mapped[name[0]] = value.t() if name[1] else value
    return mapped, unknown, dropped


def kexue_name(hf_key: str, family: str) -> tuple[str, bool] | None:
    """(kexue name, whether the HF tensor is stored transposed) of an HF weight name, or None if unknown."""
    key = _strip(hf_key, family)
    for pattern, repl, transpose in _GPT2_RULES if family == "gpt2" else _ENCODER_RULES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, repl, key), transpose
    return None


def _check_roformer_table(dropped: dict[str, Tensor], head_dim: int) -> None:
    """HF RoFormer stores sin(mθ_i) | cos(mθ_i) as a (max_pos, D) table; it must be the standard ladder."""
    table = dropped.get("encoder.embed_positions.weight")
    if table is None:
        return
    from kexue.nn.rope import rope_angles

    phi = rope_angles(torch.arange(table.shape[0]), head_dim)  # (n, D/2) float64
    want = torch.cat((phi.sin(), phi.cos()), dim=-1)
    if table.shape != want.shape or not torch.allclose(table.double(), want, atol=1e-4):
        raise KexueError(
            "RoFormer checkpoint: encoder.embed_positions.weight is not the sinusoidal table of θ_i = "
            f"10000^(−2i/{head_dim}); this checkpoint uses a different RoPE and cannot be loaded as RoFormer"
        )


def load_hf_state(model: nn.Module, state: dict[str, Tensor], family: str, *, source: str = "checkpoint"):
    """Copy HF weights into a kexue model built with the matching config, strictly.

    Heads the model lacks (pooler, MLM, separate LM head when tied) are skipped by name; any other key that
    the
    model does not have, and any model weight the checkpoint lacks, raise a KexueError naming them.
    """
    mapped, unknown, dropped = map_hf_state(state, family)
    own = model.state_dict()
    if family == "roformer":
        _check_roformer_table(dropped, model.cfg.head_dim)
    for absent_head in ("pooler.", "mlm.", "head."):  # heads this model was built without
        if not any(k.startswith(absent_head) for k in own):
            mapped = {k: v for k, v in mapped.items() if not k.startswith(absent_head)}
    for tied in ("mlm.decoder.weight", "head.weight"):  # tied output layers: the token matrix is the weight
        if tied not in own:
            mapped.pop(tied, None)
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(unknown + [k for k in mapped if k not in own])
    if missing or unexpected:
        raise KexueError(
            f"{source} does not fit kexue's {family}: missing {missing or 'none'}; unexpected "
            f"{unexpected or 'none'} (check model=… and the config; heads the checkpoint lacks, e.g. the MLM "
            "head of a bare …Model, need with_mlm=False)"
        )
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in mapped.items() if v.shape != own[k].shape
    ]
    if wrong:
        raise KexueError(f"{source}: shapes differ from the config (checkpoint vs model): {'; '.join(wrong)}")
    model.load_state_dict(mapped, strict=True)
