"""Training the TensorFlow port: gradients against transformers' PyTorch model, and Keras' fit/evaluate."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_helpers import hf_model, joined_config, random_batch, random_state, tf_model, torch_batch  # first: threads

from encdec.config import BertConfig, EncoderDecoderConfig
from encdec.tf import TFEncoderDecoderModel


@pytest.mark.parametrize("pair,variant", [("bert2gpt2", "plain"), ("roberta2roberta", "tie"), ("bert2bert", "proj")])
def test_gradients_match_transformers(pair, variant):
    config = joined_config(pair, 3, variant)
    state = random_state(config, 3)
    model, hf = tf_model(config, state), hf_model(config, state)
    b = random_batch(config, np.random.default_rng(3), 3, 9, 6, "ragged")
    t = torch_batch(b)

    variables = model._variables_by_name
    names = list(variables)
    with tf.GradientTape() as tape:
        loss = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss
    grads = dict(zip(names, tape.gradient(loss, [variables[n] for n in names])))

    hf.zero_grad()
    expected_loss = hf(input_ids=t["input_ids"], attention_mask=t["attention_mask"], labels=t["labels"]).loss
    expected_loss.backward()
    params = dict(hf.named_parameters(remove_duplicate=False))
    assert abs(float(loss) - expected_loss.item()) <= 1e-6 * abs(expected_loss.item())

    def expected_grad(name):
        """transformers' gradient of a stored parameter, summed over every name the spec ties to it.

        transformers 5 no longer ties an encoder to its decoder (tie_encoder_decoder): it keeps
        separate copies, and the gradient of the one shared tensor is the sum of theirs.
        """
        names = [name] + [t.name for t in model.spec.tied if t.source == name]
        distinct = {id(params[n]): params[n] for n in names}.values()  # transformers' own ties share one
        found = [q.grad for q in distinct if q.grad is not None]
        return sum(found[1:], found[0].clone()) if found else None

    expected = {p.name: expected_grad(p.name) for p in model.spec}
    grads_scale = np.array([float(g.abs().max()) for g in expected.values() if g is not None])
    compared = 0
    for p in model.spec:
        mine, theirs = grads[p.name], expected[p.name]
        if theirs is None or not theirs.abs().sum():
            # Not on the loss' path (the encoder's pooler): no gradient in either framework.
            assert mine is None or not np.abs(mine.numpy()).sum(), p.name
            continue
        mine = p.from_tf(tf.convert_to_tensor(mine).numpy())
        theirs = theirs.numpy()
        if p.name.endswith(".key.bias"):
            # Analytically zero: a key bias adds the same q.b to every score of a query, which the
            # softmax ignores. Both frameworks hold rounding noise; compare it as such.
            scale = np.abs(grads_scale).max()
            assert np.abs(mine).max() <= 1e-5 * scale and np.abs(theirs).max() <= 1e-5 * scale, p.name
            continue
        relative = np.linalg.norm(mine - theirs) / np.linalg.norm(theirs)
        assert relative <= 1e-4, (p.name, relative)
        compared += 1
    assert compared > len(model.spec) // 2


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
