"""What Flax `generate` returns: transformers 4.x's Flax output objects (flax struct dataclasses with
`sequences`, and `scores` for beam search), ids padded with pad_token_id after eos."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, golden
from flax_testlib import FAST_COMPILE

jax = pytest.importorskip("jax")
from encdec.flax import FlaxEncoderDecoderModel  # noqa: E402
from encdec.flax.generation import (  # noqa: E402
    FlaxBeamSearchOutput,
    FlaxGreedySearchOutput,
    FlaxSampleOutput,
)

MAX_LENGTH = 12  # the goldens' length


@pytest.fixture(scope="module")
def model():
    return FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert", fmt="safetensors",
                                                   compiler_options=FAST_COMPILE)


def _fields(out) -> list:
    return [f.name for f in __import__("dataclasses").fields(out)]


def test_greedy_returns_a_greedy_search_output_of_max_length(model):
    g = golden("bert2bert")
    out = model.generate(g["input_ids"], g["attention_mask"], max_length=MAX_LENGTH)
    assert type(out) is FlaxGreedySearchOutput and _fields(out) == ["sequences"]
    # A flax struct dataclass: a pytree whose leaves are the fields, with `replace`.
    assert len(jax.tree_util.tree_leaves(out)) == 1 and out.replace(sequences=None).sequences is None
    assert out.sequences.shape == (len(g["input_ids"]), MAX_LENGTH)
    np.testing.assert_array_equal(np.asarray(out.sequences), g["greedy"])


def test_finished_rows_are_padded_with_pad_token_id(model):
    # With eos 4 the first two rows end at columns 2 and 3 (the third runs to max_length): pad 7 after.
    g = golden("bert2bert")
    out = model.generate(g["input_ids"], g["attention_mask"], max_length=MAX_LENGTH, eos_token_id=4, pad_token_id=7)
    expected = g["greedy"].copy()
    expected[0, 3:] = 7
    expected[1, 4:] = 7
    np.testing.assert_array_equal(np.asarray(out.sequences), expected)


@pytest.mark.slow
def test_sampling_returns_a_sample_output(model):
    g = golden("bert2bert")
    out = model.generate(g["input_ids"], g["attention_mask"], max_length=MAX_LENGTH, do_sample=True, top_k=1,
                         prng_key=jax.random.key(0))
    assert type(out) is FlaxSampleOutput and _fields(out) == ["sequences"]
    np.testing.assert_array_equal(np.asarray(out.sequences), g["greedy"])  # top_k=1 samples the greedy ids


@pytest.mark.slow
def test_beam_search_returns_sequences_and_their_scores(model):
    torch = pytest.importorskip("torch")
    from encdec.pt import EncoderDecoderModel

    g = golden("bert2bert")
    options = dict(max_length=MAX_LENGTH, num_beams=3, num_return_sequences=2, length_penalty=2.0)
    out = model.generate(g["input_ids"], g["attention_mask"], **options)
    assert type(out) is FlaxBeamSearchOutput and _fields(out) == ["sequences", "scores"]
    np.testing.assert_array_equal(np.asarray(out.sequences), g["beam3_ret2_lp2"])
    pt = EncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert", fmt="safetensors")
    with torch.no_grad():
        ref = pt.generate(torch.tensor(g["input_ids"]), attention_mask=torch.tensor(g["attention_mask"]),
                          output_scores=True, return_dict_in_generate=True, **options)
    assert out.scores.shape == (2 * len(g["input_ids"]),)
    np.testing.assert_allclose(np.asarray(out.scores), ref.sequences_scores.numpy(), rtol=1e-4, atol=1e-5)
