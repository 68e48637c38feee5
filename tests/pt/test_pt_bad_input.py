"""Bad input gets a clear encdec error, raised before any compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encdec.errors import ConfigError, InputError
from pt_helpers import joined_config, one_torch_thread, our_model, random_batch, random_state  # noqa: F401


@pytest.fixture(scope="module")
def setup():
    config = joined_config("bert2bert", 0)
    model = our_model(config, random_state(config, 0))
    batch = random_batch(config, np.random.default_rng(0), 2, 6, 5, "right")
    return config, model, batch


@pytest.fixture
def no_compute(setup, monkeypatch):
    """Any call of the encoder or the decoder fails the test: the error must come first."""
    _, model, _ = setup

    def computed(*args, **kwargs):
        raise AssertionError("the model computed before rejecting its input")

    monkeypatch.setattr(model.encoder, "forward", computed)
    monkeypatch.setattr(model.decoder, "forward", computed)
    return model


def forward_kwargs(batch, **changes):
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  decoder_input_ids=batch["decoder_input_ids"])
    kwargs.update(changes)
    return {k: v for k, v in kwargs.items() if v is not None}


def test_encoder_id_outside_the_vocabulary(setup, no_compute):
    config, model, batch = setup
    ids = batch["input_ids"].clone()
    ids[1, 2] = config.encoder.vocab_size
    with pytest.raises(InputError, match=rf"input_ids holds id {config.encoder.vocab_size}; expected ids in \[0, "):
        model(**forward_kwargs(batch, input_ids=ids))
    ids[1, 2] = -1
    with pytest.raises(InputError, match="input_ids holds id -1"):
        model(**forward_kwargs(batch, input_ids=ids))
    with pytest.raises(InputError, match="input_ids holds id -1"):
        model.generate(ids)


def test_decoder_id_and_label_outside_the_vocabulary(setup, no_compute):
    config, model, batch = setup
    vocab = config.decoder.vocab_size
    dec = batch["decoder_input_ids"].clone()
    dec[0, 1] = vocab + 5
    with pytest.raises(InputError, match=rf"decoder_input_ids holds id {vocab + 5}"):
        model(**forward_kwargs(batch, decoder_input_ids=dec))
    labels = batch["labels"].clone()
    labels[0, 0] = vocab
    with pytest.raises(InputError, match=rf"labels holds {vocab}; expected ids in \[0, {vocab}\) or -100"):
        model(**forward_kwargs(batch, decoder_input_ids=None, labels=labels))


def test_float_ids(setup, no_compute):
    _, model, batch = setup
    with pytest.raises(InputError, match="expected integer token ids"):
        model(**forward_kwargs(batch, input_ids=batch["input_ids"].float()))


def test_inputs_longer_than_the_position_table(setup, no_compute):
    config, model, batch = setup
    limit = config.encoder.max_position_embeddings
    long_ids = torch.full((2, limit + 1), 5)
    with pytest.raises(InputError, match=rf"input_ids has length {limit + 1}.*at most {limit}"):
        model(input_ids=long_ids, decoder_input_ids=batch["decoder_input_ids"])
    with pytest.raises(InputError, match=rf"input_ids has length {limit + 1}.*at most {limit}"):
        model.generate(long_ids)
    dec_limit = config.decoder.max_position_embeddings
    long_dec = torch.full((2, dec_limit + 1), 5)
    with pytest.raises(InputError, match=rf"decoder input has length {dec_limit + 1}.*at most {dec_limit}"):
        model(**forward_kwargs(batch, decoder_input_ids=long_dec))
    with pytest.raises(InputError, match=rf"max_length {dec_limit + 5} needs"):
        model.generate(batch["input_ids"], max_length=dec_limit + 5)


@pytest.mark.parametrize("pair", ["roberta2roberta", "bert2gpt2"])
def test_position_limits_of_roberta_and_gpt2(pair):
    config = joined_config(pair, 0)
    model = our_model(config, random_state(config, 0))
    batch = random_batch(config, np.random.default_rng(0), 2, 6, 5, "none")
    # RoBERTa counts positions from padding_idx + 1: it holds max_position_embeddings - pad - 1 tokens
    limit = model._decoder_position_limit()
    expected = config.decoder.max_position_embeddings - (config.decoder.pad_token_id + 1 if pair.endswith("roberta") else 0)
    assert limit == expected
    fits = torch.full((2, limit), 5)
    with torch.no_grad():
        model(input_ids=batch["input_ids"], decoder_input_ids=fits)
    with pytest.raises(InputError, match="position table"):
        model(input_ids=batch["input_ids"], decoder_input_ids=torch.full((2, limit + 1), 5))


def test_mismatched_batch_sizes(setup, no_compute):
    _, model, batch = setup
    with pytest.raises(InputError, match=r"attention_mask has shape \(2, 5\); expected \(2, 6\)"):
        model(**forward_kwargs(batch, attention_mask=batch["attention_mask"][:, :5]))
    with pytest.raises(InputError, match="decoder_input_ids has batch size 1; expected 2"):
        model(**forward_kwargs(batch, decoder_input_ids=batch["decoder_input_ids"][:1]))
    with pytest.raises(InputError, match=r"labels has shape \(3, 5\); expected \[2, target length\]"):
        model(**forward_kwargs(batch, decoder_input_ids=None, labels=torch.ones(3, 5, dtype=torch.long)))
    with pytest.raises(InputError, match=r"labels has shape \(2, 4\); expected \(2, 5\) like decoder_input_ids"):
        model(**forward_kwargs(batch, labels=torch.ones(2, 4, dtype=torch.long)))
    with pytest.raises(InputError, match="decoder_attention_mask has shape"):
        model(**forward_kwargs(batch, decoder_attention_mask=torch.ones(2, 3, dtype=torch.long)))
    with pytest.raises(InputError, match="attention_mask has shape"):
        model.generate(batch["input_ids"], attention_mask=batch["attention_mask"][:1])


def test_missing_inputs(setup, no_compute):
    _, model, batch = setup
    with pytest.raises(InputError, match="expected input_ids or encoder_outputs"):
        model(decoder_input_ids=batch["decoder_input_ids"])
    with pytest.raises(InputError, match="expected decoder_input_ids or labels"):
        model(input_ids=batch["input_ids"])


def test_token_types_out_of_range(setup, no_compute):
    config, model, batch = setup
    types = torch.full_like(batch["input_ids"], config.encoder.type_vocab_size)
    with pytest.raises(InputError, match="token_type_ids holds id"):
        model(**forward_kwargs(batch, token_type_ids=types))
    with pytest.raises(InputError, match="token_type_ids holds id"):
        model.generate(batch["input_ids"], token_type_ids=types)
    with pytest.raises(InputError, match=r"token_type_ids has shape \(2, 5\)"):
        model(**forward_kwargs(batch, token_type_ids=types[:, :5]))


def test_missing_decoder_start_and_pad_token(setup):
    config, model, batch = setup
    original = (config.decoder_start_token_id, config.pad_token_id, config.bos_token_id)
    gen = model.generation_config
    try:
        model.config.decoder_start_token_id = None
        model.config.bos_token_id = None
        model.generation_config = gen.update(decoder_start_token_id=None, bos_token_id=None)
        with pytest.raises(ConfigError, match="decoder_start_token_id is not set"):
            model(input_ids=batch["input_ids"], labels=batch["labels"])
        with pytest.raises(ConfigError, match="no decoder_start_token_id"):
            model.generate(batch["input_ids"])
        model.config.decoder_start_token_id = original[0]
        model.config.pad_token_id = None
        with pytest.raises(ConfigError, match="pad_token_id is not set"):
            model(input_ids=batch["input_ids"], labels=batch["labels"])
    finally:
        model.config.decoder_start_token_id, model.config.pad_token_id, model.config.bos_token_id = original
        model.generation_config = gen


def test_bad_generation_options(setup):
    _, model, batch = setup
    with pytest.raises(ConfigError, match="unknown generation option"):
        model.generate(batch["input_ids"], beams=3)
    with pytest.raises(ConfigError, match="num_return_sequences"):
        model.generate(batch["input_ids"], num_beams=2, num_return_sequences=3)
    with pytest.raises(ConfigError, match="bad_words_ids"):
        model.generate(batch["input_ids"], bad_words_ids=[[10_000]])
    with pytest.raises(InputError, match="max_length is 1"):
        model.generate(batch["input_ids"], max_length=1)
