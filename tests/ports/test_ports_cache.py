"""The cache contract, the same in every port: `encode` -> `init_cache` -> `decode_step` (token by token or
in chunks) gives the full forward's logits; the cache is one plain nest, heads first; `reorder_cache`
keeps and reorders rows for beam search."""

from __future__ import annotations

import numpy as np
import pytest

from encdec.errors import InputError
from port_backends import one_torch_thread, port  # noqa: F401  (fixtures)
from ports_lib import assert_close, joined_config, random_batch, random_state

# A GPT-2 decoder, a RoBERTa decoder (positions after the pad id) and a decoder wider than the encoder.
CASES = [("bert2gpt2", "plain"), ("roberta2roberta", "plain"), ("bert2bert", "proj")]
CASE_IDS = [f"{pair}-{variant}" for pair, variant in CASES]

_built: dict = {}


def build(port, pair, variant):
    key = (port.name, pair, variant)
    if key not in _built:
        config = joined_config(pair, 0, variant)
        batch = random_batch(config, np.random.default_rng(3), 3, 9, 7, "ragged")
        _built[key] = (config, port.from_state(config, random_state(config, 0)), batch)
    return _built[key]


def full_logits(port, model, batch):
    out = port.forward(model, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=batch["decoder_input_ids"])
    return port.numpy(out.logits)


# Token by token on GPT-2 and in chunks on all three by default; the rest is slow.
DECODE_CASES = [
    pytest.param(pair, variant, widths, id=f"{pair}-{variant}-{name}",
                 marks=() if name == "chunks" or pair == "bert2gpt2" else pytest.mark.slow)
    for pair, variant in CASES
    for name, widths in (("token-by-token", (1,) * 7), ("chunks", (3, 2, 1, 1)))
]


@pytest.mark.parametrize("pair,variant,widths", DECODE_CASES)
def test_decode_step_gives_the_full_forwards_logits(port, pair, variant, widths):
    config, model, batch = build(port, pair, variant)
    expected = full_logits(port, model, batch)
    ids, mask, dec = batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"]
    encoded = port.encode(model, ids, mask)
    cache = port.init_cache(model, len(ids), dec.shape[1], encoded, mask)
    start = 0
    for width in widths:
        logits, cache = port.decode_step(model, dec[:, start:start + width], cache)
        assert_close(f"{port.name} {pair}-{variant} decode_step at {start}", port.numpy(logits),
                     expected[:, start:start + width])
        start += width
        assert int(port.numpy(cache["index"])) == start
    assert start == dec.shape[1]


@pytest.mark.parametrize("pair,variant", CASES, ids=CASE_IDS)
def test_the_cache_is_one_nest_heads_first(port, pair, variant):
    config, model, batch = build(port, pair, variant)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    batch_size, source_length = ids.shape
    max_length = 6
    cfg = config.decoder
    heads, head_dim = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    encoded = port.encode(model, ids, mask)
    cache = port.init_cache(model, batch_size, max_length, encoded, mask)
    assert isinstance(cache, dict) and set(cache) == {"index", "encoder_attention_mask", "layers"}
    assert int(port.numpy(cache["index"])) == 0
    np.testing.assert_array_equal(port.numpy(cache["encoder_attention_mask"]), mask)
    assert isinstance(cache["layers"], tuple) and len(cache["layers"]) == cfg.num_hidden_layers
    for layer in cache["layers"]:
        assert isinstance(layer, dict) and set(layer) == {"key", "value", "cross_key", "cross_value"}
        for name in ("key", "value"):
            assert tuple(port.numpy(layer[name]).shape) == (batch_size, heads, max_length, head_dim), name
        for name in ("cross_key", "cross_value"):
            assert tuple(port.numpy(layer[name]).shape) == (batch_size, heads, source_length, head_dim), name

    out = port.decode_step(model, batch["decoder_input_ids"][:, :2], cache)
    assert isinstance(out, tuple) and len(out) == 2  # (logits, cache), in this order
    logits, cache = out
    assert port.numpy(logits).shape == (batch_size, 2, cfg.vocab_size)
    assert set(cache) == {"index", "encoder_attention_mask", "layers"} and int(port.numpy(cache["index"])) == 2

    unmasked = port.init_cache(model, batch_size, max_length, encoded)
    assert unmasked["encoder_attention_mask"] is None


@pytest.mark.parametrize("pair,variant", CASES, ids=CASE_IDS)
def test_reorder_cache_keeps_the_chosen_rows(port, pair, variant):
    """Beam search: every row holds the same source, rows are kept and reordered; the next step then
    gives the logits of the full forward over the reordered prefixes."""
    config, model, batch = build(port, pair, variant)
    rows = np.array([2, 0, 0])
    ids = np.repeat(batch["input_ids"][:1], 3, axis=0)
    mask = np.repeat(batch["attention_mask"][:1], 3, axis=0)
    dec = batch["decoder_input_ids"][:, :5]
    encoded = port.encode(model, ids, mask)
    cache = port.init_cache(model, 3, 5, encoded, mask)
    _, cache = port.decode_step(model, dec[:, :4], cache)
    before = port.cache_numpy(cache)
    cache = port.reorder_cache(model, cache, rows)
    after = port.cache_numpy(cache)
    assert after["index"] == 4
    for old, new in zip(before["layers"], after["layers"]):
        for name in ("key", "value"):
            # The 4 filled positions; a port may leave the unfilled rest of its buffers as it likes.
            np.testing.assert_array_equal(new[name][:, :, :4], old[name][rows][:, :, :4], err_msg=name)
    reordered = np.concatenate([dec[rows, :4], dec[:, 4:5]], axis=1)
    logits, _ = port.decode_step(model, reordered[:, 4:5], cache)
    expected = full_logits(port, model, dict(input_ids=ids, attention_mask=mask, decoder_input_ids=reordered))
    assert_close(f"{port.name} {pair}-{variant} after reorder_cache", port.numpy(logits), expected[:, 4:5])


def test_decoding_past_the_cache_or_the_position_table(port):
    config, model, batch = build(port, "bert2gpt2", "plain")
    ids, mask, dec = batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"]
    encoded = port.encode(model, ids, mask)
    limit = config.decoder.max_positions
    with pytest.raises(InputError, match=rf"max_length.*{limit + 1}.*position table"):
        port.init_cache(model, 3, limit + 1, encoded, mask)
    with pytest.raises(InputError, match="batch"):
        port.init_cache(model, 2, 4, encoded, mask)
    cache = port.init_cache(model, 3, 4, encoded, mask)
    _, cache = port.decode_step(model, dec[:, :3], cache)
    with pytest.raises(InputError, match="adds 2 tokens to a cache holding 3 of 4"):
        port.decode_step(model, dec[:, 3:5], cache)
