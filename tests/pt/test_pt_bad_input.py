"""Bad input gets a clear encdec error, raised before any compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encdec.errors import ConfigError, InputError, NonFiniteError
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.bool])
def test_ids_that_are_not_integers(setup, no_compute, dtype):
    """float and bool ids are refused everywhere, naming the argument: the same rule in every port."""
    _, model, batch = setup
    as_dtype = lambda t: t.to(dtype)  # noqa: E731
    with pytest.raises(InputError, match=r"input_ids has dtype \w+; expected integer ids"):
        model(**forward_kwargs(batch, input_ids=as_dtype(batch["input_ids"])))
    with pytest.raises(InputError, match=r"decoder_input_ids has dtype \w+; expected integer ids"):
        model(**forward_kwargs(batch, decoder_input_ids=as_dtype(batch["decoder_input_ids"])))
    with pytest.raises(InputError, match=r"token_type_ids has dtype \w+; expected integer ids"):
        model(**forward_kwargs(batch, token_type_ids=as_dtype(torch.zeros_like(batch["input_ids"]))))
    with pytest.raises(InputError, match=r"input_ids has dtype \w+; expected integer ids"):
        model.generate(as_dtype(batch["input_ids"]))
    with pytest.raises(InputError, match=r"input_ids has dtype \w+; expected integer ids"):
        model.encode(as_dtype(batch["input_ids"]))
    with pytest.raises(InputError, match=r"labels has dtype \w+; expected integer ids"):
        model(**forward_kwargs(batch, decoder_input_ids=None, labels=as_dtype(batch["labels"].clamp(min=0))))


def test_uint8_ids_are_ids(setup):
    """Unsigned ids (uint8 included) compute what int64 ids compute."""
    _, model, batch = setup
    narrow = {k: v.to(torch.uint8) for k, v in forward_kwargs(batch).items()}
    with torch.no_grad():
        expected = model(**forward_kwargs(batch)).logits
        torch.testing.assert_close(model(**narrow).logits, expected, rtol=0, atol=0)
        encoded = model.encode(narrow["input_ids"], narrow["attention_mask"]).last_hidden_state
        torch.testing.assert_close(encoded, model.encode(batch["input_ids"], batch["attention_mask"]).last_hidden_state,
                                   rtol=0, atol=0)
    kwargs = dict(max_length=6, num_beams=2)
    assert torch.equal(model.generate(narrow["input_ids"], narrow["attention_mask"], **kwargs),
                       model.generate(batch["input_ids"], batch["attention_mask"], **kwargs))


def test_an_empty_batch_or_sequence(setup, no_compute):
    _, model, batch = setup
    ids, dec = batch["input_ids"], batch["decoder_input_ids"]
    no_rows = "has shape .*, a batch of 0 rows; expected at least one row"
    no_tokens = "has shape .*, sequences of length 0; expected at least one token"
    with pytest.raises(InputError, match="input_ids " + no_rows):
        model(input_ids=ids[:0], decoder_input_ids=dec[:0])
    with pytest.raises(InputError, match="input_ids " + no_tokens):
        model(input_ids=ids[:, :0], decoder_input_ids=dec)
    with pytest.raises(InputError, match="decoder_input_ids " + no_tokens):
        model(input_ids=ids, decoder_input_ids=dec[:, :0])
    with pytest.raises(InputError, match="labels has shape .*; expected at least one row and one token"):
        model(input_ids=ids, labels=batch["labels"][:, :0])
    with pytest.raises(InputError, match="input_ids " + no_rows):
        model.generate(ids[:0])
    with pytest.raises(InputError, match="input_ids " + no_tokens):
        model.generate(ids[:, :0])
    with pytest.raises(InputError, match="input_ids " + no_tokens):
        model.encode(ids[:, :0])


def test_an_empty_decode_step(setup):
    config, model, batch = setup
    with torch.no_grad():
        encoded = model.encode(batch["input_ids"], batch["attention_mask"])
        cache = model.init_cache(2, 4, encoded, batch["attention_mask"])
        with pytest.raises(InputError, match="decoder_input_ids has shape .*; expected at least one token"):
            model.decode_step(batch["decoder_input_ids"][:, :0], cache)
        with pytest.raises(InputError, match="decoder_input_ids has dtype float32; expected integer ids"):
            model.decode_step(batch["decoder_input_ids"][:, :1].float(), cache)
        with pytest.raises(InputError, match=f"decoder_input_ids holds id {config.decoder.vocab_size}"):
            model.decode_step(torch.full((2, 1), config.decoder.vocab_size), cache)
        with pytest.raises(InputError, match="decoder_input_ids has batch size 1; expected 2 like the cache"):
            model.decode_step(batch["decoder_input_ids"][:1, :1], cache)
        with pytest.raises(InputError, match="adds 5 tokens to a cache holding 0 of 4"):
            model.decode_step(batch["decoder_input_ids"], cache)
        assert cache["index"] == 0  # nothing was written


@pytest.mark.parametrize("name", ["decoder_start_token_id", "pad_token_id", "eos_token_id"])
@pytest.mark.parametrize("where", ["option", "generation_config"])
def test_special_tokens_outside_the_decoder_vocabulary(setup, no_compute, name, where):
    """Refused before any work with ConfigError, whichever config holds them (eos also as a list)."""
    config, model, batch = setup
    vocab = config.decoder.vocab_size
    for bad in (vocab, -1) if name != "eos_token_id" else (vocab, [3, vocab]):
        options = {name: bad}
        # A negative id is refused by the generation config itself, as soon as it is set.
        expected = rf"{name} is {vocab}; expected an id in \[0, {vocab}\)" if bad != -1 else rf"{name} is -1"
        with pytest.raises(ConfigError, match=expected):
            if where == "option":
                model.generate(batch["input_ids"], **options)
            else:
                model.generate(batch["input_ids"], generation_config=model.generation_config.update(**options))


def test_nan_scores_raise_instead_of_giving_tokens():
    config = joined_config("bert2bert", 3)
    state = random_state(config, 3)
    name = "decoder.cls.predictions.transform.dense.weight"
    state[name] = state[name].copy()
    state[name][0, 0] = np.nan
    model = our_model(config, state)
    b = random_batch(config, np.random.default_rng(3), 2, 6, 4, "none")
    for num_beams in (1, 3):
        with pytest.raises(NonFiniteError, match=r"the scores became NaN at step 0; check the weights for "
                                                 r"non-finite values \(encdec inspect lists them\)"):
            model.generate(b["input_ids"], max_length=6, num_beams=num_beams)
    # The same model with that weight finite generates.
    state[name][0, 0] = 0.0
    model.load_canonical_state({name: state[name]}, partial=True)
    assert model.generate(b["input_ids"], max_length=6).shape[0] == 2


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
