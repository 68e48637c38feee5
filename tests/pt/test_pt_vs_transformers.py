"""encdec's EncoderDecoderModel against transformers 5's, over many small random configurations.

Both models are built from the same config dict and hold the same weights
(`init_weights`, biases and LayerNorms perturbed); every comparison is against
transformers run in the test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encdec.errors import InputError
from tiny_models import GENERATION_SETTINGS

from pt_helpers import (  # noqa: F401
    PAD,
    PAIRS,
    START,
    hf_model,
    joined_config,
    one_torch_thread,
    our_model,
    random_batch,
    random_state,
)

# transformers' own notices about its API (not about what is compared here)
pytestmark = [
    pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:Using the model-agnostic default `max_length`:UserWarning"),
]

# (pair, variant): every architecture pair plain, plus the projection and tied variants.
VARIANTS = [(pair, "plain") for pair in PAIRS] + [
    ("bert2bert", "proj"),
    ("bert2gpt2", "proj"),
    ("roberta2roberta", "proj"),
    ("bert2bert", "tie"),
    ("roberta2roberta", "tie"),
    ("bertgen2bertgen", "tie"),
]
SEEDS = (0, 1)
IDS = [f"{pair}-{variant}" for pair, variant in VARIANTS]

_built: dict = {}


def build(pair: str, variant: str, seed: int, **config_kwargs):
    key = (pair, variant, seed, tuple(sorted(config_kwargs.items())))
    if key not in _built:
        config = joined_config(pair, seed, proj=variant == "proj", tie=variant == "tie", **config_kwargs)
        state = random_state(config, seed)
        _built[key] = (config, hf_model(config, state), our_model(config, state))
    return _built[key]


def close(a, b, atol=1e-5):
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=0, atol=atol)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("pair,variant", VARIANTS, ids=IDS)
def test_forward_logits_hidden_states_and_loss(pair, variant, seed):
    config, hf, ours = build(pair, variant, seed)
    rng = np.random.default_rng(seed)
    for batch, padding in ((1, "none"), (3, "none"), (3, "right"), (4, "ragged")):
        b = random_batch(config, rng, batch, 9, 6, padding)
        with torch.no_grad():
            kwargs = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            expected = hf(**kwargs, decoder_input_ids=b["decoder_input_ids"], output_hidden_states=True)
            got = ours(**kwargs, decoder_input_ids=b["decoder_input_ids"], output_hidden_states=True)
            close(got.logits, expected.logits)
            close(got.encoder_last_hidden_state, expected.encoder_last_hidden_state)
            assert len(got.decoder_hidden_states) == len(expected.decoder_hidden_states)
            for mine, theirs in zip(got.decoder_hidden_states, expected.decoder_hidden_states):
                close(mine, theirs)
            for mine, theirs in zip(got.encoder_hidden_states, expected.encoder_hidden_states):
                close(mine, theirs)
            expected = hf(**kwargs, labels=b["labels"])
            got = ours(**kwargs, labels=b["labels"])
        assert abs(got.loss.item() - expected.loss.item()) <= 1e-6 * abs(expected.loss.item())
        close(got.logits, expected.logits)


SETTINGS = GENERATION_SETTINGS


def _generated_eos(ours, b) -> int:
    """A token the model generates at step 3 of the first row: a natural eos for the comparison."""
    ids = ours.generate(b["input_ids"], attention_mask=b["attention_mask"], max_length=6, eos_token_id=None)
    token = int(ids[0, 3])
    return token if token not in (PAD, START) else 3


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("pair,variant", VARIANTS, ids=IDS)
def test_generation_gives_the_same_ids(pair, variant, seed, setting):
    config, hf, ours = build(pair, variant, seed)
    b = random_batch(config, np.random.default_rng(seed + 10), 3, 8, 4, "ragged")
    eos = _generated_eos(ours, b)
    kwargs = {"eos_token_id": eos}
    kwargs.update({k: (eos if v == "eos" else v) for k, v in SETTINGS[setting].items()})
    expected = hf.generate(b["input_ids"], attention_mask=b["attention_mask"], **kwargs)
    got = ours.generate(b["input_ids"], attention_mask=b["attention_mask"], **kwargs)
    assert got.shape == expected.shape, (got, expected)
    assert torch.equal(got, expected), (got, expected)


def _assert_same_generate_output(got, expected, beams: bool) -> None:
    """The same ids, scores per step (the same -inf positions), and for beams sequence scores and beam indices."""
    assert torch.equal(got.sequences, expected.sequences), (got.sequences, expected.sequences)
    assert len(got.scores) == len(expected.scores)
    for mine, theirs in zip(got.scores, expected.scores):
        finite = torch.isfinite(theirs)
        assert torch.equal(finite, torch.isfinite(mine))
        close(mine[finite], theirs[finite])
    if beams:
        close(got.sequences_scores, expected.sequences_scores)
        assert torch.equal(got.beam_indices, expected.beam_indices.to(got.beam_indices.dtype))


# Decoder prompts: with the start token, without it (generate puts it in front), and with a pad
# inside (RoBERTa counts positions over non-pad tokens).
PROMPTS = {
    "with_start": [[START, 11, 12], [START, 13, 14], [START, 15, 16]],
    "without_start": [[21, 22], [23, 24], [25, 26]],
    "pad_inside": [[START, 31, 32], [START, PAD, 33], [START, 34, PAD]],
}
PROMPT_SETTINGS = {
    "greedy": dict(max_length=10),
    "greedy_new_tokens": dict(max_new_tokens=5, min_new_tokens=2),
    "beam3": dict(max_length=10, num_beams=3),
    "beam2_ret2_scores": dict(max_new_tokens=6, num_beams=2, num_return_sequences=2, output_scores=True,
                              return_dict_in_generate=True),
}


@pytest.mark.parametrize("pair", ["bert2bert", "bert2gpt2"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_sampling_draws_as_transformers_does(pair, num_beams):
    """With the same global torch seed, sampling consumes the generator exactly as transformers does."""
    config, hf, ours = build(pair, "plain", 1)
    b = random_batch(config, np.random.default_rng(5), 3, 8, 4, "ragged")
    kwargs = dict(max_length=9, do_sample=True, top_k=12, top_p=0.9, temperature=0.7, num_beams=num_beams,
                  eos_token_id=_generated_eos(ours, b))
    torch.manual_seed(1234)
    expected = hf.generate(b["input_ids"], attention_mask=b["attention_mask"], **kwargs)
    torch.manual_seed(1234)
    got = ours.generate(b["input_ids"], attention_mask=b["attention_mask"], **kwargs)
    assert torch.equal(got, expected)


def test_sampling_with_a_seed_is_reproducible():
    config, hf, ours = build("bert2bert", "plain", 0)
    b = random_batch(config, np.random.default_rng(6), 2, 8, 4, "none")
    kwargs = dict(max_length=12, do_sample=True, num_return_sequences=3, top_k=0, temperature=1.5)
    first = ours.generate(b["input_ids"], seed=7, **kwargs)
    assert torch.equal(first, ours.generate(b["input_ids"], seed=7, **kwargs))
    assert torch.equal(first, ours.generate(b["input_ids"], generator=torch.Generator().manual_seed(7), **kwargs))
    assert first.shape[0] == 6
    assert not torch.equal(first, ours.generate(b["input_ids"], seed=8, **kwargs))


def test_attention_weights_match_eager_attention():
    config, _, ours = build("bert2gpt2", "plain", 0)
    hf = hf_model(config, ours.canonical_state())
    hf.config.encoder._attn_implementation = "eager"
    hf.config.decoder._attn_implementation = "eager"
    hf.encoder.config._attn_implementation = "eager"
    hf.decoder.config._attn_implementation = "eager"
    b = random_batch(config, np.random.default_rng(7), 2, 7, 5, "right")
    kwargs = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=b["decoder_input_ids"],
                  output_attentions=True)
    with torch.no_grad():
        expected, got = hf(**kwargs), ours(**kwargs)
    for name in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        theirs, mine = getattr(expected, name), getattr(got, name)
        assert theirs is not None and len(mine) == len(theirs), name
        for a, e in zip(mine, theirs):
            close(a, e)
    close(got.logits, expected.logits)
