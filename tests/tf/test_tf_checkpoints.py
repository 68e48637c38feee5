"""Saving and loading the TensorFlow port: transformers' tf_model.h5 layout, safetensors, atomic saves,
and joining pretrained components."""

from __future__ import annotations

import logging
import os
import shutil

import h5py
import numpy as np
import pytest
import torch

from tf_helpers import PAD, START, close, hf_model, joined_config, random_batch, random_state, tf_model, torch_batch

from conftest import FIXTURES, golden
from encdec.config import BertConfig, GPT2Config
from encdec.errors import CheckpointError
from encdec.tf import TFEncoderDecoderModel
from encdec.weights.convert import load_state
from encdec.weights.names import TF_ROOT_SCOPE


def _h5_weights(path) -> dict:
    """Every dataset of a Keras 2 weights file by its weight name, with the root scope stripped."""
    out = {}
    with h5py.File(path, "r") as f:
        for layer in f.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else layer
            for name in f[layer].attrs["weight_names"]:
                name = name.decode() if isinstance(name, bytes) else name
                scope, rest = name.split("/", 1)
                assert scope.startswith(TF_ROOT_SCOPE), name
                out[rest.removesuffix(":0")] = f[layer][name][()]
    return out


@pytest.mark.parametrize("case", ["bert2gpt2", "bert2bert_proj", "roberta2roberta"])
def test_h5_has_transformers_names_and_reads_back_bit_exactly(case, tmp_path):
    model = TFEncoderDecoderModel.from_pretrained(FIXTURES / case, fmt="safetensors")
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "generation_config.json", "tf_model.h5"]

    ours, theirs = _h5_weights(tmp_path / "tf_model.h5"), _h5_weights(FIXTURES / case / "tf_model.h5")
    assert sorted(ours) == sorted(theirs)
    for name, value in theirs.items():
        assert ours[name].shape == value.shape, name
        np.testing.assert_array_equal(ours[name], value, err_msg=name)  # the same weights, transformers' layout

    expected = model.canonical_state()
    variables = {p.tf_name: p.to_native(expected[p.name], "tf") for p in model.spec}
    for name, value in ours.items():
        assert value.dtype == variables[name].dtype and np.array_equal(value, variables[name]), name

    state, report = load_state(tmp_path, model.spec)
    assert report.format == "tf" and not report.missing
    assert sorted(state) == sorted(expected)
    for name, value in expected.items():
        assert np.array_equal(state[name], value), name


def test_from_pretrained_rejects_a_config_that_contradicts_the_weights(tmp_path):
    shutil.copytree(FIXTURES / "bert2bert", tmp_path / "ckpt")
    text = (tmp_path / "ckpt" / "config.json").read_text().replace('"intermediate_size": 37', '"intermediate_size": 38')
    (tmp_path / "ckpt" / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match="intermediate"):
        TFEncoderDecoderModel.from_pretrained(tmp_path / "ckpt", fmt="tf")


def test_from_encoder_decoder_pretrained_joins_transformers_checkpoints(tmp_path, caplog):
    """A BertModel and a GPT2Model saved by transformers, joined: their weights are used, cross-attention drawn."""
    import transformers

    from tf_helpers import quiet_transformers

    quiet_transformers()
    torch.manual_seed(0)
    enc = transformers.BertModel(transformers.BertConfig(
        vocab_size=61, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
        max_position_embeddings=32, pad_token_id=PAD))
    dec = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=61, n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=START, eos_token_id=3))
    enc.save_pretrained(tmp_path / "enc")
    dec.save_pretrained(tmp_path / "dec")

    with caplog.at_level(logging.WARNING, logger="encdec"):
        model = TFEncoderDecoderModel.from_encoder_decoder_pretrained(
            tmp_path / "enc", tmp_path / "dec", init_seed=5, decoder_start_token_id=START, pad_token_id=PAD
        )
    assert isinstance(model.config.encoder, BertConfig) and isinstance(model.config.decoder, GPT2Config)
    assert model.config.decoder.add_cross_attention and model.config.decoder.is_decoder
    drawn = [p.name for p in model.spec if ".crossattention." in p.name or ".ln_cross_attn." in p.name]
    assert drawn and all(name in caplog.text for name in drawn)

    state = model.canonical_state()
    for name, value in enc.state_dict().items():
        if f"encoder.{name}" in state:
            np.testing.assert_array_equal(state[f"encoder.{name}"], value.numpy(), err_msg=name)
    for name, value in dec.state_dict().items():
        if f"decoder.{name}" in state:
            np.testing.assert_array_equal(state[f"decoder.{name}"], value.numpy(), err_msg=name)

    # The same joined weights in transformers' model give the same logits.
    config = model.config
    hf = hf_model(config, state)
    b = random_batch(config, np.random.default_rng(0), 2, 7, 5, "right")
    t = torch_batch(b)
    keys = ("input_ids", "attention_mask", "decoder_input_ids")
    with torch.no_grad():
        expected = hf(**{k: t[k] for k in keys}).logits
    close(model(**{k: b[k] for k in keys}).logits, expected)


@pytest.mark.parametrize("variant", ["plain", "tie"])
def test_resize_token_embeddings_as_the_pytorch_port(variant):
    from tf_helpers import pt_port_model

    config = joined_config("bert2bert", 9, variant)
    state = random_state(config, 9)
    model, pt = tf_model(config, state), pt_port_model(config, state)
    old_vocab = config.decoder.vocab_size
    for size in (old_vocab + 7, old_vocab - 5):
        embedding = model.resize_token_embeddings(size)
        pt.resize_token_embeddings(size)
        assert embedding.input_dim == size and model.config.decoder.vocab_size == size
        assert model.get_output_embeddings() is embedding  # still tied
        expected = pt.canonical_state()
        got = model.canonical_state()
        assert sorted(got) == sorted(expected)
        for name, value in expected.items():
            np.testing.assert_array_equal(got[name], value, err_msg=name)
        # The old variables are gone from Keras' view of the model (the pooler's stay, not trainable).
        assert len([v for v in model.weights if "float" in str(v.dtype)]) == len(model.spec)
        pooler = [p for p in model.spec if p.name.startswith("encoder.pooler.")]
        assert len(model.trainable_weights) == len(model.spec) - len(pooler)
        b = random_batch(model.config, np.random.default_rng(9), 2, 6, 4, "right")
        t = torch_batch(b)
        keys = ("input_ids", "attention_mask", "decoder_input_ids")
        with torch.no_grad():
            close(model(**{k: b[k] for k in keys}).logits, pt(**{k: t[k] for k in keys}).logits)


@pytest.mark.parametrize("pair,variant", [("bert2gpt2", "proj"), ("roberta2roberta", "tie")])
def test_keras_own_weights_files_round_trip(pair, variant, tmp_path):
    """Keras' save_weights / load_weights (what ModelCheckpoint uses) keep every parameter."""
    config = joined_config(pair, 5, variant)
    model = tf_model(config, random_state(config, 5))
    model.save_weights(tmp_path / "model.weights.h5")
    other = TFEncoderDecoderModel(config=config)  # init_weights(seed=0): every value differs
    other.load_weights(tmp_path / "model.weights.h5")
    expected, got = model.canonical_state(), other.canonical_state()
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
