"""Shared helpers of the TensorFlow tests: tiny random configs, and the references holding the same weights.

The references are transformers 5's PyTorch EncoderDecoderModel (built from the same
config dict, run in the test) and encdec's PyTorch port. Both get exactly the numpy
weights the TF model gets.
"""

from __future__ import annotations

import logging
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

try:
    # Few threads: the machine is shared, and the tiny models gain nothing from more.
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:  # TensorFlow already ran an op in this process
    pass

from encdec.config import (  # noqa: E402
    BertConfig,
    BertGenerationConfig,
    EncoderDecoderConfig,
    GenerationConfig,
    GPT2Config,
    RobertaConfig,
)
from encdec.tf import TFEncoderDecoderModel  # noqa: E402
from encdec.weights.names import expand_tied, init_weights, model_spec  # noqa: E402

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


def arch_config(model_type: str, rng: np.random.Generator, hidden: int | None = None, vocab: int = 61):
    heads = int(rng.choice([2, 4]))
    hidden = hidden or heads * int(rng.choice([4, 8]))
    layers = int(rng.choice([1, 2]))
    common = dict(vocab_size=vocab, initializer_range=0.25, pad_token_id=PAD)
    if model_type == "gpt2":
        return GPT2Config(
            n_embd=hidden, n_head=heads, n_layer=layers, n_positions=40, n_inner=int(rng.choice([0, 24])) or None,
            bos_token_id=START, eos_token_id=EOS, **common,
        )
    cls = {"bert": BertConfig, "roberta": RobertaConfig, "bert-generation": BertGenerationConfig}[model_type]
    extra = {} if model_type == "bert-generation" else {"type_vocab_size": 2}
    return cls(
        hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=layers,
        intermediate_size=int(rng.choice([20, 37])), max_position_embeddings=44,
        hidden_act=str(rng.choice(["gelu", "gelu_new", "relu"])), **extra, **common,
    )


def joined_config(pair: str, seed: int, variant: str = "plain", **kwargs) -> EncoderDecoderConfig:
    """A tiny random encoder-decoder; variant "proj" gives the decoder another width, "tie" shares the weights."""
    rng = np.random.default_rng(seed)
    enc_type, dec_type = PAIRS[pair]
    encoder = arch_config(enc_type, rng)
    if variant == "tie":
        decoder = encoder.copy()
    elif variant == "proj":
        decoder = arch_config(dec_type, rng, hidden=encoder.hidden_size + 2 * encoder.num_attention_heads)
    else:
        decoder = arch_config(dec_type, rng)
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


def quiet_transformers():
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def hf_model(config: EncoderDecoderConfig, state: dict):
    """transformers' PyTorch EncoderDecoderModel built from the same config dict, holding `state`."""
    import transformers

    quiet_transformers()
    model = transformers.EncoderDecoderModel(config=transformers.EncoderDecoderConfig.from_dict(config.to_dict()))
    full = expand_tied(model_spec(config), state)
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in full.items()}, strict=False
    )
    assert not unexpected and not missing, (missing, unexpected)
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, pad_token_id=config.pad_token_id,
        eos_token_id=config.eos_token_id,
    )
    return model.eval()


def pt_port_model(config: EncoderDecoderConfig, state: dict):
    """encdec's own PyTorch port holding `state`."""
    from encdec.pt import EncoderDecoderModel

    model = EncoderDecoderModel.from_state(config, state)
    model.generation_config = GenerationConfig.from_model_config(config)
    return model.eval()


def tf_model(config: EncoderDecoderConfig, state: dict) -> TFEncoderDecoderModel:
    return TFEncoderDecoderModel.from_state(config, state)


def random_batch(config, rng: np.random.Generator, batch: int, src_len: int, tgt_len: int, padding: str) -> dict:
    """numpy input_ids/attention_mask with `padding` "none", "right" or "ragged", decoder ids and labels."""
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


def torch_batch(batch: dict) -> dict:
    return {k: torch.from_numpy(np.ascontiguousarray(v)).long() for k, v in batch.items()}


def numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    if isinstance(x, tf.Tensor):
        return x.numpy()
    return np.asarray(x)


def close(got, expected, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(numpy(got), numpy(expected), rtol=0, atol=atol)
