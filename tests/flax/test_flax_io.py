"""Weights in and out: seeded init equal to the core's, save/load round trips in msgpack and
safetensors (readable by transformers' PyTorch class), atomic saves, joining pretrained halves."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from conftest import FIXTURES, golden
from flax_testlib import FAST_COMPILE, assert_close
from flax_testlib import torch_on_one_thread  # noqa: F401  (autouse)

jax = pytest.importorskip("jax")
from encdec.config import BertConfig, EncoderDecoderConfig, GPT2Config  # noqa: E402
from encdec.flax import FlaxEncoderDecoderModel  # noqa: E402
from encdec.weights.names import init_weights, model_spec  # noqa: E402


def _tiny_config(**kwargs):
    enc = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20,
                     max_position_embeddings=32)
    dec = GPT2Config(vocab_size=40, n_embd=8, n_layer=1, n_head=2, n_positions=32, bos_token_id=1, eos_token_id=2)
    return EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec, decoder_start_token_id=1, pad_token_id=0, **kwargs)


def _same_params(a, b) -> bool:
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    return [p for p, _ in la] == [p for p, _ in lb] and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for (_, x), (_, y) in zip(la, lb)
    )


def test_seed_gives_the_cores_random_model():
    config = _tiny_config()
    model = FlaxEncoderDecoderModel(config, seed=7)
    state = model.canonical_state()
    expected = init_weights(config, 7)
    assert set(state) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    assert not _same_params(model.params, FlaxEncoderDecoderModel(config, seed=8).params)


def test_seed_zero_is_the_pytorch_ports_model(tmp_path):
    pytest.importorskip("torch")
    from encdec.pt import EncoderDecoderModel
    from encdec.weights.convert import load_state

    config = _tiny_config()
    EncoderDecoderModel(config).save_pretrained(tmp_path / "pt")
    state, _ = load_state(tmp_path / "pt", model_spec(config))
    flax_state = FlaxEncoderDecoderModel(config, seed=0).canonical_state()
    for name, value in state.items():
        np.testing.assert_array_equal(flax_state[name], value, err_msg=name)


def test_join_pretrained_encoder_and_decoder(tmp_path, caplog):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    config = _tiny_config()
    encoder = transformers.BertModel(transformers.BertConfig(**{
        k: v for k, v in config.encoder.to_dict().items() if k not in ("is_decoder", "add_cross_attention")}))
    decoder_config = transformers.GPT2Config(**{
        k: v for k, v in config.decoder.to_dict().items() if k not in ("is_decoder", "add_cross_attention")})
    decoder = transformers.GPT2LMHeadModel(decoder_config)
    encoder.save_pretrained(tmp_path / "enc")
    decoder.save_pretrained(tmp_path / "dec", safe_serialization=False)  # pytorch_model.bin
    with caplog.at_level(logging.WARNING, logger="encdec.flax"):
        joined = FlaxEncoderDecoderModel.from_encoder_decoder_pretrained(
            tmp_path / "enc", tmp_path / "dec", init_seed=5, decoder_start_token_id=1, pad_token_id=0
        )
    assert joined.config.decoder.add_cross_attention and joined.config.decoder_start_token_id == 1
    drawn = set(joined.initialised_parameters)
    # Cross-attention and the projection to GPT-2's width are new; everything else was loaded.
    assert drawn == {p.name for p in joined.spec if ".crossattention." in p.name or ".ln_cross_attn." in p.name
                     or p.name.startswith("enc_to_dec_proj.")}
    assert "decoder.transformer.h.0.crossattention.q_attn.weight" in caplog.text
    state = joined.canonical_state()
    np.testing.assert_array_equal(state["encoder.encoder.layer.0.attention.self.query.weight"],
                                  encoder.encoder.layer[0].attention.self.query.weight.detach().numpy())
    np.testing.assert_array_equal(state["decoder.transformer.h.0.mlp.c_fc.weight"],
                                  decoder.transformer.h[0].mlp.c_fc.weight.detach().numpy())
    drawn_reference = init_weights(joined.config, 5)
    for name in drawn:
        np.testing.assert_array_equal(state[name], drawn_reference[name])


def test_resize_token_embeddings_keeps_rows():
    model = FlaxEncoderDecoderModel(_tiny_config(), seed=1)
    old = np.asarray(model.get_output_embeddings())
    table = model.resize_token_embeddings(45)
    assert table.shape == (45, 8) and model.config.decoder.vocab_size == 45
    np.testing.assert_array_equal(np.asarray(table)[:40], old)
    np.testing.assert_array_equal(np.asarray(model.get_output_embeddings()), np.asarray(table))  # still tied
