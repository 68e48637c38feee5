"""ELECTRA in the core (numpy only): the config as transformers writes it, the parameter names of the
one table against the checkpoint transformers 4.57 wrote (tests/fixtures/hf/electra2electra), the TF
and Flax names transformers' TF and Flax ELECTRA classes give, conversion, and the tokenizer class.

The TF and Flax names below are read off transformers 4.57's modeling_tf_electra.py
(TFElectraMainLayer `electra`, TFElectraEmbeddings' `word_embeddings/weight`, TFElectraForMaskedLM's
`generator_predictions` and `generator_lm_head/bias`) and modeling_flax_electra.py
(FlaxElectraModule, FlaxElectraForCausalLMModule, FlaxElectraTiedDense's `bias`), written out by hand.
"""

from __future__ import annotations

import json

import pytest

from core_refs import FIXTURES, copy_case, read_native
from encdec.config import ElectraConfig, EncoderDecoderConfig
from encdec.weights import convert_checkpoint
from encdec.weights.component import architecture_spec
from encdec.weights.names import model_spec, output_projection_name

CASE = "electra2electra"


def _config() -> EncoderDecoderConfig:
    return EncoderDecoderConfig.from_pretrained(FIXTURES / CASE)


def test_config_reads_and_writes_transformers_config_json(tmp_path):
    original = json.loads((FIXTURES / CASE / "config.json").read_text())
    config = _config()
    assert isinstance(config.encoder, ElectraConfig) and isinstance(config.decoder, ElectraConfig)
    assert (config.encoder.embedding_size, config.encoder.hidden_size) == (16, 32)
    config.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    for role in ("encoder", "decoder"):
        for key, value in original[role].items():
            assert written[role][key] == value, f"{role}.{key}"
    # transformers' ElectraConfig defaults (configuration_electra.py), written by a config made bare.
    defaults = ElectraConfig().to_dict()
    expected = dict(model_type="electra", vocab_size=30522, embedding_size=128, hidden_size=256, num_hidden_layers=12,
                    num_attention_heads=4, intermediate_size=1024, hidden_act="gelu", hidden_dropout_prob=0.1,
                    attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
                    initializer_range=0.02, layer_norm_eps=1e-12, summary_type="first", summary_use_proj=True,
                    summary_activation="gelu", summary_last_dropout=0.1, pad_token_id=0,
                    position_embedding_type="absolute", use_cache=True, classifier_dropout=None)
    assert {k: defaults[k] for k in expected} == expected


def test_embedding_size_must_be_a_positive_integer():
    from encdec.errors import ConfigError

    with pytest.raises(ConfigError, match="embedding_size"):
        ElectraConfig(embedding_size=0)


def test_canonical_names_are_the_ones_transformers_wrote():
    spec = model_spec(_config())
    stored = read_native(FIXTURES / CASE, "safetensors")
    assert {p.name: p.shape for p in spec} == {k: tuple(v.shape) for k, v in stored.items()}
    # The .bin holds the tied head too, sharing the word embeddings' storage.
    assert spec.tied_pairs() == [("decoder.generator_lm_head.weight", "decoder.electra.embeddings.word_embeddings.weight")]
    full = read_native(FIXTURES / CASE, "pt")
    assert sorted(full) == sorted(spec.state_dict_names())
    assert (full["decoder.generator_lm_head.weight"] == full["decoder.electra.embeddings.word_embeddings.weight"]).all()


# canonical name -> (TF name, Flax path), as transformers' TF and Flax ELECTRA classes name them.
EXPECTED = {
    "encoder.embeddings.word_embeddings.weight":
        ("encoder/electra/embeddings/word_embeddings/weight", "encoder/embeddings/word_embeddings/embedding"),
    "encoder.embeddings.position_embeddings.weight":
        ("encoder/electra/embeddings/position_embeddings/embeddings", "encoder/embeddings/position_embeddings/embedding"),
    "encoder.embeddings.LayerNorm.weight":
        ("encoder/electra/embeddings/LayerNorm/gamma", "encoder/embeddings/LayerNorm/scale"),
    "encoder.embeddings_project.weight": ("encoder/electra/embeddings_project/kernel", "encoder/embeddings_project/kernel"),
    "encoder.embeddings_project.bias": ("encoder/electra/embeddings_project/bias", "encoder/embeddings_project/bias"),
    "encoder.encoder.layer.1.output.dense.weight":
        ("encoder/electra/encoder/layer_._1/output/dense/kernel", "encoder/encoder/layer/1/output/dense/kernel"),
    "decoder.electra.embeddings_project.weight":
        ("decoder/electra/embeddings_project/kernel", "decoder/electra/embeddings_project/kernel"),
    "decoder.electra.encoder.layer.0.crossattention.self.query.weight":
        ("decoder/electra/encoder/layer_._0/crossattention/self/query/kernel",
         "decoder/electra/encoder/layer/0/crossattention/self/query/kernel"),
    "decoder.generator_predictions.dense.weight":
        ("decoder/generator_predictions/dense/kernel", "decoder/generator_predictions/dense/kernel"),
    "decoder.generator_predictions.LayerNorm.weight":
        ("decoder/generator_predictions/LayerNorm/gamma", "decoder/generator_predictions/LayerNorm/scale"),
    "decoder.generator_predictions.LayerNorm.bias":
        ("decoder/generator_predictions/LayerNorm/beta", "decoder/generator_predictions/LayerNorm/bias"),
    "decoder.generator_lm_head.bias": ("decoder/generator_lm_head/bias", "decoder/generator_lm_head/bias"),
}


def test_tf_and_flax_names_are_transformers_ones():
    spec = model_spec(_config())
    assert {name: (spec.tf_name(name), spec.flax_path(name)) for name in EXPECTED} == EXPECTED
    assert not any("pooler" in p.name for p in spec)  # ELECTRA has none
    # Dense kernels are [in, out] in TF and Flax: hidden 32 -> embedding 16 for the generator's dense.
    dense = spec.param("decoder.generator_predictions.dense.weight")
    assert (dense.shape, dense.tf_shape, dense.flax_shape) == ((16, 32), (32, 16), (32, 16))


def test_projection_only_when_widths_differ_and_an_untied_head_is_stored():
    same = ElectraConfig(vocab_size=20, embedding_size=8, hidden_size=8, num_attention_heads=2, intermediate_size=8,
                         is_decoder=True, add_cross_attention=True, tie_word_embeddings=False)
    spec = architecture_spec(same, "lm")
    assert not any("embeddings_project" in p.name for p in spec)
    head = spec.param(output_projection_name(same, prefix=""))
    assert (head.name, head.shape, head.tf_name, head.flax_path, head.flax_shape) == (
        "generator_lm_head.weight", (20, 8), "generator_lm_head/kernel", "generator_lm_head/kernel", (8, 20))
    assert spec.tied == []
    base = architecture_spec(same, "base")
    assert base.param("embeddings.word_embeddings.weight").tf_name == "electra/embeddings/word_embeddings/weight"


def test_every_format_round_trips_byte_exact(tmp_path):
    order = ["safetensors", "tf", "flax", "pt", "safetensors"]
    current = copy_case(CASE, tmp_path / "0", ["safetensors"])
    for i, fmt in enumerate(order[1:], start=1):
        convert_checkpoint(current, tmp_path / str(i), fmt, progress=False)
        current = tmp_path / str(i)
    assert (current / "model.safetensors").read_bytes() == (FIXTURES / CASE / "model.safetensors").read_bytes()
    convert_checkpoint(copy_case(CASE, tmp_path / "bin", ["pt"]), tmp_path / "from_bin", "safetensors", progress=False)
    assert (tmp_path / "from_bin" / "model.safetensors").read_bytes() == (FIXTURES / CASE / "model.safetensors").read_bytes()


def test_electra_folders_get_the_wordpiece_tokenizer(tmp_path):
    pytest.importorskip("tokenizers")
    from encdec.tokenization import AutoTokenizer

    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "electra"}))
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok.tokenizer_class == "ElectraTokenizer"
    out = tok("hello world")
    assert out["input_ids"] == [2, 5, 6, 3] and out["token_type_ids"] == [0, 0, 0, 0]
