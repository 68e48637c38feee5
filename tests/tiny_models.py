"""Tiny random encoder-decoders for the tests of every port, and transformers' model holding the
same weights (the independent reference).

Importable from every test folder: pytest puts this folder on sys.path for its conftest.py. Only
numpy and encdec's core are imported at module level, so tests/core can use it too.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from encdec.config import (
    BertConfig,
    BertGenerationConfig,
    EncoderDecoderConfig,
    GPT2Config,
    RobertaConfig,
)
from encdec.weights.names import expand_tied, init_weights, model_spec

# (encoder, decoder) architecture of each pair the tests cover.
PAIRS = {
    "bert2bert": ("bert", "bert"),
    "bert2gpt2": ("bert", "gpt2"),
    "roberta2roberta": ("roberta", "roberta"),
    "bertgen2bertgen": ("bert-generation", "bert-generation"),
    "roberta2gpt2": ("roberta", "gpt2"),
    "bert2roberta": ("bert", "roberta"),
}

# Special tokens of the tiny random models: pad, decoder start, eos.
PAD, START, EOS = 1, 2, 3
VOCAB = 61

# transformers leaves these buffers to the model; a state never holds them.
_BUFFERS = ("position_ids", "token_type_ids", ".attn.bias", ".masked_bias")


def arch_config(model_type: str, rng: np.random.Generator, hidden: int | None = None, vocab: int = VOCAB,
                init_range: float = 0.25, **overrides):
    """A tiny random config of `model_type`; `overrides` are set on it after construction."""
    heads = int(rng.choice([2, 4]))
    hidden = hidden or heads * int(rng.choice([4, 8]))
    layers = int(rng.choice([1, 2]))
    common = dict(vocab_size=vocab, initializer_range=init_range, pad_token_id=PAD)
    if model_type == "gpt2":
        cfg = GPT2Config(
            n_embd=hidden, n_head=heads, n_layer=layers, n_positions=40, n_inner=int(rng.choice([0, 24])) or None,
            bos_token_id=START, eos_token_id=EOS, **common,
        )
    else:
        cls = {"bert": BertConfig, "roberta": RobertaConfig, "bert-generation": BertGenerationConfig}[model_type]
        extra = {} if model_type == "bert-generation" else {"type_vocab_size": 2}
        cfg = cls(
            hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=layers,
            intermediate_size=int(rng.choice([20, 37])), max_position_embeddings=44,
            hidden_act=str(rng.choice(["gelu", "gelu_new", "relu"])), **extra, **common,
        )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def joined_config(pair: str, seed: int, variant: str = "plain", init_range: float = 0.25,
                  **kwargs) -> EncoderDecoderConfig:
    """A tiny random encoder-decoder; variant "proj" gives the decoder another width, "tie" shares the weights."""
    rng = np.random.default_rng(seed)
    enc_type, dec_type = PAIRS[pair]
    encoder = arch_config(enc_type, rng, init_range=init_range)
    if variant == "tie":
        decoder = encoder.copy()
    elif variant == "proj":
        hidden = encoder.hidden_size + 2 * encoder.num_attention_heads
        decoder = arch_config(dec_type, rng, hidden=hidden, init_range=init_range)
    elif variant == "plain":
        decoder = arch_config(dec_type, rng, init_range=init_range)
    else:
        raise ValueError(f"unknown variant {variant!r}; expected 'plain', 'proj' or 'tie'")
    tokens = dict(
        pad_token_id=PAD, decoder_start_token_id=START, eos_token_id=EOS, tie_encoder_decoder=variant == "tie"
    )
    tokens.update(kwargs)
    return EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder, **tokens)


def random_state(config: EncoderDecoderConfig, seed: int = 0) -> dict:
    """init_weights, with biases and LayerNorm parameters perturbed so that a swapped or dropped one shows."""
    state = init_weights(config, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for p in model_spec(config):
        if p.kind in ("bias", "conv1d_bias", "norm_bias", "norm_weight"):
            state[p.name] = state[p.name] + rng.normal(0, 0.2, p.shape).astype(np.float32)
    return state


def random_batch(config, rng: np.random.Generator, batch: int, src_len: int, tgt_len: int, padding: str) -> dict:
    """int64 numpy input_ids/attention_mask with `padding` "none", "right" or "ragged", decoder ids and labels."""
    enc_vocab, dec_vocab = config.encoder.vocab_size, config.decoder.vocab_size
    ids = rng.integers(4, enc_vocab, (batch, src_len))
    mask = np.ones((batch, src_len), dtype=np.int64)
    if padding != "none":
        for row in range(1, batch):
            keep = int(rng.integers(2, src_len)) if padding == "ragged" else src_len - row
            mask[row, max(keep, 1):] = 0
    ids = np.where(mask == 1, ids, PAD)
    labels = rng.integers(4, dec_vocab, (batch, tgt_len))
    for row in range(batch):
        if rng.random() < 0.5:
            labels[row, int(rng.integers(2, tgt_len)):] = -100
    decoder_ids = np.concatenate([np.full((batch, 1), START), np.where(labels == -100, PAD, labels)[:, :-1]], axis=1)
    return dict(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids, labels=labels)


def quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def hf_model(config: EncoderDecoderConfig, state: dict):
    """transformers' PyTorch EncoderDecoderModel built from the same config dict, holding `state`, with a
    generation config of the tiny models' special tokens."""
    import torch
    import transformers

    quiet_transformers()
    model = transformers.EncoderDecoderModel(config=transformers.EncoderDecoderConfig.from_dict(config.to_dict()))
    full = expand_tied(model_spec(config), state)
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in full.items()}, strict=False
    )
    # Only non-persistent buffers may be left to the model.
    assert not unexpected, unexpected
    assert all(k.endswith(_BUFFERS) for k in missing), missing
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, pad_token_id=config.pad_token_id,
        eos_token_id=config.eos_token_id,
    )
    return model.eval()


# Generation settings the port tests compare with transformers; "eos" is replaced by a token the
# model really generates, so that some rows and beams finish early and others do not.
GENERATION_SETTINGS = {
    "greedy": dict(max_length=10),
    "greedy_default_length": dict(),
    "greedy_new_tokens": dict(max_new_tokens=6, min_new_tokens=3),
    "greedy_min_length_repetition": dict(max_length=9, min_length=6, repetition_penalty=1.4),
    "greedy_ngram_bad_words": dict(max_length=12, no_repeat_ngram_size=2, bad_words_ids=[[5], [7, 8], [9, 10, 11]]),
    "greedy_forced_eos": dict(max_length=7, forced_eos_token_id="eos"),
    "beam2_early": dict(max_length=10, num_beams=2, early_stopping=True),
    "beam3": dict(max_length=10, num_beams=3),
    "beam4_never_ret3": dict(max_length=11, num_beams=4, num_return_sequences=3, length_penalty=0.5,
                             early_stopping="never"),
    "beam5_lp2_ret2": dict(max_length=9, num_beams=5, num_return_sequences=2, length_penalty=2.0),
    "beam3_negative_lp_never": dict(max_length=10, num_beams=3, length_penalty=-1.0, early_stopping="never"),
    "beam3_ngram_repetition": dict(max_length=10, num_beams=3, no_repeat_ngram_size=2, repetition_penalty=1.3),
    "beam2_min_length": dict(max_length=9, num_beams=2, min_length=6),
    "beam4_forced_bos_eos": dict(max_length=8, num_beams=4, forced_bos_token_id=9, forced_eos_token_id="eos"),
    "beam3_no_eos": dict(max_length=8, num_beams=3, eos_token_id=None),
    # transformers fills beam outputs with `pad or eos`: a pad id of 0 is taken as unset
    "beam3_ret3_pad0": dict(max_length=10, num_beams=3, num_return_sequences=3, pad_token_id=0),
    "greedy_pad0": dict(max_length=10, pad_token_id=0),
}


def generation_settings(*left_out: str) -> dict:
    return {name: options for name, options in GENERATION_SETTINGS.items() if name not in left_out}
