"""Framework-neutral helpers the three ports share."""

from __future__ import annotations

import numpy as np

from encdec.config import BertConfig, EncoderDecoderConfig, split_role_kwargs
from encdec.weights.names import init_weights, model_spec, resize_decoder_vocab


def _tiny(tie: bool = False) -> EncoderDecoderConfig:
    arch = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=8, max_position_embeddings=16)
    return EncoderDecoderConfig.from_encoder_decoder_configs(arch, arch, tie_encoder_decoder=tie)


def test_split_role_kwargs_leaves_joined_config_keys():
    kwargs = {"encoder_hidden_dropout_prob": 0.0, "decoder_model": "m", "decoder_start_token_id": 5, "pad_token_id": 0}
    parts = split_role_kwargs(kwargs)
    assert parts == {"encoder": {"hidden_dropout_prob": 0.0}, "decoder": {"model": "m"}}
    assert kwargs == {"decoder_start_token_id": 5, "pad_token_id": 0}


def test_resize_keeps_rows_draws_new_ones_and_leaves_the_input_alone():
    config = _tiny()
    state = init_weights(config, seed=3)
    before = {k: v.copy() for k, v in state.items()}
    new_config, resized = resize_decoder_vocab(config, state, 25)
    assert config.decoder.vocab_size == 20 and new_config.decoder.vocab_size == 25
    assert new_config.encoder.vocab_size == 20
    fresh = init_weights(new_config, seed=0)
    table = "decoder.bert.embeddings.word_embeddings.weight"
    np.testing.assert_array_equal(resized[table][:20], state[table])
    np.testing.assert_array_equal(resized[table][20:], fresh[table][20:])
    untouched = "decoder.bert.encoder.layer.0.output.dense.weight"
    np.testing.assert_array_equal(resized[untouched], state[untouched])
    assert set(resized) == {p.name for p in model_spec(new_config)}
    for name, value in before.items():
        np.testing.assert_array_equal(state[name], value)


def test_resize_with_tied_encoder_changes_both_vocabularies():
    new_config, resized = resize_decoder_vocab(_tiny(tie=True), init_weights(_tiny(tie=True), seed=1), 12)
    assert new_config.encoder.vocab_size == new_config.decoder.vocab_size == 12
    assert resized["encoder.embeddings.word_embeddings.weight"].shape == (12, 8)
