"""`generate` inside a user's `tf.function`, with and without XLA: the same ids as eager generate and as
transformers' goldens (padded to max_length), and bad ids fail when the function runs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tf_helpers  # noqa: F401  (first: it sets TensorFlow's threads)
from conftest import FIXTURES, golden
from encdec.errors import InputError
from encdec.tf import TFEncoderDecoderModel

MAX_LENGTH = 12  # the goldens' length
IDS = tf.TensorSpec([None, None], tf.int32)


@pytest.fixture(scope="module")
def model():
    return TFEncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert", fmt="safetensors")


def _inputs():
    g = golden("bert2bert")
    return g, tf.constant(g["input_ids"], tf.int32), tf.constant(g["attention_mask"], tf.int32)


_SLOW = pytest.mark.slow  # a graph or XLA trace of a whole search: seconds each


@pytest.mark.parametrize("jit_compile", [pytest.param(False, marks=_SLOW), True], ids=["graph", "xla"])
@pytest.mark.parametrize("search,num_beams", [("greedy", 1), pytest.param("beam3", 3, marks=_SLOW)])
def test_generate_traced_gives_the_goldens_and_the_eager_ids(model, jit_compile, search, num_beams):
    g, ids, mask = _inputs()
    options = dict(max_length=MAX_LENGTH, num_beams=num_beams)
    run = tf.function(lambda i, m: model.generate(i, m, **options), jit_compile=jit_compile, input_signature=[IDS, IDS])
    got = run(ids, mask).numpy()
    np.testing.assert_array_equal(got, g[search])
    np.testing.assert_array_equal(got, model.generate(ids, mask, **options).numpy())


@_SLOW
def test_traced_rows_are_padded_past_their_end(model):
    # With eos 4 the first two rows end early: eager generate crops, the traced one pads with pad_token_id.
    g, ids, mask = _inputs()
    options = dict(max_length=MAX_LENGTH, eos_token_id=4, pad_token_id=7)  # not 0, what a buffer may start as
    expected = g["greedy"][:2].copy()  # transformers' ids; with eos 4 the rows end at columns 2 and 3
    expected[0, 3:] = expected[1, 4:] = 7
    got = tf.function(lambda i, m: model.generate(i, m, **options))(ids[:2], mask[:2]).numpy()
    np.testing.assert_array_equal(got, expected)
    eager = model.generate(ids[:2], mask[:2], **options).numpy()
    assert eager.shape[1] < MAX_LENGTH
    np.testing.assert_array_equal(eager, expected[:, : eager.shape[1]])


def test_a_bad_id_fails_when_the_traced_function_runs(model):
    _, ids, mask = _inputs()
    bad = tf.tensor_scatter_nd_update(ids, [[0, 1]], [99])  # the vocabulary has 99 rows
    message = r"expected ids in \[0, 99\) \(the table has 99 rows\)"
    with pytest.raises(InputError, match=message):
        model.generate(bad, mask, max_length=MAX_LENGTH)
    run = tf.function(lambda i, m: model.generate(i, m, max_length=MAX_LENGTH), input_signature=[IDS, IDS])
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        run(bad, mask)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        run(-ids, mask)
    np.testing.assert_array_equal(run(ids, mask).numpy(), golden("bert2bert")["greedy"])


def test_a_symbolic_decoder_prompt_is_refused(model):
    _, ids, mask = _inputs()
    run = tf.function(lambda i, m, d: model.generate(i, m, decoder_input_ids=d, max_length=MAX_LENGTH),
                      autograph=False)
    with pytest.raises(InputError, match="decoder_input_ids is symbolic; expected concrete ids"):
        run(ids, mask, ids[:, :2])
