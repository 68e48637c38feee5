"""BART's decoder (`FlaxBartForCausalLM`) as Linen modules, cross-attending an encoder's states.

Post-LayerNorm layers (residual, then LayerNorm) after an embedding LayerNorm; learned
positions whose table row is the position plus 2 (`max_position_embeddings + 2` rows);
the word embeddings times sqrt(d_model) when `scale_embedding`; the LM head (no bias)
tied to the word embeddings unless the config unties it. Params are named as
transformers' FlaxBartForCausalLM names them (`model/decoder/layers/0/self_attn/q_proj`).
In training each layer is skipped with probability `decoder_layerdrop` (LayerDrop), as in
transformers' PyTorch BartDecoder. The cache has BERT's layout:
`{"index", "encoder_attention_mask", "layers": ({"key", "value", "cross_key", "cross_value"}, ...)}`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..config import ArchConfig
from .bert import FlaxBertSelfAttention, _layer_norm
from .common import (
    ACT2FN,
    _attends_encoder,
    _causal_lm_output,
    _CausalLM,
    _close_cache,
    _encoder_bias,
    _LayerCollection,
    _open_stack,
    _run_layers,
    _split_layer_cache,
    _stack_output,
    _updated_layer_cache,
    causal_bias,
)

class FlaxBartLearnedPositionalEmbedding(nn.Module):
    """Learned positions: position p reads row `p + position_offset` (2) of a `[max_position_embeddings + 2,
    d_model]` table."""

    config: ArchConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, past_length=0, position_ids=None):
        cfg = self.config
        table = self.param("embedding", nn.initializers.normal(0.02), (cfg.position_table_size, cfg.d_model))
        if position_ids is None:
            position_ids = (past_length + jnp.arange(input_ids.shape[1]))[None, :]  # [1, T]
        return jnp.take(table, position_ids.astype("i4") + cfg.position_offset, axis=0).astype(self.dtype)


class FlaxBartAttention(FlaxBertSelfAttention):
    """BERT's self-attention with BART's projections: `k_proj`, `v_proj`, `q_proj` (made in that order, as
    transformers makes them) and its own output projection `out_proj`."""

    projection_names = {"key": "k_proj", "value": "v_proj", "query": "q_proj"}
    dropout_field = "attention_dropout"

    def setup(self):
        super().setup()
        self.out_proj = nn.Dense(self.config.d_model, dtype=self.dtype)

    def _output(self, out):
        return self.out_proj(out)


class FlaxBartDecoderLayer(nn.Module):
    """Post-LayerNorm: LN(x + self_attn(x)), LN(x + encoder_attn(x)), LN(x + fc2(act(fc1(x))))."""

    config: ArchConfig
    dtype: Any = jnp.float32
    layer_idx: int = 0  # its place in the stack, given to every layer by `_LayerCollection`

    def setup(self):
        cfg = self.config
        self.self_attn = FlaxBartAttention(cfg, self.dtype)
        self.self_attn_layer_norm = _layer_norm(cfg, self.dtype)
        # Always there, as in transformers (add_cross_attention or not); it runs when encoder states are given.
        self.encoder_attn = FlaxBartAttention(cfg, self.dtype, is_cross_attention=True)
        self.encoder_attn_layer_norm = _layer_norm(cfg, self.dtype)
        self.fc1 = nn.Dense(cfg.decoder_ffn_dim, dtype=self.dtype)
        self.fc2 = nn.Dense(cfg.d_model, dtype=self.dtype)
        self.final_layer_norm = _layer_norm(cfg, self.dtype)
        self.dropout = nn.Dropout(rate=cfg.dropout)
        self.activation_dropout = nn.Dropout(rate=cfg.activation_dropout)

    def _cross_key_value(self, encoder_hidden_states):
        return self.encoder_attn._project_key_value(encoder_hidden_states)

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
        layer_input = hidden_states
        self_kv, cross_kv = _split_layer_cache(layer_cache)
        attn_output, self_weights, new_self_kv = self.self_attn(
            hidden_states,
            attention_bias,
            kv_cache=self_kv,
            cache_index=cache_index,
            output_attentions=output_attentions,
            deterministic=deterministic,
        )
        attn_output = self.dropout(attn_output, deterministic=deterministic)
        hidden_states = self.self_attn_layer_norm(hidden_states + attn_output)
        cross_weights = None
        if _attends_encoder(encoder_hidden_states, layer_cache):
            cross_output, cross_weights, _ = self.encoder_attn(
                hidden_states,
                encoder_bias,
                key_value_states=encoder_hidden_states,
                kv_cache=cross_kv,
                output_attentions=output_attentions,
                deterministic=deterministic,
            )
            cross_output = self.dropout(cross_output, deterministic=deterministic)
            hidden_states = self.encoder_attn_layer_norm(hidden_states + cross_output)
        feed_forward = ACT2FN[self.config.activation_function](self.fc1(hidden_states))
        feed_forward = self.activation_dropout(feed_forward, deterministic=deterministic)
        feed_forward = self.dropout(self.fc2(feed_forward), deterministic=deterministic)
        output = self.final_layer_norm(hidden_states + feed_forward)
        if not deterministic and self.config.decoder_layerdrop > 0.0:
            # LayerDrop, as transformers' BartDecoder: in training the layer is skipped (its input passes
            # on) with probability decoder_layerdrop, drawn from the dropout key so that each step draws anew.
            kept = jax.random.uniform(self.make_rng("dropout")) >= self.config.decoder_layerdrop
            output = jnp.where(kept, output, layer_input)
        return output, self_weights, cross_weights, _updated_layer_cache(layer_cache, new_self_kv)


class _FlaxBartDecoderLayerCollection(_LayerCollection):
    """The decoder layers, named "0", "1", ... under `layers` as in transformers' Flax params."""

    layer_class = FlaxBartDecoderLayer
    num_layers_field = "decoder_layers"


class FlaxBartDecoder(nn.Module):
    """Scaled word embeddings + learned positions, the embedding LayerNorm, the decoder layers. Always causal."""

    config: ArchConfig
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        cfg = self.config
        self.embed_tokens = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=self.dtype)
        self.embed_positions = FlaxBartLearnedPositionalEmbedding(cfg, self.dtype)
        self.layers = _FlaxBartDecoderLayerCollection(cfg, self.dtype, self.gradient_checkpointing)
        self.layernorm_embedding = _layer_norm(cfg, self.dtype)
        self.dropout = nn.Dropout(rate=cfg.dropout)

    def get_input_embeddings(self):
        return self.embed_tokens

    def _cross_key_values(self, encoder_hidden_states):
        return [layer._cross_key_value(encoder_hidden_states) for layer in self.layers.layers]

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        output_attentions=False,
        output_hidden_states=False,
        deterministic=True,
    ):
        cache = past_key_values
        past_length, key_length = _open_stack(self.config, cache, input_ids, attention_mask, None, position_ids)
        length = input_ids.shape[1]
        hidden = self.embed_tokens(input_ids.astype("i4")) * self.config.embed_scale
        hidden = hidden + self.embed_positions(input_ids, past_length, position_ids)
        hidden = self.dropout(self.layernorm_embedding(hidden), deterministic=deterministic)

        bias = causal_bias(length, key_length, past_length, attention_mask, self.dtype)
        encoder_bias = _encoder_bias(encoder_attention_mask, self.dtype)

        hidden, all_hidden, all_self, all_cross, new_layers = _run_layers(
            self.layers.layers, hidden, bias, encoder_hidden_states, encoder_bias, cache, past_length,
            output_attentions, output_hidden_states, deterministic,
        )
        return _stack_output(hidden, all_hidden, all_self, all_cross, _close_cache(cache, length, new_layers))


class FlaxBartDecoderWrapper(nn.Module):
    """Holds the decoder as `decoder`, so that its params are `model/decoder/*` as in transformers."""

    config: ArchConfig
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        self.decoder = FlaxBartDecoder(self.config, self.dtype, self.gradient_checkpointing)

    def __call__(self, *args, **kwargs):
        return self.decoder(*args, **kwargs)


class FlaxBartForCausalLM(_CausalLM):
    """BART's decoder with its LM head (no bias), tied to the word embeddings by default."""

    base_model_prefix = "model"

    def setup(self):
        self.model = FlaxBartDecoderWrapper(self.config, self.dtype, self.gradient_checkpointing)
        if not self.config.tie_word_embeddings:
            self.lm_head = nn.Dense(self.config.vocab_size, use_bias=False, dtype=self.dtype)

    @property
    def base_model(self):
        return self.model.decoder

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        output_attentions=False,
        output_hidden_states=False,
        labels=None,
        deterministic=True,
    ):
        out = self.model.decoder(
            input_ids, attention_mask, position_ids, encoder_hidden_states, encoder_attention_mask,
            past_key_values=past_key_values, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, deterministic=deterministic,
        )
        return _causal_lm_output(self, out, labels)
