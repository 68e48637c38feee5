"""BERT as Linen modules: the encoder (`FlaxBertModel`) and the decoder with cross-attention
and LM head (`FlaxBertForCausalLM`, transformers' Flax name). RoBERTa and BertGeneration reuse this body.

Parameter paths are the Flax names of `encdec.weights.names` (transformers'
flax_model.msgpack layout): `embeddings/word_embeddings/embedding`,
`encoder/layer/0/attention/self/query/kernel`, `cls/predictions/bias`, ...

The decoder's key/value cache is a fixed-size pytree, so a generation loop under
`jax.jit` keeps one shape from the first step to the last:
`{"index": int32 [], "encoder_attention_mask": [B, S] or None, "layers": ({"key",
"value": [N, H, L, D], "cross_key", "cross_value": [B, H, S, D]}, ...)}`, `index`
being the number of tokens cached; N is B or n * B (n rows per batch item, beam
search's beams), whose cross-attention attends its item's keys (`_fold_beams_attend`).
Keys and values are kept heads-first, the layout XLA's batched dot reads: with
`[B, L, H, D]` the compiled decode loop copied every cache into that layout on
every step.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from ..config import ArchConfig
from ..weights.names import embedding_width
from .pretrained import FlaxPreTrainedModel
from .common import (
    ACT2FN,
    _attend_heads,
    _attends_encoder,
    _CausalLM,
    _close_cache,
    _encoder_bias,
    _GradientCheckpointing,
    _heads_first,
    _LayerCollection,
    _open_stack,
    _run_layers,
    _split_layer_cache,
    _stack_output,
    _updated_layer_cache,
    _write_self_cache,
    attention_bias,
    causal_bias,
)


def _layer_norm(cfg: ArchConfig, dtype, name: Optional[str] = None) -> nn.LayerNorm:
    # Two-pass variance (E[(x - mean)^2]) as PyTorch computes it; statistics in float32.
    return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=dtype, use_fast_variance=False, name=name)


class FlaxBertEmbeddings(nn.Module):
    """Word + token type + absolute position embeddings, then LayerNorm and dropout."""

    config: ArchConfig
    dtype: Any = jnp.float32

    has_token_types = True

    def setup(self):
        cfg = self.config
        width = embedding_width(cfg)
        self.word_embeddings = nn.Embed(cfg.vocab_size, width, dtype=self.dtype)
        self.position_embeddings = nn.Embed(cfg.max_position_embeddings, width, dtype=self.dtype)
        if self.has_token_types:
            self.token_type_embeddings = nn.Embed(cfg.type_vocab_size, width, dtype=self.dtype)
        self.LayerNorm = _layer_norm(cfg, self.dtype)
        self.dropout = nn.Dropout(rate=cfg.hidden_dropout_prob)

    def _position_embeddings(self, input_ids, position_ids, past_length):
        if position_ids is None:
            # Positions past_length .. past_length + T - 1, the same for every row: [1, T].
            position_ids = (past_length + jnp.arange(input_ids.shape[1]))[None, :]
        return self.position_embeddings(position_ids.astype("i4"))

    def __call__(self, input_ids, token_type_ids=None, position_ids=None, past_length=0, deterministic=True):
        embeddings = self.word_embeddings(input_ids.astype("i4"))
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        embeddings = embeddings + self.token_type_embeddings(token_type_ids.astype("i4"))
        embeddings = embeddings + self._position_embeddings(input_ids, position_ids, past_length)
        return self.dropout(self.LayerNorm(embeddings), deterministic=deterministic)


class FlaxBertSelfAttention(nn.Module):
    """Multi-head attention over the layer's own states (self) or the encoder's (cross).

    Scores and weighted sums use the einsums every port shares; the softmax runs in
    float32. With a cache, self-attention writes its new keys/values at
    `cache_index` and attends over all `L` cache slots (the bias masks the unused
    ones); cross-attention reads the encoder keys/values computed once.
    """

    config: ArchConfig
    dtype: Any = jnp.float32
    is_cross_attention: bool = False

    # The attribute (and param) names of the query, key and value projections, in the order they are made;
    # BART's attention names and orders them its own way.
    projection_names = {"query": "query", "key": "key", "value": "value"}
    dropout_field = "attention_probs_dropout_prob"  # the config field of the attention dropout

    def setup(self):
        cfg = self.config
        for name in self.projection_names.values():
            setattr(self, name, nn.Dense(cfg.hidden_size, dtype=self.dtype))
        self.dropout = nn.Dropout(rate=getattr(cfg, self.dropout_field))

    def _split_heads(self, x):
        cfg = self.config
        return x.reshape(x.shape[:2] + (cfg.num_attention_heads, cfg.head_dim))  # [B, T, H, D]

    def _project(self, role: str, x):
        """`x` `[B, T, hidden]` through the "query", "key" or "value" projection, split: `[B, T, H, D]`."""
        return self._split_heads(getattr(self, self.projection_names[role])(x))

    def _project_key_value(self, states):
        """Keys and values of `states` `[B, S, hidden]`, each `[B, H, S, D]`."""
        return _heads_first(self._project("key", states)), _heads_first(self._project("value", states))

    def _output(self, out):
        """The attended values `[B, T, hidden]` as this module returns them: BERT's output projection is
        `FlaxBertSelfOutput`'s."""
        return out

    def __call__(
        self,
        hidden_states,
        attention_bias=None,
        key_value_states=None,
        kv_cache=None,
        cache_index=None,
        output_attentions=False,
        deterministic=True,
    ):
        query = self._project("query", hidden_states)  # [B, T, H, D]
        new_cache = None
        if self.is_cross_attention:
            key, value = kv_cache if kv_cache is not None else self._project_key_value(key_value_states)
        else:
            key, value = self._project_key_value(hidden_states)
            if kv_cache is not None:
                key, value = new_cache = _write_self_cache(kv_cache, key, value, cache_index)
        scale = self.config.head_dim ** -0.5
        out, weights = _attend_heads(self, query, key, value, attention_bias, scale, self.dropout, deterministic)
        return self._output(out), (weights if output_attentions else None), new_cache


class FlaxBertSelfOutput(nn.Module):
    config: ArchConfig
    dtype: Any = jnp.float32

    def setup(self):
        cfg = self.config
        self.dense = nn.Dense(cfg.hidden_size, dtype=self.dtype)
        self.LayerNorm = _layer_norm(cfg, self.dtype)
        self.dropout = nn.Dropout(rate=cfg.hidden_dropout_prob)

    def __call__(self, hidden_states, input_tensor, deterministic=True):
        hidden_states = self.dropout(self.dense(hidden_states), deterministic=deterministic)
        return self.LayerNorm(hidden_states + input_tensor)


class FlaxBertAttention(nn.Module):
    config: ArchConfig
    dtype: Any = jnp.float32
    is_cross_attention: bool = False

    def setup(self):
        self.self = FlaxBertSelfAttention(self.config, self.dtype, is_cross_attention=self.is_cross_attention)
        self.output = FlaxBertSelfOutput(self.config, self.dtype)

    def __call__(
        self,
        hidden_states,
        attention_bias=None,
        key_value_states=None,
        kv_cache=None,
        cache_index=None,
        output_attentions=False,
        deterministic=True,
    ):
        out, weights, new_cache = self.self(
            hidden_states,
            attention_bias,
            key_value_states=key_value_states,
            kv_cache=kv_cache,
            cache_index=cache_index,
            output_attentions=output_attentions,
            deterministic=deterministic,
        )
        return self.output(out, hidden_states, deterministic=deterministic), weights, new_cache


class FlaxBertIntermediate(nn.Module):
    config: ArchConfig
    dtype: Any = jnp.float32

    def setup(self):
        self.dense = nn.Dense(self.config.intermediate_size, dtype=self.dtype)

    def __call__(self, hidden_states):
        return ACT2FN[self.config.hidden_act](self.dense(hidden_states))


class FlaxBertOutput(FlaxBertSelfOutput):
    """The feed-forward's output: FlaxBertSelfOutput's computation (Dense infers the intermediate width)."""


class FlaxBertLayer(nn.Module):
    """Self-attention, cross-attention (decoders), feed-forward."""

    config: ArchConfig
    dtype: Any = jnp.float32
    layer_idx: int = 0

    def setup(self):
        cfg = self.config
        self.attention = FlaxBertAttention(cfg, self.dtype)
        if cfg.add_cross_attention:
            self.crossattention = FlaxBertAttention(cfg, self.dtype, is_cross_attention=True)
        self.intermediate = FlaxBertIntermediate(cfg, self.dtype)
        self.output = FlaxBertOutput(cfg, self.dtype)

    def _cross_key_value(self, encoder_hidden_states):
        return self.crossattention.self._project_key_value(encoder_hidden_states)

    def __call__(
        self,
        hidden_states,
        attention_bias=None,
        encoder_hidden_states=None,
        encoder_bias=None,
        layer_cache=None,
        cache_index=None,
        output_attentions=False,
        deterministic=True,
    ):
        self_kv, cross_kv = _split_layer_cache(layer_cache)
        hidden_states, self_probs, new_self_kv = self.attention(
            hidden_states,
            attention_bias,
            kv_cache=self_kv,
            cache_index=cache_index,
            output_attentions=output_attentions,
            deterministic=deterministic,
        )
        cross_probs = None
        if _attends_encoder(encoder_hidden_states, layer_cache, self.config.add_cross_attention):
            hidden_states, cross_probs, _ = self.crossattention(
                hidden_states,
                encoder_bias,
                key_value_states=encoder_hidden_states,
                kv_cache=cross_kv,
                output_attentions=output_attentions,
                deterministic=deterministic,
            )
        hidden_states = self.output(self.intermediate(hidden_states), hidden_states, deterministic=deterministic)
        return hidden_states, self_probs, cross_probs, _updated_layer_cache(layer_cache, new_self_kv)


class _FlaxBertLayerCollection(_LayerCollection):
    """The layers, named "0", "1", ... under `layer`, as in transformers' Flax params."""

    layer_class = FlaxBertLayer
    num_layers_field = "num_hidden_layers"


class FlaxBertEncoder(nn.Module):
    """The stack of layers (transformers calls it the encoder in decoders too)."""

    config: ArchConfig
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        self.layer = _FlaxBertLayerCollection(self.config, self.dtype, self.gradient_checkpointing)

    def _cross_key_values(self, encoder_hidden_states):
        return [layer._cross_key_value(encoder_hidden_states) for layer in self.layer.layers]

    def __call__(
        self,
        hidden_states,
        attention_bias=None,
        encoder_hidden_states=None,
        encoder_bias=None,
        cache=None,
        output_attentions=False,
        output_hidden_states=False,
        deterministic=True,
    ):
        """-> (hidden [B, T, H], all hidden states, self-attention probs, cross-attention probs, new cache layers)."""
        return _run_layers(self.layer.layers, hidden_states, attention_bias, encoder_hidden_states, encoder_bias,
                           cache, None if cache is None else cache["index"], output_attentions, output_hidden_states,
                           deterministic)


class FlaxBertPooler(nn.Module):
    config: ArchConfig
    dtype: Any = jnp.float32

    def setup(self):
        self.dense = nn.Dense(self.config.hidden_size, dtype=self.dtype)

    def __call__(self, hidden_states):
        # The first token's state: [B, T, H] -> [B, H].
        return jnp.tanh(self.dense(hidden_states[:, 0]))


class FlaxBertPredictionHeadTransform(nn.Module):
    config: ArchConfig
    dtype: Any = jnp.float32

    def setup(self):
        self.dense = nn.Dense(self.config.hidden_size, dtype=self.dtype)
        self.LayerNorm = _layer_norm(self.config, self.dtype)

    def __call__(self, hidden_states):
        return self.LayerNorm(ACT2FN[self.config.hidden_act](self.dense(hidden_states)))


def _output_projection(head, hidden_states, shared_embedding):
    """`hidden @ W.T + bias`: W `[V, H]` is the tied word-embedding table, or the head's own
    `decoder` kernel when the head is untied; `bias` is the head's one bias `[V]`."""
    if shared_embedding is not None:
        # Contract the hidden axes of both: no transposed copy of the [V, H] table is made.
        logits = jnp.einsum("...h,vh->...v", hidden_states, shared_embedding.astype(head.dtype))
    else:
        logits = head.decoder(hidden_states)
    return logits + head.bias.astype(head.dtype)


class FlaxBertLMPredictionHead(nn.Module):
    """Transform, then the output projection with its own bias (the `decoder` kernel only when untied)."""

    config: ArchConfig
    dtype: Any = jnp.float32

    def setup(self):
        cfg = self.config
        self.transform = FlaxBertPredictionHeadTransform(cfg, self.dtype)
        if not cfg.tie_word_embeddings:
            self.decoder = nn.Dense(cfg.vocab_size, use_bias=False, dtype=self.dtype)
        self.bias = self.param("bias", nn.initializers.zeros, (cfg.vocab_size,))

    def __call__(self, hidden_states, shared_embedding=None):
        return _output_projection(self, self.transform(hidden_states), shared_embedding)


class FlaxBertOnlyMLMHead(nn.Module):
    config: ArchConfig
    dtype: Any = jnp.float32

    def setup(self):
        self.predictions = FlaxBertLMPredictionHead(self.config, self.dtype)

    def __call__(self, hidden_states, shared_embedding=None):
        return self.predictions(hidden_states, shared_embedding)


class FlaxBertModel(FlaxPreTrainedModel, _GradientCheckpointing, nn.Module):
    """BERT body: embeddings, layers, and (as an encoder) the pooler.

    With `config.is_decoder` the self-attention is causal, a cache may be given,
    and with `config.add_cross_attention` each layer attends the encoder's states.
    """

    config: ArchConfig
    dtype: Any = jnp.float32
    add_pooling_layer: bool = True
    gradient_checkpointing: bool = False

    embeddings_class = FlaxBertEmbeddings
    encoder_class = FlaxBertEncoder
    has_token_types = True

    def setup(self):
        cfg = self.config
        self.embeddings = self.embeddings_class(cfg, self.dtype)
        self.encoder = self.encoder_class(cfg, self.dtype, self.gradient_checkpointing)
        if self.add_pooling_layer and not cfg.is_decoder:
            self.pooler = FlaxBertPooler(cfg, self.dtype)

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def _cross_key_values(self, encoder_hidden_states):
        return self.encoder._cross_key_values(encoder_hidden_states)

    def _embed(self, input_ids, token_type_ids, position_ids, past_length, deterministic):
        """The first layer's input `[B, T, H]` (ELECTRA projects the embeddings to it)."""
        if self.has_token_types:
            return self.embeddings(input_ids, token_type_ids, position_ids, past_length, deterministic=deterministic)
        return self.embeddings(input_ids, position_ids, past_length, deterministic=deterministic)

    def _self_attention_bias(self, attention_mask, length, past_length, key_length):
        """`[B or 1, 1, T, K]` float32 bias (K = T, or the cache length), or None."""
        if not self.config.is_decoder:
            return None if attention_mask is None else attention_bias(attention_mask, self.dtype)
        return causal_bias(length, key_length, past_length, attention_mask, self.dtype)

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
        deterministic=True,
    ):
        """`past_key_values` (decoders): the fixed-size cache; the output holds it updated."""
        cache = past_key_values if self.config.is_decoder else None
        past_length, key_length = _open_stack(self.config, cache, input_ids, attention_mask, token_type_ids,
                                              position_ids)
        length = input_ids.shape[1]
        hidden = self._embed(input_ids, token_type_ids, position_ids, past_length, deterministic)
        bias = self._self_attention_bias(attention_mask, length, past_length, key_length)
        hidden, all_hidden, all_self, all_cross, new_layers = self.encoder(
            hidden,
            bias,
            encoder_hidden_states,
            _encoder_bias(encoder_attention_mask, self.dtype),
            cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=deterministic,
        )
        pooled = self.pooler(hidden) if self.add_pooling_layer and not self.config.is_decoder else None
        return _stack_output(hidden, all_hidden, all_self, all_cross, _close_cache(cache, length, new_layers), pooled)


class FlaxBertForCausalLM(_CausalLM):
    """A BERT decoder with its LM head; the head's projection is the word embeddings when tied."""

    base_model_prefix = "bert"
    output_embeddings_path = "cls.predictions.decoder"

    def setup(self):
        self.bert = FlaxBertModel(self.config, self.dtype, add_pooling_layer=False,
                                  gradient_checkpointing=self.gradient_checkpointing)
        self.cls = FlaxBertOnlyMLMHead(self.config, self.dtype)

    def compute_logits(self, hidden_states):
        """The LM head: `[..., H]` -> `[..., V]`."""
        return self.cls(hidden_states, self._shared_embedding())
