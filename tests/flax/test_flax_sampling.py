"""Sampling semantics that do not depend on the random draw: a filter that leaves one token
makes sampling greedy; a key gives the same sample twice."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, golden
from flax_testlib import FAST_COMPILE, assert_same_ids

jax = pytest.importorskip("jax")
from encdec.errors import InputError  # noqa: E402
from encdec.flax import FlaxEncoderDecoderModel  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "bert2gpt2", fmt="safetensors", compiler_options=FAST_COMPILE)


def test_sampling_with_one_token_left_is_greedy(model):
    g = golden("bert2gpt2")
    ids, mask = g["input_ids"], g["attention_mask"]
    greedy = model.generate(ids, mask, max_length=12).sequences
    assert_same_ids("greedy", greedy, g["greedy"])
    for options in (dict(top_k=1), dict(top_p=0.0, top_k=0)):
        for seed in (0, 1):
            sample = model.generate(ids, mask, max_length=12, do_sample=True, prng_key=jax.random.key(seed),
                                    **options).sequences
            assert_same_ids(f"sampling {options}", sample, greedy)


def test_a_key_gives_the_same_sample(model):
    g = golden("bert2gpt2")
    ids, mask = g["input_ids"], g["attention_mask"]
    options = dict(max_length=12, do_sample=True, top_k=0, temperature=2.0, num_return_sequences=2)
    a = np.asarray(model.generate(ids, mask, prng_key=jax.random.key(3), **options).sequences)
    b = np.asarray(model.generate(ids, mask, prng_key=jax.random.key(3), **options).sequences)
    c = np.asarray(model.generate(ids, mask, seed=4, **options).sequences)
    assert a.shape == (2 * len(ids), a.shape[1]) and np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(InputError, match="prng_key"):
        model.generate(ids, mask, max_length=12, do_sample=True)


def test_beam_sampling_returns_finished_beams(model):
    g = golden("bert2gpt2")
    out = model.generate(g["input_ids"], g["attention_mask"], max_length=10, num_beams=3, do_sample=True,
                         num_return_sequences=2, prng_key=jax.random.key(0)).sequences
    assert out.shape[0] == 2 * len(g["input_ids"]) and out.shape[1] <= 10
    assert np.all(np.asarray(out)[:, 0] == model.config.decoder_start_token_id)
