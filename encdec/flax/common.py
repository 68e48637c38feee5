"""Pieces every Flax module shares: activations, masks, softmax, outputs, input checks.

The mask convention of all three ports: an additive bias, 0 where a key is
attended and the computation dtype's minimum where it is masked, added to the
scores; softmax runs in float32 whatever the computation dtype.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ..errors import InputError


def _gelu(x):
    # transformers' "gelu" is the exact erf form.
    return jax.nn.gelu(x, approximate=False)


def _gelu_new(x):
    # The tanh approximation GPT-2 uses ("gelu_new", "gelu_pytorch_tanh").
    return 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * jnp.power(x, 3.0))))


def _gelu_fast(x):
    return 0.5 * x * (1.0 + jnp.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


ACT2FN = {
    "gelu": _gelu,
    "relu": jax.nn.relu,
    "gelu_new": _gelu_new,
    "gelu_pytorch_tanh": _gelu_new,
    "gelu_fast": _gelu_fast,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


def attention_bias(mask, dtype=jnp.float32):
    """`[B, S]` mask (1 = attend) -> `[B, 1, 1, S]` additive bias in float32.

    The masked value is `dtype`'s minimum (the computation dtype), held in float32
    because the scores are added to it in float32.
    """
    mask = jnp.asarray(mask)
    return jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(dtype).min).astype(jnp.float32)


def causal_bias(query_length, key_length, offset=0, mask=None, dtype=jnp.float32):
    """The decoder's self-attention bias, `[B or 1, 1, T, K]` in float32.

    Query i sits at position `offset + i` of the key axis and attends keys
    `j <= offset + i` whose `mask[:, j]` is set. `offset` is the number of cached
    tokens (a traced scalar while generating); `mask` is `[B, K]` or None.
    Causality and padding are combined before turning into a bias, so a key that is
    both in the future and padded gets the minimum once, never twice.
    """
    query_pos = offset + jnp.arange(query_length)[:, None]  # [T, 1]
    allowed = jnp.arange(key_length)[None, :] <= query_pos  # [T, K]
    allowed = allowed[None, None]  # [1, 1, T, K]
    if mask is not None:
        allowed = allowed & (jnp.asarray(mask)[:, None, None, :] > 0)
    return jnp.where(allowed, 0.0, jnp.finfo(dtype).min).astype(jnp.float32)


def _heads_first(x):
    """`[B, S, H, D]` keys or values -> `[B, H, S, D]`, the layout attention and the cache keep them in."""
    return jnp.transpose(x, (0, 2, 1, 3))


def softmax_float32(scores, bias=None, dtype=None):
    """softmax(scores + bias) over the last axis, computed in float32, returned in `dtype`."""
    out_dtype = scores.dtype if dtype is None else dtype
    scores = scores.astype(jnp.float32)
    if bias is not None:
        scores = scores + bias
    return jax.nn.softmax(scores, axis=-1).astype(out_dtype)


@struct.dataclass
class BaseModelOutput:
    """A body's outputs (a pytree, so it passes through `jax.jit`); decoders fill the cache and cross-attention fields."""

    last_hidden_state: Any = None
    pooler_output: Optional[Any] = None
    past_key_values: Optional[dict] = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None
    cross_attentions: Optional[tuple] = None


@struct.dataclass
class CausalLMOutput:
    """A decoder's outputs; `past_key_values` is the fixed-size cache after this call."""

    loss: Optional[Any] = None
    logits: Any = None
    past_key_values: Optional[dict] = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None
    cross_attentions: Optional[tuple] = None


@struct.dataclass
class Seq2SeqLMOutput:
    """The encoder-decoder's outputs, with transformers' field names."""

    loss: Optional[Any] = None
    logits: Any = None
    past_key_values: Optional[dict] = None
    decoder_hidden_states: Optional[tuple] = None
    decoder_attentions: Optional[tuple] = None
    cross_attentions: Optional[tuple] = None
    encoder_last_hidden_state: Any = None
    encoder_hidden_states: Optional[tuple] = None
    encoder_attentions: Optional[tuple] = None

    @property
    def cache(self):
        """transformers 5 names `past_key_values` `cache`."""
        return self.past_key_values


def _is_concrete(x) -> bool:
    return x is not None and not isinstance(x, jax.core.Tracer)


def _concrete_int(x) -> Optional[int]:
    """`x` as a Python int when it can be read on the host (not traced), else None."""
    if isinstance(x, (int, np.integer)):
        return int(x)
    if _is_concrete(x) and np.ndim(x) == 0:
        return int(x)
    return None


def check_input_ids(ids, vocab_size, max_positions=None, name="input_ids"):
    """Raise InputError for ids outside `[0, vocab_size)` or a sequence longer than `max_positions`.

    JAX fills out-of-range gathers with NaN (or clamps them) without a word, so the
    check runs on the host before any work. Traced ids (inside a user's `jax.jit`)
    cannot be read and are let through; the shape check still runs.
    """
    if ids is None:
        return
    shape = tuple(np.shape(ids))
    if len(shape) != 2:
        raise InputError(f"{name} has shape {shape}; expected [batch, sequence] (2 dimensions)")
    if max_positions is not None and shape[1] > max_positions:
        raise InputError(
            f"{name} has length {shape[1]}; the model has {max_positions} positions, "
            f"expected a length <= {max_positions}"
        )
    if not _is_concrete(ids) or shape[0] * shape[1] == 0:
        return
    values = np.asarray(ids)
    if not np.issubdtype(values.dtype, np.integer):
        raise InputError(f"{name} has dtype {values.dtype}; expected integer token ids")
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise InputError(f"{name} holds id {bad}; expected ids in [0, {vocab_size}) (the vocabulary size is {vocab_size})")
