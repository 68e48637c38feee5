"""GPT-2 in TensorFlow (Keras 3), with the cross-attention it has as an encoder-decoder's decoder.

Pre-LayerNorm blocks; the projections are GPT-2's Conv1D (`weight [in, out]`, TF bias
`[1, out]`). The cache layout is BERT's: per block `(self_k, self_v, cross_k, cross_v)`,
each `[B, heads, S, head_dim]`.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from ..config import ArchConfig
from ..errors import ConfigError
from .pretrained import TFPreTrainedModel
from .common import (
    ACT2FN,
    _attend_heads,
    _attends_encoder,
    _cross_keys_values,
    _CausalLM,
    _embedding,
    _encoder_bias,
    _extend_cache,
    _heads_first,
    _layer_norm,
    _open_stack,
    _output_projection,
    _run_layers,
    _split_layer_cache,
    _stack_output,
    causal_bias,
)


class _Conv1D(keras.layers.Layer):
    """GPT-2's projection: `x @ weight + bias`, weight `[in, out]`, bias `[1, out]` (transformers' TF layout)."""

    def __init__(self, n_in: int, n_out: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weight = self.add_weight(shape=(n_in, n_out), initializer="zeros", name="weight")
        self.bias = self.add_weight(shape=(1, n_out), initializer="zeros", name="bias")
        self.built = True  # every weight exists from here on

    def call(self, x):
        return tf.matmul(x, self.weight) + self.bias


class TFGPT2Attention(keras.layers.Layer):
    def __init__(self, config: ArchConfig, is_cross_attention: bool = False, layer_idx: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        h = config.n_embd
        self.embed_dim = h
        self.num_heads = config.n_head
        self.head_dim = h // self.num_heads
        self.scale = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= float(layer_idx + 1)
        self.is_cross_attention = is_cross_attention
        if is_cross_attention:
            self.c_attn = _Conv1D(h, 2 * h, name="c_attn")
            self.q_attn = _Conv1D(h, h, name="q_attn")
        else:
            self.c_attn = _Conv1D(h, 3 * h, name="c_attn")
        self.c_proj = _Conv1D(h, h, name="c_proj")
        self.attn_dropout = keras.layers.Dropout(config.attn_pdrop)
        self.resid_dropout = keras.layers.Dropout(config.resid_pdrop)
        self.layer_idx = layer_idx
        self.built = True  # every weight exists from here on

    def _heads(self, x):
        # [B, S, H*D] -> [B, S, H, D]
        return tf.reshape(x, [tf.shape(x)[0], -1, self.num_heads, self.head_dim])

    def _key_value(self, states):
        """Cross-attention keys and values `[B, H, S, D]` of the encoder's `states` `[B, S, hidden]`."""
        key, value = tf.split(self.c_attn(states), 2, axis=-1)
        return _heads_first(self._heads(key)), _heads_first(self._heads(value))

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
        if self.is_cross_attention:
            query = self._heads(self.q_attn(hidden_states))
            key, value = _cross_keys_values(past_key_value, self._key_value, key_value_states)
        else:
            query, key, value = tf.split(self.c_attn(hidden_states), 3, axis=-1)
            query, key, value = self._heads(query), _heads_first(self._heads(key)), _heads_first(self._heads(value))
            if past_key_value is not None:
                key, value = _extend_cache(past_key_value, key, value, cache_index)
        context, probs = _attend_heads(self, query, key, value, attention_bias, past_key_value, self.attn_dropout,
                                       training)
        output = self.resid_dropout(self.c_proj(context), training=training)
        return output, (key, value), probs if output_attentions else None


class TFGPT2MLP(keras.layers.Layer):
    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.c_fc = _Conv1D(config.n_embd, config.inner_size, name="c_fc")
        self.c_proj = _Conv1D(config.inner_size, config.n_embd, name="c_proj")
        self.act = ACT2FN[config.activation_function]
        self.dropout = keras.layers.Dropout(config.resid_pdrop)
        self.built = True  # every weight exists from here on

    def call(self, hidden_states, training=False):
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))), training=training)


class TFGPT2Block(keras.layers.Layer):
    """Pre-LayerNorm: x + attn(ln_1(x)), + crossattention(ln_cross_attn(x)), + mlp(ln_2(x))."""

    def __init__(self, config: ArchConfig, layer_idx: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        h, eps = config.n_embd, config.layer_norm_epsilon
        self.ln_1 = _layer_norm(h, eps, "ln_1")
        self.attn = TFGPT2Attention(config, layer_idx=layer_idx, name="attn")
        self.ln_2 = _layer_norm(h, eps, "ln_2")
        if config.add_cross_attention:
            self.crossattention = TFGPT2Attention(
                config, is_cross_attention=True, layer_idx=layer_idx, name="crossattention"
            )
            self.ln_cross_attn = _layer_norm(h, eps, "ln_cross_attn")
        self.mlp = TFGPT2MLP(config, name="mlp")
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
        attn, present, self_probs = self.attn(
            self.ln_1(hidden_states),
            attention_bias,
            past_key_value=self_past,
            cache_index=cache_index,
            output_attentions=output_attentions,
            training=training,
        )
        hidden_states = attn + hidden_states
        cross_probs = None
        if _attends_encoder(encoder_hidden_states, past_key_value, hasattr(self, "crossattention")):
            cross, cross_present, cross_probs = self.crossattention(
                self.ln_cross_attn(hidden_states),
                encoder_bias,
                key_value_states=encoder_hidden_states,
                past_key_value=cross_past,
                output_attentions=output_attentions,
                training=training,
            )
            hidden_states = hidden_states + cross
            present = present + cross_present
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states), training=training)
        return hidden_states, present, self_probs, cross_probs


class TFGPT2Model(TFPreTrainedModel, keras.Model):
    """GPT-2's body: token + position embeddings, pre-LayerNorm blocks, a final LayerNorm. Always causal."""

    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.wte = _embedding(config.vocab_size, config.n_embd, "wte")
        self.wpe = _embedding(config.n_positions, config.n_embd, "wpe")
        self.drop = keras.layers.Dropout(config.embd_pdrop)
        self.h = [TFGPT2Block(config, layer_idx=i, name=f"h_._{i}") for i in range(config.n_layer)]
        self.ln_f = _layer_norm(config.n_embd, config.layer_norm_epsilon, "ln_f")
        self.built = True  # every weight exists from here on

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.wte

    def _cross_attention_cache(self, encoder_hidden_states):
        """Each block's cross-attention keys and values of `encoder_hidden_states`, `((k, v), ...)` `[B, H, S, D]`."""
        return tuple(block.crossattention._key_value(encoder_hidden_states) for block in self.h)

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
            self.config, input_ids, attention_mask, token_type_ids, position_ids, past_key_values, use_cache,
            cache_index,
        )
        length = tf.shape(input_ids)[1]
        if position_ids is None:
            position_ids = (tf.range(length) + tf.cast(past_length, tf.int32))[None, :]  # [1, S]
        hidden = self.wte(input_ids) + self.wpe(position_ids)
        if token_type_ids is not None:
            hidden = hidden + self.wte(token_type_ids)
        hidden = self.drop(hidden, training=training)
        bias = causal_bias(length, key_length, past_length, attention_mask)  # GPT-2 is always causal
        encoder_bias = _encoder_bias(encoder_attention_mask)

        hidden, presents, all_hidden, all_self, all_cross = _run_layers(
            self.h, hidden, bias, encoder_hidden_states, encoder_bias, past_key_values, cache_index,
            output_attentions, output_hidden_states, training,
        )
        hidden = self.ln_f(hidden)
        if output_hidden_states:
            # transformers takes the last hidden state after ln_f, in place of the last block's output
            all_hidden = all_hidden[:-1] + (hidden,)
        return _stack_output(hidden, all_hidden, all_self, all_cross, presents if use_cache else None, return_dict)


class TFGPT2LMHeadModel(_CausalLM):
    """GPT-2 with its LM head (no bias), tied to the token embeddings by default."""

    base_model_prefix = "transformer"

    def __init__(self, config: ArchConfig, shared: keras.Model | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if shared is not None:
            raise ConfigError(
                "gpt2 cannot share its weights with an encoder; tie_encoder_decoder needs one architecture"
            )
        self.config = config
        self.transformer = TFGPT2Model(config, name="transformer")
        self.lm_head = _output_projection(config, self.transformer.wte, "lm_head")
        self.built = True  # every weight exists from here on
