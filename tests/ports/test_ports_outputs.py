"""Every port's outputs behave as transformers' ModelOutput: by attribute, by name, by position over
the fields that are set, `to_tuple()`, `keys()`, `values()`, `items()`, iteration over the keys, and a
KeyError for a field that is not set.

transformers' PyTorch `Seq2SeqLMOutput` is the reference (its TF and Flax ones were copies of it): built
from the same field values, it must answer alike.
"""

from __future__ import annotations

import numpy as np
import pytest
import transformers.modeling_outputs as hf_outputs

from port_backends import one_torch_thread, port  # noqa: F401  (fixtures)
from tiny_models import joined_config, random_state

SEQ2SEQ_FIELDS = ("loss", "logits", "past_key_values", "decoder_hidden_states", "decoder_attentions",
                  "cross_attentions", "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions")


def test_outputs_are_indexed_as_transformers_model_output(port):
    config = joined_config("bert2bert", seed=3)
    model = port.from_state(config, random_state(config, seed=3))
    ids = np.array([[5, 9, 11, 3], [7, 8, 3, 1]])
    # No cache: transformers 5 keys `past_key_values` as "cache", where 4.x (and encdec) kept the name.
    no_cache = {} if port.name == "flax" else {"use_cache": False}
    out = port.forward(model, input_ids=ids, attention_mask=(ids != 1).astype(np.int64),
                       labels=np.array([[6, 7, 3], [9, 3, -100]]), output_hidden_states=True, **no_cache)
    # The same values in transformers' container; compared by identity, so the order is checked exactly.
    ref = hf_outputs.Seq2SeqLMOutput(**{name: getattr(out, name, None) for name in SEQ2SEQ_FIELDS})
    assert list(out.keys()) == list(ref.keys())
    assert len(out.to_tuple()) == len(ref.to_tuple())
    for position, (mine, theirs) in enumerate(zip(out.to_tuple(), ref.to_tuple())):
        assert out[position] is mine and mine is theirs
    assert out["logits"] is ref["logits"] is out.logits
    assert [name for name in out] == [name for name in ref]  # iterating gives the keys, as a dict's
    assert [k for k, _ in out.items()] == [k for k, _ in ref.items()]
    assert len(list(out.values())) == len(list(ref.values()))
    assert ("decoder_attentions" in out) == ("decoder_attentions" in ref) is False
    with pytest.raises(KeyError):
        ref["decoder_attentions"]
    with pytest.raises(KeyError):
        out["decoder_attentions"]
