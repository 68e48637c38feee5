"""ELECTRA as encoder (ElectraModel) and decoder (ElectraForCausalLM), in every port.

Against the checkpoint transformers 4.57 wrote (tests/fixtures/hf/electra2electra: safetensors and
bin, its golden outputs), and against transformers 5's PyTorch model holding the same random weights
(an embedding width other than the hidden size, so `embeddings_project` exists on both sides).
"""

from __future__ import annotations

import numpy as np
import pytest

import test_ports_arch_pretrained as arch_pretrained
import test_ports_training as training
from conftest import FIXTURES, golden
from port_backends import one_torch_thread, port  # noqa: F401  (fixtures)
from ports_lib import (EOS, PAD, START, assert_close, assert_loss_close, assert_same_ids, hf_model, hf_run,
                       random_batch, random_state, to_numpy, tolerances)

from encdec.config import BertConfig, ElectraConfig, EncoderDecoderConfig
from encdec.weights import convert_checkpoint

CASE = "electra2electra"
FORMAT_IDS = {"safetensors": "safetensors", "pt": "bin"}
NATIVE_FILES = {"pt": "pytorch_model.bin", "tf": "tf_model.h5", "flax": "flax_model.msgpack"}
GENERATIONS = {"greedy": dict(max_length=12, num_beams=1), "beam3": dict(max_length=12, num_beams=3, early_stopping=True)}


def test_electra_checkpoint_gives_transformers_loss_and_logits(port):
    model, g = port.from_pretrained(FIXTURES / CASE, fmt="safetensors"), golden(CASE)
    assert isinstance(model.config.encoder, ElectraConfig) and isinstance(model.config.decoder, ElectraConfig)
    out = port.forward(model, input_ids=g["input_ids"], attention_mask=g["attention_mask"], labels=g["labels"])
    assert_loss_close(f"{port.name} {CASE}", port.numpy(out.loss), g["loss"])
    assert_close(f"{port.name} {CASE} logits from labels", port.numpy(out.logits), g["logits_from_labels"])
    assert_close(f"{port.name} {CASE} encoder output", port.numpy(out.encoder_last_hidden_state),
                 g["encoder_last_hidden_state"])


@pytest.mark.slow  # one more compilation per format and output flag in Flax
@pytest.mark.parametrize("fmt", ["safetensors", "pt"], ids=["safetensors", "bin"])
def test_electra_checkpoint_gives_transformers_hidden_states(port, fmt):
    model, g = port.from_pretrained(FIXTURES / CASE, fmt=fmt), golden(CASE)
    where = f"{port.name} {CASE}/{fmt}"
    out = port.forward(model, input_ids=g["input_ids"], attention_mask=g["attention_mask"],
                       decoder_input_ids=g["decoder_input_ids"], output_hidden_states=True)
    assert_close(f"{where} logits", port.numpy(out.logits), g["logits"])
    assert_close(f"{where} encoder output", port.numpy(out.encoder_last_hidden_state), g["encoder_last_hidden_state"])
    for i in range(3):
        assert_close(f"{where} decoder hidden state {i}", port.numpy(out.decoder_hidden_states[i]),
                     g[f"decoder_hidden_states_{i}"])
    out = port.forward(model, input_ids=g["input_ids"], attention_mask=g["attention_mask"], labels=g["labels"])
    assert_loss_close(where, port.numpy(out.loss), g["loss"])


@pytest.mark.slow  # a TF XLA and a Flax compilation per setting
@pytest.mark.parametrize("setting", list(GENERATIONS))
def test_electra_checkpoint_generates_transformers_ids(port, setting):
    model, g = port.from_pretrained(FIXTURES / CASE, fmt="safetensors"), golden(CASE)
    ids = port.generated_ids(model, g["input_ids"], attention_mask=g["attention_mask"], **GENERATIONS[setting])
    assert_same_ids(f"{port.name} {CASE} {setting}", ids, g[setting])


def test_native_save_round_trips_and_converts_back_byte_exact(port, tmp_path):
    model = port.from_pretrained(FIXTURES / CASE, fmt="safetensors")
    port.save_pretrained(model, tmp_path / "native", safe_serialization=False)
    assert (tmp_path / "native" / NATIVE_FILES[port.name]).is_file()
    loaded = port.from_pretrained(tmp_path / "native")
    state, reference = loaded.canonical_state(), model.canonical_state()
    assert sorted(state) == sorted(reference)
    assert all(np.array_equal(state[k], reference[k]) for k in reference)
    convert_checkpoint(tmp_path / "native", tmp_path / "back", "safetensors", progress=False)
    assert (tmp_path / "back" / "model.safetensors").read_bytes() == (FIXTURES / CASE / "model.safetensors").read_bytes()


def _electra(embedding_size: int, **overrides) -> ElectraConfig:
    # relu in the layers: the generator head's activation is gelu whatever hidden_act says.
    arch = dict(vocab_size=61, embedding_size=embedding_size, hidden_size=16, num_hidden_layers=2,
                num_attention_heads=2, intermediate_size=24, max_position_embeddings=44, hidden_act="relu",
                initializer_range=0.25, pad_token_id=PAD)
    return ElectraConfig(**{**arch, **overrides})


def _bert() -> BertConfig:
    return BertConfig(vocab_size=61, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                      max_position_embeddings=44, initializer_range=0.25, pad_token_id=PAD)


def _joined(encoder, decoder) -> EncoderDecoderConfig:
    return EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder, pad_token_id=PAD,
                                                             decoder_start_token_id=START, eos_token_id=EOS)


def test_random_electra_pair_gives_transformers_logits_and_transformers_loads_its_save(port, tmp_path):
    config = _joined(_electra(12), _electra(8))
    state = random_state(config, 5)
    assert "encoder.embeddings_project.weight" in state and "decoder.electra.embeddings_project.weight" in state
    batch = random_batch(config, np.random.default_rng(5), 3, 7, 5, "ragged")
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}
    hf = hf_model(config, state)
    assert (type(hf.encoder).__name__, type(hf.decoder).__name__) == ("ElectraModel", "ElectraForCausalLM")
    expected = to_numpy(hf_run(hf, **inputs).logits)
    model = port.from_state(config, state)
    assert_close(f"{port.name} electra logits", port.numpy(port.forward(model, **inputs).logits), expected)
    transformers = pytest.importorskip("transformers")
    port.save_pretrained(model, tmp_path / "ckpt", safe_serialization=True)
    reloaded = transformers.EncoderDecoderModel.from_pretrained(tmp_path / "ckpt").eval()
    assert_close(f"{port.name} electra save in transformers", to_numpy(hf_run(reloaded, **inputs).logits), expected)


@pytest.mark.slow  # a backward pass in TF and a Flax gradient compilation
def test_random_electra_pair_gives_transformers_gradients(port):
    config = _joined(_electra(12), _electra(8))
    state = random_state(config, 5)
    batch = random_batch(config, np.random.default_rng(5), 3, 7, 5, "ragged")
    expected_loss, expected = training.transformers_grads(config, state, batch)
    model = port.from_state(config, state)
    loss, grads = port.loss_and_grads(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert_loss_close(f"{port.name} electra", loss, expected_loss)
    assert sorted(grads) == sorted(expected)
    floor = tolerances.GRAD_SCALE_FLOOR * max(float(np.abs(g).max()) for g in expected.values())
    worst = {name: float(np.abs(grads[name].astype(np.float64) - ref).max()) / max(float(np.abs(ref).max()), floor)
             for name, ref in expected.items()}
    name = max(worst, key=worst.get)
    assert worst[name] <= tolerances.FP32_GRAD_REL, f"{port.name} electra: {name} relative diff {worst[name]:.3g}"


@pytest.mark.parametrize("pair", [pytest.param("electra2bert", marks=pytest.mark.slow), "bert2electra"])
def test_electra_pairs_with_bert_give_transformers_logits(port, pair):
    # The ELECTRA decoder's head untied from its word embeddings: generator_lm_head.weight is stored.
    config = _joined(_electra(12), _bert()) if pair == "electra2bert" else _joined(
        _bert(), _electra(8, tie_word_embeddings=False))
    state = random_state(config, 6)
    batch = random_batch(config, np.random.default_rng(6), 2, 6, 4, "right")
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}
    expected = to_numpy(hf_run(hf_model(config, state), **inputs).logits)
    model = port.from_state(config, state)
    assert_close(f"{port.name} {pair} logits", port.numpy(port.forward(model, **inputs).logits), expected)


@pytest.mark.slow  # one more model per class and port
@pytest.mark.parametrize("name", ["ElectraModel", "ElectraForCausalLM"])
def test_electra_classes_go_both_ways_with_transformers(port, name, tmp_path):
    """ElectraModel / ElectraForCausalLM saved alone: transformers 5's folder in the port, the port's in
    transformers 5."""
    import torch

    transformers = pytest.importorskip("transformers")
    decoder = name == "ElectraForCausalLM"
    config = _electra(12, is_decoder=decoder)
    torch.manual_seed(2)
    reference = getattr(transformers, name)(transformers.ElectraConfig(**config.to_dict())).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    reference.save_pretrained(tmp_path / "hf")
    ids, mask = arch_pretrained.batch(config.vocab_size)
    field = "logits" if decoder else "last_hidden_state"
    expected = to_numpy(getattr(hf_run(reference, input_ids=ids, attention_mask=mask), field))
    model = arch_pretrained.arch_class(port, name).from_pretrained(tmp_path / "hf")
    assert_close(f"{port.name} {name} from transformers' folder", arch_pretrained.outputs(port, model, ids, mask),
                 expected)
    model.save_pretrained(tmp_path / "safe", safe_serialization=True)
    loaded, info = getattr(transformers, name).from_pretrained(tmp_path / "safe", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert_close(f"transformers' {name} from the {port.name} folder",
                 to_numpy(getattr(hf_run(loaded.eval(), input_ids=ids, attention_mask=mask), field)), expected)


@pytest.mark.parametrize("settings", [dict(max_length=10), pytest.param(dict(max_length=10, num_beams=3),
                                                                        marks=pytest.mark.slow)],
                         ids=["greedy", "beam3"])
def test_random_electra_pair_generates_transformers_ids(port, settings):
    config = _joined(_electra(12), _electra(8))
    state = random_state(config, 5)
    batch = random_batch(config, np.random.default_rng(5), 3, 7, 5, "ragged")
    expected = to_numpy(hf_run(hf_model(config, state), "generate", input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"], **settings))
    got = port.generated_ids(port.from_state(config, state), batch["input_ids"],
                             attention_mask=batch["attention_mask"], **settings)
    assert_same_ids(f"{port.name} electra {settings}", got, expected)
