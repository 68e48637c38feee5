"""encdec.inputs: one rule per bad input, on host arrays and on shapes alone; shift_tokens_right."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from encdec import inputs as I
from encdec.config import BertConfig, BertGenerationConfig, EncoderDecoderConfig, GPT2Config, RobertaConfig
from encdec.errors import ConfigError, InputError

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=64)


def bert2roberta():
    # Encoder: 99 ids, 64 positions. Decoder: RoBERTa with pad 1, so 64 - 1 - 1 = 62 usable positions, 97 ids.
    return EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**SMALL), RobertaConfig(**dict(SMALL, vocab_size=97)), decoder_start_token_id=0, pad_token_id=1
    )


def bertgen2gpt2():
    return EncoderDecoderConfig.from_encoder_decoder_configs(
        BertGenerationConfig(**SMALL),
        GPT2Config(vocab_size=50, n_embd=32, n_layer=1, n_head=4, n_positions=16),
    )


IDS = np.array([[5, 6, 7], [8, 9, 10]])


# ---------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"])
def test_every_integer_dtype_is_accepted(dtype):
    cfg = bert2roberta()
    ids = IDS.astype(dtype)
    assert I.check_model_inputs(cfg, ids, np.ones(ids.shape, dtype), decoder_input_ids=ids, labels=ids,
                                token_type_ids=np.zeros(ids.shape, dtype),
                                position_ids=np.arange(3, dtype=dtype)[None]) == 2


@pytest.mark.parametrize("dtype", ["float32", "float64", "bool", "float16"])
@pytest.mark.parametrize("name", ["input_ids", "decoder_input_ids", "token_type_ids", "position_ids",
                                  "decoder_position_ids"])
def test_float_or_bool_ids_are_refused(name, dtype):
    cfg = bert2roberta()
    kwargs = dict(input_ids=IDS, decoder_input_ids=IDS)
    kwargs[name] = (IDS if name.endswith("input_ids") else np.zeros_like(IDS)).astype(dtype)
    if dtype == "bool":
        kwargs[name] = np.zeros(IDS.shape, bool)
    with pytest.raises(InputError, match=rf"^{name} has dtype {dtype}; expected integer ids$"):
        I.check_model_inputs(cfg, **kwargs)


def test_float_labels_are_refused():
    with pytest.raises(InputError, match="labels has dtype float32; expected integer ids"):
        I.check_model_inputs(bert2roberta(), IDS, labels=IDS.astype(np.float32))


# ---------------------------------------------------------------------------- empty inputs


@pytest.mark.parametrize("shape, what", [((0, 3), "at least one row"), ((2, 0), "at least one token")])
@pytest.mark.parametrize("name", ["input_ids", "decoder_input_ids"])
def test_empty_batch_or_length_is_refused(name, shape, what):
    kwargs = dict(input_ids=IDS, decoder_input_ids=IDS)
    kwargs[name] = np.zeros(shape, np.int64)
    with pytest.raises(InputError, match=rf"^{name} has shape \({shape[0]}, {shape[1]}\).*expected {what}$"):
        I.check_model_inputs(bert2roberta(), **kwargs)


def test_empty_labels_are_refused():
    with pytest.raises(InputError, match=r"^labels has shape \(2, 0\); expected at least one row and one token$"):
        I.check_model_inputs(bert2roberta(), IDS, labels=np.zeros((2, 0), np.int64))


# ---------------------------------------------------------------------------- id ranges


@pytest.mark.parametrize("name, vocab", [("input_ids", 99), ("decoder_input_ids", 97)])
@pytest.mark.parametrize("bad", ["low", "high"])
def test_ids_outside_the_vocabulary(name, vocab, bad):
    cfg = bert2roberta()
    ids = IDS.copy()
    value = -1 if bad == "low" else vocab
    ids[1, 2] = value
    kwargs = dict(input_ids=IDS, decoder_input_ids=IDS)
    kwargs[name] = ids
    with pytest.raises(InputError, match=rf"^{name} holds id {value}; expected ids in \[0, {vocab}\)"):
        I.check_model_inputs(cfg, **kwargs)
    ids[1, 2] = vocab - 1  # the last id of the table is fine
    kwargs[name] = ids
    I.check_model_inputs(cfg, **kwargs)


def test_huge_unsigned_id_is_reported_exactly():
    ids = np.array([[3, np.iinfo(np.uint64).max]], np.uint64)
    with pytest.raises(InputError, match=f"input_ids holds id {np.iinfo(np.uint64).max};"):
        I.check_ids(ids, 99)


def test_token_types_by_architecture():
    cfg = bert2roberta()
    types = np.zeros_like(IDS)
    types[0, 0] = 2  # BERT's type_vocab_size is 2
    with pytest.raises(InputError, match=r"^token_type_ids holds id 2; expected ids in \[0, 2\)"):
        I.check_encoder_inputs(cfg, IDS, token_type_ids=types)
    with pytest.raises(InputError, match=r"token_type_ids has shape \(2, 2\); expected \(2, 3\) like input_ids"):
        I.check_encoder_inputs(cfg, IDS, token_type_ids=types[:, :2])
    with pytest.raises(InputError, match="^bert-generation has no token types; expected token_type_ids=None$"):
        I.check_encoder_inputs(bertgen2gpt2(), IDS, token_type_ids=np.zeros_like(IDS))
    # GPT-2 embeds token types with its word table (50 rows here).
    gpt2 = bertgen2gpt2().decoder
    I.check_stack_inputs(gpt2, IDS, token_type_ids=np.full_like(IDS, 49))
    with pytest.raises(InputError, match=r"token_type_ids holds id 50; expected ids in \[0, 50\)"):
        I.check_stack_inputs(gpt2, IDS, token_type_ids=np.full_like(IDS, 50))
    assert I.has_token_types(cfg.encoder) and not I.has_token_types(bertgen2gpt2().encoder)


# ---------------------------------------------------------------------------- position tables


def test_encoder_length_against_its_position_table():
    cfg = bert2roberta()
    I.check_encoder_inputs(cfg, np.ones((1, 64), np.int64))
    with pytest.raises(InputError, match="^input_ids has length 65; the encoder's position table covers 64 tokens, "
                                         "expected at most 64$"):
        I.check_encoder_inputs(cfg, np.ones((1, 65), np.int64))


def test_roberta_decoder_table_counts_from_the_pad_id():
    cfg = bert2roberta()
    I.check_decoder_inputs(cfg, np.ones((1, 62), np.int64))
    with pytest.raises(InputError, match="decoder_input_ids has length 63; the decoder's position table covers 62"):
        I.check_decoder_inputs(cfg, np.ones((1, 63), np.int64))


def test_cached_tokens_count_against_the_table():
    cfg = bert2roberta()
    I.check_decoder_inputs(cfg, np.ones((2, 2), np.int64), 2, past_length=60)
    with pytest.raises(InputError, match="^decoder_input_ids has length 3 after 60 cached tokens; the decoder's "
                                         "position table covers 62 tokens, expected at most 62 in all$"):
        I.check_decoder_inputs(cfg, np.ones((2, 3), np.int64), 2, past_length=60)


def test_labels_alone_are_checked_against_the_decoder_table():
    cfg = bert2roberta()
    I.check_model_inputs(cfg, IDS[:1], labels=np.full((1, 62), -100))
    with pytest.raises(InputError, match="^labels has length 63; the decoder's position table covers 62 tokens"):
        I.check_model_inputs(cfg, IDS[:1], labels=np.full((1, 63), -100))


def test_explicit_positions_replace_the_length_rule_but_are_range_checked():
    cfg = bert2roberta()
    long_ids = np.ones((1, 70), np.int64)
    I.check_encoder_inputs(cfg, long_ids, position_ids=np.zeros((1, 70), np.int64))
    positions = np.arange(3)[None].repeat(2, 0)
    positions[1, 1] = 64  # BERT's table has 64 rows
    with pytest.raises(InputError, match=r"^position_ids holds id 64; expected ids in \[0, 64\)"):
        I.check_encoder_inputs(cfg, IDS, position_ids=positions)
    I.check_encoder_inputs(cfg, IDS, position_ids=np.arange(3)[None])  # [1, T] broadcasts
    with pytest.raises(InputError, match=r"^position_ids has shape \(2, 4\); expected \(2, 3\) like input_ids$"):
        I.check_encoder_inputs(cfg, IDS, position_ids=np.zeros((2, 4), np.int64))


# ---------------------------------------------------------------------------- masks, batches, cache


def test_mask_shapes():
    cfg = bert2roberta()
    with pytest.raises(InputError, match=r"^attention_mask has shape \(2, 4\); expected \(2, 3\) like input_ids$"):
        I.check_encoder_inputs(cfg, IDS, np.ones((2, 4)))
    # A decoder mask spans cached + new tokens by default...
    I.check_decoder_inputs(cfg, IDS, 2, np.ones((2, 8)), past_length=5)
    with pytest.raises(InputError, match=r"^decoder_attention_mask has shape \(2, 3\); expected \(2, 8\) "
                                         r"\(batch, cached \+ new tokens\)$"):
        I.check_decoder_inputs(cfg, IDS, 2, np.ones((2, 3)), past_length=5)
    # ... or the whole cache where a port's convention says so.
    I.check_decoder_inputs(cfg, IDS, 2, np.ones((2, 10)), past_length=5, cache_length=10, mask_length=10)


def test_batch_agreement():
    cfg = bert2roberta()
    with pytest.raises(InputError, match="^decoder_input_ids has batch size 1; expected 2 like the encoder input$"):
        I.check_model_inputs(cfg, IDS, decoder_input_ids=IDS[:1])
    with pytest.raises(InputError, match=r"^labels has shape \(3, 3\); expected \[2, target length\]$"):
        I.check_model_inputs(cfg, IDS, labels=np.ones((3, 3), np.int64))


def test_cache_length_limit():
    cfg = bert2roberta()
    I.check_decoder_inputs(cfg, np.ones((1, 1), np.int64), 1, past_length=3, cache_length=4)
    with pytest.raises(InputError, match="^decoder_input_ids adds 2 tokens to a cache holding 3 of 4; expected at "
                                         "most 1"):
        I.check_decoder_inputs(cfg, np.ones((1, 2), np.int64), 1, past_length=3, cache_length=4)


def test_encoder_outputs_instead_of_ids():
    cfg = bert2roberta()
    states = np.zeros((2, 5, 32), np.float32)
    assert I.check_model_inputs(cfg, encoder_hidden_states=states, decoder_input_ids=IDS) == 2
    with pytest.raises(InputError, match=r"^encoder_outputs\[0\] has shape \(2, 5, 16\); expected \[batch, length, 32\]"):
        I.check_model_inputs(cfg, encoder_hidden_states=np.zeros((2, 5, 16)), decoder_input_ids=IDS)
    with pytest.raises(InputError, match=r"attention_mask has shape \(2, 4\); expected \(2, 5\) like encoder_outputs"):
        I.check_model_inputs(cfg, attention_mask=np.ones((2, 4)), encoder_hidden_states=states, decoder_input_ids=IDS)


def test_missing_halves():
    cfg = bert2roberta()
    with pytest.raises(InputError, match="^no encoder input; expected input_ids or encoder_outputs$"):
        I.check_model_inputs(cfg, decoder_input_ids=IDS)
    with pytest.raises(InputError, match="^no decoder input; expected decoder_input_ids or labels$"):
        I.check_model_inputs(cfg, IDS)


# ---------------------------------------------------------------------------- labels


def test_labels():
    cfg = bert2roberta()
    labels = np.array([[5, -100, 96], [-100, -100, 0]])
    I.check_model_inputs(cfg, IDS, labels=labels)
    for bad in (-7, 97, -101):
        wrong = labels.copy()
        wrong[1, 0] = bad
        with pytest.raises(InputError, match=rf"^labels holds {bad}; expected ids in \[0, 97\) or -100 \(ignored\)$"):
            I.check_model_inputs(cfg, IDS, labels=wrong)
    with pytest.raises(InputError, match=r"^labels has shape \(2, 3\); expected \(2, 4\) like decoder_input_ids$"):
        I.check_model_inputs(cfg, IDS, decoder_input_ids=np.ones((2, 4), np.int64), labels=labels)


# ---------------------------------------------------------------------------- traced inputs


def test_traced_inputs_are_checked_by_shape_and_dtype_alone():
    cfg = bert2roberta()
    # Unknown dimensions and unknown values pass.
    assert I.check_encoder_inputs(cfg, I.Traced((None, None), "int32"), I.Traced((None, None), "int32")) is None
    I.check_labels(cfg, I.Traced((2, 3), np.int64), 2)
    with pytest.raises(InputError, match="input_ids has dtype float32; expected integer ids"):
        I.check_encoder_inputs(cfg, I.Traced((2, 3), np.float32))
    with pytest.raises(InputError, match="input_ids has length 65"):
        I.check_encoder_inputs(cfg, I.Traced((None, 65), np.int32))
    with pytest.raises(InputError, match=r"attention_mask has shape \(2, 4\)"):
        I.check_encoder_inputs(cfg, I.Traced((2, 3), np.int32), I.Traced((2, 4), np.int32))
    with pytest.raises(InputError, match="decoder_input_ids has batch size 3; expected 2"):
        I.check_decoder_inputs(cfg, I.Traced((3, 1), np.int32), 2)


def test_ids_summarised_by_their_range():
    cfg = bert2roberta()
    I.check_encoder_inputs(cfg, I.IdRange((2, 3), "int64", 0, 98))
    with pytest.raises(InputError, match=r"^input_ids holds id 99; expected ids in \[0, 99\)"):
        I.check_encoder_inputs(cfg, I.IdRange((2, 3), "int64", 0, 99))
    with pytest.raises(InputError, match="^decoder_input_ids holds id -3;"):
        I.check_decoder_inputs(cfg, I.IdRange((2, 3), np.int32, -3, 5), 2)
    with pytest.raises(InputError, match="input_ids has dtype float32"):
        I.check_encoder_inputs(cfg, I.IdRange((2, 3), np.float32, 0, 5))
    with pytest.raises(InputError, match="input_ids has length 65"):
        I.check_encoder_inputs(cfg, I.IdRange((2, 65), np.int32, 0, 5))
    with pytest.raises(TypeError, match="labels need their values"):
        I.check_labels(cfg, I.IdRange((2, 3), np.int64, -100, 5))


def test_inputs_other_than_numpy_arrays():
    class HostTensor:
        # What a CPU tensor offers numpy: __array__, no numpy dtype attribute.
        def __init__(self, values):
            self.values = np.asarray(values)
            self.shape = self.values.shape
            self.dtype = "not a numpy dtype"

        def __array__(self, dtype=None, copy=None):
            return self.values

    cfg = bert2roberta()
    I.check_encoder_inputs(cfg, [[1, 2, 3]])
    I.check_encoder_inputs(cfg, HostTensor(IDS))
    with pytest.raises(InputError, match="input_ids holds id 100;"):
        I.check_encoder_inputs(cfg, HostTensor(IDS + 90))
    with pytest.raises(InputError, match="expected integer ids"):
        I.check_encoder_inputs(cfg, HostTensor(IDS * 1.0))
    with pytest.raises(InputError, match=r"input_ids has shape \(3,\); expected \[batch, sequence\]"):
        I.check_encoder_inputs(cfg, [1, 2, 3])


# ---------------------------------------------------------------------------- shift_tokens_right


def test_shift_tokens_right():
    labels = np.array([[5, 6, -100, 7], [8, -100, -100, -100]], np.int32)
    before = labels.copy()
    out = I.shift_tokens_right(labels, pad_token_id=1, decoder_start_token_id=0)
    np.testing.assert_array_equal(out, [[0, 5, 6, 1], [0, 8, 1, 1]])
    assert out.dtype == np.int32
    np.testing.assert_array_equal(labels, before)  # the labels are not changed in place


def test_shift_tokens_right_needs_both_ids():
    with pytest.raises(ConfigError, match="^decoder_start_token_id is not set"):
        I.shift_tokens_right(np.ones((1, 2), np.int64), 1, None)
    with pytest.raises(ConfigError, match="^pad_token_id is not set"):
        I.shift_tokens_right(np.ones((1, 2), np.int64), None, 0)
    assert I.check_shift_config(np.int64(1), np.int64(0)) == (1, 0)
    assert type(I.check_shift_config(np.int64(1), np.int64(0))[0]) is int


def test_the_core_modules_import_no_framework():
    code = (
        "import json, sys\n"
        "import encdec.inputs, encdec.generation, encdec.weights.pretrained\n"
        "print(json.dumps(sorted(m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras', 'transformers') "
        "if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


class _Half:
    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, head_mask=None,
                encoder_hidden_states=None, use_cache=None):
        return None


def test_route_half_kwargs_takes_what_each_forward_takes_less_what_the_model_sets():
    half = _Half()
    halves = {"encoder": half, "decoder": half}
    encoder, decoder = I.route_half_kwargs({"head_mask": 1, "decoder_position_ids": 2, "num_items_in_batch": 3},
                                           halves, "forward")
    assert encoder == {"head_mask": 1} and decoder == {"position_ids": 2}
    # Nothing to route: no half's signature is read (these halves have no forward at all).
    assert I.route_half_kwargs({}, {"encoder": object(), "decoder": object()}, "forward") == ({}, {})
    with pytest.raises(InputError, match=r"\['position_ids'\] for the encoder \(_Half\)"):
        I.route_half_kwargs({"position_ids": 1}, halves, "forward")
    with pytest.raises(InputError, match=r"\['decoder_use_cache'\] for the decoder"):
        I.route_half_kwargs({"decoder_use_cache": True}, halves, "forward")
    with pytest.raises(InputError, match=r"\['decoder_head_mask'\] for the decoder"):
        I.route_half_kwargs({"decoder_head_mask": 1}, halves, "forward",
                            I.SET_BY_MODEL | {"head_mask"})


def test_a_layer_without_cross_attention_refuses_to_attend_the_encoder():
    assert I.check_cross_attention(True, True) is True
    assert I.check_cross_attention(False, True) is False
    assert I.check_cross_attention(False, False) is False  # nothing to attend: a plain causal decoder
    with pytest.raises(ConfigError, match="given to a layer without cross-attention; expected a decoder config "
                                          "with add_cross_attention=True"):
        I.check_cross_attention(True, False)
