"""Left-padded decoders: a query with no key to attend (a leading masked position) gets a zero
attention output, as transformers' SDPA path gives it, and no position ever sees a later token.

Before every port had the zero-output rule, Flax's leading pad averaged the values of every
position, the later ones included: its outputs changed when only the last token changed.
"""

from __future__ import annotations

import numpy as np
import pytest

from port_backends import one_torch_thread, port  # noqa: F401  (fixtures)
from ports_lib import (
    PAD,
    assert_close,
    assert_loss_close,
    hf_model,
    hf_run,
    joined_config,
    random_batch,
    random_state,
    to_numpy,
)

PAIRS = ["bert2bert", "bert2gpt2", "roberta2roberta"]

_built: dict = {}


def build(port, pair, **config_kwargs):
    key = (port.name, pair, tuple(sorted(config_kwargs.items())))
    if key not in _built:
        config = joined_config(pair, 2, **config_kwargs)
        state = random_state(config, 2)
        batch = random_batch(config, np.random.default_rng(2), 3, 8, 6, "ragged")
        # Row 1 has two leading masked positions, row 2 one; masked positions hold the pad id.
        mask = np.ones_like(batch["decoder_input_ids"])
        mask[1, :2] = 0
        mask[2, :1] = 0
        batch["decoder_input_ids"] = np.where(mask == 1, batch["decoder_input_ids"], PAD)
        batch["decoder_attention_mask"] = mask
        _built[key] = (config, state, port.from_state(config, state), batch)
    return _built[key]


def logits(port, model, batch, decoder_input_ids):
    out = port.forward(model, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=decoder_input_ids, decoder_attention_mask=batch["decoder_attention_mask"])
    return port.numpy(out.logits)


@pytest.mark.parametrize("pair", PAIRS)
def test_outputs_do_not_change_when_only_the_last_token_changes(port, pair):
    _, _, model, batch = build(port, pair)
    dec = batch["decoder_input_ids"]
    changed = dec.copy()
    changed[:, -1] = (changed[:, -1] + 7) % 50 + 4
    before, after = logits(port, model, batch, dec), logits(port, model, batch, changed)
    assert not np.allclose(before[:, -1], after[:, -1])  # the last position itself does change
    diff = np.abs(before[:, :-1] - after[:, :-1]).max(axis=(0, 2))
    assert diff.max() <= 1e-6, f"{port.name} {pair}: positions {np.nonzero(diff > 1e-6)[0].tolist()} saw the last token"


@pytest.mark.parametrize("pair", PAIRS)
def test_a_masked_leading_position_sees_no_other_token(port, pair):
    """Zero attention output: a leading masked position's output depends on no other decoder token."""
    _, _, model, batch = build(port, pair)
    dec = batch["decoder_input_ids"]
    changed = dec.copy()
    changed[1, 2:] = (changed[1, 2:] + 5) % 50 + 4
    changed[2, 1:] = (changed[2, 1:] + 9) % 50 + 4
    before, after = logits(port, model, batch, dec), logits(port, model, batch, changed)
    for row, masked in ((1, 2), (2, 1)):
        diff = np.abs(before[row, :masked] - after[row, :masked]).max()
        assert diff <= 1e-6, f"{port.name} {pair}: leading masked positions of row {row} changed by {diff:.3g}"


@pytest.mark.parametrize("pair", PAIRS)
def test_left_padded_decoder_matches_transformers(port, pair):
    """transformers' model gives a leading masked position a zero attention output: the same logits."""
    config, state, model, batch = build(port, pair)
    hf = hf_model(config, state)
    kwargs = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")}
    expected = to_numpy(hf_run(hf, **kwargs).logits)
    assert_close(f"{port.name} {pair} left-padded decoder", logits(port, model, batch, batch["decoder_input_ids"]),
                 expected)


@pytest.mark.parametrize("pair", PAIRS)
def test_labels_with_the_pad_as_start_token_match_transformers(port, pair):
    """decoder_start_token_id == pad_token_id: the decoder mask made from the labels masks position 0."""
    config, state, model, batch = build(port, pair, decoder_start_token_id=PAD)
    hf = hf_model(config, state)
    kwargs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    expected = hf_run(hf, **kwargs)
    got = port.forward(model, **kwargs)
    assert_loss_close(f"{port.name} {pair}", port.numpy(got.loss), to_numpy(expected.loss))
    assert_close(f"{port.name} {pair} logits from labels", port.numpy(got.logits), to_numpy(expected.logits))
