"""Compiled generation: traced once per settings, reused; seeded sampling; a SavedModel that generates."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tf_helpers import joined_config, random_batch, random_state, tf_model  # first: it sets TensorFlow's threads

_built: dict = {}


def model_and_batch():
    if not _built:
        config = joined_config("bert2gpt2", 6)
        model = tf_model(config, random_state(config, 6))
        _built["value"] = (model, random_batch(config, np.random.default_rng(6), 3, 8, 4, "ragged"))
    return _built["value"]


def _only_function(model):
    functions = list(model._generation_functions.values())
    assert len(functions) == 1
    return functions[0]


def test_second_call_with_the_same_shapes_traces_nothing():
    model, b = model_and_batch()
    model._generation_functions.clear()
    kwargs = dict(max_length=9, num_beams=3, num_return_sequences=2, length_penalty=0.7)
    first = model.generate(b["input_ids"], attention_mask=b["attention_mask"], **kwargs).numpy()
    fn = _only_function(model)
    assert fn.experimental_get_tracing_count() == 1
    second = model.generate(b["input_ids"], attention_mask=b["attention_mask"], **kwargs).numpy()
    np.testing.assert_array_equal(first, second)
    assert fn.experimental_get_tracing_count() == 1
    assert len(fn._list_all_concrete_functions()) == 1
    # Beam options that change no shape are inputs of the same function: no new trace either.
    model.generate(b["input_ids"], attention_mask=b["attention_mask"], max_length=9, num_beams=3,
                   length_penalty=2.0, early_stopping="never")
    model.generate(b["input_ids"][:2], attention_mask=b["attention_mask"][:2], max_length=9, num_beams=3,
                   early_stopping=True)
    assert _only_function(model) is fn and fn.experimental_get_tracing_count() == 1


def test_new_settings_get_their_own_function():
    model, b = model_and_batch()
    model._generation_functions.clear()
    model.generate(b["input_ids"], attention_mask=b["attention_mask"], max_length=7)
    model.generate(b["input_ids"], attention_mask=b["attention_mask"], max_length=8)
    assert len(model._generation_functions) == 2
    assert all(f.experimental_get_tracing_count() == 1 for f in model._generation_functions.values())


def test_seeded_sampling_is_reproducible_and_the_same_eagerly_and_compiled():
    model, b = model_and_batch()
    for num_beams in (1, 2):
        kwargs = dict(max_length=10, do_sample=True, num_beams=num_beams, num_return_sequences=2, top_k=20,
                      top_p=0.9, temperature=0.8, eos_token_id=None)
        compiled = model.generate(b["input_ids"], attention_mask=b["attention_mask"], seed=11, **kwargs).numpy()
        eager = model.generate(b["input_ids"], attention_mask=b["attention_mask"], seed=11, jit_compile=False,
                               **kwargs).numpy()
        np.testing.assert_array_equal(compiled, eager)
        assert compiled.shape == (6, 10)
        again = model.generate(b["input_ids"], attention_mask=b["attention_mask"], seed=11, **kwargs).numpy()
        np.testing.assert_array_equal(compiled, again)
        other = model.generate(b["input_ids"], attention_mask=b["attention_mask"], seed=12, **kwargs).numpy()
        assert not np.array_equal(compiled, other)


# Beam search through the SavedModel is slow; tests/export covers more of the export.
@pytest.mark.parametrize("num_beams", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_saved_model_generates_the_same_tokens(tmp_path, num_beams):
    model, b = model_and_batch()
    kwargs = dict(max_length=9, num_beams=num_beams)
    expected = model.generate(b["input_ids"], attention_mask=b["attention_mask"], **kwargs).numpy()

    module = tf.Module()
    module.model = model
    module.generate = model.serving_generate_function(**kwargs)
    tf.saved_model.save(module, str(tmp_path / "saved"), signatures={"serving_default": module.generate})
    del module

    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    ids, mask = tf.constant(b["input_ids"], tf.int32), tf.constant(b["attention_mask"], tf.int32)
    for fn in (loaded.generate, loaded.signatures["serving_default"]):
        out = fn(input_ids=ids, attention_mask=mask)
        got = out["sequences"].numpy()[:, : int(out["length"])]
        np.testing.assert_array_equal(got, expected)
