"""A second call with the same shapes compiles nothing, even when options that change no shape
differ (length penalty, early stopping, eos id, min length, returned sequences, temperature,
top-k/p, the key). Compilations are counted with JAX's compile events, not timed."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from conftest import FIXTURES, golden
from flax_testlib import FAST_COMPILE

jax = pytest.importorskip("jax")
from jax._src import dispatch, monitoring  # noqa: E402

from encdec.flax import FlaxEncoderDecoderModel  # noqa: E402


@contextlib.contextmanager
def count_compiles():
    """Counts XLA backend compilations (every jit, eager op or transfer program) inside the block."""
    count = [0]

    def listener(event, duration, **kwargs):
        if event == dispatch.BACKEND_COMPILE_EVENT:
            count[0] += 1

    monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        monitoring.unregister_event_duration_listener(listener)


@pytest.fixture(scope="module")
def model():
    return FlaxEncoderDecoderModel.from_pretrained(FIXTURES / "bert2bert", fmt="safetensors", compiler_options=FAST_COMPILE)


def test_beam_search_options_are_traced(model):
    g = golden("bert2bert")
    ids, mask = g["input_ids"], g["attention_mask"]
    first = np.asarray(model.generate(ids, mask, max_length=10, num_beams=3).sequences)
    outputs = []
    with count_compiles() as n:
        for options in (
            dict(length_penalty=0.3, early_stopping="never"),
            dict(length_penalty=2.0, early_stopping=True, num_return_sequences=3),
            dict(eos_token_id=int(first[0, 2]), pad_token_id=7, min_length=4),
            dict(eos_token_id=None, decoder_start_token_id=5),
        ):
            outputs.append(np.asarray(model.generate(ids, mask, max_length=10, num_beams=3, **options).sequences))
    assert n[0] == 0, f"{n[0]} compilation(s) on calls that change no shape"
    # The options took effect: more rows, an earlier eos (pad after it), another start token.
    assert outputs[1].shape[0] == 3 * len(ids)
    assert outputs[3][0, 0] == 5 and not np.array_equal(outputs[3], first)


def test_sampling_options_are_traced(model):
    g = golden("bert2bert")
    ids, mask = g["input_ids"], g["attention_mask"]
    model.generate(ids, mask, max_length=9, do_sample=True, prng_key=jax.random.key(0))
    samples = []
    with count_compiles() as n:
        for seed, options in enumerate((
            dict(temperature=0.7, top_k=5),
            dict(temperature=1.5, top_k=40, top_p=0.8),
            dict(temperature=1.0, top_k=0, top_p=0.5, min_length=6),
        )):
            samples.append(np.asarray(model.generate(ids, mask, max_length=9, do_sample=True,
                                                     prng_key=jax.random.key(seed + 1), **options).sequences))
    assert n[0] == 0, f"{n[0]} compilation(s) on calls that change no shape"
    assert len({s.tobytes() for s in samples}) == 3


def test_forward_twice_compiles_once(model):
    g = golden("bert2bert")
    model(g["input_ids"], g["attention_mask"], labels=g["labels"])
    with count_compiles() as n:
        out = model(g["input_ids"][::-1], g["attention_mask"][::-1], labels=g["labels"][::-1])
    assert n[0] == 0
    assert np.isfinite(float(out.loss))


def test_a_new_shape_compiles_a_new_loop(model):
    g = golden("bert2bert")
    with count_compiles() as n:
        model.generate(g["input_ids"], g["attention_mask"], max_length=10, num_beams=3)
        before = n[0]
        model.generate(g["input_ids"], g["attention_mask"], max_length=10, num_beams=2)
    assert n[0] > before
