"""BART's decoder in the core (numpy only): its config read with BartConfig's defaults, its parameter
names against the files transformers 4.57 wrote (bert2bart, bert2bart_proj), conversion between the
formats against those files, and BART refused as an encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core_refs import FILES, FIXTURES, FORMATS, assert_same_tensors, case_formats, copy_case, read_native, weight_files
from encdec.config import BartConfig, EncoderDecoderConfig
from encdec.errors import ConfigError
from encdec.weights import convert_checkpoint, model_spec
from encdec.weights.names import decoder_spec, init_weights

CASES = ("bert2bart", "bert2bart_proj")


def _config(case: str) -> EncoderDecoderConfig:
    return EncoderDecoderConfig.from_pretrained(FIXTURES / case)


def _readme(case: str) -> dict:
    return json.loads((FIXTURES / case / "README.json").read_text())


@pytest.mark.parametrize("case", CASES)
def test_config_reads_bart_defaults_for_what_config_json_leaves_out(case):
    written = json.loads((FIXTURES / case / "config.json").read_text())["decoder"]
    # config.json leaves these out because they equal BartConfig's defaults (pad 1, bos 0, eos 2).
    assert not {"pad_token_id", "bos_token_id", "eos_token_id"} & set(written)
    decoder = _config(case).decoder
    readme = _readme(case)
    assert isinstance(decoder, BartConfig)
    assert (decoder.pad_token_id, decoder.bos_token_id, decoder.eos_token_id) == (readme["pad_token_id"], 0,
                                                                                  readme["eos_token_id"])
    assert decoder.hidden_size == written["d_model"]
    assert decoder.num_attention_heads == written["decoder_attention_heads"]
    assert decoder.num_hidden_layers == written["decoder_layers"]
    assert decoder.hidden_act == written["activation_function"]
    assert decoder.max_positions == written["max_position_embeddings"]
    assert decoder.embed_scale == 1.0 and not decoder.scale_embedding


def test_config_round_trips_and_scales_embeddings():
    config = BartConfig(d_model=36, decoder_attention_heads=4, scale_embedding=True, num_hidden_layers=5)
    assert config.embed_scale == pytest.approx(6.0)
    again = BartConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.to_dict()["num_hidden_layers"] == 5  # kept as written, not read
    assert again.num_hidden_layers == 12  # the decoder's layer count, decoder_layers
    with pytest.raises(ConfigError, match="divisible"):
        BartConfig(d_model=30, decoder_attention_heads=4)
    with pytest.raises(ConfigError, match="activation"):
        BartConfig(activation_function="gelu_10")


@pytest.mark.parametrize("case", CASES)
def test_names_are_those_transformers_wrote(case):
    config = _config(case)
    spec = model_spec(config)
    safetensors = read_native(FIXTURES / case, "safetensors")
    assert sorted(p.name for p in spec) == sorted(safetensors)
    for p in spec:
        assert safetensors[p.name].shape == p.shape, p.name
    # The LM head is tied to the token table, so only the .bin names it.
    assert [t.name for t in spec.tied] == ["decoder.lm_head.weight"]
    assert sorted(read_native(FIXTURES / case, "pt")) == sorted(spec.state_dict_names())
    flax = read_native(FIXTURES / case, "flax")
    assert sorted(p.flax_path for p in spec) == sorted(flax)
    # The position table has max_position_embeddings + 2 rows.
    rows = safetensors["decoder.model.decoder.embed_positions.weight"].shape[0]
    assert rows == config.decoder.max_position_embeddings + 2


def test_untied_lm_head_is_stored_and_cross_attention_is_always_there():
    config = BartConfig(d_model=16, decoder_attention_heads=2, decoder_layers=1, vocab_size=20, tie_word_embeddings=False)
    spec = decoder_spec(config)
    head = spec.by_name["lm_head.weight"]
    assert head.shape == (20, 16) and (head.tf_name, head.flax_path) == ("lm_head/kernel", "lm_head/kernel")
    assert not spec.tied
    # transformers' BartDecoderLayer has its cross-attention whatever add_cross_attention says.
    assert "model.decoder.layers.0.encoder_attn.q_proj.weight" in spec.by_name
    state = init_weights(config, role="decoder")
    assert not state["model.decoder.embed_tokens.weight"][config.pad_token_id].any()  # the padding row


def test_bart_is_refused_as_the_encoder():
    bert = _config("bert2bart").encoder
    bart = _config("bert2bart").decoder
    with pytest.raises(ConfigError, match=r"'bart' cannot be the encoder.*'bert', 'roberta'"):
        EncoderDecoderConfig.from_encoder_decoder_configs(bart, bart)
    with pytest.raises(ConfigError, match="cannot be the encoder"):
        EncoderDecoderConfig.from_encoder_decoder_configs(bart, bert)


PAIRS = [(case, src, dst) for case in CASES for src in case_formats(case) for dst in case_formats(case) if src != dst]


@pytest.mark.parametrize("case,src,dst", PAIRS, ids=[f"{c}-{s}-to-{d}" for c, s, d in PAIRS])
def test_conversion_gives_what_transformers_wrote(tmp_path, case, src, dst):
    source = copy_case(case, tmp_path / "src", [src])
    convert_checkpoint(source, tmp_path / "out", dst, progress=False)
    assert weight_files(tmp_path / "out") == [FILES[dst]]
    assert_same_tensors(read_native(tmp_path / "out", dst), read_native(FIXTURES / case, dst), f"{src}->{dst}")
    if dst in ("safetensors", "flax"):
        # Beyond equal tensors: the same bytes (header order, padding, metadata).
        assert (tmp_path / "out" / FILES[dst]).read_bytes() == (FIXTURES / case / FILES[dst]).read_bytes()


@pytest.mark.parametrize("case", CASES)
def test_round_trip_through_every_format_is_bit_exact(tmp_path, case):
    """safetensors -> bin -> h5 (encdec's TF names) -> msgpack -> safetensors gives transformers' file back."""
    order = ["safetensors"] + [f for f in FORMATS if f != "safetensors"] + ["safetensors"]
    current = copy_case(case, tmp_path / "0", ["safetensors"])
    for i, fmt in enumerate(order[1:], start=1):
        convert_checkpoint(current, tmp_path / str(i), fmt, progress=False)
        current = tmp_path / str(i)
    assert (current / FILES["safetensors"]).read_bytes() == (FIXTURES / case / FILES["safetensors"]).read_bytes()
    tf = read_native(tmp_path / str(order.index("tf")), "tf")
    assert "decoder/model/decoder/layers.0/encoder_attn/k_proj/kernel" in tf


def test_a_transformers_tensor_of_another_layout_is_not_taken():
    # The .bin holds the [out, in] weights; a wrong layout would not fit the spec's shape.
    config = _config("bert2bart_proj")
    spec = model_spec(config)
    fc1 = spec.by_name["decoder.model.decoder.layers.0.fc1.weight"]
    assert fc1.shape == (37, 24) and fc1.flax_shape == (24, 37)
    flax = read_native(FIXTURES / "bert2bart_proj", "flax")
    pt = read_native(FIXTURES / "bert2bart_proj", "pt")
    np.testing.assert_array_equal(fc1.from_flax(flax[fc1.flax_path]), pt[fc1.name])
