"""The port contract in Flax: canonical state in and out, encode / init_cache / decode_step /
reorder_cache over the one cache structure, and generate's word on NaN scores."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, golden
from flax_testlib import FAST_COMPILE, assert_close

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from encdec.errors import CheckpointError, NonFiniteError  # noqa: E402
from encdec.flax import FlaxEncoderDecoderModel  # noqa: E402
from encdec.weights.names import model_spec  # noqa: E402
from encdec.weights.convert import load_state  # noqa: E402


@pytest.fixture(scope="module")
def bert2gpt2():
    return FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "bert2gpt2", fmt="safetensors",
                                                    compiler_options=FAST_COMPILE)


def test_canonical_state_round_trip():
    config = FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert_proj", fmt="safetensors").config
    state, _ = load_state(FIXTURES / "bert2bert_proj", model_spec(config), fmt="safetensors")
    model = FlaxEncoderDecoderModel.from_state(config, state)
    got = model.canonical_state()
    assert list(got) == [p.name for p in model_spec(config)]  # stored names only, in spec order
    for name, value in state.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    g = golden("bert2bert_proj")
    out = model(g["input_ids"], g["attention_mask"], decoder_input_ids=g["decoder_input_ids"])
    assert_close("from_state logits", out.logits, g["logits"])


def test_load_canonical_state():
    config = FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert", fmt="safetensors").config
    state, _ = load_state(FIXTURES / "bert2bert", model_spec(config), fmt="safetensors")
    model = FlaxEncoderDecoderModel(config, seed=3)
    before = model.params
    name = "decoder.bert.encoder.layer.0.attention.self.query.weight"
    model.load_canonical_state({name: state[name]}, partial=True)
    got = model.canonical_state()
    np.testing.assert_array_equal(got[name], state[name])
    other = "encoder.embeddings.word_embeddings.weight"
    assert not np.array_equal(got[other], state[other])  # the rest is untouched
    assert before is not model.params and not np.array_equal(  # an earlier params tree is not changed
        np.asarray(before["decoder"]["bert"]["encoder"]["layer"]["0"]["attention"]["self"]["query"]["kernel"]),
        state[name].T)
    model.load_canonical_state(state)
    assert all(np.array_equal(v, state[k]) for k, v in model.canonical_state().items())
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(model.params))

    with pytest.raises(CheckpointError, match=r"encoder.pooler.dense.weight: the state's tensor has shape \(3, 3\); "
                                              r"the model's has \(32, 32\)"):
        model.load_canonical_state({"encoder.pooler.dense.weight": np.zeros((3, 3), np.float32)}, partial=True)
    with pytest.raises(CheckpointError, match="encoder.no_such.weight: not a stored parameter"):
        model.load_canonical_state({"encoder.no_such.weight": np.zeros(3, np.float32)}, partial=True)
    with pytest.raises(CheckpointError, match="the state lacks .* stored tensor"):
        model.load_canonical_state({name: state[name]})
    with pytest.raises(CheckpointError, match="the state lacks .* stored tensor"):
        FlaxEncoderDecoderModel.from_state(config, {name: state[name]})


def test_decode_step_equals_the_full_forward(bert2gpt2):
    model = bert2gpt2
    g = golden("bert2gpt2")
    ids, mask, dids = g["input_ids"], g["attention_mask"], g["decoder_input_ids"]
    encoded = model.encode(ids, mask)
    assert_close("encode", encoded.last_hidden_state, g["encoder_last_hidden_state"])
    cache = model.init_cache(3, 9, encoded, encoder_attention_mask=mask)
    cfg = model.config.decoder
    assert set(cache) == {"index", "encoder_attention_mask", "layers"}
    assert int(cache["index"]) == 0 and len(cache["layers"]) == cfg.num_hidden_layers
    np.testing.assert_array_equal(np.asarray(cache["encoder_attention_mask"]), mask)
    for layer in cache["layers"]:
        assert set(layer) == {"key", "value", "cross_key", "cross_value"}
        assert layer["key"].shape == layer["value"].shape == (3, cfg.num_attention_heads, 9, cfg.head_dim)
        assert layer["cross_key"].shape == layer["cross_value"].shape == (3, cfg.num_attention_heads, 11, cfg.head_dim)
    pieces = []
    for start, stop in ((0, 4), (4, 5), (5, 7)):
        logits, cache = model.decode_step(dids[:, start:stop], cache)
        assert logits.shape == (3, stop - start, cfg.vocab_size) and int(cache["index"]) == stop
        pieces.append(np.asarray(logits))
    assert_close("decode_step", np.concatenate(pieces, axis=1), g["logits"])


def test_reorder_cache_moves_the_self_attention_rows(bert2gpt2):
    model = bert2gpt2
    g = golden("bert2gpt2")
    # Three beams of one source, with different decoder prefixes: beam search's rows.
    ids, mask, dids = np.repeat(g["input_ids"][:1], 3, 0), np.repeat(g["attention_mask"][:1], 3, 0), g["decoder_input_ids"]
    encoded = model.encode(ids, mask)
    _, cache = model.decode_step(dids[:, :3], model.init_cache(3, 8, encoded, encoder_attention_mask=mask))
    rows = np.array([1, 1, 0])
    moved = model.reorder_cache(cache, rows)
    assert int(moved["index"]) == 3
    for before, after in zip(cache["layers"], moved["layers"]):
        np.testing.assert_array_equal(np.asarray(after["key"]), np.asarray(before["key"])[rows])
        np.testing.assert_array_equal(np.asarray(after["value"]), np.asarray(before["value"])[rows])
        np.testing.assert_array_equal(np.asarray(after["cross_key"]), np.asarray(before["cross_key"]))
    # Decoding on is decoding the reordered prefixes from scratch.
    logits, _ = model.decode_step(dids[:, 3:4], moved)
    _, fresh = model.decode_step(dids[rows, :3], model.init_cache(3, 8, encoded, encoder_attention_mask=mask))
    expected, _ = model.decode_step(dids[:, 3:4], fresh)
    assert_close("after reorder_cache", logits, expected)
    assert not np.allclose(np.asarray(logits), np.asarray(model.decode_step(dids[:, 3:4], cache)[0]), atol=1e-3)


def test_a_cache_of_three_rows_per_item(bert2gpt2):
    """n = 3 rows per batch item (B = 2): cross keys/values and the mask stay per item; each row decodes as
    a one-row-per-item cache over its item's tokens does; rows reordered within items decode as those rows
    decoded from the start; and PyTorch's port gives the same logits."""
    torch = pytest.importorskip("torch")
    from encdec.errors import InputError
    from encdec.pt import EncoderDecoderModel

    model = bert2gpt2
    g = golden("bert2gpt2")
    n, cfg = 3, model.config.decoder
    ids, mask = g["input_ids"][:2], g["attention_mask"][:2]
    dec = np.random.default_rng(3).integers(4, cfg.vocab_size, (6, 5))  # [B * n, 5]: rows 0-2 item 0, 3-5 item 1
    encoded = model.encode(ids, mask)
    source = ids.shape[1]
    cache = model.init_cache(6, 8, encoded, encoder_attention_mask=mask)
    assert cache["encoder_attention_mask"].shape == (2, source)
    for layer in cache["layers"]:
        assert layer["key"].shape == layer["value"].shape == (6, cfg.num_attention_heads, 8, cfg.head_dim)
        assert layer["cross_key"].shape == layer["cross_value"].shape == (2, cfg.num_attention_heads, source,
                                                                          cfg.head_dim)
    logits, cache = model.decode_step(dec[:, :3], cache)
    for row in range(6):
        single = model.init_cache(2, 8, encoded, encoder_attention_mask=mask)  # row `row` as item row // n
        expected, _ = model.decode_step(np.repeat(dec[row : row + 1, :3], 2, axis=0), single)
        np.testing.assert_allclose(np.asarray(logits[row]), np.asarray(expected[row // n]), rtol=0, atol=1e-5)
    rows = np.array([2, 2, 0, 4, 3, 3])  # within items, as beam search moves rows
    moved = model.reorder_cache(cache, rows)
    for before, after in zip(cache["layers"], moved["layers"]):
        np.testing.assert_array_equal(np.asarray(after["key"]), np.asarray(before["key"])[rows])
        np.testing.assert_array_equal(np.asarray(after["cross_key"]), np.asarray(before["cross_key"]))
        np.testing.assert_array_equal(np.asarray(after["cross_value"]), np.asarray(before["cross_value"]))
    np.testing.assert_array_equal(np.asarray(moved["encoder_attention_mask"]), mask)
    got, _ = model.decode_step(dec[:, 3:], moved)
    _, fresh = model.decode_step(dec[rows, :3], model.init_cache(6, 8, encoded, encoder_attention_mask=mask))
    expected, _ = model.decode_step(dec[:, 3:], fresh)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=0, atol=1e-5)
    assert not np.allclose(np.asarray(got), np.asarray(model.decode_step(dec[:, 3:], cache)[0]), atol=1e-3)

    pt = EncoderDecoderModel.from_state(model.config, model.canonical_state()).eval()
    with torch.no_grad():
        pt_cache = pt.init_cache(6, 8, pt.encode(torch.from_numpy(ids), torch.from_numpy(mask)),
                                 torch.from_numpy(mask))
        pt_logits, pt_cache = pt.decode_step(torch.from_numpy(dec[:, :3]), pt_cache)
        pt_got, _ = pt.decode_step(torch.from_numpy(dec[:, 3:]), pt.reorder_cache(pt_cache, torch.from_numpy(rows)))
    np.testing.assert_allclose(np.asarray(logits), pt_logits.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got), pt_got.numpy(), rtol=0, atol=1e-5)
    with pytest.raises(InputError, match="batch_size is 5; expected a positive multiple of the encoder output's batch 2"):
        model.init_cache(5, 8, encoded, encoder_attention_mask=mask)


@pytest.mark.parametrize("num_beams", [1, 2])
def test_nan_weights_raise_instead_of_returning_tokens(num_beams):
    model = FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert", fmt="safetensors",
                                                    compiler_options=FAST_COMPILE)
    g = golden("bert2bert")
    name = "decoder.bert.encoder.layer.1.output.dense.bias"
    bias = model.canonical_state()[name]
    bias[3] = np.nan
    model.load_canonical_state({name: bias}, partial=True)
    with pytest.raises(NonFiniteError, match=r"the scores became NaN at step 0; check the weights for non-finite "
                                             r"values \(encdec inspect lists them\)"):
        model.generate(g["input_ids"], g["attention_mask"], max_length=6, num_beams=num_beams)
