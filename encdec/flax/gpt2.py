"""GPT-2 as Linen modules: a pre-LayerNorm decoder with cross-attention (`ln_cross_attn`).

GPT-2's Conv1D kernels are `[out, in]` in Flax params (transformers' Flax layout;
`[in, out]` in the canonical PyTorch one). The cache has BERT's layout:
`{"index", "encoder_attention_mask", "layers": ({"key", "value", "cross_key", "cross_value"}, ...)}`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ..config import ArchConfig
from .bert import _layer_norm
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
    causal_bias,
)


class _FlaxConv1D(nn.Module):
    """x @ kernel.T + bias with `kernel` `[features, in]`."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.normal(0.02), (self.features, x.shape[-1]))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        # x [..., in] . kernel [features, in] over `in` -> [..., features]
        return jnp.einsum("...i,oi->...o", x.astype(self.dtype), kernel.astype(self.dtype)) + bias.astype(self.dtype)


class FlaxGPT2Attention(nn.Module):
    """GPT-2 attention. Self: `c_attn` gives q, k, v; cross: `q_attn` gives q from the
    decoder, `c_attn` gives k, v from the encoder."""

    config: ArchConfig
    dtype: Any = jnp.float32
    is_cross_attention: bool = False
    layer_idx: int = 0

    def setup(self):
        h = self.config.n_embd
        if self.is_cross_attention:
            self.c_attn = _FlaxConv1D(2 * h, self.dtype)
            self.q_attn = _FlaxConv1D(h, self.dtype)
        else:
            self.c_attn = _FlaxConv1D(3 * h, self.dtype)
        self.c_proj = _FlaxConv1D(h, self.dtype)
        self.attn_dropout = nn.Dropout(rate=self.config.attn_pdrop)
        self.resid_dropout = nn.Dropout(rate=self.config.resid_pdrop)

    def _split_heads(self, x):
        cfg = self.config
        return x.reshape(x.shape[:2] + (cfg.n_head, cfg.head_dim))  # [B, T, H, D]

    def _project_key_value(self, states):
        """Cross-attention keys and values of the encoder states, each `[B, H, S, D]`."""
        key, value = jnp.split(self.c_attn(states), 2, axis=-1)
        return _heads_first(self._split_heads(key)), _heads_first(self._split_heads(value))

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
        cfg = self.config
        new_cache = None
        if self.is_cross_attention:
            query = self._split_heads(self.q_attn(hidden_states))
            key, value = kv_cache if kv_cache is not None else self._project_key_value(key_value_states)
        else:
            query, key, value = (self._split_heads(x) for x in jnp.split(self.c_attn(hidden_states), 3, axis=-1))
            key, value = _heads_first(key), _heads_first(value)
            if kv_cache is not None:
                key, value = new_cache = _write_self_cache(kv_cache, key, value, cache_index)
        scale = cfg.head_dim ** -0.5 if cfg.scale_attn_weights else 1.0
        if cfg.scale_attn_by_inverse_layer_idx:
            scale /= float(self.layer_idx + 1)
        out, weights = _attend_heads(self, query, key, value, attention_bias, scale, self.attn_dropout, deterministic)
        out = self.resid_dropout(self.c_proj(out), deterministic=deterministic)
        return out, (weights if output_attentions else None), new_cache


class FlaxGPT2MLP(nn.Module):
    config: ArchConfig
    dtype: Any = jnp.float32

    def setup(self):
        self.c_fc = _FlaxConv1D(self.config.inner_size, self.dtype)
        self.c_proj = _FlaxConv1D(self.config.n_embd, self.dtype)
        self.dropout = nn.Dropout(rate=self.config.resid_pdrop)

    def __call__(self, hidden_states, deterministic=True):
        hidden_states = ACT2FN[self.config.activation_function](self.c_fc(hidden_states))
        return self.dropout(self.c_proj(hidden_states), deterministic=deterministic)


class FlaxGPT2Block(nn.Module):
    config: ArchConfig
    dtype: Any = jnp.float32
    layer_idx: int = 0

    def setup(self):
        cfg = self.config
        self.ln_1 = _layer_norm(cfg, self.dtype)
        self.attn = FlaxGPT2Attention(cfg, self.dtype, layer_idx=self.layer_idx)
        self.ln_2 = _layer_norm(cfg, self.dtype)
        if cfg.add_cross_attention:
            self.crossattention = FlaxGPT2Attention(cfg, self.dtype, is_cross_attention=True, layer_idx=self.layer_idx)
            self.ln_cross_attn = _layer_norm(cfg, self.dtype)
        self.mlp = FlaxGPT2MLP(cfg, self.dtype)

    def _cross_key_value(self, encoder_hidden_states):
        return self.crossattention._project_key_value(encoder_hidden_states)

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
        attn_output, self_weights, new_self_kv = self.attn(
            self.ln_1(hidden_states),
            attention_bias,
            kv_cache=self_kv,
            cache_index=cache_index,
            output_attentions=output_attentions,
            deterministic=deterministic,
        )
        hidden_states = attn_output + hidden_states
        cross_weights = None
        if _attends_encoder(encoder_hidden_states, layer_cache, self.config.add_cross_attention):
            cross_output, cross_weights, _ = self.crossattention(
                self.ln_cross_attn(hidden_states),
                encoder_bias,
                key_value_states=encoder_hidden_states,
                kv_cache=cross_kv,
                output_attentions=output_attentions,
                deterministic=deterministic,
            )
            hidden_states = hidden_states + cross_output
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states), deterministic=deterministic)
        return hidden_states, self_weights, cross_weights, _updated_layer_cache(layer_cache, new_self_kv)


class _FlaxGPT2BlockCollection(_LayerCollection):
    """The blocks, named "0", "1", ... under `h` as in transformers' Flax params."""

    layer_class = FlaxGPT2Block
    num_layers_field = "n_layer"


class FlaxGPT2Model(FlaxPreTrainedModel, _GradientCheckpointing, nn.Module):
    """GPT-2 body: token + position embeddings, causal blocks, final LayerNorm."""

    config: ArchConfig
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        cfg = self.config
        self.wte = nn.Embed(cfg.vocab_size, cfg.n_embd, dtype=self.dtype)
        self.wpe = nn.Embed(cfg.n_positions, cfg.n_embd, dtype=self.dtype)
        self.drop = nn.Dropout(rate=cfg.embd_pdrop)
        self.h = _FlaxGPT2BlockCollection(cfg, self.dtype, self.gradient_checkpointing)
        self.ln_f = _layer_norm(cfg, self.dtype)

    def get_input_embeddings(self):
        return self.wte

    def _cross_key_values(self, encoder_hidden_states):
        return [block._cross_key_value(encoder_hidden_states) for block in self.h.layers]

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
        cache = past_key_values
        past_length, key_length = _open_stack(self.config, cache, input_ids, attention_mask, token_type_ids,
                                              position_ids)
        length = input_ids.shape[1]
        if position_ids is None:
            position_ids = (past_length + jnp.arange(length))[None, :]  # [1, T]
        hidden = self.wte(input_ids.astype("i4")) + self.wpe(position_ids.astype("i4"))
        if token_type_ids is not None:
            hidden = hidden + self.wte(token_type_ids.astype("i4"))
        hidden = self.drop(hidden, deterministic=deterministic)

        bias = causal_bias(length, key_length, past_length, attention_mask, self.dtype)
        encoder_bias = _encoder_bias(encoder_attention_mask, self.dtype)

        hidden, all_hidden, all_self, all_cross, new_layers = _run_layers(
            self.h.layers, hidden, bias, encoder_hidden_states, encoder_bias, cache, past_length, output_attentions,
            output_hidden_states, deterministic,
        )
        hidden = self.ln_f(hidden)
        if output_hidden_states:
            # transformers takes the last hidden state after ln_f, in place of the last block's output
            all_hidden = all_hidden[:-1] + (hidden,)
        return _stack_output(hidden, all_hidden, all_self, all_cross, _close_cache(cache, length, new_layers))


class FlaxGPT2LMHeadModel(_CausalLM):
    """GPT-2 with its LM head (no bias), tied to the token embeddings."""

    base_model_prefix = "transformer"

    def setup(self):
        self.transformer = FlaxGPT2Model(self.config, self.dtype, self.gradient_checkpointing)
        if not self.config.tie_word_embeddings:
            self.lm_head = nn.Dense(self.config.vocab_size, use_bias=False, dtype=self.dtype)
