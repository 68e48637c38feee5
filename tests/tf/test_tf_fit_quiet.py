"""Keras' `fit` on the encoder-decoder is quiet about the BERT encoder's pooler: the seq2seq loss does
not reach it, so it is not a trainable variable of the model and no "Gradients do not exist" warning
is raised for it; its weights stay as they were and are still saved."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from encdec.tf import TFEncoderDecoderModel  # noqa: E402
from tiny_models import joined_config, random_batch, random_state  # noqa: E402


def test_fit_warns_of_no_missing_gradient_and_leaves_the_pooler(caplog):
    config = joined_config("bert2bert", 21)
    state = random_state(config, 21)
    model = TFEncoderDecoderModel.from_state(config, state)
    b = random_batch(config, np.random.default_rng(21), 4, 6, 5, "right")
    data = tf.data.Dataset.from_tensor_slices(
        {k: b[k] for k in ("input_ids", "attention_mask", "labels")}).batch(2)
    # AdamW decays every variable it is given: a pooler handed to it would move even without a gradient.
    # Eager steps: the warning is the same, and tracing the train step would cost most of the test.
    model.compile(optimizer=keras.optimizers.AdamW(1e-2, weight_decay=0.1), run_eagerly=True)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        model.fit(data, epochs=1, verbose=0)
    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "Gradients do not exist" in m], said
    after = model.canonical_state()
    pooler = [name for name in state if name.startswith("encoder.pooler.")]
    assert pooler and all(np.array_equal(after[name], state[name]) for name in pooler)
    moved = [name for name in state if not np.array_equal(after[name], state[name])]
    assert "encoder.embeddings.word_embeddings.weight" in moved  # the rest of the model did train
