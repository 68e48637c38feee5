"""Every fixture checkpoint, from each of its formats, reproduces transformers' golden outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import FIXTURES, case_format_params, golden
from encdec.pt import EncoderDecoderModel
from pt_helpers import one_torch_thread  # noqa: F401

# The generation settings of the fixtures README, by golden key.
GENERATIONS = {
    "greedy": dict(max_length=12, num_beams=1),
    "beam3": dict(max_length=12, num_beams=3, early_stopping=True),
    "beam3_ret2_lp2": dict(max_length=12, num_beams=3, num_return_sequences=2, length_penalty=2.0, early_stopping=False),
    "greedy_noeos_len16": dict(max_length=16, num_beams=1, eos_token_id=None),
}

_models: dict = {}


def _model(case: str, fmt: str) -> EncoderDecoderModel:
    if (case, fmt) not in _models:
        _models[(case, fmt)] = EncoderDecoderModel.from_pretrained(FIXTURES / case, fmt=fmt)
    return _models[(case, fmt)]


def _t(array):
    return torch.from_numpy(np.asarray(array))


@pytest.mark.parametrize("case,fmt", case_format_params())
def test_forward_matches_golden(case, fmt):
    model, g = _model(case, fmt), golden(case)
    with torch.no_grad():
        out = model(
            input_ids=_t(g["input_ids"]),
            attention_mask=_t(g["attention_mask"]),
            decoder_input_ids=_t(g["decoder_input_ids"]),
            output_hidden_states=True,
        )
    np.testing.assert_allclose(out.logits.numpy(), g["logits"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out.encoder_last_hidden_state.numpy(), g["encoder_last_hidden_state"], rtol=0, atol=1e-5)
    expected = sorted(k for k in g if k.startswith("decoder_hidden_states_"))
    assert len(out.decoder_hidden_states) == len(expected)
    for i, hidden in enumerate(out.decoder_hidden_states):
        np.testing.assert_allclose(hidden.numpy(), g[f"decoder_hidden_states_{i}"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("case,fmt", case_format_params())
def test_loss_from_labels_matches_golden(case, fmt):
    model, g = _model(case, fmt), golden(case)
    with torch.no_grad():
        out = model(input_ids=_t(g["input_ids"]), attention_mask=_t(g["attention_mask"]), labels=_t(g["labels"]))
    assert abs(out.loss.item() - float(g["loss"])) <= 1e-6 * abs(float(g["loss"]))
    np.testing.assert_allclose(out.logits.numpy(), g["logits_from_labels"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("case,fmt", case_format_params())
@pytest.mark.parametrize("setting", list(GENERATIONS))
def test_generation_matches_golden(case, fmt, setting):
    model, g = _model(case, fmt), golden(case)
    ids = model.generate(_t(g["input_ids"]), attention_mask=_t(g["attention_mask"]), **GENERATIONS[setting])
    np.testing.assert_array_equal(ids.numpy(), g[setting])
