"""Loading a standalone pretrained encoder or decoder (from_encoder_decoder_pretrained's input).

The standalone checkpoints are written here with the formats' own libraries
(safetensors, torch, h5py, flax), under the names transformers gives them,
taken from data/hf_parameter_names.md (read off transformers' own classes).
The tables show layer 0 of each model, so the models here have one layer.
"""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import pytest

from core_refs import flax_to_bytes
from encdec.config import BertConfig, GPT2Config, RobertaConfig
from encdec.errors import CheckpointError
from encdec.weights import load_component

TABLES = pathlib.Path(__file__).parent / "data" / "hf_parameter_names.md"
ROW = re.compile(r"^\| `([^`]+)` \[([\d, ]+)\] \| (?:`([^`]+)` \[([\d, ]+)\] · (\w+)|— \(tied/absent\)) \| (?:`([^`]+)` \[([\d, ]+)\]|— \(tied/absent\)) \|$")


def _shape(text):
    return tuple(int(s) for s in text.split(","))


def read_tables() -> dict[str, list[dict]]:
    tables, current = {}, None
    for line in TABLES.read_text().splitlines():
        if line.startswith("#### "):
            current = tables.setdefault(line.split()[1], [])
            continue
        m = ROW.match(line)
        if m and current is not None:
            pt, pt_shape, tf, tf_shape, transpose, flax, flax_shape = m.groups()
            current.append(
                dict(
                    pt=pt,
                    pt_shape=_shape(pt_shape),
                    tf=tf,
                    tf_shape=_shape(tf_shape) if tf else None,
                    tf_transpose=transpose == "simple",
                    flax=flax,
                    flax_shape=_shape(flax_shape) if flax else None,
                )
            )
    return tables


TABLE = read_tables()
SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=64)
CONFIGS = {
    "bert_base": lambda: BertConfig(**SMALL),
    "bert_causallm_xattn": lambda: BertConfig(**SMALL, is_decoder=True, add_cross_attention=True),
    "roberta_causallm_xattn": lambda: RobertaConfig(**SMALL, is_decoder=True, add_cross_attention=True),
    "gpt2_lmhead_xattn": lambda: GPT2Config(vocab_size=99, n_embd=32, n_layer=1, n_head=4, n_positions=64,
                                           is_decoder=True, add_cross_attention=True),
}


def _rows(table: str, keep=lambda row: True) -> list[dict]:
    return [r for r in TABLE[table] if keep(r)]


def make_checkpoint(folder: pathlib.Path, rows: list[dict], config, fmt: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a standalone checkpoint with the rows' names in `fmt`; return its PyTorch state dict."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    rng = np.random.default_rng(seed)
    stored = [r for r in rows if r["tf"] is not None]
    pt = {r["pt"]: rng.standard_normal(r["pt_shape"]).astype(np.float32) for r in stored}
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file(pt, str(folder / "model.safetensors"), metadata={"format": "pt"})
    elif fmt == "pt":
        import torch

        sd = {k: torch.from_numpy(v) for k, v in pt.items()}
        for r in rows:  # transformers' .bin also holds the tied LM head, as the embeddings' storage
            if r["tf"] is None:
                source = next(k for k in sd if k.endswith(("word_embeddings.weight", "wte.weight")) and sd[k].shape == r["pt_shape"]) \
                    if r["pt"].endswith("weight") else r["pt"].replace("decoder.bias", "bias")
                sd[r["pt"]] = sd[source]
        torch.save(sd, folder / "pytorch_model.bin")
    elif fmt == "tf":
        import h5py

        with h5py.File(folder / "tf_model.h5", "w") as f:
            layers = {}
            for r in stored:
                layers.setdefault(r["tf"].split("/")[1], []).append(r)
            f.attrs["layer_names"] = [name.encode() for name in layers]
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = b"2.15.0"
            for name, layer_rows in layers.items():
                group = f.create_group(name)
                group.attrs["weight_names"] = [r["tf"].encode() for r in layer_rows]
                for r in layer_rows:
                    value = pt[r["pt"]].T if r["tf_transpose"] else pt[r["pt"]]
                    group.create_dataset(r["tf"], data=value.reshape(r["tf_shape"]))
    else:
        params = {}
        for r in stored:  # Flax kernels are the transposed PyTorch weights (dense and Conv1D alike)
            value = pt[r["pt"]].T if r["flax"].endswith("/kernel") else pt[r["pt"]]
            params[r["flax"]] = value.reshape(r["flax_shape"])
        (folder / "flax_model.msgpack").write_bytes(flax_to_bytes(params))
    return pt


# "pt" needs torch to write transformers' files: tests/interop runs these tests for it.
FORMATS = ("safetensors", "tf", "flax")


def _assert_state(state, want):
    assert sorted(state) == sorted(want)
    for name, value in want.items():
        assert state[name].dtype == value.dtype and state[name].tobytes() == value.tobytes(), name


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("table,role", [
    ("bert_base", "encoder"),
    ("bert_causallm_xattn", "decoder"),
    ("roberta_causallm_xattn", "decoder"),
    ("gpt2_lmhead_xattn", "decoder"),
])
def test_component_in_its_own_role(tmp_path, table, role, fmt):
    config = CONFIGS[table]()
    want = make_checkpoint(tmp_path, _rows(table), config, fmt)
    state, report = load_component(tmp_path, config, role)
    _assert_state(state, want)
    assert report.missing == [] and report.format == fmt
    tied = {r["pt"] for r in TABLE[table] if r["tf"] is None}
    assert {n for n, _ in report.ignored} == (tied if fmt == "pt" else set())


@pytest.mark.parametrize("fmt", FORMATS)
def test_bare_encoder_loaded_as_decoder(tmp_path, fmt):
    """A BertModel checkpoint becomes a decoder's body: `bert.` names, pooler ignored,
    cross-attention and LM head reported missing."""
    base = make_checkpoint(tmp_path, _rows("bert_base"), CONFIGS["bert_base"](), fmt)
    decoder = CONFIGS["bert_causallm_xattn"]()
    state, report = load_component(tmp_path, decoder, "decoder")
    want = {f"bert.{k}": v for k, v in base.items() if not k.startswith("pooler.")}
    assert set(want) <= {r["pt"] for r in TABLE["bert_causallm_xattn"]}  # the names of BertLMHeadModel
    _assert_state(state, want)
    stored_decoder = {r["pt"] for r in TABLE["bert_causallm_xattn"] if r["tf"] is not None}
    assert sorted(report.missing) == sorted(stored_decoder - set(want))
    assert all("crossattention" in n or n.startswith("cls.") for n in report.missing)
    assert sorted(n for n, _ in report.ignored) == sorted(
        {"safetensors": ["pooler.dense.bias", "pooler.dense.weight"],
         "pt": ["pooler.dense.bias", "pooler.dense.weight"],
         "tf": ["bert/pooler/dense/bias", "bert/pooler/dense/kernel"],
         "flax": ["pooler/dense/bias", "pooler/dense/kernel"]}[fmt]
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_lm_checkpoint_loaded_as_encoder(tmp_path, fmt):
    """A BertLMHeadModel/BertForMaskedLM checkpoint (no cross-attention) as an encoder: `bert.` dropped,
    the head ignored, the pooler it lacks reported missing."""
    rows = _rows("bert_causallm_xattn", lambda r: "crossattention" not in r["pt"])
    lm = make_checkpoint(tmp_path, rows, BertConfig(**SMALL, is_decoder=True), fmt)
    state, report = load_component(tmp_path, CONFIGS["bert_base"](), "encoder")
    want = {k[len("bert."):]: v for k, v in lm.items() if k.startswith("bert.")}
    assert set(want) <= {r["pt"] for r in TABLE["bert_base"]}
    _assert_state(state, want)
    assert sorted(report.missing) == ["pooler.dense.bias", "pooler.dense.weight"]
    assert len(report.ignored) == len([r for r in rows if r["pt"].startswith("cls.") and (r["tf"] or fmt == "pt")])


@pytest.mark.parametrize("fmt", FORMATS)
def test_bare_gpt2_loaded_as_decoder(tmp_path, fmt):
    """A GPT2Model checkpoint (no `transformer.` prefix in PyTorch and Flax, no LM head)."""
    rows = []
    for r in _rows("gpt2_lmhead_xattn", lambda r: r["pt"].startswith("transformer.") and "crossattention" not in r["pt"]
                   and "ln_cross_attn" not in r["pt"]):
        rows.append(dict(r, pt=r["pt"][len("transformer."):], flax=r["flax"][len("transformer/"):],
                         tf=r["tf"].replace("tfgpt2lm_head_model/", "tfgpt2_model/")))
    bare = make_checkpoint(tmp_path, rows, GPT2Config(vocab_size=99, n_embd=32, n_layer=1, n_head=4, n_positions=64), fmt)
    state, report = load_component(tmp_path, CONFIGS["gpt2_lmhead_xattn"](), "decoder")
    _assert_state(state, {f"transformer.{k}": v for k, v in bare.items()})
    assert report.missing and all("crossattention" in n or "ln_cross_attn" in n for n in report.missing)


def test_component_errors(tmp_path):
    rows = _rows("bert_base")
    make_checkpoint(tmp_path / "a", rows, CONFIGS["bert_base"](), "safetensors")
    wider = BertConfig(**dict(SMALL, hidden_size=48, num_attention_heads=4))
    with pytest.raises(CheckpointError, match=r"embeddings\.word_embeddings\.weight.*\[99, 32\].*\[99, 48\]"):
        load_component(tmp_path / "a", wider, "encoder")
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(tmp_path / "a" / "model.safetensors"))
    tensors["embeddings.mystery.weight"] = np.zeros(2, np.float32)
    save_file(tensors, str(tmp_path / "a" / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"embeddings\.mystery\.weight"):
        load_component(tmp_path / "a", CONFIGS["bert_base"](), "encoder")
