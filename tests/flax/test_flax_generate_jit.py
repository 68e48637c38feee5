"""`generate` inside a user's `jax.jit`: the same ids as eager generate and as transformers' goldens
(padded to max_length), and a bad id fails when the jitted function runs."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, golden
from flax_testlib import FAST_COMPILE

jax = pytest.importorskip("jax")
from encdec.errors import InputError, NonFiniteError  # noqa: E402
from encdec.flax import FlaxEncoderDecoderModel  # noqa: E402

MAX_LENGTH = 12  # the goldens' length


@pytest.fixture(scope="module")
def model():
    return FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert", fmt="safetensors",
                                                   compiler_options=FAST_COMPILE)


@pytest.mark.parametrize("search,num_beams", [("greedy", 1), pytest.param("beam3", 3, marks=pytest.mark.slow)])
def test_jitted_generate_gives_the_goldens_and_the_eager_ids(model, search, num_beams):
    g = golden("bert2bert")
    options = dict(max_length=MAX_LENGTH, num_beams=num_beams)
    run = jax.jit(lambda ids, mask: model.generate(ids, mask, **options).sequences)
    got = np.asarray(run(g["input_ids"], g["attention_mask"]))
    np.testing.assert_array_equal(got, g[search])
    np.testing.assert_array_equal(got, model.generate(g["input_ids"], g["attention_mask"], **options).sequences)
    # A bad id fails when the function runs: JAX raises what the host callback raised as its own
    # runtime error, carrying the InputError's text.
    bad = np.array(g["input_ids"])
    bad[0, 1] = 99  # the vocabulary has 99 rows
    message = r"input_ids holds id 99; expected ids in \[0, 99\)"
    with pytest.raises(InputError, match=message):
        model.generate(bad, g["attention_mask"], **options)
    with pytest.raises(jax.errors.JaxRuntimeError, match=message):
        jax.block_until_ready(run(bad, g["attention_mask"]))


@pytest.mark.slow
def test_jitted_rows_are_padded_past_their_end(model):
    # With eos 4 the first two rows end early: eager generate crops, the jitted one pads with pad_token_id.
    g = golden("bert2bert")
    ids, mask = g["input_ids"][:2], g["attention_mask"][:2]
    options = dict(max_length=MAX_LENGTH, eos_token_id=4, pad_token_id=7)  # not 0, what a buffer may start as
    expected = g["greedy"][:2].copy()  # transformers' ids; with eos 4 the rows end at columns 2 and 3
    expected[0, 3:] = expected[1, 4:] = 7
    got = jax.jit(lambda i, m: model.generate(i, m, **options).sequences)(ids, mask)
    np.testing.assert_array_equal(np.asarray(got), expected)
    eager = np.asarray(model.generate(ids, mask, **options).sequences)
    assert eager.shape[1] < MAX_LENGTH
    np.testing.assert_array_equal(eager, expected[:, : eager.shape[1]])


def test_a_traced_decoder_prompt_is_refused(model):
    g = golden("bert2bert")
    run = jax.jit(lambda ids, mask: model.generate(ids, mask, decoder_input_ids=ids[:, :2], max_length=MAX_LENGTH))
    with pytest.raises(InputError, match="decoder_input_ids is traced; expected a concrete array"):
        run(g["input_ids"], g["attention_mask"])


@pytest.mark.slow
def test_nan_scores_fail_when_the_jitted_function_runs():
    model = FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert", fmt="safetensors",
                                                    compiler_options=FAST_COMPILE)
    name = "decoder.bert.encoder.layer.1.output.dense.bias"
    bias = model.canonical_state()[name]
    bias[3] = np.nan
    model.load_canonical_state({name: bias}, partial=True)
    g = golden("bert2bert")
    message = r"the scores became NaN at step 0; check the weights"
    with pytest.raises(NonFiniteError, match=message):
        model.generate(g["input_ids"], g["attention_mask"], max_length=MAX_LENGTH)
    run = jax.jit(lambda ids, mask: model.generate(ids, mask, max_length=MAX_LENGTH).sequences)
    with pytest.raises(jax.errors.JaxRuntimeError, match=message):
        jax.block_until_ready(run(g["input_ids"], g["attention_mask"]))
