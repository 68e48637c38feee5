"""Every port, on transformers' own checkpoints (tests/fixtures/hf) in each format they were written in,
gives transformers' PyTorch outputs: logits, hidden states and encoder output within 1e-5, the loss
within a relative 1e-6, and every golden generation exactly."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CASES, FIXTURES, case_format_params, case_formats, golden
from port_backends import one_torch_thread, port  # noqa: F401  (fixtures)
from ports_lib import assert_close, assert_loss_close, assert_same_ids

# The generation settings of the fixtures README, by golden key.
GENERATIONS = {
    "greedy": dict(max_length=12, num_beams=1),
    "beam3": dict(max_length=12, num_beams=3, early_stopping=True),
    "beam3_ret2_lp2": dict(max_length=12, num_beams=3, num_return_sequences=2, length_penalty=2.0,
                           early_stopping=False),
    "greedy_noeos_len16": dict(max_length=16, num_beams=1, eos_token_id=None),
}
CASE_FORMATS = case_format_params()
# Format ids by file kind, so that `-k pt-port` / `-k tf-port` select ports, not formats.
FORMAT_IDS = {"safetensors": "safetensors", "pt": "bin", "tf": "h5", "flax": "msgpack"}
CASE_FORMAT_IDS = [f"{case}-{FORMAT_IDS[fmt]}" for case, fmt in CASE_FORMATS]

_models: dict = {}


def model_for(port, case: str, fmt: str | None = None):
    """One model per (port, case, format), kept for the module: compiled functions live on it."""
    key = (port.name, case, fmt)
    if key not in _models:
        _models[key] = port.from_pretrained(FIXTURES / case, fmt=fmt)
    return _models[key]


@pytest.mark.parametrize("case,fmt", CASE_FORMATS, ids=CASE_FORMAT_IDS)
def test_forward_matches_golden(port, case, fmt):
    model, g = model_for(port, case, fmt), golden(case)
    out = port.forward(model, input_ids=g["input_ids"], attention_mask=g["attention_mask"],
                       decoder_input_ids=g["decoder_input_ids"], output_hidden_states=True)
    assert_close(f"{port.name} {case}/{fmt} logits", port.numpy(out.logits), g["logits"])
    assert_close(f"{port.name} {case}/{fmt} encoder output", port.numpy(out.encoder_last_hidden_state),
                 g["encoder_last_hidden_state"])
    expected = [g[k] for k in sorted((k for k in g if k.startswith("decoder_hidden_states_")),
                                     key=lambda k: int(k.rsplit("_", 1)[1]))]
    assert len(out.decoder_hidden_states) == len(expected)
    for i, (got, want) in enumerate(zip(out.decoder_hidden_states, expected)):
        assert_close(f"{port.name} {case}/{fmt} decoder hidden state {i}", port.numpy(got), want)


@pytest.mark.parametrize("case", CASES)
def test_loss_from_labels_matches_golden(port, case):
    """Decoder inputs shifted from the labels, the decoder's pad tokens masked: transformers' loss. Once per
    case: every format gives the same canonical state (test_every_format_gives_the_same_canonical_state)."""
    model, g = model_for(port, case), golden(case)
    out = port.forward(model, input_ids=g["input_ids"], attention_mask=g["attention_mask"], labels=g["labels"])
    assert_loss_close(f"{port.name} {case}", port.numpy(out.loss), g["loss"])
    assert_close(f"{port.name} {case} logits from labels", port.numpy(out.logits), g["logits_from_labels"])


@pytest.mark.parametrize("case", CASES)
def test_encode_is_the_encoders_own_output(port, case):
    """`encode` gives the encoder's output before any projection to the decoder's width."""
    model, g = model_for(port, case), golden(case)
    out = port.encode(model, g["input_ids"], g["attention_mask"])
    assert_close(f"{port.name} {case} encode", port.numpy(out.last_hidden_state), g["encoder_last_hidden_state"])


@pytest.mark.parametrize("case", CASES)
def test_every_format_gives_the_same_canonical_state(port, case):
    reference = model_for(port, case, "safetensors").canonical_state()
    for fmt in case_formats(case):
        state = model_for(port, case, fmt).canonical_state()
        assert sorted(state) == sorted(reference), fmt
        for name, value in reference.items():
            assert state[name].dtype == value.dtype and np.array_equal(state[name], value), (fmt, name)


@pytest.mark.parametrize(
    "setting",
    # Without eos the loop runs to 16 tokens: a compilation of its own in the XLA ports, slow.
    [s if s != "greedy_noeos_len16" else pytest.param(s, marks=pytest.mark.slow) for s in GENERATIONS],
)
@pytest.mark.parametrize("case", CASES)
def test_generation_matches_golden(port, case, setting):
    model, g = model_for(port, case), golden(case)
    got = port.generated_ids(model, g["input_ids"], attention_mask=g["attention_mask"], **GENERATIONS[setting])
    assert_same_ids(f"{port.name} {case} {setting}", got, g[setting])


def test_generation_config_is_read_from_the_checkpoint(port):
    model = model_for(port, "bert2gpt2")
    assert model.generation_config.decoder_start_token_id == 98
    assert model.generation_config.eos_token_ids == [98]
