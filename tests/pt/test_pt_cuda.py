"""On a CUDA device (skipped without one): golden outputs and generation, TF32 off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import CASES, FIXTURES, golden
from encdec.pt import EncoderDecoderModel
from pt_helpers import hf_model, joined_config, random_batch, random_state  # noqa: F401

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

GENERATIONS = {
    "greedy": dict(max_length=12, num_beams=1),
    "beam3": dict(max_length=12, num_beams=3, early_stopping=True),
    "beam3_ret2_lp2": dict(max_length=12, num_beams=3, num_return_sequences=2, length_penalty=2.0, early_stopping=False),
    "greedy_noeos_len16": dict(max_length=16, num_beams=1, eos_token_id=None),
}


@pytest.fixture(autouse=True)
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("case", CASES)
def test_golden_on_cuda(case):
    model = EncoderDecoderModel.from_pretrained(FIXTURES / case).cuda()
    g = golden(case)
    t = {k: torch.from_numpy(g[k]).cuda() for k in ("input_ids", "attention_mask", "decoder_input_ids", "labels")}
    with torch.no_grad():
        out = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"], decoder_input_ids=t["decoder_input_ids"])
        loss = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"], labels=t["labels"]).loss
    np.testing.assert_allclose(out.logits.cpu().numpy(), g["logits"], rtol=0, atol=1e-5)
    assert abs(loss.item() - float(g["loss"])) <= 1e-6 * abs(float(g["loss"])) + 1e-6
    for key, kwargs in GENERATIONS.items():
        ids = model.generate(t["input_ids"], attention_mask=t["attention_mask"], **kwargs)
        np.testing.assert_array_equal(ids.cpu().numpy(), g[key], err_msg=key)


@pytest.mark.parametrize("pair", ["bert2bert", "bert2gpt2", "roberta2roberta"])
def test_generation_on_cuda_matches_transformers_on_cuda(pair):
    config = joined_config(pair, 0)
    state = random_state(config, 0)
    hf = hf_model(config, state).cuda()
    ours = EncoderDecoderModel(config=config)
    ours.load_canonical_state(state)
    ours = ours.eval().cuda()
    b = random_batch(config, np.random.default_rng(0), 3, 8, 4, "ragged")
    ids, mask = b["input_ids"].cuda(), b["attention_mask"].cuda()
    for kwargs in (dict(max_length=10), dict(max_length=10, num_beams=4, num_return_sequences=2)):
        assert torch.equal(ours.generate(ids, attention_mask=mask, **kwargs), hf.generate(ids, attention_mask=mask, **kwargs))
