"""Bad input gets a clear encdec error before any work: ids out of range, too long, mismatched batches."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_helpers import joined_config, random_batch, random_state, tf_model  # first: it sets TensorFlow's threads

from encdec.errors import ConfigError, InputError

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
        with pytest.raises(InputError, match=r"input_ids.*expected 0 <= id < 61"):
            model.generate(ids, attention_mask=b["attention_mask"], max_length=5, jit_compile=mode == "xla")


def test_ids_outside_the_vocabulary_in_call():
    model, b = model_and_batch()
    ids = b["input_ids"].copy()
    ids[0, 0] = 61
    with pytest.raises(InputError, match="input_ids"):
        model(**_with(b, input_ids=ids))
    dec = b["decoder_input_ids"].copy()
    dec[1, 3] = 1000
    with pytest.raises(InputError, match="decoder_input_ids"):
        model(**_with(b, decoder_input_ids=dec))
    labels = b["labels"].copy()
    labels[0, 1] = -7
    with pytest.raises(InputError, match=r"labels holds -7.*-100"):
        model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=labels)
    with pytest.raises(InputError, match="token_type_ids"):
        model(**_with(b, token_type_ids=np.full_like(b["input_ids"], 2)))


def test_ids_outside_the_vocabulary_inside_a_graph():
    """Traced without XLA, the checks are assertions that fail when the graph runs."""
    model, b = model_and_batch()
    run = tf.function(lambda ids: model(**_with(b, input_ids=ids)).logits)
    ids = b["input_ids"].copy()
    run(tf.constant(ids))
    ids[0, 0] = 61
    with pytest.raises(tf.errors.InvalidArgumentError, match="input_ids holds ids >= the vocabulary size 61"):
        run(tf.constant(ids))


def test_inputs_longer_than_the_position_tables():
    model, b = model_and_batch()
    limit = model.config.encoder.max_position_embeddings
    long_ids = np.full((2, limit + 1), 5)
    with pytest.raises(InputError, match=f"expected at most {limit}"):
        model(input_ids=long_ids, decoder_input_ids=b["decoder_input_ids"])
    with pytest.raises(InputError, match=f"expected at most {limit}"):
        model.generate(long_ids, max_length=4)
    # RoBERTa's positions start after padding_idx: fewer tokens fit its table.
    dec_limit = model._decoder_position_limit()
    assert dec_limit == model.config.decoder.max_position_embeddings - model.config.decoder.pad_token_id - 1
    with pytest.raises(InputError, match="decoder's position table"):
        model(input_ids=b["input_ids"], decoder_input_ids=np.full((2, dec_limit + 1), 5))
    with pytest.raises(InputError, match=f"max_length <= {dec_limit + 1}"):
        model.generate(b["input_ids"], max_length=dec_limit + 2)


def test_mismatched_shapes_and_batches():
    model, b = model_and_batch()
    with pytest.raises(InputError, match="attention_mask has shape"):
        model(**_with(b, attention_mask=b["attention_mask"][:, :-1]))
    with pytest.raises(InputError, match="decoder_input_ids has batch size 1; expected 2"):
        model(**_with(b, decoder_input_ids=b["decoder_input_ids"][:1]))
    with pytest.raises(InputError, match="labels has shape"):
        model(input_ids=b["input_ids"], labels=b["labels"][:1])
    with pytest.raises(InputError, match="decoder_attention_mask has shape"):
        model(**_with(b, decoder_attention_mask=np.ones((2, 2))))
    with pytest.raises(InputError, match="attention_mask has shape"):
        model.generate(b["input_ids"], attention_mask=b["attention_mask"][:1], max_length=4)
    with pytest.raises(InputError, match="no decoder input"):
        model(input_ids=b["input_ids"])


def test_bad_decoder_prompts_in_generate():
    model, b = model_and_batch()
    start = model.config.decoder_start_token_id
    with pytest.raises(InputError, match=r"decoder_input_ids has shape \(1, 2\); expected \[2, prompt length\]"):
        model.generate(b["input_ids"], decoder_input_ids=np.array([[start, 5]]), max_length=6)
    with pytest.raises(InputError, match="decoder_input_ids"):
        model.generate(b["input_ids"], decoder_input_ids=np.full((2, 2), 99), max_length=6)
    with pytest.raises(InputError, match="expected more than the decoder prompt's 3 token"):
        model.generate(b["input_ids"], decoder_input_ids=np.array([[start, 5, 6], [start, 7, 8]]), max_length=3)


def test_missing_special_tokens():
    model, b = model_and_batch()
    start, pad = model.config.decoder_start_token_id, model.config.pad_token_id
    try:
        model.config.decoder_start_token_id = None
        with pytest.raises(ConfigError, match="decoder_start_token_id is not set"):
            model(input_ids=b["input_ids"], labels=b["labels"])
        model.config.decoder_start_token_id = start
        model.config.pad_token_id = None
        with pytest.raises(ConfigError, match="pad_token_id is not set"):
            model(input_ids=b["input_ids"], labels=b["labels"])
    finally:
        model.config.decoder_start_token_id, model.config.pad_token_id = start, pad
    config = model.generation_config
    try:
        model.generation_config = config.update(decoder_start_token_id=None, bos_token_id=None)
        model.config.decoder_start_token_id = None
        with pytest.raises(ConfigError, match="decoder_start_token_id"):
            model.generate(b["input_ids"], max_length=4)
    finally:
        model.generation_config = config
        model.config.decoder_start_token_id = start
    with pytest.raises(ConfigError, match="unknown generation option"):
        model.generate(b["input_ids"], max_lenght=4)


def test_import_fails_clearly_on_another_keras_backend():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    code = (
        "from encdec.errors import ConfigError\n"
        "try:\n    import encdec.tf\nexcept ConfigError as e:\n    print('ConfigError:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "ConfigError: encdec.tf needs Keras' TensorFlow backend" in out.stdout, out.stdout + out.stderr
    assert "'jax'" in out.stdout
