"""build_transformer_model and the HF checkpoint reader: missing or unexpected keys raise a KexueError naming
them; bare and prefixed names, TF-era LayerNorm names, sharded safetensors and .bin state dicts all load the
same weights; nothing is unpickled beyond weights_only; bad names and files fail with a clear message."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from kexue.errors import KexueError
from kexue.models import build_transformer_model
from kexue.models.checkpoint import map_hf_state, read_config, read_state_dict

CONFIG = {  # an HF BERT config.json, as a dict
    "model_type": "bert",
    "vocab_size": 40,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 24,
    "max_position_embeddings": 12,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
}


def hf_state(gen) -> dict[str, torch.Tensor]:
    """The weights of an HF BertForMaskedLM with CONFIG, by name, from a kexue model (names mapped back)."""
    model = build_transformer_model(CONFIG, with_mlm=True, generator=gen)
    inverse = {
        "embeddings.token.weight": "bert.embeddings.word_embeddings.weight",
        "embeddings.position.weight": "bert.embeddings.position_embeddings.weight",
        "embeddings.segment.weight": "bert.embeddings.token_type_embeddings.weight",
        "mlm.bias": "cls.predictions.bias",
    }
    out = {}
    for k, v in model.state_dict().items():
        name = inverse.get(k)
        if name is None:
            name = (
                k.replace("embeddings.norm", "bert.embeddings.LayerNorm")
                .replace("mlm.dense", "cls.predictions.transform.dense")
                .replace("mlm.norm", "cls.predictions.transform.LayerNorm")
            )
            for a, b in (
                (".attn.q.", ".attention.self.query."),
                (".attn.k.", ".attention.self.key."),
                (".attn.v.", ".attention.self.value."),
                (".attn.o.", ".attention.output.dense."),
                (".norm1.", ".attention.output.LayerNorm."),
                (".ffn_in.", ".intermediate.dense."),
                (".ffn_out.", ".output.dense."),
                (".norm2.", ".output.LayerNorm."),
            ):
                name = name.replace(a, b)
            name = name.replace("layers.", "bert.encoder.layer.")
        out[name] = v.clone()
    return out


def test_mapping_covers_every_weight_once(gen):
    state = hf_state(gen)
    mapped, unknown, dropped = map_hf_state(state, "bert")
    assert not unknown and not dropped and len(mapped) == len(state)


def test_missing_key_is_named(gen, tmp_path):
    state = hf_state(gen)
    del state["bert.encoder.layer.1.attention.self.key.bias"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(KexueError, match=r"missing \['layers\.1\.attn\.k\.bias'\]"):
        build_transformer_model(CONFIG, tmp_path, with_mlm=True)


def test_unexpected_key_is_named(gen, tmp_path):
    state = hf_state(gen)
    state["bert.encoder.layer.0.attention.self.extra.weight"] = torch.zeros(2)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(
        KexueError, match=r"unexpected \['bert\.encoder\.layer\.0\.attention\.self\.extra\.weight'\]"
    ):
        build_transformer_model(CONFIG, tmp_path, with_mlm=True)


def test_a_layer_too_many_is_unexpected(gen, tmp_path):
    save_file(hf_state(gen), tmp_path / "model.safetensors")
    with pytest.raises(KexueError, match=r"unexpected \['layers\.1\.attn\.k\.bias'"):
        build_transformer_model({**CONFIG, "num_hidden_layers": 1}, tmp_path, with_mlm=True)


def test_mlm_head_missing_from_a_bare_checkpoint(gen, tmp_path):
    state = {k: v for k, v in hf_state(gen).items() if not k.startswith("cls.")}
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(KexueError, match=r"mlm\.bias.*with_mlm=False"):
        build_transformer_model(CONFIG, tmp_path, application="lm")
    build_transformer_model(CONFIG, tmp_path)  # the encoder needs no head: loads


def test_shape_mismatch_is_named(gen, tmp_path):
    save_file(hf_state(gen), tmp_path / "model.safetensors")
    with pytest.raises(KexueError, match=r"embeddings\.position\.weight"):
        build_transformer_model({**CONFIG, "max_position_embeddings": 13}, tmp_path, with_mlm=True)


def test_every_format_loads_the_same_weights(gen, tmp_path):
    """model.safetensors, sharded safetensors, pytorch_model.bin, bare names (no `bert.`), TF-era gamma/beta,
    and
    the head's duplicate `decoder.bias` / an NSP head dropped: the same model."""
    state = hf_state(gen)
    want = build_transformer_model(
        CONFIG, with_mlm=True, generator=torch.Generator().manual_seed(0)
    ).state_dict()
    (tmp_path / "a").mkdir()
    save_file(state, tmp_path / "a" / "model.safetensors")
    (tmp_path / "b").mkdir()
    names = sorted(state)
    shards = {"s1.safetensors": names[: len(names) // 2], "s2.safetensors": names[len(names) // 2 :]}
    for f, keys in shards.items():
        save_file({k: state[k] for k in keys}, tmp_path / "b" / f)
    index = {"weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (tmp_path / "b" / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "c").mkdir()
    old = {
        k.removeprefix("bert.")
        .replace("LayerNorm.weight", "LayerNorm.gamma")
        .replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in state.items()
    }
    old |= {
        "cls.predictions.decoder.bias": state["cls.predictions.bias"],
        "cls.seq_relationship.weight": torch.zeros(2, 16),
    }
    old["embeddings.position_ids"] = torch.arange(12)[None]
    torch.save(old, tmp_path / "c" / "pytorch_model.bin")
    for where in ("a", "b", "c"):
        got = build_transformer_model(CONFIG, tmp_path / where, with_mlm=True).state_dict()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want), where
    assert read_state_dict(tmp_path / "c" / "pytorch_model.bin").keys() == old.keys()


class NotWeights:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path):
    with open(tmp_path / "evil.bin", "wb") as f:
        pickle.dump({"x": NotWeights()}, f, protocol=2)
    with pytest.raises(KexueError, match="weights_only"):
        read_state_dict(tmp_path / "evil.bin")


def test_config_from_path_folder_or_dict(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    assert read_config(tmp_path) == read_config(tmp_path / "config.json") == read_config(CONFIG) == CONFIG
    with pytest.raises(KexueError, match="does not exist"):
        read_config(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(KexueError, match="not valid JSON"):
        read_config(tmp_path / "bad.json")


def test_bad_names_and_paths(tmp_path):
    with pytest.raises(KexueError, match="unknown model"):
        build_transformer_model(CONFIG, model="albert")
    with pytest.raises(KexueError, match="application"):
        build_transformer_model(CONFIG, application="seq2seq")
    with pytest.raises(KexueError, match="activation"):
        build_transformer_model({**CONFIG, "hidden_act": "mish"})
    with pytest.raises(KexueError, match="does not exist"):
        build_transformer_model(CONFIG, tmp_path / "missing")
    with pytest.raises(KexueError, match=r"no model\.safetensors"):
        build_transformer_model(CONFIG, tmp_path)


def test_initialisation_is_drawn_from_the_generator():
    a = build_transformer_model(CONFIG, generator=torch.Generator().manual_seed(3)).state_dict()
    b = build_transformer_model(CONFIG, generator=torch.Generator().manual_seed(3)).state_dict()
    c = build_transformer_model(CONFIG, generator=torch.Generator().manual_seed(4)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["layers.0.attn.q.weight"], c["layers.0.attn.q.weight"])
    assert a["layers.0.attn.q.weight"].std().item() == pytest.approx(0.02, rel=0.2)  # BERT's N(0, 0.02²)
