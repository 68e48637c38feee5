"""Bad input gets an encdec error that names what was wrong and what was expected, raised on the
host before any compute (JAX would otherwise fill an out-of-range lookup with NaN, or clamp it)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, golden
from flax_testlib import FAST_COMPILE

jax = pytest.importorskip("jax")
from encdec.config import BertGenerationConfig, EncoderDecoderConfig  # noqa: E402
from encdec.errors import ConfigError, InputError  # noqa: E402
from encdec.flax import FlaxEncoderDecoderModel, shift_tokens_right  # noqa: E402
from jax._src import dispatch, monitoring  # noqa: E402


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(case):
        if case not in cache:
            cache[case] = FlaxEncoderDecoderModel.from_pretrained(
                FIXTURES / case, fmt="safetensors", compiler_options=FAST_COMPILE
            )
        return cache[case]

    return get


@pytest.fixture()
def no_compute():
    """Fails the test if anything was compiled (so nothing ran on the device) before the error."""
    count = [0]

    def listener(event, duration, **kwargs):
        if event == dispatch.BACKEND_COMPILE_EVENT:
            count[0] += 1

    monitoring.register_event_duration_secs_listener(listener)
    yield
    monitoring.unregister_event_duration_listener(listener)
    assert count[0] == 0, "the model compiled before rejecting its input"


def test_bad_generation_options(models, no_compute):
    model = models("bert2bert")
    g = golden("bert2bert")
    ids, mask = g["input_ids"], g["attention_mask"]
    with pytest.raises(ConfigError, match=r"num_return_sequences \(4\) must be <= num_beams \(3\)"):
        model.generate(ids, mask, num_beams=3, num_return_sequences=4)
    with pytest.raises(ConfigError, match="bad_words_ids"):
        model.generate(ids, mask, bad_words_ids=[[5, 200]])
    with pytest.raises(ConfigError, match="eos_token_id is 120"):
        model.generate(ids, mask, eos_token_id=120)
    with pytest.raises(ConfigError, match="unknown generation option"):
        model.generate(ids, mask, num_beam=3)
    with pytest.raises(InputError, match="do_sample=True needs prng_key"):
        model.generate(ids, mask, do_sample=True)


def test_bert_generation_has_no_token_types(no_compute):
    enc = BertGenerationConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=8, max_position_embeddings=16)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(enc, enc, decoder_start_token_id=2, pad_token_id=0)
    model = FlaxEncoderDecoderModel(config, compiler_options=FAST_COMPILE)
    ids = np.ones((1, 4), np.int32)
    with pytest.raises(InputError, match="bert-generation has no token types"):
        model(ids, decoder_input_ids=ids, token_type_ids=np.zeros_like(ids))


def test_one_rule_for_id_dtypes_and_empty_inputs(models, no_compute):
    model = models("bert2bert")
    g = golden("bert2bert")
    ids, mask, dids = g["input_ids"], g["attention_mask"], g["decoder_input_ids"]
    for dtype in (np.float32, bool):
        with pytest.raises(InputError, match=r"input_ids has dtype .*; expected integer ids"):
            model(ids.astype(dtype), mask, decoder_input_ids=dids)
        with pytest.raises(InputError, match=r"decoder_input_ids has dtype .*; expected integer ids"):
            model(ids, mask, decoder_input_ids=dids.astype(dtype))
        with pytest.raises(InputError, match=r"input_ids has dtype .*; expected integer ids"):
            model.generate(ids.astype(dtype), mask)
        with pytest.raises(InputError, match=r"input_ids has dtype .*; expected integer ids"):
            model.encode(ids.astype(dtype), mask)
    with pytest.raises(InputError, match="input_ids has shape .*a batch of 0 rows; expected at least one row"):
        model(ids[:0], mask[:0], decoder_input_ids=dids[:0])
    with pytest.raises(InputError, match="input_ids has shape .*length 0; expected at least one token"):
        model.generate(ids[:, :0], mask[:, :0])
    with pytest.raises(InputError, match="decoder_input_ids has shape .*length 0; expected at least one token"):
        model(ids, mask, decoder_input_ids=dids[:, :0])
    with pytest.raises(InputError, match="input_ids has shape .*a batch of 0 rows"):
        model.encode(ids[:0], mask[:0])


def test_unsigned_ids_are_ids(models):
    model = models("bert2bert")
    g = golden("bert2bert")
    ids, mask, dids = g["input_ids"], g["attention_mask"], g["decoder_input_ids"]
    expected = np.asarray(model(ids, mask, decoder_input_ids=dids).logits)
    for dtype in (np.uint8, np.uint32, np.int16):
        got = model(ids.astype(dtype), mask.astype(dtype), decoder_input_ids=dids.astype(dtype)).logits
        np.testing.assert_array_equal(np.asarray(got), expected)
    got = model.generate(ids.astype(np.uint8), mask, max_length=12).sequences
    np.testing.assert_array_equal(np.asarray(got), g["greedy"])


def test_special_tokens_outside_the_vocabulary(models, no_compute):
    model = models("bert2bert")
    g = golden("bert2bert")
    ids, mask = g["input_ids"], g["attention_mask"]
    for name in ("decoder_start_token_id", "pad_token_id", "eos_token_id"):
        for bad in (99, -1):
            with pytest.raises(ConfigError, match=rf"{name} is {bad}; expected an id in \[0, 99\)"):
                model.generate(ids, mask, **{name: bad})
    with pytest.raises(ConfigError, match=r"eos_token_id is 99"):
        model.generate(ids, mask, eos_token_id=[3, 99])
