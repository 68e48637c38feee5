"""BERT as an encoder (`TFBertModel`) and as a cross-attending decoder (`TFBertLMHeadModel`), in Keras 3.

The layer tree mirrors the PyTorch port attribute by attribute (`embeddings`,
`encoder.layer[i].attention.self.query`, ...), so walking it gives the canonical
parameter names of `encdec.weights.names`. RoBERTa and BertGeneration reuse these
layers with their own embeddings and heads.

Attention works on `[B, S, heads, head_dim]` queries and `[B, heads, S, head_dim]` keys
and values. A decoder's cache (`past_key_values`) is a tuple per layer of `(self_k,
self_v, cross_k, cross_v)`, each `[B, heads, S, head_dim]` (self-attention rows may be n * B
with `cache_index`: n rows per batch item, see `_fold_beams_attend`). Without `cache_index` new
keys are appended to it; with `cache_index` (a scalar tensor) the self-attention cache
has a fixed length and the new keys are written at that position, which keeps every
shape fixed for compiled generation (`TFEncoderDecoderModel.decode_step` passes its
cache dict's layers this way). Cross-attention runs from the cached keys alone when
no encoder states are given.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from ..config import ArchConfig
from ..weights.names import embedding_width
from .pretrained import TFPreTrainedModel
from .common import (
    ACT2FN,
    _attend_heads,
    _attends_encoder,
    _cross_keys_values,
    _CausalLM,
    _dense,
    _embedding,
    _encoder_bias,
    _extend_cache,
    _heads_first,
    _layer_norm,
    _open_stack,
    _output_projection,
    _project_to_vocab,
    _run_layers,
    _split_layer_cache,
    _stack_output,
    attention_bias,
    causal_bias,
)


class TFBertEmbeddings(keras.layers.Layer):
    """Word + token type + absolute position embeddings, then LayerNorm and dropout."""

    has_token_types = True

    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        h = embedding_width(config)
        self.word_embeddings = _embedding(config.vocab_size, h, "word_embeddings")
        self.position_embeddings = _embedding(config.max_position_embeddings, h, "position_embeddings")
        if self.has_token_types:
            self.token_type_embeddings = _embedding(config.type_vocab_size, h, "token_type_embeddings")
        self.LayerNorm = _layer_norm(h, config.layer_norm_eps, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.built = True  # every weight exists from here on

    def _position_embeddings(self, input_ids, position_ids, past_length):
        if position_ids is None:
            # Positions past_length .. past_length + S - 1, the same for every row: [1, S].
            position_ids = (tf.range(tf.shape(input_ids)[1]) + tf.cast(past_length, tf.int32))[None, :]
        return self.position_embeddings(position_ids)

    def call(self, input_ids, token_type_ids=None, position_ids=None, past_length=0, training=False):
        if token_type_ids is None:
            token_type_ids = tf.zeros_like(input_ids)
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self._position_embeddings(input_ids, position_ids, past_length)
        return self.dropout(self.LayerNorm(embeddings), training=training)


class TFBertSelfAttention(keras.layers.Layer):
    """Multi-head attention; self-attention, or cross-attention over the encoder's states."""

    # The attribute (and layer) names of the query, key and value projections, in the order they are made
    # (their order in `weights`); BART's attention names and orders them its own way.
    projection_names = {"query": "query", "key": "key", "value": "value"}
    dropout_field = "attention_probs_dropout_prob"  # the config field of the attention dropout

    def __init__(self, config: ArchConfig, is_cross_attention: bool = False, layer_idx: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = h // self.num_heads
        self.scale = self.head_dim**-0.5
        for name in self.projection_names.values():
            setattr(self, name, _dense(h, h, name))
        self.dropout = keras.layers.Dropout(getattr(config, self.dropout_field))
        self.is_cross_attention = is_cross_attention
        self.layer_idx = layer_idx
        self.built = True  # every weight exists from here on

    def _heads(self, x):
        # [B, S, H*D] -> [B, S, H, D]
        return tf.reshape(x, [tf.shape(x)[0], -1, self.num_heads, self.head_dim])

    def _project(self, role: str, x):
        """`x` `[B, S, H*D]` through the "query", "key" or "value" projection, split: `[B, S, H, D]`."""
        return self._heads(getattr(self, self.projection_names[role])(x))

    def _key_value(self, states):
        """Keys and values `[B, H, S, D]` of `states` `[B, S, hidden]`."""
        return _heads_first(self._project("key", states)), _heads_first(self._project("value", states))

    def _output(self, context):
        """The attended values `[B, S, H*D]` as this layer returns them: BERT's output projection is
        `TFBertSelfOutput`'s."""
        return context

    def call(
        self,
        hidden_states,
        attention_bias=None,
        key_value_states=None,
        past_key_value=None,
        cache_index=None,
        output_attentions=False,
        training=False,
    ):
        query = self._project("query", hidden_states)
        if self.is_cross_attention:
            key, value = _cross_keys_values(past_key_value, self._key_value, key_value_states)
        else:
            key, value = self._key_value(hidden_states)
            if past_key_value is not None:
                key, value = _extend_cache(past_key_value, key, value, cache_index)
        context, probs = _attend_heads(self, query, key, value, attention_bias, past_key_value, self.dropout, training)
        return self._output(context), (key, value), probs if output_attentions else None


class TFBertSelfOutput(keras.layers.Layer):
    """Output projection, dropout, residual, LayerNorm (post-LN)."""

    in_features = "hidden_size"  # the config field of the projection's input width

    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = _dense(config.hidden_size, getattr(config, self.in_features), "dense")
        self.LayerNorm = _layer_norm(config.hidden_size, config.layer_norm_eps, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.built = True  # every weight exists from here on

    def call(self, hidden_states, input_tensor, training=False):
        return self.LayerNorm(self.dropout(self.dense(hidden_states), training=training) + input_tensor)


class TFBertAttention(keras.layers.Layer):
    # `output` is a Keras property (and Keras' own saving skips attributes of that name): the
    # output sublayer is `dense_output`, as in transformers' TF class; its canonical name is `output`.
    _torch_names = {"dense_output": "output"}

    def __init__(self, config: ArchConfig, is_cross_attention: bool = False, layer_idx: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.self = TFBertSelfAttention(config, is_cross_attention, layer_idx, name="self")
        self.dense_output = TFBertSelfOutput(config, name="output")
        self.built = True  # every weight exists from here on

    def call(
        self,
        hidden_states,
        attention_bias=None,
        key_value_states=None,
        past_key_value=None,
        cache_index=None,
        output_attentions=False,
        training=False,
    ):
        context, present, probs = self.self(
            hidden_states,
            attention_bias,
            key_value_states=key_value_states,
            past_key_value=past_key_value,
            cache_index=cache_index,
            output_attentions=output_attentions,
            training=training,
        )
        return self.dense_output(context, hidden_states, training=training), present, probs


class TFBertIntermediate(keras.layers.Layer):
    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = _dense(config.intermediate_size, config.hidden_size, "dense")
        self.act = ACT2FN[config.hidden_act]
        self.built = True  # every weight exists from here on

    def call(self, hidden_states):
        return self.act(self.dense(hidden_states))


class TFBertOutput(TFBertSelfOutput):
    """The feed-forward's output: TFBertSelfOutput's computation, from the intermediate width."""

    in_features = "intermediate_size"


class TFBertLayer(keras.layers.Layer):
    """Self-attention, cross-attention (decoders), feed-forward.

    `shared`: the encoder layer whose self-attention and feed-forward this decoder
    layer uses too (tie_encoder_decoder); the cross-attention stays its own.
    """

    # `output` is a Keras property: the feed-forward's output sublayer is `bert_output`, as in
    # transformers' TF class; its canonical name is `output`.
    _torch_names = {"bert_output": "output"}

    def __init__(
        self, config: ArchConfig, layer_idx: int = 0, shared: "TFBertLayer | None" = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if shared is not None:
            self.attention = shared.attention
        else:
            self.attention = TFBertAttention(config, layer_idx=layer_idx, name="attention")
        if config.add_cross_attention:
            self.crossattention = TFBertAttention(
                config, is_cross_attention=True, layer_idx=layer_idx, name="crossattention"
            )
        if shared is not None:
            self.intermediate, self.bert_output = shared.intermediate, shared.bert_output
        else:
            self.intermediate = TFBertIntermediate(config, name="intermediate")
            self.bert_output = TFBertOutput(config, name="output")
        self.built = True  # every weight exists from here on

    def call(
        self,
        hidden_states,
        attention_bias=None,
        encoder_hidden_states=None,
        encoder_bias=None,
        past_key_value=None,
        cache_index=None,
        output_attentions=False,
        training=False,
    ):
        self_past, cross_past = _split_layer_cache(past_key_value)
        hidden_states, present, self_probs = self.attention(
            hidden_states,
            attention_bias,
            past_key_value=self_past,
            cache_index=cache_index,
            output_attentions=output_attentions,
            training=training,
        )
        cross_probs = None
        if _attends_encoder(encoder_hidden_states, past_key_value, hasattr(self, "crossattention")):
            hidden_states, cross_present, cross_probs = self.crossattention(
                hidden_states,
                encoder_bias,
                key_value_states=encoder_hidden_states,
                past_key_value=cross_past,
                output_attentions=output_attentions,
                training=training,
            )
            present = present + cross_present
        hidden_states = self.bert_output(self.intermediate(hidden_states), hidden_states, training=training)
        return hidden_states, present, self_probs, cross_probs


class TFBertEncoder(keras.layers.Layer):
    """The stack of layers (transformers calls it the encoder in decoders too)."""

    def __init__(self, config: ArchConfig, shared: "TFBertEncoder | None" = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        shared_layers = list(shared.layer) if shared is not None else []
        self.layer = [
            TFBertLayer(config, i, shared=shared_layers[i] if i < len(shared_layers) else None, name=f"layer_._{i}")
            for i in range(config.num_hidden_layers)
        ]
        self.built = True  # every weight exists from here on

    def call(
        self,
        hidden_states,
        attention_bias=None,
        encoder_hidden_states=None,
        encoder_bias=None,
        past_key_values=None,
        cache_index=None,
        output_attentions=False,
        output_hidden_states=False,
        training=False,
    ):
        return _run_layers(self.layer, hidden_states, attention_bias, encoder_hidden_states, encoder_bias,
                           past_key_values, cache_index, output_attentions, output_hidden_states, training)


class TFBertPooler(keras.layers.Layer):
    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = _dense(config.hidden_size, config.hidden_size, "dense")
        self.built = True  # every weight exists from here on

    def call(self, hidden_states):
        # The first token's state: [B, S, H] -> [B, H].
        return tf.tanh(self.dense(hidden_states[:, 0]))


class TFBertPredictionHeadTransform(keras.layers.Layer):
    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = _dense(config.hidden_size, config.hidden_size, "dense")
        self.act = ACT2FN[config.hidden_act]
        self.LayerNorm = _layer_norm(config.hidden_size, config.layer_norm_eps, "LayerNorm")
        self.built = True  # every weight exists from here on

    def call(self, hidden_states):
        return self.LayerNorm(self.act(self.dense(hidden_states)))


class TFBertLMPredictionHead(keras.layers.Layer):
    """Transform, then the output projection (the word embeddings when tied) plus `bias`."""

    def __init__(self, config: ArchConfig, input_embeddings: keras.layers.Embedding, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transform = TFBertPredictionHeadTransform(config, name="transform")
        self.decoder = _output_projection(config, input_embeddings, "decoder")
        self.bias = self.add_weight(shape=(config.vocab_size,), initializer="zeros", name="bias")
        self.built = True  # every weight exists from here on

    def call(self, hidden_states):
        return _project_to_vocab(self.decoder, self.transform(hidden_states)) + self.bias


class TFBertOnlyMLMHead(keras.layers.Layer):
    def __init__(self, config: ArchConfig, input_embeddings: keras.layers.Embedding, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.predictions = TFBertLMPredictionHead(config, input_embeddings, name="predictions")
        self.built = True  # every weight exists from here on

    def call(self, hidden_states):
        return self.predictions(hidden_states)


class TFBertModel(TFPreTrainedModel, keras.Model):
    """BERT body: embeddings, layers, and (as an encoder) the pooler.

    With `config.is_decoder` the self-attention is causal, a cache may be used, and
    with `config.add_cross_attention` each layer attends the encoder's states.
    `shared`: an encoder whose embeddings and layers this decoder body uses too
    (tie_encoder_decoder); only its cross-attention is its own.
    """

    embeddings_class = TFBertEmbeddings
    encoder_class = TFBertEncoder
    has_token_types = True

    def __init__(
        self, config: ArchConfig, add_pooling_layer: bool = True, shared: "TFBertModel | None" = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.config = config
        if shared is not None:
            self.embeddings = shared.embeddings
        else:
            self.embeddings = self.embeddings_class(config, name="embeddings")
        self.encoder = self.encoder_class(config, shared=shared.encoder if shared is not None else None, name="encoder")
        self.pooler = TFBertPooler(config, name="pooler") if add_pooling_layer and not config.is_decoder else None
        self.built = True  # every weight exists from here on

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.embeddings.word_embeddings

    def _cross_attention_cache(self, encoder_hidden_states):
        """Each layer's cross-attention keys and values of `encoder_hidden_states`, `((k, v), ...)` `[B, H, S, D]`.

        Computed once before decoding step by step (they do not change).
        """
        return tuple(layer.crossattention.self._key_value(encoder_hidden_states) for layer in self.encoder.layer)

    def _embed(self, input_ids, token_type_ids, position_ids, past_length, training):
        """The first layer's input `[B, S, H]` (ELECTRA projects the embeddings to it)."""
        embedding_kwargs = dict(position_ids=position_ids, past_length=past_length, training=training)
        if self.has_token_types:
            embedding_kwargs["token_type_ids"] = token_type_ids
        return self.embeddings(input_ids, **embedding_kwargs)

    def _self_attention_bias(self, attention_mask, length, past_length, key_length):
        if not self.config.is_decoder:
            return attention_bias(attention_mask) if attention_mask is not None else None
        return causal_bias(length, key_length, past_length, attention_mask)

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
        return_dict=True,
        training=False,
        cache_index=None,
    ):
        use_cache, past_length, key_length, input_ids, token_type_ids, position_ids = _open_stack(
            self.config, input_ids, attention_mask, token_type_ids, position_ids, past_key_values,
            use_cache if self.config.is_decoder else False, cache_index,  # an encoder returns no cache
        )
        hidden = self._embed(input_ids, token_type_ids, position_ids, past_length, training)
        bias = self._self_attention_bias(attention_mask, tf.shape(input_ids)[1], past_length, key_length)
        hidden, presents, all_hidden, all_self, all_cross = self.encoder(
            hidden,
            bias,
            encoder_hidden_states=encoder_hidden_states,
            encoder_bias=_encoder_bias(encoder_attention_mask),
            past_key_values=past_key_values,
            cache_index=cache_index,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            training=training,
        )
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return _stack_output(hidden, all_hidden, all_self, all_cross, presents if use_cache else None, return_dict,
                             pooled)


class TFBertLMHeadModel(_CausalLM):
    """A BERT decoder with its LM head; the head's projection is the word embeddings when tied."""

    base_model_prefix = "bert"
    output_embeddings_path = "cls.predictions.decoder"

    def __init__(self, config: ArchConfig, shared: keras.Model | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.bert = TFBertModel(config, add_pooling_layer=False, shared=shared, name="bert")
        self.cls = TFBertOnlyMLMHead(config, self.bert.get_input_embeddings(), name="mlm___cls")
        self.built = True  # every weight exists from here on

    def compute_logits(self, hidden_states):
        """The LM head: `[..., H]` -> `[..., V]`."""
        return self.cls(hidden_states)
