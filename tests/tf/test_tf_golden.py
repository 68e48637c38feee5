"""The TensorFlow port against the golden outputs transformers' PyTorch classes gave on the fixtures.

Every fixture case is loaded from each format transformers wrote (bertgen2bertgen has
only the PyTorch ones); generation is checked eagerly and compiled with XLA.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CASES, FIXTURES, case_format_params, golden
from tf_helpers import close  # first: it sets TensorFlow's threads

from encdec.tf import TFEncoderDecoderModel

# The generation settings of the fixtures README.
GENERATIONS = {
    "greedy": dict(max_length=12, num_beams=1),
    "beam3": dict(max_length=12, num_beams=3, early_stopping=True),
    "beam3_ret2_lp2": dict(max_length=12, num_beams=3, num_return_sequences=2, length_penalty=2.0,
                           early_stopping=False),
    "greedy_noeos_len16": dict(max_length=16, num_beams=1, eos_token_id=None),
}

_models: dict = {}


def model_for(case: str, fmt: str | None = None) -> TFEncoderDecoderModel:
    """One model per case (and format), kept for the module: compiled generation functions live on it."""
    key = (case, fmt)
    if key not in _models:
        _models[key] = TFEncoderDecoderModel.from_pretrained(FIXTURES / case, fmt=fmt)
    return _models[key]


@pytest.mark.parametrize("case,fmt", case_format_params(), ids=[f"{c}-{f}" for c, f in case_format_params()])
def test_forward_matches_golden(case, fmt):
    model = TFEncoderDecoderModel.from_pretrained(FIXTURES / case, fmt=fmt)
    g = golden(case)
    out = model(
        input_ids=g["input_ids"],
        attention_mask=g["attention_mask"],
        decoder_input_ids=g["decoder_input_ids"],
        output_hidden_states=True,
    )
    close(out.logits, g["logits"])
    close(out.encoder_last_hidden_state, g["encoder_last_hidden_state"])
    hidden = [k for k in sorted(g) if k.startswith("decoder_hidden_states_")]
    assert len(out.decoder_hidden_states) == len(hidden)
    for i, state in enumerate(out.decoder_hidden_states):
        close(state, g[f"decoder_hidden_states_{i}"])

    out = model(input_ids=g["input_ids"], attention_mask=g["attention_mask"], labels=g["labels"])
    assert abs(float(out.loss) - float(g["loss"])) <= 1e-6 * abs(float(g["loss"]))
    close(out.logits, g["logits_from_labels"])


@pytest.mark.parametrize("mode", ["eager", "xla"])
@pytest.mark.parametrize("setting", list(GENERATIONS))
@pytest.mark.parametrize("case", CASES)
def test_generation_matches_golden(case, setting, mode):
    model = model_for(case)
    g = golden(case)
    got = model.generate(
        g["input_ids"], attention_mask=g["attention_mask"], jit_compile=mode == "xla", **GENERATIONS[setting]
    ).numpy()
    assert got.shape == g[setting].shape, (got, g[setting])
    np.testing.assert_array_equal(got, g[setting])


def test_generation_config_is_read_from_the_checkpoint():
    model = model_for("bert2gpt2")
    assert model.generation_config.decoder_start_token_id == 98
    assert model.generation_config.eos_token_ids == [98]
