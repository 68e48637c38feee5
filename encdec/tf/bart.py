"""BART's decoder (`TFBartForCausalLM`) in Keras 3, cross-attending an encoder's states.

Post-LayerNorm layers (residual, then LayerNorm) after an embedding LayerNorm; learned
positions whose table row is the position plus 2 (`max_position_embeddings + 2` rows);
the word embeddings times sqrt(d_model) when `scale_embedding`; the LM head (no bias)
tied to the word embeddings unless the config unties it. The layer tree follows the
canonical names (`model.decoder.layers[i].self_attn.q_proj`, ...). The cache layout is
BERT's: per layer `(self_k, self_v, cross_k, cross_v)`, each `[B, heads, S, head_dim]`.
In training each layer is skipped with probability `decoder_layerdrop` (LayerDrop), as in
transformers' PyTorch BartDecoder.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from ..config import ArchConfig
from ..errors import ConfigError
from .bert import TFBertSelfAttention
from .common import (
    ACT2FN,
    _attends_encoder,
    _causal_lm_output,
    _CausalLM,
    _dense,
    _embedding,
    _encoder_bias,
    _layer_norm,
    _open_stack,
    _output_projection,
    _run_layers,
    _split_layer_cache,
    _stack_output,
    causal_bias,
)

class TFBartLearnedPositionalEmbedding(keras.layers.Embedding):
    """Learned positions: position p reads row `p + position_offset` (2) of a `[max_position_embeddings + 2,
    d_model]` table."""

    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(config.position_table_size, config.d_model, embeddings_initializer="zeros", **kwargs)
        self.offset = config.position_offset
        self.build((None,))

    def call(self, input_ids, past_length=0, position_ids=None):
        if position_ids is None:
            # Positions past_length .. past_length + S - 1, the same for every row: [1, S].
            position_ids = (tf.range(tf.shape(input_ids)[1]) + tf.cast(past_length, tf.int32))[None, :]
        return super().call(position_ids + tf.cast(self.offset, position_ids.dtype))


class TFBartAttention(TFBertSelfAttention):
    """BERT's self-attention with BART's projections: `k_proj`, `v_proj`, `q_proj` (made in that order, as
    transformers makes them) and its own output projection `out_proj`."""

    projection_names = {"key": "k_proj", "value": "v_proj", "query": "q_proj"}
    dropout_field = "attention_dropout"

    def __init__(self, config: ArchConfig, is_cross_attention: bool = False, layer_idx: int = 0, **kwargs: Any) -> None:
        super().__init__(config, is_cross_attention, layer_idx, **kwargs)
        self.out_proj = _dense(config.d_model, config.d_model, "out_proj")

    def _output(self, context):
        return self.out_proj(context)


class TFBartDecoderLayer(keras.layers.Layer):
    """Post-LayerNorm: LN(x + self_attn(x)), LN(x + encoder_attn(x)), LN(x + fc2(act(fc1(x))))."""

    def __init__(self, config: ArchConfig, layer_idx: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        h = config.d_model
        self.self_attn = TFBartAttention(config, layer_idx=layer_idx, name="self_attn")
        self.self_attn_layer_norm = _layer_norm(h, config.layer_norm_eps, "self_attn_layer_norm")
        # Always there, as in transformers (add_cross_attention or not); it runs when encoder states are given.
        self.encoder_attn = TFBartAttention(config, is_cross_attention=True, layer_idx=layer_idx, name="encoder_attn")
        self.encoder_attn_layer_norm = _layer_norm(h, config.layer_norm_eps, "encoder_attn_layer_norm")
        self.fc1 = _dense(config.decoder_ffn_dim, h, "fc1")
        self.fc2 = _dense(h, config.decoder_ffn_dim, "fc2")
        self.final_layer_norm = _layer_norm(h, config.layer_norm_eps, "final_layer_norm")
        self.act = ACT2FN[config.activation_function]
        self.dropout = keras.layers.Dropout(config.dropout)
        self.activation_dropout = keras.layers.Dropout(config.activation_dropout)
        self.layerdrop = config.decoder_layerdrop
        if self.layerdrop > 0.0:
            self.layerdrop_seed = keras.random.SeedGenerator()
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
        layer_input = hidden_states
        self_past, cross_past = _split_layer_cache(past_key_value)
        attn, present, self_probs = self.self_attn(
            hidden_states,
            attention_bias,
            past_key_value=self_past,
            cache_index=cache_index,
            output_attentions=output_attentions,
            training=training,
        )
        hidden_states = self.self_attn_layer_norm(hidden_states + self.dropout(attn, training=training))
        cross_probs = None
        if _attends_encoder(encoder_hidden_states, past_key_value):
            cross, cross_present, cross_probs = self.encoder_attn(
                hidden_states,
                encoder_bias,
                key_value_states=encoder_hidden_states,
                past_key_value=cross_past,
                output_attentions=output_attentions,
                training=training,
            )
            hidden_states = self.encoder_attn_layer_norm(hidden_states + self.dropout(cross, training=training))
            present = present + cross_present
        feed_forward = self.activation_dropout(self.act(self.fc1(hidden_states)), training=training)
        feed_forward = self.dropout(self.fc2(feed_forward), training=training)
        output = self.final_layer_norm(hidden_states + feed_forward)
        if training and self.layerdrop > 0.0:
            # LayerDrop, as transformers' BartDecoder: in training the layer is skipped (its input passes
            # on) with probability decoder_layerdrop, drawn in the graph so that each step draws anew.
            kept = keras.random.uniform((), seed=self.layerdrop_seed) >= self.layerdrop
            output = tf.where(kept, output, layer_input)
        return output, present, self_probs, cross_probs


class TFBartDecoder(keras.layers.Layer):
    """Scaled word embeddings + learned positions, the embedding LayerNorm, the decoder layers. Always causal."""

    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        h = config.d_model
        self.embed_scale = config.embed_scale
        self.embed_tokens = _embedding(config.vocab_size, h, "embed_tokens")
        self.embed_positions = TFBartLearnedPositionalEmbedding(config, name="embed_positions")
        self.layers = [TFBartDecoderLayer(config, layer_idx=i, name=f"layers.{i}")
                       for i in range(config.decoder_layers)]
        self.layernorm_embedding = _layer_norm(h, config.layer_norm_eps, "layernorm_embedding")
        self.dropout = keras.layers.Dropout(config.dropout)
        self.built = True  # every weight exists from here on

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.embed_tokens

    def _cross_attention_cache(self, encoder_hidden_states):
        """Each layer's cross-attention keys and values of `encoder_hidden_states`, `((k, v), ...)` `[B, H, S, D]`."""
        return tuple(layer.encoder_attn._key_value(encoder_hidden_states) for layer in self.layers)

    def call(
        self,
        input_ids=None,
        attention_mask=None,
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
        use_cache, past_length, key_length, input_ids, _, position_ids = _open_stack(
            self.config, input_ids, attention_mask, None, position_ids, past_key_values, use_cache, cache_index,
        )
        length = tf.shape(input_ids)[1]
        hidden = self.embed_tokens(input_ids) * self.embed_scale
        hidden = hidden + self.embed_positions(input_ids, past_length=past_length, position_ids=position_ids)
        hidden = self.dropout(self.layernorm_embedding(hidden), training=training)
        bias = causal_bias(length, key_length, past_length, attention_mask)  # BART's decoder is always causal

        hidden, presents, all_hidden, all_self, all_cross = _run_layers(
            self.layers, hidden, bias, encoder_hidden_states, _encoder_bias(encoder_attention_mask),
            past_key_values, cache_index, output_attentions, output_hidden_states, training,
        )
        return _stack_output(hidden, all_hidden, all_self, all_cross, presents if use_cache else None, return_dict)


class TFBartDecoderWrapper(keras.layers.Layer):
    """Holds the decoder as `decoder`, so that its names are `model.decoder.*` as in transformers."""

    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.decoder = TFBartDecoder(config, name="decoder")
        self.built = True  # every weight exists from here on

    def call(
        self,
        input_ids=None,
        attention_mask=None,
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
        # Named arguments: Keras refuses a `**kwargs` that mixes tensors and other values.
        return self.decoder(
            input_ids, attention_mask=attention_mask, position_ids=position_ids,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=return_dict, training=training,
            cache_index=cache_index,
        )


class TFBartForCausalLM(_CausalLM):
    """BART's decoder with its LM head (no bias), tied to the word embeddings by default."""

    base_model_prefix = "model"

    def __init__(self, config: ArchConfig, shared: keras.Model | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if shared is not None:
            raise ConfigError(
                "bart cannot share its weights with an encoder; tie_encoder_decoder needs one architecture"
            )
        self.config = config
        self.model = TFBartDecoderWrapper(config, name="model")
        self.lm_head = _output_projection(config, self.model.decoder.embed_tokens, "lm_head")
        self.built = True  # every weight exists from here on

    @property
    def base_model(self) -> TFBartDecoder:
        return self.model.decoder

    def call(
        self,
        input_ids=None,
        attention_mask=None,
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
        out = self.model.decoder(
            input_ids, attention_mask=attention_mask, position_ids=position_ids,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, training=training, cache_index=cache_index,
        )
        return _causal_lm_output(self, out, labels, logits_to_keep, return_dict)
