"""The port contract: from_state / canonical_state / load_canonical_state, encode, init_cache,
decode_step, reorder_cache, and the one way encoder and decoder are tied."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from encdec.config import BertConfig, EncoderDecoderConfig
from encdec.errors import CheckpointError
from encdec.pt import BertLMHeadModel, BertModel, EncoderDecoderModel
from encdec.weights.names import model_spec
from pt_helpers import joined_config, one_torch_thread, random_batch, random_state  # noqa: F401

CASES = [("bert2bert", {}), ("bert2gpt2", {"proj": True}), ("roberta2roberta", {}), ("bertgen2bertgen", {"tie": True})]
IDS = [pair for pair, _ in CASES]


def build(pair: str, options: dict, seed: int = 0):
    config = joined_config(pair, seed, **options)
    return config, EncoderDecoderModel.from_state(config, random_state(config, seed)).eval()


@pytest.mark.parametrize("pair,options", CASES, ids=IDS)
def test_from_state_and_canonical_state_round_trip(pair, options):
    config, model = build(pair, options)
    state = random_state(config, 0)
    got = model.canonical_state()
    assert list(got) == [p.name for p in model_spec(config)]  # stored names only, in spec order
    for name, value in state.items():
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], value)
    half = EncoderDecoderModel.from_state(config, state, dtype=torch.float16)
    assert all(p.dtype == torch.float16 for p in half.parameters())


def test_load_canonical_state_copies_into_the_same_parameters():
    config, model = build("bert2bert", {})
    params = dict(model.named_parameters())
    other = random_state(config, 5)
    model.load_canonical_state(other)
    assert dict(model.named_parameters()).keys() == params.keys()
    for name, param in model.named_parameters():
        assert param is params[name]
    for name, value in model.canonical_state().items():
        np.testing.assert_array_equal(value, other[name])


def test_load_canonical_state_refuses_before_copying():
    config, model = build("bert2bert", {})
    before = model.canonical_state()
    name = "decoder.bert.embeddings.word_embeddings.weight"
    good = random_state(config, 5)
    wrong_shape = dict(good, **{name: np.zeros((3, 2), np.float32)})
    expected_shape = tuple(before[name].shape)
    message = f"{name}: the state's tensor has shape (3, 2); the model's has {expected_shape}"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        model.load_canonical_state(wrong_shape)
    with pytest.raises(CheckpointError, match="encoder.no_such.weight: not a stored parameter"):
        model.load_canonical_state(dict(good, **{"encoder.no_such.weight": np.zeros(2, np.float32)}))
    with pytest.raises(CheckpointError, match="the state lacks 1 stored tensor"):
        model.load_canonical_state({k: v for k, v in good.items() if k != name})
    for key, value in model.canonical_state().items():  # nothing was copied
        np.testing.assert_array_equal(value, before[key])
    model.load_canonical_state({name: good[name]}, partial=True)
    np.testing.assert_array_equal(model.canonical_state()[name], good[name])


@pytest.mark.parametrize("pair,options", CASES, ids=IDS)
def test_encode_is_the_encoders_output(pair, options):
    config, model = build(pair, options)
    b = random_batch(config, np.random.default_rng(1), 3, 7, 5, "ragged")
    with torch.no_grad():
        encoded = model.encode(b["input_ids"], b["attention_mask"], output_hidden_states=True)
        full = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                     decoder_input_ids=b["decoder_input_ids"], output_hidden_states=True)
    assert encoded.last_hidden_state.shape[-1] == config.encoder.hidden_size  # not projected
    assert torch.equal(encoded.last_hidden_state, full.encoder_last_hidden_state)
    assert len(encoded.hidden_states) == config.encoder.num_hidden_layers + 1


@pytest.mark.parametrize("pair,options", CASES, ids=IDS)
def test_init_cache_structure(pair, options):
    config, model = build(pair, options)
    b = random_batch(config, np.random.default_rng(2), 2, 7, 5, "right")
    dec = config.decoder
    with torch.no_grad():
        encoded = model.encode(b["input_ids"], b["attention_mask"])
        cache = model.init_cache(6, 9, encoded, b["attention_mask"])  # 3 rows per batch item
    assert set(cache) == {"index", "encoder_attention_mask", "layers"}
    assert cache["index"] == 0 and cache["encoder_attention_mask"] is b["attention_mask"]
    assert isinstance(cache["layers"], tuple) and len(cache["layers"]) == dec.num_hidden_layers
    heads, head_dim = dec.num_attention_heads, dec.head_dim
    for layer in cache["layers"]:
        assert set(layer) == {"key", "value", "cross_key", "cross_value"}
        assert layer["key"].shape == layer["value"].shape == (6, heads, 9, head_dim)
        assert layer["cross_key"].shape == layer["cross_value"].shape == (2, heads, 7, head_dim)
        assert layer["cross_key"].is_contiguous() and layer["cross_value"].is_contiguous()


@pytest.mark.parametrize("pair,options", CASES, ids=IDS)
def test_decode_step_continues_the_forward(pair, options):
    """Chunks of 3, 1 and 2 tokens on a preallocated cache give the full forward's logits."""
    config, model = build(pair, options)
    b = random_batch(config, np.random.default_rng(3), 3, 8, 6, "ragged")
    dec = b["decoder_input_ids"]
    with torch.no_grad():
        full = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=dec).logits
        cache = model.init_cache(3, 8, model.encode(b["input_ids"], b["attention_mask"]), b["attention_mask"])
        buffers = [layer["key"] for layer in cache["layers"]]
        start = 0
        for width in (3, 1, 2):
            result = model.decode_step(dec[:, start : start + width], cache)
            assert isinstance(result, tuple) and len(result) == 2
            logits, cache = result
            torch.testing.assert_close(logits, full[:, start : start + width], rtol=0, atol=1e-5)
            start += width
            assert cache["index"] == start
    # written in place: the preallocated tensors are still the cache's
    assert all(layer["key"] is buffer for layer, buffer in zip(cache["layers"], buffers))


def test_decode_step_with_position_ids():
    config, model = build("bert2bert", {})
    b = random_batch(config, np.random.default_rng(4), 2, 6, 4, "none")
    positions = torch.tensor([[5, 6, 7, 8]]).expand(2, 4)
    with torch.no_grad():
        encoded = model.encode(b["input_ids"])
        full = model(input_ids=b["input_ids"], decoder_input_ids=b["decoder_input_ids"]).logits
        logits, _ = model.decode_step(b["decoder_input_ids"], model.init_cache(2, 4, encoded), positions)
        states = encoded.last_hidden_state
        states = model.enc_to_dec_proj(states) if model.enc_to_dec_proj is not None else states
        shifted = model.decoder(b["decoder_input_ids"], position_ids=positions, encoder_hidden_states=states).logits
    torch.testing.assert_close(logits, shifted, rtol=0, atol=1e-5)
    assert not torch.allclose(logits, full, atol=1e-3)


@pytest.mark.parametrize("pair,options", CASES, ids=IDS)
def test_reorder_cache_follows_the_rows(pair, options):
    """A cache of n rows per item reordered within each item decodes as if those rows had been decoded."""
    config, model = build(pair, options)
    b = random_batch(config, np.random.default_rng(5), 2, 7, 5, "ragged")
    n = 3
    ids = b["decoder_input_ids"].repeat_interleave(n, dim=0)  # [6, 5], rows 0-2 item 0, rows 3-5 item 1
    ids[:, 1] = torch.arange(6) + 10  # every row its own history
    rows = torch.tensor([2, 2, 0, 4, 3, 3])
    with torch.no_grad():
        encoded = model.encode(b["input_ids"], b["attention_mask"])
        cache = model.init_cache(6, 5, encoded, b["attention_mask"])
        _, cache = model.decode_step(ids[:, :3], cache)
        reordered = model.reorder_cache(cache, rows)
        got, reordered = model.decode_step(ids[rows, 3:], reordered)
        expected_cache = model.init_cache(6, 5, encoded, b["attention_mask"])
        _, expected_cache = model.decode_step(ids[rows, :3], expected_cache)
        expected, _ = model.decode_step(ids[rows, 3:], expected_cache)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert reordered["index"] == 5
    # a cache of one row per item reorders the cross keys and the mask with the rows
    with torch.no_grad():
        cache = model.init_cache(2, 5, encoded, b["attention_mask"])
        _, cache = model.decode_step(b["decoder_input_ids"][:, :2], cache)
        swapped = model.reorder_cache(cache, torch.tensor([1, 0]))
        got, _ = model.decode_step(b["decoder_input_ids"][[1, 0], 2:], swapped)
        full = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                     decoder_input_ids=b["decoder_input_ids"]).logits
    assert torch.equal(swapped["encoder_attention_mask"], b["attention_mask"][[1, 0]])
    torch.testing.assert_close(got, full[[1, 0], 2:], rtol=0, atol=1e-5)


def test_tied_halves_keep_the_decoders_weights():
    """tie_encoder_decoder as transformers 4.57 ties it: the encoder's shared parameters are
    replaced by the decoder's, so a given decoder keeps its weights and the encoder's go."""
    cfg = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
               max_position_embeddings=20)
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(**cfg))
    decoder = BertLMHeadModel(BertConfig(**cfg, is_decoder=True, add_cross_attention=True))
    with torch.no_grad():
        for p in list(encoder.parameters()) + list(decoder.parameters()):
            p.normal_()
    decoder_query = decoder.bert.encoder.layer[1].attention.self.query.weight
    decoder_words = decoder.bert.embeddings.word_embeddings.weight
    decoder_values = decoder_query.detach().clone()
    config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder.config, decoder.config,
                                                              tie_encoder_decoder=True)
    model = EncoderDecoderModel(config=config, encoder=encoder, decoder=decoder)
    params = dict(model.named_parameters(remove_duplicate=False))
    assert params["encoder.encoder.layer.1.attention.self.query.weight"] is decoder_query
    assert params["encoder.embeddings.word_embeddings.weight"] is decoder_words
    assert params["decoder.cls.predictions.decoder.weight"] is decoder_words
    assert torch.equal(model.encoder.encoder.layer[1].attention.self.query.weight, decoder_values)
    # the decoder's values are what the model stores under the encoder's (canonical) names
    np.testing.assert_array_equal(model.canonical_state()["encoder.encoder.layer.1.attention.self.query.weight"],
                                  decoder_values.numpy())
