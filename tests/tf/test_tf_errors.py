"""Bad input gets a clear encdec error before any work: ids out of range, too long, mismatched batches,
ids that are not integers, empty batches, special tokens outside the vocabulary; NaN scores an error."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_helpers import joined_config, random_batch, random_state, tf_model  # first: it sets TensorFlow's threads

from encdec.errors import ConfigError, InputError, NonFiniteError

_built: dict = {}


def model_and_batch(pair="bert2roberta"):
    if pair not in _built:
        config = joined_config(pair, 8)
        model = tf_model(config, random_state(config, 8))
        _built[pair] = (model, random_batch(config, np.random.default_rng(8), 2, 6, 5, "right"))
    return _built[pair]


def _with(batch, **changes):
    return dict({k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}, **changes)


@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_ids_outside_the_vocabulary_in_generate(mode):
    model, b = model_and_batch()
    for bad in (model.config.encoder.vocab_size, -1):
        ids = b["input_ids"].copy()
        ids[1, 2] = bad
        with pytest.raises(InputError, match=rf"input_ids holds id {bad}; expected ids in \[0, 61\)"):
            model.generate(ids, attention_mask=b["attention_mask"], max_length=5, jit_compile=mode == "xla")


def test_ids_outside_the_vocabulary_inside_a_graph():
    """Traced without XLA, the checks are assertions that fail when the graph runs."""
    model, b = model_and_batch()
    run = tf.function(lambda ids: model(**_with(b, input_ids=ids)).logits)
    ids = b["input_ids"].copy()
    run(tf.constant(ids))
    ids[0, 0] = 61
    with pytest.raises(tf.errors.InvalidArgumentError, match="input_ids holds ids >= the vocabulary size 61"):
        run(tf.constant(ids))


def test_import_fails_clearly_on_another_keras_backend():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    code = (
        "from encdec.errors import ConfigError\n"
        "try:\n    import encdec.tf\nexcept ConfigError as e:\n    print('ConfigError:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "ConfigError: encdec.tf needs Keras' TensorFlow backend" in out.stdout, out.stdout + out.stderr
    assert "'jax'" in out.stdout


# One rule per bad input, the same in every port: integer ids only, at least one row and one token,
# special tokens inside the decoder vocabulary, NaN scores an error.


@pytest.mark.parametrize("dtype", [np.float32, np.float64, bool])
def test_float_and_bool_ids_are_refused(dtype):
    model, b = model_and_batch()
    bad = b["input_ids"].astype(dtype)
    with pytest.raises(InputError, match=r"input_ids has dtype .*; expected integer ids"):
        model(**_with(b, input_ids=bad))
    with pytest.raises(InputError, match=r"decoder_input_ids has dtype .*; expected integer ids"):
        model(**_with(b, decoder_input_ids=b["decoder_input_ids"].astype(dtype)))
    with pytest.raises(InputError, match=r"input_ids has dtype .*; expected integer ids"):
        model(**_with(b, input_ids=tf.constant(bad)))
    with pytest.raises(InputError, match=r"token_type_ids has dtype .*; expected integer ids"):
        model(**_with(b, token_type_ids=np.zeros_like(b["input_ids"], dtype)))
    with pytest.raises(InputError, match=r"input_ids has dtype .*; expected integer ids"):
        model.encode(bad, b["attention_mask"])
    with pytest.raises(InputError, match=r"input_ids has dtype .*; expected integer ids"):
        model.generate(bad, attention_mask=b["attention_mask"], max_length=4)


def test_float_ids_are_refused_when_traced():
    model, b = model_and_batch()
    run = tf.function(lambda ids: model(**_with(b, input_ids=ids)).logits, autograph=False)
    with pytest.raises(InputError, match=r"input_ids has dtype float32; expected integer ids"):
        run(tf.constant(b["input_ids"], tf.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint32])
def test_narrow_and_unsigned_integer_ids_give_the_same_results(dtype):
    model, b = model_and_batch()
    expected = model(**_with(b)).logits.numpy()
    narrow = {k: b[k].astype(dtype) for k in ("input_ids", "decoder_input_ids")}
    got = model(**_with(b, **narrow)).logits.numpy()
    np.testing.assert_array_equal(got, expected)
    labels = np.where(b["labels"] == -100, model.config.pad_token_id, b["labels"])  # -100 has no unsigned form
    narrow_loss = model(input_ids=narrow["input_ids"], attention_mask=b["attention_mask"],
                        labels=labels.astype(dtype)).loss
    wide_loss = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=labels).loss
    assert float(narrow_loss) == float(wide_loss)
    tokens = model.generate(b["input_ids"], attention_mask=b["attention_mask"], max_length=6).numpy()
    np.testing.assert_array_equal(
        model.generate(narrow["input_ids"], attention_mask=b["attention_mask"], max_length=6).numpy(), tokens
    )


def test_empty_batches_and_sequences_are_refused():
    model, b = model_and_batch()
    no_rows, no_tokens = b["input_ids"][:0], b["input_ids"][:, :0]
    with pytest.raises(InputError, match="input_ids has shape .*a batch of 0 rows; expected at least one row"):
        model(input_ids=no_rows, decoder_input_ids=b["decoder_input_ids"][:0])
    with pytest.raises(InputError, match="input_ids has shape .*length 0; expected at least one token"):
        model(input_ids=no_tokens, decoder_input_ids=b["decoder_input_ids"])
    with pytest.raises(InputError, match="decoder_input_ids has shape .*length 0; expected at least one token"):
        model(**_with(b, decoder_input_ids=b["decoder_input_ids"][:, :0]))
    with pytest.raises(InputError, match="expected at least one row"):
        model.encode(no_rows)
    with pytest.raises(InputError, match="expected at least one token"):
        model.encode(no_tokens)
    for mode in ("eager", "xla"):
        with pytest.raises(InputError, match="expected at least one row"):
            model.generate(no_rows, max_length=4, jit_compile=mode == "xla")
        with pytest.raises(InputError, match="expected at least one token"):
            model.generate(no_tokens, max_length=4, jit_compile=mode == "xla")


@pytest.mark.parametrize("option", ["decoder_start_token_id", "pad_token_id", "eos_token_id"])
def test_special_tokens_outside_the_vocabulary_are_refused_before_generating(option, monkeypatch):
    model, b = model_and_batch()

    def no_work(*args, **kwargs):
        raise AssertionError("generate ran the encoder before checking its options")

    monkeypatch.setattr(model, "encode", no_work)
    vocab = model.config.decoder.vocab_size
    for bad in (vocab, -1):
        with pytest.raises(ConfigError, match=rf"{option} is {bad}; expected an id in \[0, {vocab}\)"):
            model.generate(b["input_ids"], attention_mask=b["attention_mask"], max_length=5, **{option: bad})
    with pytest.raises(ConfigError, match=rf"eos_token_id is {vocab}"):
        model.generate(b["input_ids"], max_length=5, eos_token_id=[3, vocab])


@pytest.mark.parametrize("mode", ["eager", "xla"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_nan_scores_raise_instead_of_returning_tokens(mode, num_beams):
    config = joined_config("bert2gpt2", 8)
    state = random_state(config, 8)
    model = tf_model(config, state)
    b = random_batch(config, np.random.default_rng(8), 2, 6, 5, "right")
    kwargs = dict(attention_mask=b["attention_mask"], max_length=6, num_beams=num_beams, jit_compile=mode == "xla")
    assert model.generate(b["input_ids"], **kwargs).shape[0] == 2  # finite weights: tokens
    name = "decoder.transformer.h.0.mlp.c_fc.weight"
    poisoned = state[name].copy()
    poisoned[0, 0] = np.nan
    model.load_canonical_state({name: poisoned}, partial=True)
    with pytest.raises(NonFiniteError, match=r"the scores became NaN at step 0; check the weights .*encdec inspect"):
        model.generate(b["input_ids"], **kwargs)
