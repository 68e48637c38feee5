"""GPT-2 as a cross-attending decoder: pre-LayerNorm blocks, Conv1D projections, gelu_new.

Conv1D keeps its weight `[in, out]` (y = x @ W + b), as transformers stores it.
Cross-attention has its own `q_attn` and a `c_attn` that makes keys and values
(`[H, 2H]`) from the encoder's states, and a LayerNorm `ln_cross_attn` in front.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .common import (
    ACT2FN,
    _attend_heads,
    _attends_encoder,
    _CausalLM,
    _checkpointing,
    _close_cache,
    _cross_keys_values,
    _decoder_self_bias,
    _encoder_bias,
    _GradientCheckpointing,
    _open_stack,
    _run_layers,
    _stack_output,
    _write_self_cache,
)
from .fast_linear import Linear, PackableLinear, linear
from .pretrained import PreTrainedModel


class _Conv1D(nn.Module, PackableLinear):
    """A dense layer with the weight stored `[in, out]`."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.normal_(self.weight, std=0.02)

    def linear_weight(self) -> torch.Tensor:
        return self.weight.t()  # [out, in]

    def forward(self, x):
        return linear(x, self.weight.t(), self.bias, self._packed)  # [..., in] -> [..., out]


class GPT2Attention(nn.Module):
    def __init__(self, config, is_cross_attention: bool = False, layer_idx: int = 0) -> None:
        super().__init__()
        self.config = config  # shared with the joined model's: attn_implementation is read at call time
        h = config.n_embd
        self.embed_dim = h
        self.num_heads = config.n_head
        self.head_dim = h // self.num_heads
        self.scale = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= float(layer_idx + 1)
        self.is_cross_attention = is_cross_attention
        if is_cross_attention:
            self.c_attn = _Conv1D(h, 2 * h)
            self.q_attn = _Conv1D(h, h)
        else:
            self.c_attn = _Conv1D(h, 3 * h)
        self.c_proj = _Conv1D(h, h)
        self.attn_pdrop = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        self.layer_idx = layer_idx

    def _heads(self, x):
        # [B, T, H*D] -> [B, H, T, D]
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def _cross_key_value(self, encoder_hidden_states):
        """Cross-attention keys/values of the encoder's states: `[B, S, H*D]` -> two `[B, H, S, D]`."""
        key, value = self.c_attn(encoder_hidden_states).split(self.embed_dim, dim=2)
        return self._heads(key), self._heads(value)

    def forward(
        self,
        hidden_states,
        attention_bias=None,
        is_causal: bool = False,
        key_value_states=None,
        cache: Optional[dict] = None,
        output_attentions: bool = False,
        past_length: int = 0,
    ):
        if self.is_cross_attention:
            query = self._heads(self.q_attn(hidden_states))
            key, value = _cross_keys_values(cache, self._cross_key_value, key_value_states)
        else:
            query, key, value = self.c_attn(hidden_states).split(self.embed_dim, dim=2)
            query, key, value = self._heads(query), self._heads(key), self._heads(value)
            if cache is not None:
                key, value = _write_self_cache(cache, past_length, key, value)
        out, probs = _attend_heads(self, query, key, value, attention_bias, is_causal, output_attentions,
                                   self.attn_pdrop)
        return self.resid_dropout(self.c_proj(out)), probs


class GPT2MLP(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.c_fc = _Conv1D(config.n_embd, config.inner_size)
        self.c_proj = _Conv1D(config.inner_size, config.n_embd)
        self.act = ACT2FN[config.activation_function]
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, hidden_states):
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))))


class GPT2Block(nn.Module):
    """Pre-LayerNorm: x + attn(ln_1(x)), + crossattention(ln_cross_attn(x)), + mlp(ln_2(x))."""

    def __init__(self, config, layer_idx: int = 0) -> None:
        super().__init__()
        h, eps = config.n_embd, config.layer_norm_epsilon
        self.ln_1 = nn.LayerNorm(h, eps=eps)
        self.attn = GPT2Attention(config, layer_idx=layer_idx)
        self.ln_2 = nn.LayerNorm(h, eps=eps)
        if config.add_cross_attention:
            self.crossattention = GPT2Attention(config, is_cross_attention=True, layer_idx=layer_idx)
            self.ln_cross_attn = nn.LayerNorm(h, eps=eps)
        self.mlp = GPT2MLP(config)

    def forward(
        self,
        hidden_states,
        attention_bias=None,
        is_causal: bool = False,
        encoder_hidden_states=None,
        encoder_bias=None,
        cache=None,
        output_attentions: bool = False,
        past_length: int = 0,
    ):
        attn, self_probs = self.attn(self.ln_1(hidden_states), attention_bias, is_causal, None, cache,
                                     output_attentions, past_length)
        hidden_states = attn + hidden_states
        cross_probs = None
        if _attends_encoder(encoder_hidden_states, cache, hasattr(self, "crossattention")):
            cross, cross_probs = self.crossattention(
                self.ln_cross_attn(hidden_states), encoder_bias, False, encoder_hidden_states, cache, output_attentions
            )
            hidden_states = hidden_states + cross
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))
        return hidden_states, self_probs, cross_probs


class GPT2Model(PreTrainedModel, _GradientCheckpointing, nn.Module):
    """GPT-2 body: token + position embeddings, causal blocks, final LayerNorm."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList([GPT2Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.gradient_checkpointing = False  # set through gradient_checkpointing_enable
        self._gradient_checkpointing_func = None

    def get_input_embeddings(self):
        return self.wte

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values: Optional[dict] = None,
        use_cache: Optional[bool] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ):
        use_cache, past_length, cache, input_ids, token_type_ids, position_ids = _open_stack(
            self.config, self.config.n_layer, _checkpointing(self), past_key_values, use_cache, input_ids,
            attention_mask, token_type_ids, position_ids,
        )
        length = input_ids.shape[1]

        if position_ids is None:
            positions = self.wpe.weight[past_length : past_length + length]  # [T, H]
        else:
            positions = self.wpe(position_ids)
        hidden = self.wte(input_ids) + positions
        if token_type_ids is not None:
            hidden = hidden + self.wte(token_type_ids)
        hidden = self.drop(hidden)

        bias, is_causal = _decoder_self_bias(attention_mask, length, past_length, hidden.dtype, hidden.device)
        hidden, all_hidden, all_self, all_cross = _run_layers(
            self, self.h, hidden, bias, is_causal, encoder_hidden_states,
            _encoder_bias(encoder_attention_mask, hidden.dtype), cache, output_attentions, output_hidden_states,
            past_length,
        )
        hidden = self.ln_f(hidden)
        if output_hidden_states:
            # transformers takes the last hidden state after ln_f, in place of the last block's output
            all_hidden = all_hidden[:-1] + (hidden,)
        past = _close_cache(cache, past_length, length, encoder_attention_mask) if use_cache else None
        return _stack_output(hidden, all_hidden, all_self, all_cross, past, return_dict)


class GPT2LMHeadModel(_CausalLM):
    """GPT-2 with its LM head (no bias), tied to the token embeddings."""

    base_model_prefix = "transformer"

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self._tie_output_embeddings()
