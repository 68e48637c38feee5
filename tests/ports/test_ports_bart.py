"""BART's decoder (`BartForCausalLM`) in every port.

transformers' own checkpoints (bert2bart, bert2bart_proj: safetensors, bin, msgpack) give its golden
logits, hidden states, encoder output, loss and generated ids; tiny random BERT -> BART models (gelu or
relu, scaled embeddings, an untied LM head, another width) give the logits, loss, gradients and
generated ids of transformers 5's PyTorch EncoderDecoderModel holding the same weights; `decode_step`
gives the full forward's logits.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, case_formats, golden
from port_backends import one_torch_thread, port  # noqa: F401  (fixtures)
from ports_lib import (
    EOS,
    PAD,
    START,
    VOCAB,
    arch_config,
    assert_close,
    assert_loss_close,
    assert_same_ids,
    hf_model,
    hf_run,
    random_batch,
    random_state,
    to_numpy,
    tolerances,
)
from test_ports_golden import FORMAT_IDS, GENERATIONS
from test_ports_training import transformers_grads

from encdec.config import BartConfig, EncoderDecoderConfig

CASES = ("bert2bart", "bert2bart_proj")
CASE_FORMATS = [(case, fmt) for case in CASES for fmt in case_formats(case)]
CASE_FORMAT_IDS = [f"{case}-{FORMAT_IDS[fmt]}" for case, fmt in CASE_FORMATS]

_models: dict = {}


def model_for(port, case: str, fmt: str | None = None):
    key = (port.name, case, fmt)
    if key not in _models:
        _models[key] = port.from_pretrained(FIXTURES / case, fmt=fmt)
    return _models[key]


@pytest.mark.parametrize("case,fmt", CASE_FORMATS, ids=CASE_FORMAT_IDS)
def test_forward_matches_golden(port, case, fmt):
    model, g = model_for(port, case, fmt), golden(case)
    out = port.forward(model, input_ids=g["input_ids"], attention_mask=g["attention_mask"],
                       decoder_input_ids=g["decoder_input_ids"], output_hidden_states=True)
    assert_close(f"{port.name} {case}/{fmt} logits", port.numpy(out.logits), g["logits"])
    assert_close(f"{port.name} {case}/{fmt} encoder output", port.numpy(out.encoder_last_hidden_state),
                 g["encoder_last_hidden_state"])
    expected = [g[f"decoder_hidden_states_{i}"] for i in range(len(out.decoder_hidden_states))]
    assert f"decoder_hidden_states_{len(expected)}" not in g and len(expected) == 3
    for i, (got, want) in enumerate(zip(out.decoder_hidden_states, expected)):
        assert_close(f"{port.name} {case}/{fmt} decoder hidden state {i}", port.numpy(got), want)


@pytest.mark.parametrize("case", CASES)
def test_loss_and_every_format_match_golden(port, case):
    """Labels -> the loss and logits; every format the same canonical state (so the loss holds for each)."""
    model, g = model_for(port, case, "safetensors"), golden(case)
    out = port.forward(model, input_ids=g["input_ids"], attention_mask=g["attention_mask"], labels=g["labels"])
    assert_loss_close(f"{port.name} {case}", port.numpy(out.loss), g["loss"])
    assert_close(f"{port.name} {case} logits from labels", port.numpy(out.logits), g["logits_from_labels"])
    reference = model.canonical_state()
    for fmt in case_formats(case):
        state = model_for(port, case, fmt).canonical_state()
        assert sorted(state) == sorted(reference), fmt
        for name, value in reference.items():
            assert np.array_equal(state[name], value), (fmt, name)


@pytest.mark.parametrize(
    "setting", [s if s != "greedy_noeos_len16" else pytest.param(s, marks=pytest.mark.slow) for s in GENERATIONS]
)
@pytest.mark.parametrize("case", CASES)
def test_generation_matches_golden(port, case, setting):
    model, g = model_for(port, case, "safetensors"), golden(case)
    got = port.generated_ids(model, g["input_ids"], attention_mask=g["attention_mask"], **GENERATIONS[setting])
    assert_same_ids(f"{port.name} {case} {setting}", got, g[setting])


def test_the_start_token_is_eos_as_bart_has_it(port):
    model = model_for(port, "bert2bart", "safetensors")
    assert model.config.decoder_start_token_id == model.config.eos_token_id == 2
    assert model.config.decoder.pad_token_id == 1 and model.config.decoder.bos_token_id == 0  # BartConfig defaults


# ---------------------------------------------------------------------------------------------------
# Tiny random BERT -> BART against transformers 5's PyTorch model with the same weights.

# variant -> BART settings: post-norm with gelu; relu with sqrt(d_model) embeddings and an untied LM head;
# a decoder of another width (enc_to_dec_proj).
VARIANTS = {
    "gelu": dict(),
    "relu_scaled_untied": dict(activation_function="relu", scale_embedding=True, tie_word_embeddings=False),
    "proj": dict(activation_function="gelu_new", scale_embedding=True),
}


def bart_joined_config(variant: str, seed: int = 0) -> EncoderDecoderConfig:
    rng = np.random.default_rng(seed)
    encoder = arch_config("bert", rng)
    hidden = encoder.hidden_size + 8 if variant == "proj" else encoder.hidden_size
    decoder = BartConfig(
        vocab_size=VOCAB, d_model=hidden, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=37,
        # transformers 5 sizes its decoder cache by num_hidden_layers, which BartConfig sets to encoder_layers
        encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=11, max_position_embeddings=40,
        init_std=0.25, pad_token_id=PAD, bos_token_id=0, eos_token_id=EOS, forced_eos_token_id=None,
        **VARIANTS[variant],
    )
    return EncoderDecoderConfig.from_encoder_decoder_configs(
        encoder, decoder, pad_token_id=PAD, decoder_start_token_id=START, eos_token_id=EOS)


_built: dict = {}


def build(port, variant):
    key = (port.name, variant)
    if key not in _built:
        config = bart_joined_config(variant)
        state = random_state(config, 0)
        batch = random_batch(config, np.random.default_rng(3), 3, 9, 7, "ragged")
        _built[key] = (config, state, port.from_state(config, state), batch)
    return _built[key]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_random_bart_matches_transformers(port, variant):
    config, state, model, batch = build(port, variant)
    hf = hf_model(config, state)
    arrays = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}
    expected = hf_run(hf, output_hidden_states=True, **arrays)
    out = port.forward(model, output_hidden_states=True, **arrays)
    assert_close(f"{port.name} {variant} logits", port.numpy(out.logits), to_numpy(expected.logits))
    assert len(out.decoder_hidden_states) == len(expected.decoder_hidden_states) == 3
    for i, (got, want) in enumerate(zip(out.decoder_hidden_states, expected.decoder_hidden_states)):
        assert_close(f"{port.name} {variant} decoder hidden state {i}", port.numpy(got), to_numpy(want))


@pytest.mark.parametrize("variant", ["relu_scaled_untied", pytest.param("proj", marks=pytest.mark.slow)])
def test_random_bart_gradients_match_transformers(port, variant):
    config = bart_joined_config(variant, seed=3)
    state = random_state(config, 3)
    batch = random_batch(config, np.random.default_rng(3), 3, 8, 6, "ragged")
    expected_loss, expected = transformers_grads(config, state, batch)
    model = port.from_state(config, state)
    loss, grads = port.loss_and_grads(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert_loss_close(f"{port.name} {variant}", loss, expected_loss)
    assert sorted(grads) == sorted(expected)
    floor = tolerances.GRAD_SCALE_FLOOR * max(float(np.abs(g).max()) for g in expected.values())
    worst = {name: float(np.abs(grads[name].astype(np.float64) - ref).max()) / max(float(np.abs(ref).max()), floor)
             for name, ref in expected.items()}
    name = max(worst, key=worst.get)
    assert worst[name] <= tolerances.FP32_GRAD_REL, f"{port.name} {variant}: {name} relative diff {worst[name]:.3g}"


@pytest.mark.parametrize("settings", [dict(max_length=10), dict(max_length=10, num_beams=3)],
                         ids=["greedy", "beam3"])
def test_random_bart_generates_transformers_ids(port, settings):
    config, state, model, batch = build(port, "relu_scaled_untied")
    hf = hf_model(config, state)
    arrays = {k: batch[k] for k in ("input_ids", "attention_mask")}
    expected = to_numpy(hf_run(hf, "generate", **arrays, **settings))
    got = port.generated_ids(model, batch["input_ids"], attention_mask=batch["attention_mask"], **settings)
    assert_same_ids(f"{port.name} {settings}", got, expected)


def test_decode_step_gives_the_full_forwards_logits(port):
    config, state, model, batch = build(port, "proj")
    ids, mask, dec = batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"]
    out = port.forward(model, input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
    expected = port.numpy(out.logits)
    cache = port.init_cache(model, len(ids), dec.shape[1], port.encode(model, ids, mask), mask)
    start = 0
    for width in (1, 3, 2, 1):
        logits, cache = port.decode_step(model, dec[:, start:start + width], cache)
        assert_close(f"{port.name} decode_step at {start}", port.numpy(logits), expected[:, start:start + width])
        start += width
    assert start == dec.shape[1]
