"""The Flax outputs stay JAX pytrees with transformers' ModelOutput access (tests/ports/test_ports_outputs.py
checks the access in every port), and `return_dict=False` gives the tuple (transformers' Flax did)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from encdec.flax.common import BaseModelOutput, Seq2SeqLMOutput
from flax_testlib import flax_model
from tiny_models import joined_config, random_state


@pytest.fixture(scope="module")
def model_and_batch():
    config = joined_config("bert2bert", seed=3)
    model = flax_model(config, random_state(config, seed=3))
    ids = np.array([[5, 9, 11, 3], [7, 8, 3, 1]])
    batch = dict(input_ids=ids, attention_mask=(ids != 1).astype(np.int32), labels=np.array([[6, 7, 3], [9, 3, -100]]))
    return model, batch


def test_outputs_stay_pytrees():
    # The access methods must not change how JAX sees the containers (jit passes them through).
    out = BaseModelOutput(last_hidden_state=np.ones((1, 2, 4), np.float32), hidden_states=(np.zeros(3, np.float32),))
    back = jax.jit(lambda o: o)(out)
    assert isinstance(back, BaseModelOutput) and back.keys() == ["last_hidden_state", "hidden_states"]
    assert len(jax.tree_util.tree_leaves(out)) == 2


def test_return_dict_false_gives_the_tuple(model_and_batch):
    model, batch = model_and_batch
    out = model(**batch)
    plain = model(**batch, return_dict=False)
    assert type(plain) is tuple and len(plain) == len(out.keys()) == 3  # loss, logits, encoder states
    loss, logits = plain[:2]
    np.testing.assert_array_equal(np.asarray(loss), np.asarray(out.loss))
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(out.logits))
    np.testing.assert_array_equal(np.asarray(plain[2]), np.asarray(out.encoder_last_hidden_state))
    assert isinstance(model(**batch, return_dict=True), Seq2SeqLMOutput)
