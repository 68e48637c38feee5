"""The output classes of encdec/outputs.py, which TF and Flax use and whose fields the PyTorch port takes:
transformers' ModelOutput access over the fields that are set, in field order. numpy only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from encdec import outputs

LOGITS = np.zeros((2, 3, 5), np.float32)
ENCODER = np.ones((2, 4, 8), np.float32)


def _seq2seq() -> outputs.Seq2SeqLMOutput:
    # Given out of field order: the access follows the fields' order, not the arguments'.
    return outputs.Seq2SeqLMOutput(encoder_last_hidden_state=ENCODER, logits=LOGITS, loss=np.float32(1.5))


def test_keys_are_the_set_fields_in_field_order():
    out = _seq2seq()
    assert out.keys() == ["loss", "logits", "encoder_last_hidden_state"]
    assert list(out) == out.keys()  # iterating gives the keys, as a dict's
    assert [k for k, _ in out.items()] == out.keys()
    assert out.values()[1] is LOGITS and out.values()[2] is ENCODER
    assert "logits" in out and "past_key_values" not in out and "decoder_attentions" not in out


def test_access_by_attribute_name_and_position():
    out = _seq2seq()
    assert out.logits is out["logits"] is out[1] is LOGITS
    assert out[-1] is out["encoder_last_hidden_state"] is ENCODER
    assert out.to_tuple() == tuple(out.values()) and len(out.to_tuple()) == 3
    assert out[1:] == (LOGITS, ENCODER)
    assert out.decoder_attentions is None  # an unset field reads as None by attribute


def test_a_field_that_is_not_set_is_a_key_error_naming_the_set_fields():
    with pytest.raises(KeyError) as exc:
        _seq2seq()["decoder_attentions"]
    assert str(exc.value) == ("\"'decoder_attentions': not set in this Seq2SeqLMOutput; "
                              "set fields are ['loss', 'logits', 'encoder_last_hidden_state']\"")
    with pytest.raises(KeyError, match="not set in this BaseModelOutput"):
        outputs.BaseModelOutput()["nope"]
    with pytest.raises(IndexError):
        _seq2seq()[3]


def test_cache_is_past_key_values():
    cache = {"index": 3}
    out = outputs.Seq2SeqLMOutput(logits=LOGITS, past_key_values=cache)
    assert out.cache is out.past_key_values is cache
    assert out.keys() == ["logits", "past_key_values"]
    assert outputs.Seq2SeqLMOutput().cache is None


def test_replace_gives_a_changed_copy_of_the_same_class():
    out = _seq2seq()
    changed = out.replace(loss=None, decoder_attentions=(LOGITS,))
    assert type(changed) is outputs.Seq2SeqLMOutput
    assert changed.keys() == ["logits", "decoder_attentions", "encoder_last_hidden_state"]
    assert out.keys() == ["loss", "logits", "encoder_last_hidden_state"]  # the original is unchanged
    with pytest.raises(TypeError):
        out.replace(not_a_field=1)


def test_a_subclass_keeps_the_fields_and_the_access():
    class PortGreedy(outputs.GreedySearchOutput):
        """A port's name for the class."""

    out = PortGreedy(sequences=LOGITS)
    assert outputs.field_names(out) == ("sequences",) and out[0] is LOGITS
    assert type(out.replace(sequences=None)) is PortGreedy


@pytest.mark.parametrize("cls, fields", [
    (outputs.BaseModelOutput,
     ("last_hidden_state", "pooler_output", "past_key_values", "hidden_states", "attentions", "cross_attentions")),
    (outputs.CausalLMOutput,
     ("loss", "logits", "past_key_values", "hidden_states", "attentions", "cross_attentions")),
    (outputs.Seq2SeqLMOutput,
     ("loss", "logits", "past_key_values", "decoder_hidden_states", "decoder_attentions", "cross_attentions",
      "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions")),
    (outputs.GenerateEncoderDecoderOutput, ("sequences", "scores", "past_key_values")),
    (outputs.GenerateBeamEncoderDecoderOutput,
     ("sequences", "sequences_scores", "scores", "beam_indices", "past_key_values")),
    (outputs.GreedySearchOutput, ("sequences",)),
    (outputs.SampleOutput, ("sequences",)),
    (outputs.BeamSearchOutput, ("sequences", "scores")),
])
def test_fields_are_transformers(cls, fields):
    assert outputs.field_names(cls) == fields
    assert dataclasses.is_dataclass(cls) and cls().keys() == []
    assert cls(*range(len(fields))).to_tuple() == tuple(range(len(fields)))  # positional, in field order
