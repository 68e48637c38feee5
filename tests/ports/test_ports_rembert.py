"""RemBERT (`RemBertModel` encoder, `RemBertForCausalLM` decoder) in every port.

On transformers 4.57's own checkpoint (tests/fixtures/hf/rembert2rembert) in each format it was written in:
logits, hidden states and encoder output within 1e-5, the loss within a relative 1e-6, the golden greedy and
beam-search ids exactly. On a tiny random RemBERT->RemBERT (embeddings, layers and output embeddings of three
different widths): transformers 5's PyTorch EncoderDecoderModel with the same weights gives the same logits and
gradients, loads what encdec saves, and every port's native save (Flax: msgpack) loads back unchanged.
By default the PyTorch port runs; the TF and Flax ports are `slow` (they compile).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, case_formats, golden
from port_backends import backend, one_torch_thread
from ports_lib import (EOS, PAD, START, VOCAB, assert_close, assert_loss_close, assert_same_ids, hf_model, hf_run,
                       random_batch, random_state, to_numpy, tolerances)
from test_ports_training import transformers_grads
from encdec.config import EncoderDecoderConfig, RemBertConfig

CASE = "rembert2rembert"
FORMATS = case_formats(CASE)
FORMAT_IDS = {"safetensors": "safetensors", "pt": "bin", "tf": "h5"}
GENERATIONS = {
    "greedy": dict(max_length=12, num_beams=1),
    "beam3": dict(max_length=12, num_beams=3, early_stopping=True),
}

_FIXTURES = (one_torch_thread,)  # autouse: one PyTorch thread for the module
_models: dict = {}


@pytest.fixture(
    params=[pytest.param("pt", id="pt-port"),
            # The first model of a TF or Flax run traces and compiles (seconds each): slow.
            pytest.param("tf", id="tf-port", marks=pytest.mark.slow),
            pytest.param("flax", id="flax-port", marks=pytest.mark.slow)],
    scope="module",
)
def port(request):
    """The shared harness's ports (`port_backends`), TF and Flax under `slow` here."""
    return backend(request.param)


def fixture_model(port, fmt: str = "safetensors"):
    key = (port.name, fmt)
    if key not in _models:
        _models[key] = port.from_pretrained(FIXTURES / CASE, fmt=fmt)
    return _models[key]


def tiny_config(seed: int = 5) -> EncoderDecoderConfig:
    """A tiny RemBERT->RemBERT: input embeddings 8 wide, layers 16, output embeddings 12."""
    def rembert(act: str) -> RemBertConfig:
        return RemBertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                             input_embedding_size=8, output_embedding_size=12, intermediate_size=20,
                             max_position_embeddings=44, type_vocab_size=2, hidden_act=act, initializer_range=0.25,
                             pad_token_id=PAD, bos_token_id=START, eos_token_id=EOS)

    return EncoderDecoderConfig.from_encoder_decoder_configs(
        rembert("gelu_new"), rembert("gelu"), pad_token_id=PAD, decoder_start_token_id=START, eos_token_id=EOS)


def tiny_logits(port, model, config):
    b = random_batch(config, np.random.default_rng(9), 2, 7, 5, "right")
    out = port.forward(model, input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                       decoder_input_ids=b["decoder_input_ids"])
    return port.numpy(out.logits), b


# ------------------------------------------------------------------ transformers' checkpoint


@pytest.mark.parametrize("fmt", FORMATS, ids=[FORMAT_IDS[f] for f in FORMATS])
def test_fixture_forward_matches_golden(port, fmt):
    model, g = fixture_model(port, fmt), golden(CASE)
    out = port.forward(model, input_ids=g["input_ids"], attention_mask=g["attention_mask"],
                       decoder_input_ids=g["decoder_input_ids"], output_hidden_states=True)
    assert_close(f"{port.name} {fmt} logits", port.numpy(out.logits), g["logits"])
    assert_close(f"{port.name} {fmt} encoder output", port.numpy(out.encoder_last_hidden_state),
                 g["encoder_last_hidden_state"])
    assert len(out.decoder_hidden_states) == 3  # the projected embeddings, then each layer's output
    for i, got in enumerate(out.decoder_hidden_states):
        assert_close(f"{port.name} {fmt} decoder hidden state {i}", port.numpy(got), g[f"decoder_hidden_states_{i}"])
    if fmt != "safetensors":
        reference = fixture_model(port).canonical_state()
        state = model.canonical_state()
        assert sorted(state) == sorted(reference)
        for name, value in reference.items():
            np.testing.assert_array_equal(state[name], value, err_msg=f"{fmt} {name}")


def test_fixture_loss_from_labels_matches_golden(port):
    model, g = fixture_model(port), golden(CASE)
    out = port.forward(model, input_ids=g["input_ids"], attention_mask=g["attention_mask"], labels=g["labels"])
    assert_loss_close(f"{port.name} {CASE}", port.numpy(out.loss), g["loss"])
    assert_close(f"{port.name} logits from labels", port.numpy(out.logits), g["logits_from_labels"])


def test_fixture_encode_is_the_encoders_own_output(port):
    model, g = fixture_model(port), golden(CASE)
    out = port.encode(model, g["input_ids"], g["attention_mask"])
    assert_close(f"{port.name} encode", port.numpy(out.last_hidden_state), g["encoder_last_hidden_state"])
    assert out.pooler_output is not None and port.numpy(out.pooler_output).shape == (3, 32)  # RemBertModel's pooler


@pytest.mark.parametrize("setting", list(GENERATIONS))
def test_fixture_generation_matches_golden(port, setting):
    model, g = fixture_model(port), golden(CASE)
    got = port.generated_ids(model, g["input_ids"], attention_mask=g["attention_mask"], **GENERATIONS[setting])
    assert_same_ids(f"{port.name} {setting}", got, g[setting])


# ------------------------------------------------------------------ a tiny random model against transformers 5


def test_tiny_logits_and_gradients_match_transformers(port):
    config = tiny_config()
    state = random_state(config, 5)
    model = port.from_state(config, state)
    got, b = tiny_logits(port, model, config)
    hf = hf_model(config, state)
    expected = to_numpy(hf_run(hf, input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                               decoder_input_ids=b["decoder_input_ids"]).logits)
    assert_close(f"{port.name} tiny rembert logits", got, expected)

    batch = random_batch(config, np.random.default_rng(3), 3, 8, 6, "ragged")
    expected_loss, expected_grads = transformers_grads(config, state, batch)
    loss, grads = port.loss_and_grads(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert_loss_close(f"{port.name} tiny rembert", loss, expected_loss)
    assert sorted(grads) == sorted(expected_grads)
    floor = tolerances.GRAD_SCALE_FLOOR * max(float(np.abs(g).max()) for g in expected_grads.values())
    worst = {name: float(np.abs(grads[name].astype(np.float64) - ref).max()) / max(float(np.abs(ref).max()), floor)
             for name, ref in expected_grads.items()}
    name = max(worst, key=worst.get)
    assert worst[name] <= tolerances.FP32_GRAD_REL, f"{port.name}: {name} relative diff {worst[name]:.3g}"


def test_tiny_save_loads_in_transformers_and_back(port, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = tiny_config(6)
    model = port.from_state(config, random_state(config, 6))
    got, b = tiny_logits(port, model, config)
    port.save_pretrained(model, tmp_path / "safetensors", safe_serialization=True)
    hf = transformers.EncoderDecoderModel.from_pretrained(tmp_path / "safetensors").eval()
    assert type(hf.encoder).__name__ == "RemBertModel" and type(hf.decoder).__name__ == "RemBertForCausalLM"
    expected = to_numpy(hf_run(hf, input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                               decoder_input_ids=b["decoder_input_ids"]).logits)
    assert_close(f"{port.name} tiny rembert in transformers", expected, got)
    for exclude in (False, True):  # the output embeddings are a projection, not an embedding table
        assert model.num_parameters(exclude_embeddings=exclude) == hf.num_parameters(exclude_embeddings=exclude)
    # The port's own format (PyTorch .bin, TF .h5, Flax msgpack) loads back unchanged.
    port.save_pretrained(model, tmp_path / "native", safe_serialization=False)
    loaded = port.from_pretrained(tmp_path / "native")
    reference, state = model.canonical_state(), loaded.canonical_state()
    assert sorted(state) == sorted(reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    np.testing.assert_array_equal(tiny_logits(port, loaded, config)[0], got)


def test_tiny_tied_encoder_decoder_matches_transformers(port):
    """tie_encoder_decoder shares the embeddings, their projection and the layers."""
    c = tiny_config(7)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        c.encoder, c.encoder.copy(), pad_token_id=PAD, decoder_start_token_id=START, eos_token_id=EOS,
        tie_encoder_decoder=True)
    state = random_state(config, 7)
    assert "decoder.rembert.encoder.embedding_hidden_mapping_in.weight" not in state  # the encoder's, shared
    got, b = tiny_logits(port, port.from_state(config, state), config)
    expected = to_numpy(hf_run(hf_model(config, state), input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                               decoder_input_ids=b["decoder_input_ids"]).logits)
    assert_close(f"{port.name} tied tiny rembert logits", got, expected)


def test_rembert_model_alone_both_ways_with_transformers(port, tmp_path):
    """`RemBertModel.from_pretrained` of transformers' own folder, and transformers reading encdec's save."""
    transformers = pytest.importorskip("transformers")
    import importlib

    import torch

    cfg = tiny_config(8).encoder
    torch.manual_seed(8)
    hf = transformers.RemBertModel(transformers.RemBertConfig(**cfg.to_dict())).eval()
    hf.save_pretrained(tmp_path / "hf")
    cls = getattr(importlib.import_module(f"encdec.{port.name}"),
                  {"pt": "", "tf": "TF", "flax": "Flax"}[port.name] + "RemBertModel")
    model = cls.from_pretrained(tmp_path / "hf")
    ids = random_batch(tiny_config(8), np.random.default_rng(8), 2, 6, 4, "none")["input_ids"]
    with torch.no_grad():
        expected = hf(torch.from_numpy(ids))
    out = model(port.tensor(ids))
    assert_close(f"{port.name} RemBertModel", port.numpy(out.last_hidden_state), expected.last_hidden_state.numpy())
    assert_close(f"{port.name} RemBertModel pooler", port.numpy(out.pooler_output), expected.pooler_output.numpy())
    model.save_pretrained(tmp_path / "ours", safe_serialization=True)
    back = transformers.RemBertModel.from_pretrained(tmp_path / "ours")
    want = hf.state_dict()
    assert sorted(back.state_dict()) == sorted(want)
    for name, value in back.state_dict().items():
        assert torch.equal(value, want[name]), name


@pytest.mark.parametrize("settings", [dict(max_length=10), dict(max_length=10, num_beams=3)], ids=["greedy", "beam3"])
def test_tiny_generates_transformers_ids(port, settings):
    config = tiny_config()
    state = random_state(config, 5)
    b = random_batch(config, np.random.default_rng(9), 3, 7, 5, "ragged")
    expected = to_numpy(hf_run(hf_model(config, state), "generate", input_ids=b["input_ids"],
                               attention_mask=b["attention_mask"], **settings))
    got = port.generated_ids(port.from_state(config, state), b["input_ids"], attention_mask=b["attention_mask"],
                             **settings)
    assert_same_ids(f"{port.name} rembert {settings}", got, expected)
