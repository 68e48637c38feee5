"""The port contract of the TensorFlow port: from_state / canonical_state / load_canonical_state,
encode, init_cache, decode_step and reorder_cache, checked against the model's own forward pass
without a cache; and the layers a tied encoder and decoder share."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tf_helpers import close, joined_config, random_batch, random_state, tf_model  # first: it sets TensorFlow's threads

from encdec.errors import CheckpointError, ConfigError, InputError
from encdec.tf import TFEncoderDecoderModel

CASES = [("bert2gpt2", "plain"), ("roberta2roberta", "tie"), ("bert2bert", "proj")]
_built: dict = {}


def build(pair: str, variant: str):
    if (pair, variant) not in _built:
        config = joined_config(pair, 12, variant)
        state = random_state(config, 12)
        batch = random_batch(config, np.random.default_rng(12), 3, 7, 6, "ragged")
        _built[pair, variant] = (state, tf_model(config, state), batch)
    return _built[pair, variant]


@pytest.mark.parametrize("pair,variant", CASES)
def test_decode_step_gives_the_forward_pass_logits(pair, variant):
    _, model, b = build(pair, variant)
    dec = b["decoder_input_ids"]
    expected = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=dec,
                     use_cache=False).logits.numpy()
    encoded = model.encode(b["input_ids"], b["attention_mask"])
    close(encoded.last_hidden_state, model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                           decoder_input_ids=dec).encoder_last_hidden_state)
    cache = model.init_cache(3, 8, encoded, b["attention_mask"])
    cfg = model.config.decoder
    assert int(cache["index"]) == 0 and len(cache["layers"]) == cfg.num_hidden_layers
    for layer in cache["layers"]:
        assert sorted(layer) == ["cross_key", "cross_value", "key", "value"]
        assert tuple(layer["key"].shape) == (3, cfg.num_attention_heads, 8, cfg.head_dim)
        assert tuple(layer["cross_value"].shape) == (3, cfg.num_attention_heads, 7, cfg.head_dim)
    start = 0
    for width in (3, 1, 2):
        logits, cache = model.decode_step(dec[:, start : start + width], cache)
        assert tuple(logits.shape) == (3, width, cfg.vocab_size)
        close(logits, expected[:, start : start + width])
        start += width
        assert int(cache["index"]) == start
    with pytest.raises(InputError, match="adds 3 tokens to a cache holding 6 of 8"):
        model.decode_step(dec[:, :3], cache)


@pytest.mark.parametrize("pair,variant", [("bert2gpt2", "plain"), ("bert2bert", "proj")])
def test_a_cache_of_three_rows_per_item(pair, variant):
    """n = 3 rows per batch item (B = 2): cross keys/values and the mask stay per item; each row decodes as
    a one-row-per-item cache over its item's tokens does; rows reordered within items decode as those rows
    decoded from the start; and PyTorch's port gives the same logits."""
    import torch

    from tf_helpers import pt_port_model

    state, model, b = build(pair, variant)
    n, cfg = 3, model.config.decoder
    ids, mask = b["input_ids"][:2], b["attention_mask"][:2]
    rng = np.random.default_rng(3)
    dec = rng.integers(4, cfg.vocab_size, (6, 5))  # [B * n, 5]: rows 0-2 item 0, rows 3-5 item 1
    encoded = model.encode(ids, mask)
    cache = model.init_cache(6, 8, encoded, mask)
    assert tuple(cache["encoder_attention_mask"].shape) == (2, 7)
    for layer in cache["layers"]:
        assert tuple(layer["key"].shape) == (6, cfg.num_attention_heads, 8, cfg.head_dim)
        assert tuple(layer["cross_key"].shape) == tuple(layer["cross_value"].shape) == (2, cfg.num_attention_heads,
                                                                                        7, cfg.head_dim)
    logits, cache = model.decode_step(dec[:, :3], cache)
    for row in range(6):
        single = model.init_cache(2, 8, encoded, mask)  # one row per item: row `row` as item row // n
        tokens = np.repeat(dec[row : row + 1, :3], 2, axis=0)
        expected, _ = model.decode_step(tokens, single)
        close(logits[row], expected[row // n])
    rows = np.array([2, 2, 0, 4, 3, 3])  # within items, as beam search moves rows
    moved = model.reorder_cache(cache, rows)
    for before, after in zip(cache["layers"], moved["layers"]):
        close(after["key"], tf.gather(before["key"], rows))
        assert after["cross_key"] is before["cross_key"] and after["cross_value"] is before["cross_value"]
    assert moved["encoder_attention_mask"] is cache["encoder_attention_mask"]
    got, _ = model.decode_step(dec[:, 3:], moved)
    _, fresh = model.decode_step(dec[rows, :3], model.init_cache(6, 8, encoded, mask))
    expected, _ = model.decode_step(dec[:, 3:], fresh)
    close(got, expected)
    assert np.abs(got.numpy() - model.decode_step(dec[:, 3:], cache)[0].numpy()).max() > 1e-3

    pt = pt_port_model(model.config, state)
    with torch.no_grad():
        pt_cache = pt.init_cache(6, 8, pt.encode(torch.from_numpy(ids), torch.from_numpy(mask)),
                                 torch.from_numpy(mask))
        pt_logits, pt_cache = pt.decode_step(torch.from_numpy(dec[:, :3]), pt_cache)
        pt_cache = pt.reorder_cache(pt_cache, torch.from_numpy(rows))
        pt_got, _ = pt.decode_step(torch.from_numpy(dec[:, 3:]), pt_cache)
    close(logits, pt_logits)
    close(got, pt_got)
    with pytest.raises(InputError, match="batch_size is 4; expected a positive multiple of the encoder output's batch 3"):
        model.init_cache(4, 6, model.encode(b["input_ids"], b["attention_mask"]), b["attention_mask"])


def test_decode_step_compiles_with_the_cache_as_a_nest():
    _, model, b = build("roberta2roberta", "tie")
    dec = b["decoder_input_ids"]
    expected = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=dec).logits
    cache = model.init_cache(3, 6, model.encode(b["input_ids"], b["attention_mask"]), b["attention_mask"])
    step = tf.function(model.decode_step, jit_compile=True)
    for i in range(4):
        logits, cache = step(tf.constant(dec[:, i : i + 1], tf.int32), cache)
        close(logits, expected[:, i : i + 1])
    assert step.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("pair,variant", CASES)
def test_canonical_state_round_trips_through_from_state(pair, variant):
    state, model, b = build(pair, variant)
    got = model.canonical_state()
    assert sorted(got) == sorted(p.name for p in model.spec) == sorted(state)
    for name, value in state.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    again = TFEncoderDecoderModel.from_state(model.config, got)
    keys = ("input_ids", "attention_mask", "decoder_input_ids")
    np.testing.assert_array_equal(again(**{k: b[k] for k in keys}).logits, model(**{k: b[k] for k in keys}).logits)


def test_load_canonical_state_keeps_the_variables_and_refuses_what_does_not_fit():
    state, _, _ = build("bert2gpt2", "plain")
    model = TFEncoderDecoderModel(config=joined_config("bert2gpt2", 12))  # init_weights(seed=0)
    before = [id(v) for v in model.weights]
    model.load_canonical_state(state)
    assert [id(v) for v in model.weights] == before
    for name, value in model.canonical_state().items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)
    name = "decoder.transformer.h.0.attn.c_attn.weight"
    shape = state[name].shape
    with pytest.raises(CheckpointError, match=rf"{name}: the state's tensor has shape \(2, 3\); the model's has "
                                              rf"\({shape[0]}, {shape[1]}\)"):
        model.load_canonical_state({name: np.zeros((2, 3), np.float32)}, partial=True)
    with pytest.raises(CheckpointError, match="decoder.nothing.weight: not a stored parameter"):
        model.load_canonical_state({"decoder.nothing.weight": np.zeros(3, np.float32)}, partial=True)
    with pytest.raises(CheckpointError, match="the state lacks 1 stored tensor"):
        model.load_canonical_state({k: v for k, v in state.items() if k != name})
    with pytest.raises(ConfigError, match="computes in float32"):
        TFEncoderDecoderModel.from_state(model.config, state, dtype="float16")


def test_a_tie_of_halves_that_compute_differently_is_refused():
    """Shared layers compute as the decoder's config says: a tie of halves with another activation would
    run the encoder with the decoder's, so it is refused (the other ports tie the tensors only)."""
    config = joined_config("bert2bert", 3, "tie")
    config.encoder.hidden_act = "relu"
    config.decoder.hidden_act = "gelu"
    with pytest.raises(ConfigError, match="differ in hidden_act; expected equal values"):
        TFEncoderDecoderModel(config)


def test_tied_encoder_and_decoder_share_their_layers():
    """tie_encoder_decoder: one set of embeddings and self-attention/feed-forward layers, cross-attention apart."""
    state, model, b = build("roberta2roberta", "tie")
    decoder = model.decoder.base_model
    assert model.encoder.embeddings is decoder.embeddings
    for enc_layer, dec_layer in zip(model.encoder.encoder.layer, decoder.encoder.layer):
        assert enc_layer.attention is dec_layer.attention and enc_layer.intermediate is dec_layer.intermediate
        assert not hasattr(enc_layer, "crossattention")
    # A change of a shared tensor changes the encoder's output too.
    before = model.encode(b["input_ids"], b["attention_mask"]).last_hidden_state.numpy()
    shared = next(n for n in model.spec.by_name if n.endswith("layer.0.intermediate.dense.weight"))
    model.load_canonical_state({shared: state[shared] * 2}, partial=True)
    try:
        after = model.encode(b["input_ids"], b["attention_mask"]).last_hidden_state.numpy()
        assert not np.allclose(after, before)
    finally:
        model.load_canonical_state({shared: state[shared]}, partial=True)
