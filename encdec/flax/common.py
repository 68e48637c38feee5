"""Pieces every Flax module shares: activations, masks, softmax, outputs, input checks, the steps every
body takes before and after its layers, and the half every decoder with an LM head shares.

The mask convention of all three ports: an additive bias, 0 where a key is
attended and the computation dtype's minimum where it is masked, added to the
scores; softmax runs in float32 whatever the computation dtype.
"""

from __future__ import annotations

import math
from operator import attrgetter
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import inputs
from ..config import ArchConfig
from ..errors import ConfigError, InputError
from ..outputs import BaseModelOutput, CausalLMOutput, Seq2SeqLMOutput, field_names
from .pretrained import FlaxPreTrainedModel


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


def _attend(query, key, value, bias, scale, dropout, deterministic):
    """`[B, Q, H, D]` queries over `[B, H, K, D]` keys/values -> (`[B, Q, H*D]`, probabilities `[B, H, Q, K]`)."""
    scores = jnp.einsum("bqhd,bhkd->bhqk", query, key.astype(query.dtype)) * scale
    probs = softmax_float32(scores, bias, dtype=query.dtype)
    probs = dropout(probs, deterministic=deterministic)
    context = jnp.einsum("bhqk,bhkd->bqhd", probs, value.astype(probs.dtype))
    if bias is not None and bias.shape[-2] != 1:
        # A query that may attend no key (a leading pad of the decoder) gets a zero output, as
        # transformers' SDPA path gives it; the additive bias alone would average every value.
        # The bias is float32 holding the computation dtype's minimum where masked (see causal_bias).
        alive = jnp.max(bias, axis=-1) > jnp.finfo(query.dtype).min  # [B, 1, Q]
        context = jnp.where(jnp.transpose(alive, (0, 2, 1))[..., None], context, jnp.zeros((), context.dtype))
    return context.reshape(context.shape[:2] + (-1,)), probs


def _fold_beams_attend(query, key, value, bias, scale, dropout, deterministic):
    """Cross-attention of `[B * n, Q, H, D]` queries over keys/values kept once per batch item
    `[B, H, S, D]` -> (`[B * n, Q, H*D]`, probabilities `[B * n, H, Q, S]`).

    While beam searching every row (beam) of a batch item attends the same encoder states; rows
    `b * n .. b * n + n - 1` of item b get a beam axis instead of the keys being copied n times.
    Each row's result is unchanged (rows are independent). `bias` is per item, `[B, 1, 1, S]`.
    """
    rows, length, heads, dim = query.shape
    batch = key.shape[0]
    folded = query.reshape(batch, rows // batch, length, heads, dim)  # [B, n, Q, H, D]
    scores = jnp.einsum("bnqhd,bhkd->bhnqk", folded, key.astype(query.dtype)) * scale  # [B, H, n, Q, S]
    bias = None if bias is None else bias[:, :, None]  # [B, 1, 1, S] -> [B, 1, 1, 1, S]
    probs = softmax_float32(scores, bias, dtype=query.dtype)
    probs = dropout(probs, deterministic=deterministic)
    context = jnp.einsum("bhnqk,bhkd->bnqhd", probs, value.astype(probs.dtype))  # [B, n, Q, H, D]
    probs = jnp.transpose(probs, (0, 2, 1, 3, 4)).reshape(rows, heads, length, -1)  # [B * n, H, Q, S]
    return context.reshape(rows, length, heads * dim), probs


def _attend_heads(module, query, key, value, bias, scale, dropout, deterministic):
    """An attention module's `[B, Q, H, D]` queries over its keys/values -> (`[B, Q, H*D]`, probabilities):
    cross-attention over keys kept once per batch item for several query rows (beams) is attended folded
    (`_fold_beams_attend`), everything else by `_attend`."""
    if module.is_cross_attention and key.shape[0] != query.shape[0]:
        return _fold_beams_attend(query, key, value, bias, scale, dropout, deterministic)
    return _attend(query, key, value, bias, scale, dropout, deterministic)


def _write_self_cache(kv_cache, key, value, cache_index):
    """The self-attention keys/values `[B, H, T, D]` of T new tokens written into the layer's fixed-size
    cache `(key, value)` `[B, H, L, D]` at `cache_index` -> the cache's keys/values, all L positions."""
    start = (0, 0, cache_index, 0)
    key = lax.dynamic_update_slice(kv_cache[0], key.astype(kv_cache[0].dtype), start)
    value = lax.dynamic_update_slice(kv_cache[1], value.astype(kv_cache[1].dtype), start)
    return key, value


def _split_layer_cache(layer_cache: Optional[dict]):
    """A layer's cache entry, or None -> (self-attention `(key, value)`, cross-attention `(key, value)`),
    both None without a cache."""
    if layer_cache is None:
        return None, None
    return (layer_cache["key"], layer_cache["value"]), (layer_cache["cross_key"], layer_cache["cross_value"])


def _updated_layer_cache(layer_cache: Optional[dict], self_kv) -> Optional[dict]:
    """A layer's cache entry with the self-attention keys/values `self_kv` its call wrote (None without a cache)."""
    return None if layer_cache is None else dict(layer_cache, key=self_kv[0], value=self_kv[1])


def _attends_encoder(encoder_hidden_states, layer_cache: Optional[dict], has_cross_attention: bool = True) -> bool:
    """Whether a layer attends the encoder in this call: its states are given, or their keys/values are in
    `layer_cache` (the layer's cache entry). ConfigError when it does but the layer has no cross-attention."""
    attends = encoder_hidden_states is not None or _split_layer_cache(layer_cache)[1] is not None
    return inputs.check_cross_attention(attends, has_cross_attention)


def _reorder_cache(cache: dict, rows) -> dict:
    """The cache of the self-attention rows `rows` `[N]`. Cross keys/values and the encoder mask
    follow the rows when they have as many rows as the self-attention keys; kept per batch item
    otherwise (then `rows` must stay within each row's batch item, as beam search's do)."""
    first = cache["layers"][0]
    follow = first["cross_key"].shape[0] == first["key"].shape[0]
    names = ("key", "value", "cross_key", "cross_value") if follow else ("key", "value")
    layers = tuple(dict(layer, **{name: layer[name][rows] for name in names}) for layer in cache["layers"])
    mask = cache["encoder_attention_mask"]
    if follow and mask is not None:
        mask = mask[rows]
    return dict(cache, encoder_attention_mask=mask, layers=layers)


class _GradientCheckpointing:
    """transformers' gradient checkpointing switches for a Linen model with a `gradient_checkpointing`
    field: its layer stacks wrap each layer in `nn.remat`, so backward recomputes what the layer
    computed instead of keeping it. Linen modules are immutable: the switches return the model
    with the field set (same parameters), as transformers' Flax classes rebuilt their module."""

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[dict] = None):
        if gradient_checkpointing_kwargs:
            raise ConfigError(
                f"gradient_checkpointing_kwargs {gradient_checkpointing_kwargs!r} given to a Flax model; "
                "expected None (the layers are wrapped in nn.remat with its defaults)"
            )
        return self.clone(gradient_checkpointing=True)

    def gradient_checkpointing_disable(self):
        return self.clone(gradient_checkpointing=False)

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.gradient_checkpointing


class _LayerCollection(nn.Module):
    """A stack's layers, named "0", "1", ... under the stack's attribute, as in transformers' Flax params:
    `layer_class`, as many as the config field `num_layers_field` says.

    With `gradient_checkpointing` each layer is wrapped in `nn.remat`; its flags `output_attentions`
    and `deterministic` (arguments 7 and 8, counting self) stay Python values.
    """

    config: ArchConfig
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    layer_class = None  # the architecture's layer module
    num_layers_field = ""  # the config field of the number of layers

    def setup(self):
        layer_class = self.layer_class
        if self.gradient_checkpointing:
            layer_class = nn.remat(layer_class, static_argnums=(7, 8))
        n = getattr(self.config, self.num_layers_field)
        self.layers = [layer_class(self.config, self.dtype, layer_idx=i, name=str(i)) for i in range(n)]


def _run_layers(layers, hidden_states, attention_bias, encoder_hidden_states, encoder_bias, cache, cache_index,
                output_attentions, output_hidden_states, deterministic):
    """Run BERT layers or GPT-2 blocks in turn -> (hidden `[B, T, H]`, all hidden states (the input
    and each layer's output), self-attention probs, cross-attention probs, new cache layers).

    Arguments go to the layers by position, as `nn.remat`'s static arguments must.
    """
    all_hidden = (hidden_states,) if output_hidden_states else None
    all_self = () if output_attentions else None
    has_cross = _attends_encoder(encoder_hidden_states, None if cache is None else cache["layers"][0])
    all_cross = () if output_attentions and has_cross else None
    new_layers = []
    for i, layer in enumerate(layers):
        hidden_states, self_probs, cross_probs, new_layer_cache = layer(
            hidden_states, attention_bias, encoder_hidden_states, encoder_bias,
            None if cache is None else cache["layers"][i], cache_index, output_attentions, deterministic,
        )
        new_layers.append(new_layer_cache)
        if output_hidden_states:
            all_hidden += (hidden_states,)
        if output_attentions:
            all_self += (self_probs,)
            if all_cross is not None:
                all_cross += (cross_probs,)
    return hidden_states, all_hidden, all_self, all_cross, tuple(new_layers)


def _register_pytree(cls):
    """Registers an output class (`encdec.outputs`) as a JAX pytree whose leaves are its fields, as
    flax.struct.dataclass made transformers' Flax outputs, so it passes through `jax.jit`; returns it."""
    return jax.tree_util.register_dataclass(cls, data_fields=list(field_names(cls)), meta_fields=[])


_register_pytree(BaseModelOutput)
_register_pytree(CausalLMOutput)
_register_pytree(Seq2SeqLMOutput)


def _cross_entropy(logits, labels):
    """Mean cross-entropy over the labels that are not -100, in float32 (NaN when none counts)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    keep = labels != -100
    picked = jnp.take_along_axis(log_probs, jnp.where(keep, labels, 0)[..., None], axis=-1)[..., 0]
    return -jnp.sum(jnp.where(keep, picked, 0.0)) / jnp.sum(keep)


def _causal_lm_loss(logits, labels):
    """Next-token cross-entropy: position t predicts label t + 1; -100 is ignored."""
    shifted = jnp.concatenate([labels[:, 1:], jnp.full_like(labels[:, :1], -100)], axis=1)  # [B, T]
    return _cross_entropy(logits, shifted)


def _causal_lm_output(model, base_output, labels):
    """A decoder's output from its base model's: logits, the loss when `labels` are given,
    and the base outputs."""
    logits = model.compute_logits(base_output.last_hidden_state)
    return CausalLMOutput(
        loss=None if labels is None else _causal_lm_loss(logits, labels),
        logits=logits,
        past_key_values=base_output.past_key_values,
        hidden_states=base_output.hidden_states,
        attentions=base_output.attentions,
        cross_attentions=base_output.cross_attentions,
    )


class _CausalLM(FlaxPreTrainedModel, _GradientCheckpointing, nn.Module):
    """What every decoder with an LM head shares: its body under `base_model_prefix`, its projection to
    the vocabulary at the attribute path `output_embeddings_path` (the word embeddings when tied), and
    transformers' call, which runs the body and then `compute_logits`."""

    config: ArchConfig
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    output_embeddings_path = "lm_head"

    @property
    def base_model(self):
        return getattr(self, self.base_model_prefix)

    def get_input_embeddings(self):
        return self.base_model.get_input_embeddings()

    def get_output_embeddings(self):
        """The module that projects to the vocabulary: the word embeddings when tied."""
        if self.config.tie_word_embeddings:
            return self.get_input_embeddings()
        return attrgetter(self.output_embeddings_path)(self)

    def _shared_embedding(self):
        return self.get_input_embeddings().embedding if self.config.tie_word_embeddings else None

    def _cross_key_values(self, encoder_hidden_states):
        return self.base_model._cross_key_values(encoder_hidden_states)

    def compute_logits(self, hidden_states):
        """The LM head: `[..., H]` -> `[..., V]`; the projection alone unless a head has more."""
        shared_embedding = self._shared_embedding()
        if shared_embedding is not None:
            # Contract the hidden axes of both: no transposed copy of the [V, H] table is made.
            return jnp.einsum("...h,vh->...v", hidden_states, shared_embedding.astype(self.dtype))
        return self.get_output_embeddings()(hidden_states)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        output_attentions=False,
        output_hidden_states=False,
        labels=None,
        deterministic=True,
    ):
        out = self.base_model(
            input_ids, attention_mask, token_type_ids, position_ids, encoder_hidden_states, encoder_attention_mask,
            past_key_values=past_key_values, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, deterministic=deterministic,
        )
        return _causal_lm_output(self, out, labels)


def _is_concrete(x) -> bool:
    return x is not None and not isinstance(x, jax.core.Tracer)


def _concrete_int(x) -> Optional[int]:
    """`x` as a Python int when it can be read on the host (not traced), else None."""
    if isinstance(x, (int, np.integer)):
        return int(x)
    if _is_concrete(x) and np.ndim(x) == 0:
        return int(x)
    return None


def _fact(x):
    """What the core's input checks (`encdec.inputs`) read: the array, or its shape and dtype when
    traced (inside a jit, where values cannot be read)."""
    return inputs.Traced(x.shape, x.dtype) if isinstance(x, jax.core.Tracer) else x


def check_input_ids(ids, vocab_size, max_positions=None, name="input_ids"):
    """Raise InputError for ids that are not `[B >= 1, T >= 1]` integers in `[0, vocab_size)`, or a
    sequence longer than `max_positions` (`encdec.inputs.check_ids`).

    JAX fills out-of-range gathers with NaN (or clamps them) without a word, so the
    check runs on the host before any work. Traced ids (inside a user's `jax.jit`)
    cannot be read: their shape and dtype are checked.
    """
    inputs.check_ids(_fact(ids), vocab_size, name, max_positions=max_positions)


def _check_stack_inputs(config, input_ids, attention_mask, token_type_ids, position_ids, past_length, cache_length):
    """A body's inputs (`encdec.inputs.check_stack_inputs`) after `past_length` cached tokens of a
    cache of `cache_length` positions (None without a cache; its mask then spans the whole cache)."""
    if position_ids is None and cache_length is not None and cache_length > config.max_positions:
        raise InputError(
            f"the cache holds {cache_length} positions; the position table of {config.model_type} covers "
            f"{config.max_positions} tokens, expected a cache of at most {config.max_positions}"
        )
    past = _concrete_int(past_length)
    inputs.check_stack_inputs(
        config, _fact(input_ids), _fact(attention_mask), _fact(token_type_ids), _fact(position_ids),
        past_length=0 if past is None else past, mask_length=cache_length,
    )


def _open_stack(config, cache, input_ids, attention_mask, token_type_ids, position_ids):
    """What a body's call does before it embeds, over `cache` (the fixed-size cache, or None) -> (past
    length, keys attended: the cache's positions, or the input's length without a cache).

    The inputs are checked: shapes and dtypes always, id ranges when the arrays are concrete (not traced).
    """
    past_length = 0 if cache is None else cache["index"]
    cache_length = None if cache is None else cache["layers"][0]["key"].shape[2]
    _check_stack_inputs(config, input_ids, attention_mask, token_type_ids, position_ids, past_length, cache_length)
    return past_length, input_ids.shape[1] if cache_length is None else cache_length


def _encoder_bias(encoder_attention_mask, dtype):
    """The cross-attention bias `[B, 1, 1, S]` of a `[B, S]` encoder mask, or None."""
    return None if encoder_attention_mask is None else attention_bias(encoder_attention_mask, dtype)


def _close_cache(cache, length: int, new_layers) -> Optional[dict]:
    """The cache after a call over `length` new tokens: index advanced, the layers' new entries (None
    without a cache)."""
    return None if cache is None else dict(cache, index=cache["index"] + length, layers=new_layers)


def _stack_output(hidden, all_hidden, all_self, all_cross, past_key_values, pooler_output=None):
    """A body's outputs."""
    return BaseModelOutput(
        last_hidden_state=hidden,
        pooler_output=pooler_output,
        past_key_values=past_key_values,
        hidden_states=all_hidden,
        attentions=all_self,
        cross_attentions=all_cross,
    )
