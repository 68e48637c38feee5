"""What encdec writes for a tie_encoder_decoder model, loaded by transformers 5 (which no longer ties encoder
and decoder): every weight is found, and the logits are encdec's own.

transformers 4.57, which ties them again on load, is not installed here; what it needs (every state-dict
name present, the shared copies equal) is checked without it in tests/core/test_tied.py.
"""

from __future__ import annotations

import pathlib
import sys

# tests/core's independent readers and fixtures (core_refs), shared with the framework tests here.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "core"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from core_refs import FIXTURES  # noqa: E402
from encdec.config import EncoderDecoderConfig, GenerationConfig  # noqa: E402
from encdec.weights import load_state, model_spec, save_state  # noqa: E402
from interop_refs import golden  # noqa: E402
from test_tied import tied_config  # noqa: E402


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_transformers_5_loads_a_tied_checkpoint_completely(tmp_path, fmt):
    import torch
    from transformers import EncoderDecoderModel as HFModel
    from transformers.utils import logging

    from encdec.pt import EncoderDecoderModel

    logging.set_verbosity_error()
    config = tied_config()
    spec = model_spec(config)
    # The fixture's weights; the decoder's shared tensors become the encoder's (tie_encoder_decoder).
    state, _ = load_state(FIXTURES / "bert2bert", EncoderDecoderConfig.from_pretrained(FIXTURES / "bert2bert"))
    state = {p.name: state[p.name] for p in spec}
    folder = tmp_path / fmt
    folder.mkdir()
    save_state(state, spec, folder, fmt)
    config.save_pretrained(folder)
    GenerationConfig.from_pretrained(FIXTURES / "bert2bert").save_pretrained(folder)

    hf, info = HFModel.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ours = EncoderDecoderModel.from_pretrained(folder)
    g = golden("bert2bert")
    inputs = dict(
        input_ids=torch.tensor(g["input_ids"]),
        attention_mask=torch.tensor(g["attention_mask"]),
        decoder_input_ids=torch.tensor(g["decoder_input_ids"]),
    )
    with torch.no_grad():
        theirs = hf.eval()(**inputs).logits.numpy()
        mine = ours(**inputs).logits.numpy()
    np.testing.assert_allclose(theirs, mine, atol=1e-5, rtol=0)
    # the shared weights really are the encoder's in both (not the fixture's decoder values)
    hf_sd = hf.state_dict()
    for tied, source in spec.tied_pairs(shared_with_encoder=True):
        assert torch.equal(hf_sd[tied], hf_sd[source]), tied
