"""Training the TensorFlow port: gradients against transformers' PyTorch model, and Keras' fit/evaluate."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_helpers import hf_model, joined_config, random_batch, random_state, tf_model, torch_batch  # first: threads

from encdec.config import BertConfig, EncoderDecoderConfig
from encdec.tf import TFEncoderDecoderModel


def _variables_by_name(model) -> dict:
    """Each stored parameter's trainable variable, found by its values (random_state draws every tensor apart)."""
    state = model.canonical_state()
    out = {}
    for p in model.spec:
        want = p.to_native(state[p.name], "tf")
        found = [v for v in model.trainable_variables
                 if tuple(v.shape) == want.shape and np.array_equal(v.numpy(), want)]
        assert len(found) == 1, (p.name, len(found))
        out[p.name] = found[0]
    return out


def _copy_task(vocab: int, n: int, length: int, seed: int) -> dict:
    """Targets are the inputs: a task a tiny model learns within a few steps."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, vocab, (n, length)).astype(np.int32)
    return dict(input_ids=ids, attention_mask=np.ones_like(ids), labels=ids.copy())


def _tiny_copy_model() -> TFEncoderDecoderModel:
    arch = BertConfig(vocab_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=16, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(arch, arch, decoder_start_token_id=2, pad_token_id=0)
    return TFEncoderDecoderModel(config=config)


@pytest.mark.slow
def test_fit_lowers_the_loss_on_a_copy_task():
    model = _tiny_copy_model()
    data = _copy_task(16, 512, 6, 0)
    train = tf.data.Dataset.from_tensor_slices(data).batch(32)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)  # no loss: the model's own
    before = model.evaluate(train, verbose=0)
    history = model.fit(train, epochs=1, verbose=0)
    after = model.evaluate(train, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert after < 0.95 * before, (before, after)
    # evaluate's loss is the model's own loss over the batches
    batch = {k: v[:32] for k, v in data.items()}
    single = model.evaluate(tf.data.Dataset.from_tensor_slices(batch).batch(32), verbose=0)
    np.testing.assert_allclose(single, float(model(**batch).loss), rtol=1e-5)


def test_fit_takes_inputs_and_labels_pairs():
    model = _tiny_copy_model()
    data = _copy_task(16, 64, 6, 1)
    labels = data.pop("labels")
    pairs = tf.data.Dataset.from_tensor_slices((data, labels)).batch(32)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    before = model.evaluate(pairs, verbose=0)
    expected = float(model(**{k: v[:32] for k, v in data.items()}, labels=labels[:32]).loss)
    expected = (expected + float(model(**{k: v[32:] for k, v in data.items()}, labels=labels[32:]).loss)) / 2
    np.testing.assert_allclose(before, expected, rtol=1e-5)
    model.fit(pairs, epochs=1, verbose=0)
    assert model.evaluate(pairs, verbose=0) < before


def test_compute_loss_needs_labels():
    from encdec.errors import InputError

    model = _tiny_copy_model()
    data = _copy_task(16, 8, 6, 2)
    out = model(input_ids=data["input_ids"], decoder_input_ids=data["labels"])
    with pytest.raises(InputError, match="labels"):
        model.compute_loss(x=data, y=None, y_pred=out)
