"""The TensorFlow port against transformers 5's PyTorch EncoderDecoderModel (and encdec's PyTorch port).

Over small random configurations (architecture pairs, a projection, tied encoder and
decoder, padding, batch sizes) and generation settings. All three models hold the same
numpy weights; every expected value is computed by the references in the test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tf_helpers import (  # first: it sets TensorFlow's threads
    PAD,
    PAIRS,
    START,
    close,
    hf_model,
    joined_config,
    pt_port_model,
    random_batch,
    random_state,
    tf_model,
    torch_batch,
)
from tiny_models import generation_settings  # noqa: E402

# (pair, variant): every architecture pair plain, plus the projection and tied variants.
VARIANTS = [(pair, "plain") for pair in PAIRS] + [
    ("bert2bert", "proj"),
    ("bert2gpt2", "proj"),
    ("roberta2roberta", "proj"),
    ("bert2bert", "tie"),
    ("roberta2roberta", "tie"),
    ("bertgen2bertgen", "tie"),
]
IDS = [f"{pair}-{variant}" for pair, variant in VARIANTS]

_built: dict = {}


def build(pair: str, variant: str, seed: int = 0, **config_kwargs):
    """(config, transformers' model, encdec's PyTorch model, the TF model), all with the same weights."""
    key = (pair, variant, seed, tuple(sorted(config_kwargs.items())))
    if key not in _built:
        config = joined_config(pair, seed, variant, **config_kwargs)
        state = random_state(config, seed)
        _built[key] = (config, hf_model(config, state), pt_port_model(config, state), tf_model(config, state))
    return _built[key]


@pytest.mark.parametrize("pair,variant", VARIANTS, ids=IDS)
def test_forward_logits_hidden_states_and_loss(pair, variant):
    config, hf, pt, model = build(pair, variant)
    rng = np.random.default_rng(1)
    for batch, padding in ((1, "none"), (3, "right"), (4, "ragged")):
        b = random_batch(config, rng, batch, 9, 6, padding)
        t = torch_batch(b)
        enc = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        got = model(**enc, decoder_input_ids=b["decoder_input_ids"], output_hidden_states=True)
        with torch.no_grad():
            expected = hf(input_ids=t["input_ids"], attention_mask=t["attention_mask"],
                          decoder_input_ids=t["decoder_input_ids"], output_hidden_states=True)
            port = pt(input_ids=t["input_ids"], attention_mask=t["attention_mask"],
                      decoder_input_ids=t["decoder_input_ids"])
        close(got.logits, expected.logits)
        close(got.logits, port.logits)
        close(got.encoder_last_hidden_state, expected.encoder_last_hidden_state)
        for name in ("decoder_hidden_states", "encoder_hidden_states"):
            mine, theirs = getattr(got, name), getattr(expected, name)
            assert len(mine) == len(theirs), name
            for a, e in zip(mine, theirs):
                close(a, e)

        got = model(**enc, labels=b["labels"])
        with torch.no_grad():
            expected = hf(input_ids=t["input_ids"], attention_mask=t["attention_mask"], labels=t["labels"])
        assert abs(float(got.loss) - expected.loss.item()) <= 1e-6 * abs(expected.loss.item())
        close(got.logits, expected.logits)


INCREMENTAL = (0, 1, 2, 3, 6, 10)


def test_attention_weights_match_eager_attention():
    config, hf, _, model = build("bert2gpt2", "plain")
    for module in (hf, hf.encoder, hf.decoder):
        module.config._attn_implementation = "eager"
    hf.config.encoder._attn_implementation = hf.config.decoder._attn_implementation = "eager"
    b = random_batch(config, np.random.default_rng(7), 2, 7, 5, "right")
    t = torch_batch(b)
    keys = ("input_ids", "attention_mask", "decoder_input_ids")
    got = model(**{k: b[k] for k in keys}, output_attentions=True)
    with torch.no_grad():
        expected = hf(**{k: t[k] for k in keys}, output_attentions=True)
    for name in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        theirs, mine = getattr(expected, name), getattr(got, name)
        assert theirs is not None and len(mine) == len(theirs), name
        for a, e in zip(mine, theirs):
            close(a, e)


SETTINGS = generation_settings("beam3_ret3_pad0", "greedy_pad0")

# By default each variant runs a few settings (together they cover every setting), eagerly, and
# three of them compiled (every setting compiled is the slow run's, and tests/ports compiles more);
# the whole matrix is marked slow.
DEFAULT_GENERATIONS = [
    (0, "greedy", "xla"), (0, "beam4_never_ret3", "eager"),
    (1, "greedy_ngram_bad_words", "eager"), (1, "beam3", "xla"),
    (2, "greedy_new_tokens", "eager"), (2, "beam5_lp2_ret2", "eager"),
    (3, "greedy_min_length_repetition", "eager"), (3, "beam2_early", "eager"),
    (4, "greedy_forced_eos", "eager"), (4, "beam3_ngram_repetition", "eager"),
    (5, "greedy_default_length", "eager"), (5, "beam3_negative_lp_never", "eager"),
    (6, "beam2_min_length", "eager"), (7, "beam4_forced_bos_eos", "eager"),
    (8, "beam3_no_eos", "eager"), (11, "beam4_never_ret3", "xla"),
]
_default = {(VARIANTS[i], s, m) for i, s, m in DEFAULT_GENERATIONS}
GENERATION_CASES = [
    pytest.param(pair, variant, setting, mode, id=f"{pair}-{variant}-{setting}-{mode}",
                 marks=() if ((pair, variant), setting, mode) in _default else pytest.mark.slow)
    for pair, variant in VARIANTS
    for setting in SETTINGS
    for mode in ("eager", "xla")
]


def _generated_eos(pt, b) -> int:
    """A token the model generates at step 3 of the first row: a natural eos for the comparison."""
    t = torch_batch(b)
    ids = pt.generate(t["input_ids"], attention_mask=t["attention_mask"], max_length=6, eos_token_id=None)
    token = int(ids[0, 3])
    return token if token not in (PAD, START) else 3


@pytest.mark.parametrize("pair,variant,setting,mode", GENERATION_CASES)
def test_generation_gives_the_same_ids(pair, variant, setting, mode):
    config, hf, pt, model = build(pair, variant)
    b = random_batch(config, np.random.default_rng(10), 3, 8, 4, "ragged")
    t = torch_batch(b)
    eos = _generated_eos(pt, b)
    kwargs = {"eos_token_id": eos}
    kwargs.update({k: (eos if v == "eos" else v) for k, v in SETTINGS[setting].items()})
    expected = hf.generate(t["input_ids"], attention_mask=t["attention_mask"], **kwargs).numpy()
    got = model.generate(b["input_ids"], attention_mask=b["attention_mask"], jit_compile=mode == "xla", **kwargs)
    assert got.shape == expected.shape, (got, expected)
    np.testing.assert_array_equal(got.numpy(), expected)
    port = pt.generate(t["input_ids"], attention_mask=t["attention_mask"], **kwargs).numpy()
    np.testing.assert_array_equal(got.numpy(), port)


def _assert_same_generate_output(got, expected, beams: bool) -> None:
    """The same ids, scores per step (the same -inf positions), and for beams sequence scores and beam indices."""
    np.testing.assert_array_equal(got.sequences.numpy(), expected.sequences.numpy())
    assert len(got.scores) == len(expected.scores)
    for mine, theirs in zip(got.scores, expected.scores):
        theirs, mine = theirs.numpy(), mine.numpy()
        finite = np.isfinite(theirs)
        np.testing.assert_array_equal(finite, np.isfinite(mine))
        close(mine[finite], theirs[finite])
    if beams:
        close(got.sequences_scores, expected.sequences_scores)
        np.testing.assert_array_equal(got.beam_indices.numpy(), expected.beam_indices.numpy())


@pytest.mark.parametrize("mode", ["eager", pytest.param("xla", marks=pytest.mark.slow)])
def test_generation_scores_match(mode):
    config, hf, pt, model = build("bert2gpt2", "plain")
    b = random_batch(config, np.random.default_rng(4), 2, 8, 4, "right")
    t = torch_batch(b)
    eos = _generated_eos(pt, b)
    for kwargs in (dict(max_length=8), dict(max_length=8, num_beams=3, num_return_sequences=2)):
        kwargs.update(eos_token_id=eos, output_scores=True, return_dict_in_generate=True, repetition_penalty=1.2)
        expected = hf.generate(t["input_ids"], attention_mask=t["attention_mask"], **kwargs)
        got = model.generate(b["input_ids"], attention_mask=b["attention_mask"], jit_compile=mode == "xla", **kwargs)
        _assert_same_generate_output(got, expected, "num_beams" in kwargs)


# Decoder prompts: with the start token, without it (generate puts it in front), and with a pad
# inside (RoBERTa counts positions over non-pad tokens).
PROMPTS = {
    "with_start": [[START, 11, 12], [START, 13, 14], [START, 15, 16]],
    "without_start": [[21, 22], [23, 24], [25, 26]],
    "pad_inside": [[START, 31, 32], [START, PAD, 33], [START, 34, PAD]],
}
PROMPT_SETTINGS = {
    "greedy": (dict(max_length=10), "eager"),
    "beam3": (dict(max_length=10, num_beams=3), "xla"),
    "beam2_ret2_scores": (dict(max_new_tokens=6, num_beams=2, num_return_sequences=2, output_scores=True,
                               return_dict_in_generate=True), "eager"),
    "greedy_new_tokens_scores": (dict(max_new_tokens=5, min_new_tokens=2, output_scores=True,
                                      return_dict_in_generate=True), "xla"),
}


@pytest.mark.parametrize("setting", list(PROMPT_SETTINGS))
@pytest.mark.parametrize("prompt", list(PROMPTS))
@pytest.mark.parametrize("pair", ["bert2gpt2", "roberta2roberta"])
def test_generation_from_a_decoder_prompt(pair, prompt, setting):
    config, hf, pt, model = build(pair, "plain")
    b = random_batch(config, np.random.default_rng(7), 3, 8, 4, "ragged")
    t = torch_batch(b)
    options, mode = PROMPT_SETTINGS[setting]
    kwargs = dict(options, eos_token_id=_generated_eos(pt, b))
    prompt_ids = np.array(PROMPTS[prompt])
    expected = hf.generate(t["input_ids"], attention_mask=t["attention_mask"],
                           decoder_input_ids=torch.tensor(prompt_ids), **kwargs)
    got = model.generate(b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=prompt_ids,
                         jit_compile=mode == "xla", **kwargs)
    if not kwargs.get("return_dict_in_generate"):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
        return
    _assert_same_generate_output(got, expected, "num_beams" in kwargs)


def test_no_attention_mask_attends_every_position_as_transformers_does():
    """transformers 5 infers no mask from pads for an encoder-decoder: every input position is attended."""
    config, hf, _, model = build("bert2bert", "plain")
    b = random_batch(config, np.random.default_rng(5), 3, 8, 4, "right")
    t = torch_batch(b)
    expected = hf.generate(t["input_ids"], max_length=8, num_beams=2).numpy()
    got = model.generate(b["input_ids"], max_length=8, num_beams=2, jit_compile=False).numpy()
    np.testing.assert_array_equal(got, expected)
    masked = model.generate(b["input_ids"], attention_mask=b["attention_mask"], max_length=8, num_beams=2,
                            jit_compile=False).numpy()
    assert not np.array_equal(masked, got)  # the padded rows do depend on the mask
