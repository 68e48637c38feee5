"""BART's decoder in the TensorFlow port, beyond the shared harness (tests/ports/test_ports_bart.py, whose
generation runs under XLA): generation run eagerly, the tf_model.h5 encdec writes (transformers has no
TFBartForCausalLM to write one) read back, TFBartForCausalLM saved alone and read by transformers 5's
BartForCausalLM, and LayerDrop in training against transformers' PyTorch model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tf_helpers import hf_model, quiet_transformers, random_batch, random_state

from conftest import FIXTURES, golden
from encdec.config import BartConfig, BertConfig, EncoderDecoderConfig
from encdec.tf import TFBartForCausalLM, TFEncoderDecoderModel
from encdec.conformance.tolerances import FP32_ACTIVATION_TINY
from encdec.weights.convert import load_state

GENERATIONS = {
    "greedy": dict(max_length=12, num_beams=1),
    "beam3": dict(max_length=12, num_beams=3, early_stopping=True),
}
_models: dict = {}


def assert_close(name: str, got, expected) -> None:
    """fp32 activations of the tiny models within the tolerance table's bound."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape, (name, got.shape, expected.shape)
    diff = float(np.abs(got - expected).max())
    assert diff <= FP32_ACTIVATION_TINY, f"{name}: max abs diff {diff:.3g} > {FP32_ACTIVATION_TINY}"


def fixture_model(case: str) -> TFEncoderDecoderModel:
    if case not in _models:
        _models[case] = TFEncoderDecoderModel.from_pretrained(FIXTURES / case, fmt="safetensors")
    return _models[case]


@pytest.mark.parametrize("setting", ["greedy", pytest.param("beam3", marks=pytest.mark.slow)])
def test_eager_generation_matches_golden(setting):
    model, g = fixture_model("bert2bart"), golden("bert2bart")
    out = model.generate(g["input_ids"], attention_mask=g["attention_mask"], jit_compile=False,
                         **GENERATIONS[setting])
    got = np.asarray(getattr(out, "sequences", out))
    assert got.shape == g[setting].shape and np.array_equal(got, g[setting]), (got, g[setting])


def test_the_h5_encdec_writes_reads_back(tmp_path):
    model, g = fixture_model("bert2bart_proj"), golden("bert2bart_proj")
    model.save_pretrained(tmp_path)  # tf_model.h5, the TF port's own format
    state, report = load_state(tmp_path, model.spec)
    assert report.format == "tf" and not report.missing
    assert any(name.startswith("decoder/model/decoder/layers.1/encoder_attn/") for name in model.spec.by_tf)
    reloaded = TFEncoderDecoderModel.from_pretrained(tmp_path)
    expected = model.canonical_state()
    got = reloaded.canonical_state()
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert np.array_equal(got[name], value), name
    out = reloaded(input_ids=g["input_ids"], attention_mask=g["attention_mask"],
                   decoder_input_ids=g["decoder_input_ids"])
    assert_close("h5 round trip logits", np.asarray(out.logits), g["logits"])


@pytest.mark.slow
def test_the_decoder_saved_alone_loads_in_transformers(tmp_path):
    import transformers

    quiet_transformers()
    model, g = fixture_model("bert2bart"), golden("bert2bart")
    model.decoder.save_pretrained(tmp_path, safe_serialization=True)
    theirs = transformers.BartForCausalLM.from_pretrained(tmp_path).eval()
    states, mask, ids = g["encoder_last_hidden_state"], g["attention_mask"], g["decoder_input_ids"]
    with torch.no_grad():
        expected = theirs(input_ids=torch.from_numpy(ids), encoder_hidden_states=torch.from_numpy(states),
                          encoder_attention_mask=torch.from_numpy(mask)).logits.numpy()
    ours = TFBartForCausalLM.from_pretrained(tmp_path)
    got = ours(ids, encoder_hidden_states=states, encoder_attention_mask=mask).logits
    assert_close("TFBartForCausalLM alone", np.asarray(got), expected)


def _layerdrop_config(layerdrop: float) -> EncoderDecoderConfig:
    """Tiny BERT -> BART with every dropout 0, so that training differs from inference by LayerDrop alone."""
    encoder = BertConfig(vocab_size=61, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=24, max_position_embeddings=40, initializer_range=0.25, pad_token_id=1,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    decoder = BartConfig(vocab_size=61, d_model=16, decoder_layers=2, decoder_attention_heads=2, decoder_ffn_dim=24,
                         encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=24, max_position_embeddings=40,
                         init_std=0.25, pad_token_id=1, bos_token_id=0, eos_token_id=3, forced_eos_token_id=None,
                         dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, decoder_layerdrop=layerdrop)
    return EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder, pad_token_id=1,
                                                             decoder_start_token_id=2, eos_token_id=3)


def test_layerdrop_in_training_matches_transformers():
    """decoder_layerdrop 1.0 skips every decoder layer in training, as transformers' BartDecoder."""
    config = _layerdrop_config(1.0)
    state = random_state(config, 0)
    batch = random_batch(config, np.random.default_rng(0), 2, 7, 5, "ragged")
    arrays = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}
    theirs = hf_model(config, state).train()
    with torch.no_grad():
        expected = theirs(**{k: torch.from_numpy(v) for k, v in arrays.items()}).logits.numpy()
    model = TFEncoderDecoderModel.from_state(config, state)
    got = model(**arrays, training=True).logits
    assert_close("training logits, layerdrop 1.0", np.asarray(got), expected)
