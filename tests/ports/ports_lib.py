"""What the shared port tests build on: tiny random configs and weights, batches, transformers'
PyTorch model holding the same weights (the independent reference), and the tolerance table."""

from __future__ import annotations

import importlib
import logging
import warnings

import numpy as np
import pytest

from encdec.config import (
    BertConfig,
    BertGenerationConfig,
    EncoderDecoderConfig,
    GPT2Config,
    RobertaConfig,
)
from encdec.weights.names import expand_tied, init_weights, model_spec


def _tolerances():
    for name in ("encdec.conformance.tolerances", "conformance.tolerances"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("the conformance tolerance table (encdec.conformance.tolerances) is missing")


tolerances = _tolerances()

# (encoder, decoder) architecture of each pair the tests cover.
PAIRS = {
    "bert2bert": ("bert", "bert"),
    "bert2gpt2": ("bert", "gpt2"),
    "roberta2roberta": ("roberta", "roberta"),
    "bertgen2bertgen": ("bert-generation", "bert-generation"),
    "roberta2gpt2": ("roberta", "gpt2"),
    "bert2roberta": ("bert", "roberta"),
}
# Every pair plain, plus a decoder of another width (enc_to_dec_proj) and encoder/decoder ties.
VARIANTS = [(pair, "plain") for pair in PAIRS] + [
    ("bert2bert", "proj"),
    ("bert2gpt2", "proj"),
    ("roberta2roberta", "proj"),
    ("bert2bert", "tie"),
    ("roberta2roberta", "tie"),
    ("bertgen2bertgen", "tie"),
]
VARIANT_IDS = [f"{pair}-{variant}" for pair, variant in VARIANTS]

# Special tokens of the tiny random models: pad, decoder start, eos.
PAD, START, EOS = 1, 2, 3
VOCAB = 61


def arch_config(model_type: str, rng: np.random.Generator, hidden: int | None = None, vocab: int = VOCAB):
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


def random_batch(config, rng: np.random.Generator, batch: int, src_len: int, tgt_len: int, padding: str) -> dict:
    """int64 input_ids/attention_mask with `padding` "none", "right" or "ragged", decoder ids and labels."""
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
    """transformers' PyTorch EncoderDecoderModel built from the same config dict, holding `state`
    (skips the test where torch or transformers is not installed)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    quiet_transformers()
    model = transformers.EncoderDecoderModel(config=transformers.EncoderDecoderConfig.from_dict(config.to_dict()))
    full = expand_tied(model_spec(config), state)
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in full.items()}, strict=False
    )
    # Only non-persistent buffers may be left to the model.
    assert not unexpected, unexpected
    assert all(k.endswith(("position_ids", "token_type_ids", ".attn.bias", ".masked_bias")) for k in missing), missing
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, pad_token_id=config.pad_token_id,
        eos_token_id=config.eos_token_id,
    )
    return model.eval()


def hf_run(model, method: str = "__call__", **arrays):
    """Call transformers' model with numpy arrays (as torch tensors), without autograd."""
    import torch

    kwargs = {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
              for k, v in arrays.items() if v is not None}
    with torch.no_grad():
        return getattr(model, method)(**kwargs)


def to_numpy(x) -> np.ndarray:
    """A torch tensor (transformers' outputs) as numpy."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def max_abs_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def assert_close(name: str, got, expected, real: bool = False) -> None:
    """fp32 activations (logits, hidden states, encoder output) within the tolerance table's bound."""
    bound = tolerances.FP32_ACTIVATION_REAL if real else tolerances.FP32_ACTIVATION_TINY
    diff = max_abs_diff(got, expected)
    assert diff <= bound, f"{name}: max abs diff {diff:.3g} > {bound}"


def assert_loss_close(name: str, got, expected) -> None:
    got, expected = float(got), float(expected)
    rel = abs(got - expected) / max(abs(got), abs(expected), 1e-30)
    assert rel <= tolerances.FP32_LOSS_REL, f"{name}: loss {got} vs {expected}: relative diff {rel:.3g}"


def assert_same_ids(name: str, got, expected) -> None:
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and np.array_equal(got, expected), (
        f"{name}: generated ids differ\ngot:\n{got}\nexpected:\n{expected}"
    )
