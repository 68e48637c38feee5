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


# XLA-compiled generation on the fixtures is tests/ports/test_ports_golden.py's (the TF port generates with XLA by
# default); here it is the slow run's.
@pytest.mark.parametrize("mode", ["eager", pytest.param("xla", marks=pytest.mark.slow)])
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


