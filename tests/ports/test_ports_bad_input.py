"""One rule per bad input, in every port, checked before any work: the same encdec error type, naming
the argument that was wrong and what was expected."""

from __future__ import annotations

import numpy as np
import pytest

from encdec.errors import ConfigError, InputError, NonFiniteError
from encdec.weights.names import model_spec
from port_backends import no_compute, one_torch_thread, port  # noqa: F401  (fixtures)
from ports_lib import START, joined_config, random_batch, random_state

ID_ARGS = ("input_ids", "decoder_input_ids", "token_type_ids", "position_ids")


@pytest.fixture(scope="module")
def config():
    # bert2roberta: the encoder has token types and the decoder counts positions after the pad id.
    return joined_config("bert2roberta", 8)


@pytest.fixture(scope="module")
def state(config):
    return random_state(config, 8)


@pytest.fixture
def model(port, config, state):
    """A fresh model per test: nothing compiled or cached before the bad input arrives."""
    return port.from_state(config, state)


@pytest.fixture(scope="module")
def batch(config):
    return random_batch(config, np.random.default_rng(8), 2, 6, 5, "right")


def inputs(batch, **changes) -> dict:
    kwargs = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}
    kwargs.update(changes)
    return kwargs


def valid(arg: str, batch) -> np.ndarray:
    """A valid value of an id argument of the forward."""
    if arg in ("input_ids", "decoder_input_ids"):
        return batch[arg]
    shape = batch["input_ids"].shape
    if arg == "token_type_ids":
        return np.zeros(shape, np.int64)
    return np.broadcast_to(np.arange(shape[1]), shape).copy()  # position_ids


@pytest.mark.parametrize("dtype", ["float32", "bool"])
@pytest.mark.parametrize("arg", ID_ARGS)
def test_float_or_bool_ids_are_refused(port, model, batch, arg, dtype):
    bad = valid(arg, batch).astype(dtype)
    with no_compute(port, model), pytest.raises(InputError, match=rf"{arg}.*expected integer ids"):
        if arg in ("input_ids", "decoder_input_ids"):
            port.forward(model, **inputs(batch, **{arg: bad}))
        else:  # the encoder's own inputs, as `encode` takes them
            port.encode(model, batch["input_ids"], batch["attention_mask"], **{arg: bad})


def test_float_ids_are_refused_in_generate_and_encode(port, model, batch):
    ids = batch["input_ids"].astype(np.float32)
    with no_compute(port, model):
        with pytest.raises(InputError, match=r"input_ids.*expected integer ids"):
            port.generate(model, ids, max_length=5)
        with pytest.raises(InputError, match=r"input_ids.*expected integer ids"):
            port.encode(model, ids)
        with pytest.raises(InputError, match=r"decoder_input_ids.*expected integer ids"):
            port.generate(model, batch["input_ids"], decoder_input_ids=np.full((2, 2), 2.0), max_length=5)


@pytest.mark.parametrize("dtype", ["uint8", pytest.param("int32", marks=pytest.mark.slow),
                                   pytest.param("uint16", marks=pytest.mark.slow)])
def test_unsigned_and_narrow_ids_are_accepted(port, model, batch, dtype):
    """Any integer dtype holds ids: the same logits and tokens as int64 ids."""
    narrow = {k: batch[k].astype(dtype) for k in ("input_ids", "attention_mask", "decoder_input_ids")}
    expected = port.numpy(port.forward(model, **inputs(batch)).logits)
    got = port.numpy(port.forward(model, **narrow).logits)
    np.testing.assert_array_equal(got, expected)
    want = port.generated_ids(model, batch["input_ids"], attention_mask=batch["attention_mask"], max_length=6)
    ids = port.generated_ids(model, narrow["input_ids"], attention_mask=narrow["attention_mask"], max_length=6)
    np.testing.assert_array_equal(ids, want)


@pytest.mark.parametrize("arg", ["input_ids", "decoder_input_ids"])
def test_an_empty_batch_or_sequence_is_refused(port, model, batch, arg):
    rows, length = batch[arg].shape
    changes = {arg: batch[arg][:0]}
    if arg == "input_ids":
        changes["attention_mask"] = batch["attention_mask"][:0]
    with no_compute(port, model), pytest.raises(InputError, match=rf"{arg}.*expected at least one row"):
        port.forward(model, **inputs(batch, **changes))
    changes = {arg: batch[arg][:, :0]}
    if arg == "input_ids":
        changes["attention_mask"] = batch["attention_mask"][:, :0]
    with no_compute(port, model), pytest.raises(InputError, match=rf"{arg}.*expected at least one token"):
        port.forward(model, **inputs(batch, **changes))


def test_an_empty_batch_or_sequence_is_refused_in_generate_and_encode(port, model, batch):
    ids = batch["input_ids"]
    with no_compute(port, model):
        with pytest.raises(InputError, match=r"input_ids.*expected at least one row"):
            port.generate(model, ids[:0], max_length=5)
        with pytest.raises(InputError, match=r"input_ids.*expected at least one token"):
            port.generate(model, ids[:, :0], max_length=5)
        with pytest.raises(InputError, match=r"input_ids.*expected at least one row"):
            port.encode(model, ids[:0])
        with pytest.raises(InputError, match=r"decoder_input_ids.*expected at least one token"):
            port.generate(model, ids, decoder_input_ids=np.zeros((2, 0), np.int64), max_length=5)


def test_ids_outside_the_vocabulary(port, model, config, batch):
    enc_vocab, dec_vocab = config.encoder.vocab_size, config.decoder.vocab_size
    with no_compute(port, model):
        for bad in (enc_vocab, -1):
            ids = batch["input_ids"].copy()
            ids[1, 2] = bad
            with pytest.raises(InputError, match=rf"input_ids holds id {bad}; expected ids in \[0, {enc_vocab}\)"):
                port.forward(model, **inputs(batch, input_ids=ids))
            with pytest.raises(InputError, match=rf"input_ids holds id {bad}"):
                port.generate(model, ids, attention_mask=batch["attention_mask"], max_length=5)
            with pytest.raises(InputError, match=rf"input_ids holds id {bad}"):
                port.encode(model, ids)
        dec = batch["decoder_input_ids"].copy()
        dec[0, 1] = dec_vocab + 5
        with pytest.raises(InputError, match=rf"decoder_input_ids holds id {dec_vocab + 5}"):
            port.forward(model, **inputs(batch, decoder_input_ids=dec))
        with pytest.raises(InputError, match=r"decoder_input_ids"):
            port.generate(model, batch["input_ids"], decoder_input_ids=np.full((2, 2), 99), max_length=6)
        labels = batch["labels"].copy()
        labels[0, 0] = dec_vocab
        with pytest.raises(InputError, match=rf"labels holds {dec_vocab}; expected ids in \[0, {dec_vocab}\) or -100"):
            port.forward(model, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
        types = np.full_like(batch["input_ids"], config.encoder.type_vocab_size)
        with pytest.raises(InputError, match="token_type_ids holds id"):
            port.forward(model, **inputs(batch, token_type_ids=types))
        with pytest.raises(InputError, match="token_type_ids holds id"):
            port.generate(model, batch["input_ids"], token_type_ids=types, max_length=5)


def test_sequences_longer_than_the_position_table(port, model, config, batch):
    """ArchConfig.max_positions is the rule: RoBERTa's table holds max_position_embeddings - pad - 1 tokens."""
    enc_limit, dec_limit = config.encoder.max_positions, config.decoder.max_positions
    assert dec_limit == config.decoder.max_position_embeddings - config.decoder.pad_token_id - 1
    with no_compute(port, model):
        long_ids = np.full((2, enc_limit + 1), 5)
        with pytest.raises(InputError, match=rf"input_ids has length {enc_limit + 1}.*expected at most {enc_limit}"):
            port.forward(model, input_ids=long_ids, decoder_input_ids=batch["decoder_input_ids"])
        with pytest.raises(InputError, match=rf"input_ids has length {enc_limit + 1}.*expected at most {enc_limit}"):
            port.generate(model, long_ids, max_length=4)
        with pytest.raises(InputError, match=rf"decoder_input_ids has length {dec_limit + 1}.*at most {dec_limit}"):
            port.forward(model, input_ids=batch["input_ids"], decoder_input_ids=np.full((2, dec_limit + 1), 5))
        with pytest.raises(InputError, match=rf"max_length {dec_limit + 2} needs"):
            port.generate(model, batch["input_ids"], max_length=dec_limit + 2)
    # The limit itself fits.
    out = port.forward(model, input_ids=batch["input_ids"], decoder_input_ids=np.full((2, dec_limit), 5))
    assert port.numpy(out.logits).shape == (2, dec_limit, config.decoder.vocab_size)


def test_mismatched_batches_and_shapes(port, model, batch):
    with no_compute(port, model):
        with pytest.raises(InputError, match=r"attention_mask has shape \(2, 5\); expected \(2, 6\)"):
            port.forward(model, **inputs(batch, attention_mask=batch["attention_mask"][:, :5]))
        with pytest.raises(InputError, match="decoder_input_ids has batch size 1; expected 2"):
            port.forward(model, **inputs(batch, decoder_input_ids=batch["decoder_input_ids"][:1]))
        with pytest.raises(InputError, match="labels has"):
            port.forward(model, input_ids=batch["input_ids"], labels=np.ones((3, 5), np.int64))
        with pytest.raises(InputError, match=r"labels has shape \(2, 4\); expected \(2, 5\) like decoder_input_ids"):
            port.forward(model, **inputs(batch, labels=np.ones((2, 4), np.int64)))
        with pytest.raises(InputError, match="decoder_attention_mask has shape"):
            port.forward(model, **inputs(batch, decoder_attention_mask=np.ones((2, 3), np.int64)))
        with pytest.raises(InputError, match="token_type_ids has shape"):
            port.forward(model, **inputs(batch, token_type_ids=np.zeros((2, 5), np.int64)))
        with pytest.raises(InputError, match="attention_mask has shape"):
            port.generate(model, batch["input_ids"], attention_mask=batch["attention_mask"][:1], max_length=5)
        with pytest.raises(InputError, match=r"decoder_input_ids has shape \(1, 2\); expected \[2, prompt length\]"):
            port.generate(model, batch["input_ids"], decoder_input_ids=np.array([[START, 5]]), max_length=6)
        with pytest.raises(InputError, match=r"expected \[batch, sequence\]"):
            port.forward(model, input_ids=batch["input_ids"][0], decoder_input_ids=batch["decoder_input_ids"])


def test_missing_inputs(port, model, batch):
    with no_compute(port, model):
        with pytest.raises(InputError, match="expected input_ids or encoder_outputs"):
            model(input_ids=None, decoder_input_ids=port.tensor(batch["decoder_input_ids"]))
        with pytest.raises(InputError, match="expected decoder_input_ids or labels"):
            port.forward(model, input_ids=batch["input_ids"])


def test_a_prompt_as_long_as_max_length_is_refused(port, model, batch):
    prompt = np.array([[START, 5, 6], [START, 7, 8]])
    with no_compute(port, model), pytest.raises(InputError, match="expected more than the decoder prompt's 3 token"):
        port.generate(model, batch["input_ids"], decoder_input_ids=prompt, max_length=3)


@pytest.mark.parametrize(
    "option,value",
    [("decoder_start_token_id", 61), ("decoder_start_token_id", -1), ("pad_token_id", 61), ("eos_token_id", 70),
     ("eos_token_id", [3, 61])],
)
def test_special_tokens_outside_the_decoder_vocabulary(port, model, batch, option, value):
    bad = value[-1] if isinstance(value, list) else value
    with no_compute(port, model), pytest.raises(
        ConfigError, match=rf"{option} is {bad}; expected an id in \[0, 61\)"
    ):
        port.generate(model, batch["input_ids"], attention_mask=batch["attention_mask"], max_length=5,
                      **{option: value})


def test_missing_special_tokens(port, config, state, batch):
    model = port.from_state(config.copy(), state)
    model.config.decoder_start_token_id = None
    model.config.bos_token_id = None
    model.generation_config = model.generation_config.update(decoder_start_token_id=None, bos_token_id=None)
    with no_compute(port, model), pytest.raises(ConfigError, match="no decoder_start_token_id"):
        port.generate(model, batch["input_ids"], max_length=5)
    with pytest.raises(ConfigError, match="decoder_start_token_id is not set"):
        port.forward(model, input_ids=batch["input_ids"], labels=batch["labels"])
    model.config.decoder_start_token_id = START
    model.config.pad_token_id = None
    with pytest.raises(ConfigError, match="pad_token_id is not set"):
        port.forward(model, input_ids=batch["input_ids"], labels=batch["labels"])


def test_bad_generation_options(port, model, batch):
    ids = batch["input_ids"]
    with no_compute(port, model):
        with pytest.raises(ConfigError, match="unknown generation option"):
            port.generate(model, ids, beams=3)
        with pytest.raises(ConfigError, match=r"num_return_sequences \(3\) must be <= num_beams \(2\)"):
            port.generate(model, ids, num_beams=2, num_return_sequences=3)
        with pytest.raises(ConfigError, match="bad_words_ids"):
            port.generate(model, ids, bad_words_ids=[[5, 10_000]])


@pytest.mark.parametrize("num_beams", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_a_nan_weight_raises_non_finite_error_in_generate(port, config, state, batch, num_beams):
    """A NaN in the decoder's last LayerNorm makes every score NaN: an error, not tokens chosen from NaN."""
    norm = [p for p in model_spec(config) if p.name.startswith("decoder.") and p.kind == "norm_weight"][-1]
    model = port.from_state(config, dict(state, **{norm.name: np.full(norm.shape, np.nan, np.float32)}))
    with pytest.raises(NonFiniteError, match=r"the scores became NaN at step \d+; check the weights"):
        port.generate(model, batch["input_ids"], attention_mask=batch["attention_mask"], max_length=6,
                      num_beams=num_beams)


def test_a_nan_loaded_into_a_working_model_raises_non_finite_error(port, config, state, batch):
    """load_canonical_state(partial=True) changes one tensor of a model that generated before."""
    model = port.from_state(config, state)
    port.generated_ids(model, batch["input_ids"], max_length=5)
    norm = [p for p in model_spec(config) if p.name.startswith("decoder.") and p.kind == "norm_weight"][-1]
    model.load_canonical_state({norm.name: np.full(norm.shape, np.nan, np.float32)}, partial=True)
    with pytest.raises(NonFiniteError, match=r"the scores became NaN at step \d+"):
        port.generate(model, batch["input_ids"], max_length=5)
