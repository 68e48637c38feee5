"""save_pretrained / from_pretrained: formats, shards, transformers reading our files, atomic saves."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import encdec.weights.convert as convert
from encdec.config import GenerationConfig
from encdec.pt import EncoderDecoderModel
from pt_helpers import (  # noqa: F401
    joined_config,
    one_torch_thread,
    our_model,
    quiet_transformers,
    random_batch,
    random_state,
)


@pytest.fixture(scope="module", params=["bert2bert", "bert2gpt2", "roberta2roberta", "bertgen2bertgen"])
def model(request):
    config = joined_config(request.param, 4)
    m = our_model(config, random_state(config, 4))
    m.generation_config = m.generation_config.update(num_beams=2, max_length=9)
    return m


def logits(m, config):
    b = random_batch(config, np.random.default_rng(9), 2, 7, 5, "right")
    with torch.no_grad():
        return m(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                 decoder_input_ids=b["decoder_input_ids"]).logits


def same_parameters(a, b):
    pa, pb = a.canonical_state(), b.canonical_state()
    assert pa.keys() == pb.keys()
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)


def test_loading_in_half_precision(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    half = EncoderDecoderModel.from_pretrained(tmp_path / "ckpt", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    a, b = logits(half, model.config).float(), logits(model, model.config)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.8
    half.save_pretrained(tmp_path / "bf16")
    again = EncoderDecoderModel.from_pretrained(tmp_path / "bf16", dtype=torch.bfloat16)
    same_parameters(half, again)


