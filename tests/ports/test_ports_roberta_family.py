"""XLM-RoBERTa and CamemBERT: the RoBERTa architecture under their own model_type, in every port.

XLM-RoBERTa against the checkpoint transformers 4.57 wrote (tests/fixtures/hf/xlmr2xlmr, its
golden outputs); CamemBERT against transformers 5's PyTorch model on the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, golden
from port_backends import one_torch_thread, port  # noqa: F401  (fixtures)
from ports_lib import EOS, PAD, START, assert_close, assert_loss_close, assert_same_ids, hf_model, hf_run, random_batch
from tiny_models import random_state

from encdec.config import CamembertConfig, EncoderDecoderConfig, XLMRobertaConfig

# Each port's own format, and safetensors.
NATIVE = {"pt": "pt", "tf": "tf", "flax": "flax"}


# Native formats name XLM-RoBERTa's weights as RoBERTa's, which the golden tests load in every format.
@pytest.mark.parametrize("fmt", ["safetensors", pytest.param("native", marks=pytest.mark.slow)])
def test_xlm_roberta_checkpoint_gives_transformers_outputs(port, fmt):
    fmt = NATIVE[port.name] if fmt == "native" else fmt
    model, g = port.from_pretrained(FIXTURES / "xlmr2xlmr", fmt=fmt), golden("xlmr2xlmr")
    assert isinstance(model.config.encoder, XLMRobertaConfig) and isinstance(model.config.decoder, XLMRobertaConfig)
    out = port.forward(model, input_ids=g["input_ids"], attention_mask=g["attention_mask"],
                       decoder_input_ids=g["decoder_input_ids"])
    assert_close(f"{port.name} xlmr2xlmr/{fmt} logits", port.numpy(out.logits), g["logits"])
    assert_close(f"{port.name} xlmr2xlmr/{fmt} encoder output", port.numpy(out.encoder_last_hidden_state),
                 g["encoder_last_hidden_state"])
    out = port.forward(model, input_ids=g["input_ids"], attention_mask=g["attention_mask"], labels=g["labels"])
    assert_loss_close(f"{port.name} xlmr2xlmr/{fmt}", port.numpy(out.loss), g["loss"])
    ids = port.generated_ids(model, g["input_ids"], attention_mask=g["attention_mask"], max_length=12, num_beams=1)
    assert_same_ids(f"{port.name} xlmr2xlmr/{fmt} greedy", ids, g["greedy"])


def test_xlm_roberta_saves_as_transformers_names_it(port, tmp_path):
    model = port.from_pretrained(FIXTURES / "xlmr2xlmr", fmt="safetensors")
    port.save_pretrained(model, tmp_path)
    config = EncoderDecoderConfig.from_pretrained(tmp_path)
    assert (config.encoder.model_type, config.decoder.model_type) == ("xlm-roberta", "xlm-roberta")
    state = port.from_pretrained(tmp_path).canonical_state()
    reference = model.canonical_state()
    assert sorted(state) == sorted(reference)
    assert all(np.array_equal(state[k], reference[k]) for k in reference)


def _camembert_config() -> EncoderDecoderConfig:
    arch = dict(vocab_size=61, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                max_position_embeddings=44, type_vocab_size=1, initializer_range=0.25, pad_token_id=PAD,
                bos_token_id=START, eos_token_id=EOS)
    return EncoderDecoderConfig.from_encoder_decoder_configs(
        CamembertConfig(**arch), CamembertConfig(**arch), pad_token_id=PAD, decoder_start_token_id=START,
        eos_token_id=EOS)


def test_camembert_pair_gives_transformers_logits(port):
    config = _camembert_config()
    state = random_state(config, 7)
    hf = hf_model(config, state)
    assert type(hf.encoder).__name__ == "CamembertModel" and type(hf.decoder).__name__ == "CamembertForCausalLM"
    batch = random_batch(config, np.random.default_rng(7), 3, 7, 5, "ragged")
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}
    expected = hf_run(hf, **inputs).logits.numpy()
    model = port.from_state(config, state)
    assert_close(f"{port.name} camembert logits", port.numpy(port.forward(model, **inputs).logits), expected)
