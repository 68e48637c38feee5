"""BART's decoder in the Flax port, beyond the shared harness (tests/ports/test_ports_bart.py): the Linen
modules' own parameter paths are those of transformers' FlaxBartForCausalLM (its flax_model.msgpack in
the fixtures), and LayerDrop in training matches transformers' PyTorch model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flax_testlib import assert_close, flax_model, hf_model

from conftest import FIXTURES
from encdec.config import BartConfig, BertConfig, EncoderDecoderConfig
from encdec.flax import FlaxBartForCausalLM
from tiny_models import random_batch, random_state


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[prefix + key] = tuple(value.shape)
    return out


@pytest.mark.parametrize("case", ["bert2bart", "bert2bart_proj"])
def test_module_params_are_transformers_flax_paths(case):
    """The params FlaxBartForCausalLM's modules create are the decoder's of transformers' own msgpack."""
    import jax
    from flax.serialization import msgpack_restore

    config = EncoderDecoderConfig.from_dict(json.loads((FIXTURES / case / "config.json").read_text())).decoder
    theirs = msgpack_restore((FIXTURES / case / "flax_model.msgpack").read_bytes())["decoder"]
    ids = np.zeros((1, 3), np.int32)
    states = np.zeros((1, 2, config.d_model), np.float32)
    params = jax.eval_shape(lambda: FlaxBartForCausalLM(config).init(jax.random.key(0), ids,
                                                                    encoder_hidden_states=states))["params"]
    assert _flat(params) == _flat(theirs)


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


@pytest.mark.slow  # ~20 s: transformers' model and two compilations
def test_layerdrop_in_training_matches_transformers():
    """decoder_layerdrop 1.0 skips every decoder layer in training, as transformers' BartDecoder."""
    import jax

    config = _layerdrop_config(1.0)
    state = random_state(config, 0)
    batch = random_batch(config, np.random.default_rng(0), 2, 7, 5, "ragged")
    arrays = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}
    theirs = hf_model(config, state).train()
    with torch.no_grad():
        expected = theirs(**{k: torch.from_numpy(v) for k, v in arrays.items()}).logits.numpy()
    model = flax_model(config, state)
    got = model(**arrays, train=True, dropout_rng=jax.random.key(0)).logits
    assert_close("training logits, layerdrop 1.0", np.asarray(got), expected)
