"""Shared helpers of the PyTorch tests: tiny random configs, and transformers' model holding the same weights."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

from encdec.config import (
    BertConfig,
    BertGenerationConfig,
    EncoderDecoderConfig,
    GenerationConfig,
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

# Special tokens of the tiny models: pad, decoder start, eos.
PAD, START, EOS = 1, 2, 3


def arch_config(model_type: str, rng: np.random.Generator, hidden: int | None = None, vocab: int = 61, **overrides):
    heads = int(rng.choice([2, 4]))
    hidden = hidden or heads * int(rng.choice([4, 8]))
    layers = int(rng.choice([1, 2]))
    common = dict(vocab_size=vocab, initializer_range=0.4, pad_token_id=PAD)
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


def joined_config(pair: str, seed: int, proj: bool = False, tie: bool = False, **kwargs) -> EncoderDecoderConfig:
    rng = np.random.default_rng(seed)
    enc_type, dec_type = PAIRS[pair]
    encoder = arch_config(enc_type, rng)
    hidden = encoder.hidden_size
    if proj:
        hidden = hidden + encoder.num_attention_heads * 2  # a different width: enc_to_dec_proj
    decoder = arch_config(dec_type, rng, hidden=hidden if (proj or tie) else None)
    if tie:
        decoder = arch_config(dec_type, np.random.default_rng(seed), hidden=hidden)
        for key in ("num_attention_heads", "num_hidden_layers", "intermediate_size", "hidden_act"):
            if key in decoder._values or key in type(decoder).aliases:
                setattr(decoder, key, getattr(encoder, key))
    tokens = dict(pad_token_id=PAD, decoder_start_token_id=START, eos_token_id=EOS, tie_encoder_decoder=tie)
    tokens.update(kwargs)
    return EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder, **tokens)


def random_state(config: EncoderDecoderConfig, seed: int = 0) -> dict:
    """init_weights, with biases and LayerNorm parameters perturbed so that a swapped or dropped one shows."""
    state = init_weights(config, seed=seed)
    rng = np.random.default_rng(seed + 1)
    spec = model_spec(config)
    for p in spec:
        if p.kind in ("bias", "conv1d_bias", "norm_bias"):
            state[p.name] = state[p.name] + rng.normal(0, 0.2, p.shape).astype(np.float32)
        elif p.kind == "norm_weight":
            state[p.name] = state[p.name] + rng.normal(0, 0.2, p.shape).astype(np.float32)
    return state


def hf_model(config: EncoderDecoderConfig, state: dict):
    """transformers' EncoderDecoderModel built from the same config dict, holding `state`."""
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    hf_config = transformers.EncoderDecoderConfig.from_dict(config.to_dict())
    model = transformers.EncoderDecoderModel(config=hf_config)
    full = expand_tied(model_spec(config), state)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in full.items()},
                                                strict=False)
    assert not unexpected, unexpected
    assert not missing, missing
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, pad_token_id=config.pad_token_id,
        eos_token_id=config.eos_token_id,
    )
    return model.eval()


def our_model(config: EncoderDecoderConfig, state: dict):
    from encdec.pt import EncoderDecoderModel

    model = EncoderDecoderModel(config=config)
    model.load_canonical_state(state)
    model.generation_config = GenerationConfig.from_model_config(config)
    return model.eval()


def random_batch(config, rng: np.random.Generator, batch: int, src_len: int, tgt_len: int, padding: str):
    """input_ids/attention_mask with `padding` "none", "right" or "ragged", decoder ids and labels."""
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
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).long()
    return dict(input_ids=t(ids), attention_mask=t(mask), decoder_input_ids=t(decoder_ids), labels=t(labels))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread, and the 2-core machine is shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def quiet_transformers():
    """transformers' warnings and progress bars off (they are about transformers, not what is tested)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
