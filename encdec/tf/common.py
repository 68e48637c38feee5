"""What every TensorFlow model file shares: activations, masks, output containers, input checks, caches, the
steps every body takes before and after its layers, and the half every decoder with an LM head shares."""

from __future__ import annotations

import math
from operator import attrgetter
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ..config import ArchConfig
from ..errors import InputError
from ..inputs import Traced, check_cross_attention, check_ids, check_stack_inputs, token_type_table
from ..outputs import BaseModelOutput, CausalLMOutput, Seq2SeqLMOutput  # noqa: F401  (the port's outputs)
from .pretrained import TFPreTrainedModel


def _gelu_new(x: tf.Tensor) -> tf.Tensor:
    # GPT-2's tanh approximation, written as transformers writes it (x ** 3, not x * x * x).
    return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3.0))))


def _gelu_fast(x: tf.Tensor) -> tf.Tensor:
    return 0.5 * x * (1.0 + tf.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


ACT2FN = {
    "gelu": lambda x: tf.nn.gelu(x, approximate=False),
    "relu": tf.nn.relu,
    "gelu_new": _gelu_new,
    "gelu_pytorch_tanh": _gelu_new,
    "gelu_fast": _gelu_fast,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
}


def attention_bias(mask: tf.Tensor, dtype: tf.DType = tf.float32) -> tf.Tensor:
    """A `[B, 1, 1, S]` additive bias from a `[B, S]` mask: 0 where attended, the dtype's minimum where masked."""
    allowed = tf.cast(mask, tf.bool)[:, None, None, :]
    return tf.where(allowed, tf.zeros((), dtype), tf.constant(dtype.min, dtype))


def causal_bias(
    query_length: Any,
    key_length: Any,
    offset: Any = 0,
    mask: tf.Tensor | None = None,
    dtype: tf.DType = tf.float32,
) -> tf.Tensor:
    """A `[B or 1, 1, Q, K]` additive bias for causal self-attention over a key/value cache.

    Query `i` sits at absolute position `offset + i` and may attend key `k` when
    `k <= offset + i` and `mask[:, k]` (a `[B, K]` padding mask over the keys) is set.
    The two conditions are joined before turning into a bias, so a masked position
    holds the dtype's minimum once (two minimums would add up to -inf).
    """
    q_pos = tf.range(query_length, dtype=tf.int32) + tf.cast(offset, tf.int32)
    k_pos = tf.range(key_length, dtype=tf.int32)
    allowed = (k_pos[None, :] <= q_pos[:, None])[None, None, :, :]  # [1, 1, Q, K]
    if mask is not None:
        allowed = tf.logical_and(allowed, tf.cast(mask, tf.bool)[:, None, None, :])
    return tf.where(allowed, tf.zeros((), dtype), tf.constant(dtype.min, dtype))


def softmax_float32(scores: tf.Tensor) -> tf.Tensor:
    """Softmax over the last axis computed in float32, returned in the scores' dtype."""
    return tf.cast(tf.nn.softmax(tf.cast(scores, tf.float32), axis=-1), scores.dtype)


def _host_facts(value):
    """A model input as the core's checks (`encdec.inputs`) read it: its values when they are on the host
    (eagerly), its shape and dtype alone inside a graph (`Traced`), None when not given."""
    if value is None or isinstance(value, np.ndarray):
        return value
    if isinstance(value, (tf.Tensor, tf.Variable)):
        if tf.executing_eagerly() and not tf.is_symbolic_tensor(value):
            return value.numpy()
        shape = value.shape
        return Traced(tuple(shape.as_list()) if shape.rank is not None else (None, None), value.dtype.as_numpy_dtype)
    return np.asarray(value)


def _as_index_tensor(ids):
    """Checked ids as a tensor TensorFlow's gathers take: int32 or int64 kept, other integer dtypes as int32."""
    if ids is None:
        return None
    ids = tf.convert_to_tensor(ids)
    return ids if ids.dtype in (tf.int32, tf.int64) else tf.cast(ids, tf.int32)


def _assert_ids(ids, table_size: int, name: str, max_positions=None) -> None:
    """Inside a graph, where the host checks see no values: assertions that ids are in `[0, table_size)`
    and that the sequence fits `max_positions`.

    Automatic control dependencies run them before a `tf.function` returns; XLA drops
    assertions, so compiled generation checks its inputs on the host before it starts.
    """
    if ids is None or tf.executing_eagerly():
        return
    wide = tf.cast(ids, tf.int64)  # so that a cast of the table size cannot wrap in a narrow dtype
    tf.debugging.assert_non_negative(wide, message=f"{name} holds negative ids; expected 0 <= id < {table_size}")
    tf.debugging.assert_less(
        wide, tf.constant(table_size, tf.int64), message=f"{name} holds ids >= the vocabulary size {table_size}"
    )
    if max_positions is not None:
        tf.debugging.assert_less_equal(
            tf.shape(ids)[-1], tf.cast(max_positions, tf.int32),
            message=f"{name} is longer than the position table ({max_positions})",
        )


def check_input_ids(ids, vocab_size: int, max_positions: int | None = None, name: str = "input_ids") -> None:
    """Raise InputError unless `ids` are `[batch >= 1, length >= 1]` integer ids in `[0, vocab_size)` no
    longer than `max_positions` (the core's rule); inside a graph, assertions on the values as well."""
    check_ids(_host_facts(ids), vocab_size, name, max_positions=max_positions)
    _assert_ids(ids, vocab_size, name, max_positions)


def _check_stack(config: ArchConfig, input_ids, attention_mask, token_type_ids, position_ids, past_length) -> None:
    """The inputs of one stack (BERT-like or GPT-2) after `past_length` cached tokens, before it runs.

    The core's host checks (`encdec.inputs.check_stack_inputs`) on what is known; inside a
    graph, assertions on the values. A cache index that is itself a traced tensor leaves the
    position limit and the mask's length to the assertions.
    """
    traced_past = not isinstance(past_length, int) and not (
        tf.executing_eagerly() and not tf.is_symbolic_tensor(past_length)
    )
    past = 0 if traced_past else int(past_length)
    check_stack_inputs(
        config, _host_facts(input_ids), None if traced_past else _host_facts(attention_mask),
        _host_facts(token_type_ids), _host_facts(position_ids), past_length=past,
    )
    if not tf.executing_eagerly():
        limit = config.max_positions - past_length if position_ids is None else None
        _assert_ids(input_ids, config.vocab_size, "input_ids", limit)
        _assert_ids(position_ids, config.max_position_embeddings, "position_ids")
        if token_type_ids is not None:
            _assert_ids(token_type_ids, token_type_table(config), "token_type_ids")


# ---------------------------------------------------------------------------
# Built Keras layers. Each is created with its weights, so that every variable
# exists before the first call and the core can fill it (the initial values are
# zeros: real values always come from `init_weights` or a checkpoint).


class _Dense(keras.layers.Layer):
    """`x @ kernel + bias`, kernel `[in, out]` (the transpose of torch's Linear weight).

    Keras' Dense reshapes rank-3 inputs through `tensordot` (a score of shape ops per
    call); a broadcasting matmul is one op, which keeps traces and XLA compiles small.
    """

    def __init__(self, units: int, in_features: int, use_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel = self.add_weight(shape=(in_features, units), initializer="zeros", name="kernel")
        self.bias = self.add_weight(shape=(units,), initializer="zeros", name="bias") if use_bias else None
        self.built = True

    def call(self, x):
        x = tf.matmul(x, self.kernel)
        return x + self.bias if self.bias is not None else x


def _dense(units: int, in_features: int, name: str, use_bias: bool = True) -> _Dense:
    return _Dense(units, in_features, use_bias=use_bias, name=name)


def _layer_norm(width: int, eps: float, name: str) -> keras.layers.LayerNormalization:
    layer = keras.layers.LayerNormalization(epsilon=eps, name=name)
    layer.build((None, width))
    return layer


def _embedding(rows: int, width: int, name: str) -> keras.layers.Embedding:
    layer = keras.layers.Embedding(rows, width, embeddings_initializer="zeros", name=name)
    layer.build((None,))
    return layer


def _output_projection(config: ArchConfig, input_embeddings: keras.layers.Embedding, name: str) -> keras.layers.Layer:
    """The vocabulary projection of an LM head: the word embeddings when tied, else its own `[hidden, V]` kernel."""
    if config.tie_word_embeddings:
        return input_embeddings
    return _dense(config.vocab_size, config.hidden_size, name, use_bias=False)


def _project_to_vocab(projection: keras.layers.Layer, hidden_states):
    """`[B, S, hidden] -> [B, S, V]` through a tied embedding table `[V, hidden]` or an own kernel."""
    if isinstance(projection, keras.layers.Embedding):
        # A single row (a batch-1 decode step) goes as two: XLA's CPU compiler turns the one-row
        # product with the [V, hidden] table into a transpose of the whole table plus a reduction,
        # every step of a generation loop, ~1.4x the time of the two-row dot
        # (benchmarks/investigations/tf_batch1_trials.py). [1, 1, H] -> [1, 2, H] -> [1, 1, V]; other shapes unchanged.
        shape = tf.shape(hidden_states)
        extra = tf.cast(shape[0] * shape[1] == 1, tf.int32)
        padded = tf.pad(hidden_states, [[0, 0], [0, extra], [0, 0]])
        return tf.einsum("bsh,vh->bsv", padded, projection.embeddings)[:, : shape[1]]
    return projection(hidden_states)


def _cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy over the positions whose label is not -100 (torch's CrossEntropyLoss).

    logits `[..., V]`, labels `[...]`; computed in float32.
    """
    labels = tf.cast(labels, tf.int32)
    keep = tf.not_equal(labels, -100)
    safe = tf.where(keep, labels, tf.zeros_like(labels))
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=tf.cast(logits, tf.float32))
    losses = tf.where(keep, losses, tf.zeros_like(losses))
    # torch divides the summed loss by the number of kept positions (NaN when there are none).
    return tf.reduce_sum(losses) / tf.reduce_sum(tf.cast(keep, tf.float32))


def _heads_first(x: tf.Tensor) -> tf.Tensor:
    """`[B, S, H, D]` keys or values -> `[B, H, S, D]`, the layout attention and the cache keep them in.

    Heads first is the layout XLA's batched dot reads: with `[B, S, H, D]` the compiled
    decode loop copied every cache into that layout on every step.
    """
    return tf.transpose(x, [0, 2, 1, 3])


def _write_cache(cache: tf.Tensor, new: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """Write `new` `[B, H, L, D]` into a fixed-size cache `[B, H, T, D]` at positions `index .. index + L - 1`.

    A select over the cache's positions rather than a scatter, so that the shapes stay
    fixed under XLA and the same code runs eagerly.
    """
    length = tf.shape(new)[2]
    positions = tf.range(tf.shape(cache)[2]) - tf.cast(index, tf.int32)  # [T], offset into `new`
    inside = (positions >= 0) & (positions < length)
    gathered = tf.gather(new, tf.clip_by_value(positions, 0, length - 1), axis=2)  # [B, H, T, D]
    return tf.where(inside[None, None, :, None], gathered, cache)


def _extend_cache(past_key_value, key, value, cache_index):
    """Append `[B, H, S, D]` keys/values to the cache, or write them at `cache_index` of a fixed-size one."""
    if cache_index is None:
        return tf.concat([past_key_value[0], key], axis=2), tf.concat([past_key_value[1], value], axis=2)
    return _write_cache(past_key_value[0], key, cache_index), _write_cache(past_key_value[1], value, cache_index)


def _attend(query, key, value, bias, scale, dropout, training):
    """`[B, Q, H, D]` queries over `[B, H, K, D]` keys/values -> (`[B, Q, H*D]`, probabilities `[B, H, Q, K]`)."""
    scores = tf.einsum("bqhd,bhkd->bhqk", query, key) * scale
    if bias is not None:
        scores = scores + bias
    probs = softmax_float32(scores)
    context = tf.einsum("bhqk,bhkd->bqhd", dropout(probs, training=training), value)
    if bias is not None and bias.shape[-2] != 1:
        # A query that may attend no key (a leading pad of the decoder) gets a zero output, as
        # transformers' SDPA path gives it; the additive bias alone would average every value.
        alive = tf.reduce_max(bias, axis=-1) > bias.dtype.min  # [B, 1, Q]
        context = tf.where(tf.transpose(alive, [0, 2, 1])[..., None], context, tf.zeros((), context.dtype))
    shape = tf.shape(context)
    return tf.reshape(context, [shape[0], shape[1], shape[2] * shape[3]]), probs


def _rows_differ(query, key) -> bool:
    """Whether `[N, Q, H, D]` queries may have more rows than `[B, H, S, D]` keys: several rows per batch
    item over keys kept once per item (a cache of `init_cache(n * B, ...)`). Unknown rows (a traced
    batch) count as differing: the folded attention is right for n = 1 too."""
    rows, batch = query.shape[0], key.shape[0]
    return rows is None or batch is None or rows != batch


def _fold_beams_attend(query, key, value, bias, scale, dropout, training):
    """Cross-attention of `[B * n, Q, H, D]` queries over keys/values kept once per batch item
    `[B, H, S, D]` -> (`[B * n, Q, H*D]`, probabilities `[B * n, H, Q, S]`).

    While beam searching every row (beam) of a batch item attends the same encoder states; rows
    `b * n .. b * n + n - 1` of item b get a beam axis instead of the keys being copied n times.
    Each row's result is unchanged (rows are independent). `bias` is per item, `[B, 1, 1, S]`.
    """
    shape = tf.shape(query)  # [B * n, Q, H, D]
    batch = tf.shape(key)[0]
    folded = tf.reshape(query, tf.concat([[batch, shape[0] // batch], shape[1:]], 0))  # [B, n, Q, H, D]
    scores = tf.einsum("bnqhd,bhkd->bhnqk", folded, key) * scale  # [B, H, n, Q, S]
    if bias is not None:
        scores = scores + bias[:, :, None]  # [B, 1, 1, 1, S]
    probs = softmax_float32(scores)
    context = tf.einsum("bhnqk,bhkd->bnqhd", dropout(probs, training=training), value)  # [B, n, Q, H, D]
    context = tf.reshape(context, [shape[0], shape[1], shape[2] * shape[3]])  # [B * n, Q, H*D]
    probs = tf.reshape(tf.transpose(probs, [0, 2, 1, 3, 4]), [shape[0], shape[2], shape[1], -1])  # [B * n, H, Q, S]
    return context, probs


def _cross_keys_values(past_key_value, project, encoder_hidden_states):
    """A layer's cross-attention keys/values `[B, H, S, D]`: the cached ones when given (the encoder
    output does not change while decoding), else `project(encoder_hidden_states)`."""
    if past_key_value is not None:
        return past_key_value
    return project(encoder_hidden_states)


def _attend_heads(module, query, key, value, bias, past_key_value, dropout, training):
    """An attention layer's `[B, Q, H, D]` queries over its keys/values -> (`[B, Q, H*D]`, probabilities):
    cross-attention over cached keys kept once per batch item for several query rows (beams) is attended
    folded (`_fold_beams_attend`), everything else by `_attend`."""
    if module.is_cross_attention and past_key_value is not None and _rows_differ(query, key):
        return _fold_beams_attend(query, key, value, bias, module.scale, dropout, training)
    return _attend(query, key, value, bias, module.scale, dropout, training)


def _cache_lengths(input_ids, past_key_values, cache_index):
    """(tokens before the new ones, keys attended) for a forward with an optional cache."""
    length = tf.shape(input_ids)[1]
    if cache_index is not None:
        if past_key_values is None:
            raise InputError("cache_index was given without past_key_values; expected a fixed-size cache to write into")
        return cache_index, tf.shape(past_key_values[0][0])[2]  # every slot of the fixed-size cache
    if past_key_values is not None:
        past = tf.shape(past_key_values[0][0])[2]
        return past, past + length
    return 0, length


def _open_stack(config: ArchConfig, input_ids, attention_mask, token_type_ids, position_ids, past_key_values,
                use_cache, cache_index):
    """What a body's call does before it embeds -> (use_cache, past length, keys attended, input_ids,
    token_type_ids, position_ids).

    `use_cache` is the config's when None; the cache lengths are read (`_cache_lengths`), the inputs
    checked (`_check_stack`), the ids made tensors the gathers take.
    """
    input_ids = tf.convert_to_tensor(input_ids)
    use_cache = bool(config.use_cache if use_cache is None else use_cache)
    past_length, key_length = _cache_lengths(input_ids, past_key_values, cache_index)
    _check_stack(config, input_ids, attention_mask, token_type_ids, position_ids, past_length)
    input_ids, token_type_ids, position_ids = map(_as_index_tensor, (input_ids, token_type_ids, position_ids))
    return use_cache, past_length, key_length, input_ids, token_type_ids, position_ids


def _stack_output(hidden, all_hidden, all_self, all_cross, past_key_values, return_dict: bool, pooler_output=None):
    """A body's outputs: its BaseModelOutput, or with `return_dict=False` the tuple of the fields that are set."""
    out = BaseModelOutput(
        last_hidden_state=hidden,
        pooler_output=pooler_output,
        past_key_values=past_key_values,
        hidden_states=all_hidden,
        attentions=all_self,
        cross_attentions=all_cross,
    )
    return out if return_dict else out.to_tuple()


def _encoder_bias(encoder_attention_mask):
    """A `[B, S]` encoder mask -> `[B, 1, 1, S]` bias; a rank-4 mask is a bias already."""
    if encoder_attention_mask is None:
        return None
    encoder_attention_mask = tf.convert_to_tensor(encoder_attention_mask)
    if encoder_attention_mask.shape.rank == 4:
        return encoder_attention_mask
    return attention_bias(encoder_attention_mask)


def _split_layer_cache(past_key_value):
    """A layer's cache tuple `(self_k, self_v[, cross_k, cross_v])`, or None -> (self-attention keys/values,
    cross-attention keys/values); each part None where the cache has none."""
    if past_key_value is None:
        return None, None
    return past_key_value[:2], past_key_value[2:] if len(past_key_value) == 4 else None


def _attends_encoder(encoder_hidden_states, past_key_value, has_cross_attention: bool = True) -> bool:
    """Whether a layer attends the encoder in this call: its states are given, or their keys/values are in
    `past_key_value` (the layer's cache tuple). ConfigError when it does but the layer has no cross-attention."""
    attends = encoder_hidden_states is not None or _split_layer_cache(past_key_value)[1] is not None
    return check_cross_attention(attends, has_cross_attention)


def _run_layers(layers, hidden_states, attention_bias, encoder_hidden_states, encoder_bias, past_key_values,
                cache_index, output_attentions, output_hidden_states, training):
    """Run BERT layers or GPT-2 blocks in turn -> (hidden, presents (a tuple per layer), all hidden
    states (the input and each layer's output), self-attention probs, cross-attention probs)."""
    all_hidden = (hidden_states,) if output_hidden_states else None
    all_self = () if output_attentions else None
    cross = _attends_encoder(encoder_hidden_states, past_key_values[0] if past_key_values is not None else None)
    all_cross = () if output_attentions and cross else None
    presents = ()
    for i, layer in enumerate(layers):
        hidden_states, present, self_probs, cross_probs = layer(
            hidden_states,
            attention_bias,
            encoder_hidden_states=encoder_hidden_states,
            encoder_bias=encoder_bias,
            past_key_value=past_key_values[i] if past_key_values is not None else None,
            cache_index=cache_index,
            output_attentions=output_attentions,
            training=training,
        )
        presents += (present,)
        if output_hidden_states:
            all_hidden += (hidden_states,)
        if output_attentions:
            all_self += (self_probs,)
            if all_cross is not None:
                all_cross += (cross_probs,)
    return hidden_states, presents, all_hidden, all_self, all_cross

def _causal_lm_loss(logits: tf.Tensor, labels) -> tf.Tensor:
    """Next-token cross-entropy of a decoder on its own: position t predicts label t + 1; -100 is ignored."""
    labels = tf.convert_to_tensor(labels)
    return _cross_entropy(logits[:, :-1], labels[:, 1:])


def _causal_lm_output(model, base_output, labels, logits_to_keep: int, return_dict: bool):
    """A decoder's output from its base model's: logits of the last `logits_to_keep`
    positions (all when 0), the loss when `labels` are given, and the base outputs."""
    hidden = base_output.last_hidden_state
    if logits_to_keep:
        hidden = hidden[:, -logits_to_keep:]  # only the positions whose logits are needed
    logits = model.compute_logits(hidden)
    result = CausalLMOutput(
        loss=_causal_lm_loss(logits, labels) if labels is not None else None,
        logits=logits,
        past_key_values=base_output.past_key_values,
        hidden_states=base_output.hidden_states,
        attentions=base_output.attentions,
        cross_attentions=base_output.cross_attentions,
    )
    return result if return_dict else result.to_tuple()


class _CausalLM(TFPreTrainedModel, keras.Model):
    """What every decoder with an LM head shares: its body under `base_model_prefix`, its projection to
    the vocabulary at the attribute path `output_embeddings_path`, and transformers' call, which runs
    the body and then `compute_logits`."""

    output_embeddings_path = "lm_head"

    @property
    def base_model(self):
        return getattr(self, self.base_model_prefix)

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.base_model.get_input_embeddings()

    def get_output_embeddings(self) -> keras.layers.Layer:
        return attrgetter(self.output_embeddings_path)(self)

    def compute_logits(self, hidden_states):
        """The LM head: `[..., H]` -> `[..., V]`; the projection alone unless a head has more."""
        return _project_to_vocab(self.get_output_embeddings(), hidden_states)

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache=None,
        output_attentions=False,
        output_hidden_states=False,
        labels=None,
        logits_to_keep=0,
        return_dict=True,
        training=False,
        cache_index=None,
    ):
        out = self.base_model(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, position_ids=position_ids,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, training=training, cache_index=cache_index,
        )
        return _causal_lm_output(self, out, labels, logits_to_keep, return_dict)
