"""Configs: round trips of transformers' files, errors, and the framework-neutral random init."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core_refs import CASES, FIXTURES
from encdec.config import (
    BertConfig,
    EncoderDecoderConfig,
    GenerationConfig,
    GPT2Config,
    RobertaConfig,
    arch_config_from_dict,
)
from encdec.errors import ConfigError
from encdec.weights.names import init_weights, model_spec


def _assert_kept(original: dict, written: dict, where: str = "") -> None:
    """Every key of the original is in the written file with the same value (defaults may be added)."""
    for key, value in original.items():
        assert key in written, f"{where}{key} dropped"
        if isinstance(value, dict):
            _assert_kept(value, written[key], f"{where}{key}.")
        else:
            assert written[key] == value, f"{where}{key}: {written[key]!r} != {value!r}"


@pytest.mark.parametrize("case", CASES)
def test_config_round_trip_keeps_every_key(tmp_path, case):
    original = json.loads((FIXTURES / case / "config.json").read_text())
    original["my_tool_setting"] = {"a": [1, 2]}
    original["encoder"]["custom_encoder_key"] = "kept"
    (tmp_path / "config.json").write_text(json.dumps(original))
    config = EncoderDecoderConfig.from_pretrained(tmp_path)
    (tmp_path / "out").mkdir()
    config.save_pretrained(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    _assert_kept(original, written)
    again = EncoderDecoderConfig.from_dict(written)
    assert again == config
    assert again.encoder.custom_encoder_key == "kept"


@pytest.mark.parametrize("case", CASES)
def test_generation_config_round_trip(tmp_path, case):
    original = json.loads((FIXTURES / case / "generation_config.json").read_text())
    original["my_sampler"] = "kept"
    (tmp_path / "generation_config.json").write_text(json.dumps(original))
    config = GenerationConfig.from_pretrained(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    config.save_pretrained(out)
    written = json.loads((out / "generation_config.json").read_text())
    assert written == original  # transformers writes only what differs from the defaults, as here
    assert GenerationConfig.from_pretrained(out) == config


def test_from_encoder_decoder_configs_does_not_mutate_inputs():
    encoder, decoder = BertConfig(hidden_size=32, num_attention_heads=4), GPT2Config(n_embd=48, n_head=4)
    before = (encoder.to_dict(), decoder.to_dict())
    joined = EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder, decoder_start_token_id=5)
    assert (encoder.to_dict(), decoder.to_dict()) == before
    assert joined.decoder.is_decoder and joined.decoder.add_cross_attention
    assert not decoder.is_decoder and not decoder.add_cross_attention
    assert joined.needs_projection and joined.decoder_start_token_id == 5


def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match=r"unknown model_type 't5'.*bert"):
        arch_config_from_dict({"model_type": "t5"})
    with pytest.raises(ConfigError, match=r"hidden size 30 is not divisible.*4"):
        BertConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ConfigError, match=r"hidden size 30 is not divisible"):
        GPT2Config(n_embd=30, n_head=4)
    with pytest.raises(ConfigError, match=r"gpt2.*cannot be the encoder"):
        EncoderDecoderConfig(encoder=GPT2Config(), decoder=BertConfig(is_decoder=True, add_cross_attention=True))
    # a decoder config without cross-attention cannot be the decoder of an encoder-decoder
    with pytest.raises(ConfigError, match=r"add_cross_attention=False.*expected both True"):
        EncoderDecoderConfig(encoder=BertConfig(), decoder=BertConfig(is_decoder=True))
    with pytest.raises(ConfigError, match=r"add_cross_attention=True needs is_decoder=True"):
        RobertaConfig(add_cross_attention=True)
    with pytest.raises(ConfigError, match=r"not an encoder-decoder config"):
        EncoderDecoderConfig.from_dict({"model_type": "bert"})
    with pytest.raises(ConfigError, match="file not found"):
        EncoderDecoderConfig.from_pretrained("/nonexistent/folder")


def test_init_weights_is_deterministic_and_matches_the_spec():
    config = EncoderDecoderConfig.from_pretrained(FIXTURES / "bert2bert_proj")
    spec = model_spec(config)
    a, b, c = init_weights(config, seed=7), init_weights(config, seed=7), init_weights(config, seed=8)
    assert list(a) == [p.name for p in spec]
    for p in spec:
        assert a[p.name].shape == p.shape and a[p.name].dtype == np.float32, p.name
        assert a[p.name].tobytes() == b[p.name].tobytes(), p.name
    dense = [p.name for p in spec if p.kind == "dense"]
    assert all(not np.array_equal(a[n], c[n]) for n in dense)
    # transformers' init: N(0, initializer_range) weights, zero biases, unit LayerNorm scales, zero pad row
    word = a["encoder.embeddings.word_embeddings.weight"]
    assert np.all(word[config.encoder.pad_token_id] == 0)
    std = np.std(np.concatenate([a[n].ravel() for n in dense]))
    assert abs(std - config.encoder.initializer_range) < 0.02 * config.encoder.initializer_range + 0.01
    assert all(np.all(a[p.name] == 1) for p in spec if p.kind == "norm_weight")
    assert all(np.all(a[p.name] == 0) for p in spec if p.kind in ("bias", "norm_bias", "conv1d_bias"))


def test_decoder_type_without_cross_attention_is_refused(monkeypatch):
    monkeypatch.setattr(GPT2Config, "can_take_cross_attention", False)
    with pytest.raises(ConfigError, match=r"'gpt2' has no cross-attention"):
        EncoderDecoderConfig.from_encoder_decoder_configs(BertConfig(), GPT2Config())
