"""transformers' own checkpoints (tests/fixtures/hf), in each format they were written in, give
transformers' PyTorch outputs in the Flax port: logits, hidden states, loss, generated ids."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CASES, FIXTURES, case_formats, golden
from flax_testlib import FAST_COMPILE, assert_close, assert_loss_close, assert_same_ids

jax = pytest.importorskip("jax")
from encdec.flax import FlaxEncoderDecoderModel  # noqa: E402

# The generation settings of the fixtures README (the last one compiles a loop of its own: slow).
GENERATIONS = {
    "greedy": dict(max_length=12, num_beams=1),
    "beam3": dict(max_length=12, num_beams=3, early_stopping=True),
    "beam3_ret2_lp2": dict(max_length=12, num_beams=3, num_return_sequences=2, length_penalty=2.0, early_stopping=False),
}
SLOW_GENERATIONS = {"greedy_noeos_len16": dict(max_length=16, num_beams=1, eos_token_id=None)}


@pytest.fixture(scope="module")
def models():
    """One model per case (from safetensors): its jitted functions are reused by every test."""
    cache = {}

    def get(case):
        if case not in cache:
            cache[case] = FlaxEncoderDecoderModel.from_pretrained(
                FIXTURES / case, fmt="safetensors", compiler_options=FAST_COMPILE
            )
        return cache[case]

    return get


@pytest.mark.parametrize("case", CASES)
def test_every_format_loads_the_same_params(case, models):
    reference = jax.tree_util.tree_leaves_with_path(models(case).params)
    for fmt in case_formats(case):
        loaded = FlaxEncoderDecoderModel.from_pretrained(FIXTURES / case, fmt=fmt)
        leaves = jax.tree_util.tree_leaves_with_path(loaded.params)
        assert [path for path, _ in leaves] == [path for path, _ in reference], fmt
        for (path, got), (_, expected) in zip(leaves, reference):
            assert got.dtype == expected.dtype and np.array_equal(np.asarray(got), np.asarray(expected)), (fmt, path)


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_transformers_golden(case, models):
    model = models(case)
    g = golden(case)
    for fmt in case_formats(case):
        params = FlaxEncoderDecoderModel.from_pretrained(FIXTURES / case, fmt=fmt).params
        out = model(
            g["input_ids"], g["attention_mask"], decoder_input_ids=g["decoder_input_ids"],
            output_hidden_states=True, params=params,
        )
        assert_close(f"{case}/{fmt} logits", out.logits, g["logits"])
        assert_close(f"{case}/{fmt} encoder output", out.encoder_last_hidden_state, g["encoder_last_hidden_state"])
        expected_hidden = [g[k] for k in sorted(k for k in g if k.startswith("decoder_hidden_states_"))]
        assert len(out.decoder_hidden_states) == len(expected_hidden)
        for i, (got, expected) in enumerate(zip(out.decoder_hidden_states, expected_hidden)):
            assert_close(f"{case}/{fmt} decoder hidden state {i}", got, expected)
        # Decoder inputs made from the labels, with the decoder's pad tokens masked.
        out = model(g["input_ids"], g["attention_mask"], labels=g["labels"], params=params)
        assert_loss_close(out.loss, g["loss"])
        assert_close(f"{case}/{fmt} logits from labels", out.logits, g["logits_from_labels"])


def _check_generations(model, case, generations):
    g = golden(case)
    for name, options in generations.items():
        out = model.generate(g["input_ids"], g["attention_mask"], **options)
        assert_same_ids(f"{case} {name}", out, g[name])


@pytest.mark.parametrize("case", CASES)
def test_generation_matches_transformers_golden(case, models):
    _check_generations(models(case), case, GENERATIONS)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_generation_without_eos_matches_transformers_golden(case, models):
    _check_generations(models(case), case, SLOW_GENERATIONS)
