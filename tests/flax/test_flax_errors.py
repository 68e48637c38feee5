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


def test_out_of_range_ids(models, no_compute):
    model = models("bert2bert")
    g = golden("bert2bert")
    ids, mask, dids = g["input_ids"], g["attention_mask"], g["decoder_input_ids"]
    for bad in (-1, 99, 1000):
        with pytest.raises(InputError, match=rf"input_ids holds id {bad}; expected ids in \[0, 99\)"):
            model(np.where(ids == ids[0, 0], bad, ids), mask, decoder_input_ids=dids)
        with pytest.raises(InputError, match=rf"decoder_input_ids holds id {bad}"):
            model(ids, mask, decoder_input_ids=np.where(dids == dids[0, 1], bad, dids))
        with pytest.raises(InputError, match=r"input_ids holds id"):
            model.generate(np.where(ids == ids[0, 0], bad, ids), mask)
        with pytest.raises(InputError, match=r"input_ids holds id"):
            model.encode(np.where(ids == ids[0, 0], bad, ids), mask)
    labels = g["labels"].copy()
    labels[0, 0] = 99
    with pytest.raises(InputError, match=r"labels hold 99; expected ids in \[0, 99\) or -100"):
        model(ids, mask, labels=labels)
    with pytest.raises(InputError, match="token_type_ids holds id 2"):
        model(ids, mask, decoder_input_ids=dids, token_type_ids=np.full_like(ids, 2))


def test_too_long_inputs(models, no_compute):
    g = golden("roberta2roberta")
    model = models("roberta2roberta")
    cfg = model.config.encoder
    # RoBERTa positions start at pad + 1: the table of 66 holds 64 tokens.
    limit = cfg.max_position_embeddings - cfg.pad_token_id - 1
    ids = np.full((1, limit + 1), 5)
    with pytest.raises(InputError, match=rf"input_ids has length {limit + 1}; .* expected a length <= {limit}"):
        model(ids, decoder_input_ids=g["decoder_input_ids"][:1])
    with pytest.raises(InputError, match="decoder_input_ids has length"):
        model(g["input_ids"], g["attention_mask"], decoder_input_ids=np.full((3, limit + 1), 5))
    with pytest.raises(InputError, match="max_length 100 needs 99 decoder positions"):
        model.generate(g["input_ids"], g["attention_mask"], max_length=100)


def test_mismatched_shapes(models, no_compute):
    model = models("bert2bert")
    g = golden("bert2bert")
    ids, mask, dids = g["input_ids"], g["attention_mask"], g["decoder_input_ids"]
    with pytest.raises(InputError, match="decoder_input_ids has batch size 2; expected 3"):
        model(ids, mask, decoder_input_ids=dids[:2])
    with pytest.raises(InputError, match=r"attention_mask has shape \(3, 10\); expected \(3, 11\)"):
        model(ids, mask[:, :10], decoder_input_ids=dids)
    with pytest.raises(InputError, match="labels has batch size 2"):
        model(ids, mask, labels=g["labels"][:2])
    with pytest.raises(InputError, match="decoder_attention_mask has shape"):
        model(ids, mask, decoder_input_ids=dids, decoder_attention_mask=np.ones((3, 2)))
    with pytest.raises(InputError, match=r"expected \[batch, sequence\]"):
        model(ids[0], decoder_input_ids=dids)
    with pytest.raises(InputError, match="encoder_outputs have batch size 3; expected batch_size=2"):
        model.init_cache(2, 8, (np.zeros((3, 11, 32), np.float32),))


def test_missing_special_tokens(models, no_compute):
    model = models("bert2bert")
    g = golden("bert2bert")
    with pytest.raises(ConfigError, match="decoder_start_token_id is not set"):
        shift_tokens_right(g["labels"], 0, None)
    with pytest.raises(ConfigError, match="pad_token_id is not set"):
        shift_tokens_right(g["labels"], None, 2)
    config = model.config.copy()
    config.decoder_start_token_id = None
    bare = FlaxEncoderDecoderModel(config, params=model.params)
    with pytest.raises(ConfigError, match="no decoder_start_token_id"):
        bare.generate(g["input_ids"], g["attention_mask"], decoder_start_token_id=None)
    with pytest.raises(ConfigError, match="decoder_start_token_id is not set"):
        bare(g["input_ids"], g["attention_mask"], labels=g["labels"])


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


def test_decoding_past_the_cache(models):
    model = models("bert2gpt2")
    g = golden("bert2gpt2")
    encoded = model.encode(g["input_ids"], g["attention_mask"])
    with pytest.raises(InputError, match=r"max_length 65 is longer than the decoder's position table \(64 tokens\)"):
        model.init_cache(3, 65, encoded)
    cache = model.init_cache(3, 4, encoded)
    out = model.decode(g["decoder_input_ids"][:, :3], encoded, g["attention_mask"], past_key_values=cache)
    with pytest.raises(InputError, match="adds 2 tokens to a cache holding 3 of 4"):
        model.decode(g["decoder_input_ids"][:, 3:5], encoded, g["attention_mask"], past_key_values=out.past_key_values)
