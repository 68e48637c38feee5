"""Generation in every port against transformers' PyTorch generate on the same weights: greedy, beam
search, num_return_sequences, decoder prompts, scores. A few settings run by default; the matrix is slow."""

from __future__ import annotations

import numpy as np
import pytest

from port_backends import one_torch_thread, port  # noqa: F401  (fixtures)
from tiny_models import generation_settings
from ports_lib import (
    PAD,
    START,
    VARIANTS,
    assert_close,
    assert_same_ids,
    hf_model,
    hf_run,
    joined_config,
    random_batch,
    random_state,
    to_numpy,
)

# tiny_models.GENERATION_SETTINGS less the pad-0 and default-length settings (tests/pt covers those).
SETTINGS = generation_settings("greedy_default_length", "beam3_ret3_pad0", "greedy_pad0")
# By default: greedy, beam search and num_return_sequences on three variants; the rest is slow.
DEFAULT = {("bert2gpt2", "plain", "greedy"), ("roberta2roberta", "plain", "beam4_never_ret3"),
           ("bert2bert", "proj", "beam3")}
GENERATION_CASES = [
    pytest.param(pair, variant, setting, id=f"{pair}-{variant}-{setting}",
                 marks=() if (pair, variant, setting) in DEFAULT else pytest.mark.slow)
    for pair, variant in VARIANTS
    for setting in SETTINGS
]

_built: dict = {}


def build(port, pair, variant):
    key = (port.name, pair, variant)
    if key not in _built:
        config = joined_config(pair, 0, variant)
        state = random_state(config, 0)
        _built[key] = (config, hf_model(config, state), port.from_state(config, state))
    return _built[key]


def generated_eos(hf, b) -> int:
    """A token transformers generates at step 3 of the first row: a natural eos for the comparison."""
    ids = to_numpy(hf_run(hf, "generate", input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                          max_length=6, eos_token_id=None))
    token = int(ids[0, 3])
    return token if token not in (PAD, START) else 3


@pytest.mark.parametrize("pair,variant,setting", GENERATION_CASES)
def test_generation_gives_transformers_ids(port, pair, variant, setting):
    config, hf, model = build(port, pair, variant)
    b = random_batch(config, np.random.default_rng(10), 3, 8, 4, "ragged")
    eos = generated_eos(hf, b)
    kwargs = {"eos_token_id": eos}
    kwargs.update({k: (eos if v == "eos" else v) for k, v in SETTINGS[setting].items()})
    expected = to_numpy(hf_run(hf, "generate", input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                               **kwargs))
    got = port.generated_ids(model, b["input_ids"], attention_mask=b["attention_mask"], **kwargs)
    assert_same_ids(f"{port.name} {pair}-{variant} {setting}", got, expected)


# Decoder prompts: with the start token, without it (generate puts it in front), and with a pad
# inside (RoBERTa counts positions over non-pad tokens).
PROMPTS = {
    "with_start": [[START, 11, 12], [START, 13, 14], [START, 15, 16]],
    "without_start": [[21, 22], [23, 24], [25, 26]],
    "pad_inside": [[START, 31, 32], [START, PAD, 33], [START, 34, PAD]],
}
PROMPT_SETTINGS = {
    "greedy": dict(max_length=10),
    "beam3": dict(max_length=10, num_beams=3),
    "beam2_ret2_scores": dict(max_new_tokens=6, num_beams=2, num_return_sequences=2, output_scores=True,
                              return_dict_in_generate=True),
    "greedy_new_tokens_scores": dict(max_new_tokens=5, min_new_tokens=2, output_scores=True,
                                     return_dict_in_generate=True),
}
PROMPT_DEFAULT = {("roberta2roberta", "pad_inside", "beam3"), ("bert2gpt2", "without_start", "greedy"),
                  ("roberta2roberta", "with_start", "beam2_ret2_scores")}
PROMPT_CASES = [
    pytest.param(pair, prompt, setting, id=f"{pair}-{prompt}-{setting}",
                 marks=() if (pair, prompt, setting) in PROMPT_DEFAULT else pytest.mark.slow)
    for pair in ("bert2bert", "bert2gpt2", "roberta2roberta", "bertgen2bertgen")
    for prompt in PROMPTS
    for setting in PROMPT_SETTINGS
]


def assert_same_generate_output(name, port, got, expected, beams: bool) -> None:
    """The same ids, scores per step (the same -inf positions), and for beams the sequence scores and beam indices."""
    assert_same_ids(name, port.numpy(got.sequences), to_numpy(expected.sequences))
    assert len(got.scores) == len(expected.scores)
    for mine, theirs in zip(got.scores, expected.scores):
        mine, theirs = port.numpy(mine), to_numpy(theirs)
        finite = np.isfinite(theirs)
        np.testing.assert_array_equal(np.isfinite(mine), finite)
        assert_close(f"{name} scores", mine[finite], theirs[finite])
    if beams:
        assert_close(f"{name} sequence scores", port.numpy(got.sequences_scores), to_numpy(expected.sequences_scores))
        np.testing.assert_array_equal(port.numpy(got.beam_indices), to_numpy(expected.beam_indices))


@pytest.mark.parametrize("pair,prompt,setting", PROMPT_CASES)
def test_generation_from_a_decoder_prompt(port, pair, prompt, setting):
    config, hf, model = build(port, pair, "plain")
    b = random_batch(config, np.random.default_rng(7), 3, 8, 4, "ragged")
    kwargs = dict(PROMPT_SETTINGS[setting], eos_token_id=generated_eos(hf, b))
    prompt_ids = np.array(PROMPTS[prompt])
    expected = hf_run(hf, "generate", input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                      decoder_input_ids=prompt_ids, **kwargs)
    got = port.generate(model, b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=prompt_ids,
                        **kwargs)
    name = f"{port.name} {pair} {prompt} {setting}"
    if kwargs.get("return_dict_in_generate"):
        assert_same_generate_output(name, port, got, expected, "num_beams" in kwargs)
    else:
        assert_same_ids(name, port.numpy(getattr(got, "sequences", got)), to_numpy(expected))


@pytest.mark.parametrize("pair", ["bert2gpt2", pytest.param("bert2bert", marks=pytest.mark.slow),
                                  pytest.param("roberta2roberta", marks=pytest.mark.slow)])
def test_generation_scores_match(port, pair):
    config, hf, model = build(port, pair, "plain")
    b = random_batch(config, np.random.default_rng(4), 2, 8, 4, "right")
    eos = generated_eos(hf, b)
    for kwargs in (dict(max_length=8), dict(max_length=8, num_beams=3, num_return_sequences=2)):
        kwargs.update(eos_token_id=eos, output_scores=True, return_dict_in_generate=True, repetition_penalty=1.2)
        expected = hf_run(hf, "generate", input_ids=b["input_ids"], attention_mask=b["attention_mask"], **kwargs)
        got = port.generate(model, b["input_ids"], attention_mask=b["attention_mask"], **kwargs)
        assert_same_generate_output(f"{port.name} {pair} {kwargs}", port, got, expected, "num_beams" in kwargs)


def test_eos_ends_rows_early_and_pads_after(port):
    """Rows that meet eos end there and are padded with the pad id, as transformers pads them."""
    config, hf, model = build(port, "bert2gpt2", "plain")
    b = random_batch(config, np.random.default_rng(10), 3, 8, 4, "ragged")
    eos = generated_eos(hf, b)
    out = port.generated_ids(model, b["input_ids"], attention_mask=b["attention_mask"], max_length=10,
                             eos_token_id=eos)
    ended = [row.tolist() for row in out if eos in row.tolist()[1:]]
    assert ended, out
    row = ended[0]
    assert all(t == PAD for t in row[row.index(eos, 1) + 1:]), row
