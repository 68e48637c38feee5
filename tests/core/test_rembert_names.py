"""RemBERT in the core (numpy only): its config read and written as transformers writes it, its parameter
names and shapes in PyTorch and TF as in the files transformers 4.57 wrote (tests/fixtures/hf/rembert2rembert),
and `encdec convert` between those files byte for byte, both ways, through Flax too."""

from __future__ import annotations

import json

import pytest

from core_refs import FILES, FIXTURES, assert_same_tensors, case_formats, copy_case, read_native, weight_files
from encdec.config import EncoderDecoderConfig, RemBertConfig, arch_config_from_dict
from encdec.errors import ConfigError
from encdec.weights import convert_checkpoint, model_spec
from encdec.weights.names import output_projection_name, word_embedding_name

CASE = "rembert2rembert"
FORMATS = case_formats(CASE)  # safetensors, pt, tf: transformers had no Flax RemBERT
PAIRS = [(src, dst) for src in FORMATS for dst in FORMATS if src != dst]


def _config() -> EncoderDecoderConfig:
    return EncoderDecoderConfig.from_dict(json.loads((FIXTURES / CASE / "config.json").read_text()))


def test_the_fixture_has_every_format_transformers_writes_for_rembert():
    assert FORMATS == ["safetensors", "pt", "tf"]


def test_config_reads_and_writes_transformers_keys():
    written = json.loads((FIXTURES / CASE / "config.json").read_text())
    config = _config()
    for role in ("encoder", "decoder"):
        cfg = getattr(config, role)
        assert type(cfg) is RemBertConfig and cfg.architecture == "rembert"
        assert (cfg.input_embedding_size, cfg.output_embedding_size, cfg.hidden_size) == (16, 24, 32)
        out = cfg.to_dict()
        for key, value in written[role].items():
            assert out[key] == value, (role, key)
        assert out["tie_word_embeddings"] is False  # transformers' RemBertConfig default
        assert arch_config_from_dict(out) == cfg
    assert config.to_dict()["decoder"]["model_type"] == "rembert"


def test_transformers_defaults_and_tied_embeddings_refused():
    cfg = RemBertConfig()
    assert (cfg.vocab_size, cfg.hidden_size, cfg.input_embedding_size, cfg.output_embedding_size) == (
        250300, 1152, 256, 1664)
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (312, 313, 0)
    assert "position_embedding_type" not in cfg.to_dict()
    with pytest.raises(ConfigError, match="tie_word_embeddings"):
        RemBertConfig(tie_word_embeddings=True)
    with pytest.raises(ConfigError, match="input_embedding_size"):
        RemBertConfig(input_embedding_size=0)


def test_names_and_shapes_are_transformers_pytorch_and_tf_ones():
    spec = model_spec(_config())
    pt = read_native(FIXTURES / CASE, "safetensors")
    assert {p.name: p.shape for p in spec} == {k: v.shape for k, v in pt.items()}
    assert not spec.tied  # untied output embeddings, no shared bias
    tf = read_native(FIXTURES / CASE, "tf")  # h5 names without the instance's root scope
    assert {p.tf_name: p.tf_shape for p in spec} == {k: v.shape for k, v in tf.items()}
    head = spec.by_name["decoder.cls.predictions.decoder.weight"]
    assert (head.shape, head.tf_shape, head.flax_shape) == ((99, 24), (99, 24), (99, 24))
    assert head.flax_path == "decoder/cls/predictions/decoder/embedding"
    assert spec.by_name["encoder.encoder.embedding_hidden_mapping_in.weight"].flax_path == (
        "encoder/encoder/embedding_hidden_mapping_in/kernel")
    assert "encoder.pooler.dense.weight" in spec.by_name
    assert output_projection_name(_config().decoder) in spec.by_name
    assert word_embedding_name(_config().decoder) == "decoder.rembert.embeddings.word_embeddings.weight"


@pytest.mark.parametrize("src,dst", PAIRS, ids=[f"{s}-to-{d}" for s, d in PAIRS])
def test_conversion_gives_what_transformers_wrote(tmp_path, src, dst):
    convert_checkpoint(copy_case(CASE, tmp_path / "src", [src]), tmp_path / "out", dst, progress=False)
    assert weight_files(tmp_path / "out") == [FILES[dst]]
    assert_same_tensors(read_native(tmp_path / "out", dst), read_native(FIXTURES / CASE, dst), f"{src}->{dst}")


def test_converted_safetensors_is_byte_identical_to_transformers(tmp_path):
    for src in ("pt", "tf"):
        convert_checkpoint(copy_case(CASE, tmp_path / src, [src]), tmp_path / f"out-{src}", "safetensors",
                           progress=False)
        got = (tmp_path / f"out-{src}" / "model.safetensors").read_bytes()
        assert got == (FIXTURES / CASE / "model.safetensors").read_bytes(), src


@pytest.mark.parametrize("start", FORMATS)
def test_round_trip_through_every_format_flax_included_is_bit_exact(tmp_path, start):
    order = [start] + [f for f in FILES if f != start] + [start]
    current = copy_case(CASE, tmp_path / "0", [start])
    for i, fmt in enumerate(order[1:], start=1):
        convert_checkpoint(current, tmp_path / str(i), fmt, progress=False)
        current = tmp_path / str(i)
    assert_same_tensors(read_native(current, start), read_native(FIXTURES / CASE, start), " -> ".join(order))
